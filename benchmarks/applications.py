"""The five applications of document section 5 and the chat model (sections 1 and 5, issue 25),
trained, evaluated and compared with their baselines, with fixed seeds (issue 15).

    python benchmarks/applications.py                  # all six, in this order
    python benchmarks/applications.py sentiment qa     # only these (the others keep their JSON entry)
    python benchmarks/applications.py --replot         # the figure from the committed JSON

Each task trains with the app's own recipe (``npgpt.apps.NAME.train``), is scored on its test split
(``evaluate``) and writes, under its key in benchmarks/results/applications.json (atomically, after
each task): the metric's name, the model's value, each baseline's value, the parameters, the
training time (wall seconds and the process's CPU seconds: on a shared machine the wall time is
inflated by other jobs; CPU seconds / cores bounds what a quiet machine takes) and one right and one
wrong test example. figures/applications.png shows one panel per task, the model beside its
baselines.
"""
import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from npgpt.apps import APPS, resolve  # noqa: E402
from npgpt.atomic import atomic_write_text  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "applications.json"
FIGURE = ROOT / "figures" / "applications.png"


def one_task(name, seed=0, ckpt_dir=ROOT / "runs" / "apps"):
    app = resolve(name)
    ckpt = str(Path(ckpt_dir) / name / "ckpt.npz")
    wall, cpu = time.perf_counter(), time.process_time()
    trained = app.train(ckpt=ckpt, seed=seed, progress=False)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    t0 = time.perf_counter()
    # the chat model is also scored against itself before fine-tuning, which its train returns
    before = {"base_model": trained["base_model"]} if "base_model" in trained else {}
    result = app.evaluate(model=trained["model"], tokenizer=trained["tokenizer"], seed=seed, **before)
    examples = result.pop("examples", [])
    right = [e for e in examples if e["output"] == e["target"]]
    wrong = [e for e in examples if e["output"] != e["target"]]
    result.update(train_seconds=round(wall, 1), train_cpu_seconds=round(cpu, 1), steps=trained["steps"],
                  eval_seconds=round(time.perf_counter() - t0, 1), seed=seed,
                  example_right=right[0] if right else None, example_wrong=wrong[0] if wrong else None,
                  test_examples=len(examples) or None)
    if "pretrain_steps" in trained:        # the chat model's first run, on plain text
        result.update(pretrain_steps=trained["pretrain_steps"], pretrain_seconds=round(trained["pretrain_seconds"], 1))
    lower = result.get("lower_is_better", False)
    result["beats_every_baseline"] = all((result["model"] < v) if lower else (result["model"] > v)
                                         for v in result["baselines"].values())
    return result


def plot(results, path=FIGURE):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    names = [n for n in APPS if n in results]
    fig, axes = plt.subplots(1, len(names), figsize=(3.4 * len(names), 3.6))
    for ax, name in zip(list(getattr(axes, "flat", [axes])), names):
        r = results[name]
        labels = ["model", *r["baselines"]]
        values = [r["model"], *r["baselines"].values()]
        ax.bar(range(len(values)), values, color=["tab:blue"] + ["tab:gray"] * (len(values) - 1))
        ax.set_xticks(range(len(values)), [label.replace(" answer ", "\nanswer\n").replace(" ", "\n", 2) for label in labels], fontsize=7)
        ax.set_title(f"{name}\n{r['metric'].split(' (')[0]}" + (" (lower is better)" if r.get("lower_is_better") else ""),
                     fontsize=9)
        for i, v in enumerate(values):
            ax.text(i, v, f"{v:.3g}", ha="center", va="bottom", fontsize=7)
        if r.get("lower_is_better"):
            ax.set_yscale("log")
    fig.suptitle("Document section 5: each application against its baselines (test split)", fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("tasks", nargs="*", help=f"some of {', '.join(APPS)} (default: all)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--replot", action="store_true", help="only redraw the figure from the JSON")
    p.add_argument("--out", default=str(RESULTS), help="the JSON to write")
    args = p.parse_args(argv)
    out = Path(args.out)
    results = json.loads(out.read_text()) if out.exists() else {}
    if not args.replot:
        for name in args.tasks or APPS:
            name = resolve(name).APP
            print(f"== {name}", flush=True)
            results[name] = one_task(name, args.seed)
            r = results[name]
            print(f"{name}: {r['metric']} = {r['model']:.4f}; baselines {r['baselines']}; "
                  f"train {r['train_seconds']} s wall, {r['train_cpu_seconds']} s CPU", flush=True)
            results["machine"] = {"cpus": os.cpu_count(), "load_average_at_end": os.getloadavg()}
            atomic_write_text(out, json.dumps(results, indent=2, ensure_ascii=False) + "\n")
    plot({k: v for k, v in results.items() if k in APPS})
    return 0


if __name__ == "__main__":
    sys.exit(main())
