"""benchmarks/compression.py compares a compressed model only with models trained as long (issue 25,
item 13): the fine-tuned rows trained 200 steps more than the float32 model, so the float32 model gets
the same 200 steps, and a Pareto front never joins rows of different training."""
import importlib.util
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "compression.json"


def _load_benchmark():
    """benchmarks/compression.py, imported by path (benchmarks/ is no package)."""
    spec = importlib.util.spec_from_file_location("npgpt_compression_bench", ROOT / "benchmarks" / "compression.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


compression = _load_benchmark()


def _row(method, mb, loss, extra_steps):
    return {"method": method, "bytes": int(mb * 1e6), "val_loss": loss, "extra_steps": extra_steps}


def test_a_front_joins_only_rows_of_equal_training():
    rows = [_row("float32", 3.2, 1.90, 0), _row("int8", 0.9, 1.91, 0), _row("70% unstructured", 3.2, 2.3, 0),
            _row("float32 + fine-tune", 3.2, 1.88, 200), _row("30% unstructured + fine-tune", 3.2, 1.89, 200),
            _row("MLP rank 32 + fine-tune", 1.8, 1.90, 200), _row("distilled half-width student", 0.8, 2.2, 1000)]
    fronts = {steps: [r["method"] for r in front] for steps, front in compression.pareto_fronts(rows).items()}
    # The fine-tuned rows beat float32 only by their extra training: they must not push it off its front.
    assert fronts == {0: ["int8", "float32"], 200: ["MLP rank 32 + fine-tune", "float32 + fine-tune"]}


def test_the_committed_result_has_the_baseline_of_every_fine_tune():
    result = json.loads(RESULTS.read_text(encoding="utf-8"))
    rows = {r["method"]: r for r in result["rows"]}
    baseline = rows["float32 + fine-tune"]
    assert baseline["extra_steps"] == result["finetune_steps"]
    for method, row in rows.items():
        if method.endswith("+ fine-tune"):
            assert row["extra_steps"] == baseline["extra_steps"], method
        if "unstructured + fine-tune" in method:
            # Same shapes, same steps: the same FLOPs exactly (count_flops is a formula, not a timing).
            assert row["training_flops"] == baseline["training_flops"], method
    assert all(r["extra_steps"] == 0 for m, r in rows.items() if "fine-tune" not in m and "distilled" not in m)
