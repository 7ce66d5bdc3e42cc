"""The benchmark command runs and reports every figure (its numbers are measured, not tested)."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from references import optional_reference

from npgpt.models.config import GPTConfig
from npgpt.perf.bench import flops_per_step

ROOT = Path(__file__).resolve().parents[1]
# A GPT-2-shaped model small enough for a test; its block holds the benchmark's 256-token forward.
GPT2_STAND_IN = GPTConfig(vocab_size=300, block_size=256, n_layer=2, n_head=4, n_embd=64)


@pytest.mark.slow
def test_bench_json_has_every_figure():
    out = subprocess.run(
        [sys.executable, "-m", "npgpt", "bench", "--preset", "baby", "--rounds", "1", "--steps", "1",
         "--warmup", "1", "--gen-tokens", "4", "--no-torch", "--no-compile", "--json"],
        capture_output=True, text=True, check=True, cwd=ROOT).stdout
    result = json.loads(out)
    assert result["matmul_peak_gflops"] > 0
    rows = result["presets"]["baby"]["training"]
    assert set(rows) == {"npgpt-numba", "npgpt-numpy"}
    for row in rows.values():
        assert row["ms_per_step"] > 0 and row["tokens_per_s"] > 0
        assert row["mfu"] is None or 0 < row["mfu"] <= 1      # None: the peak was measured while busy
    assert result["generation_baby"]["tokens_per_s_with_cache"] > 0


def test_flops_per_step_counts_six_per_weight_per_token_plus_attention():
    cfg = GPTConfig(vocab_size=10, block_size=4, n_layer=1, n_head=1, n_embd=2)
    per_token = 6 * (12 * 2 * 2 + 10 * 2) + 12 * 1 * 4 * 2
    assert flops_per_step(cfg, batch_size=3) == per_token * 3 * 4


@pytest.mark.slow
def test_gpt2_inference_bench_reports_speed_and_memory():
    """The figures of ``bench --preset gpt2``, on a small model so the test is quick."""
    from npgpt.perf.bench import format_table
    from npgpt.perf.gpt2_inference import GPT2_FORWARD_TOKENS, bench_gpt2
    cfg = GPT2_STAND_IN
    result = bench_gpt2(threads=1, rounds=1, repeats=1, with_torch=False, log=lambda *a: None, cfg=cfg)
    rows = result["contenders"]
    assert set(rows) == {"npgpt-numba", "npgpt-int8"}
    assert rows["npgpt-numba"]["forward_ms"] > 0 and "forward_ms" not in rows["npgpt-int8"]
    params = sum(np.prod(s) for s in npgpt_shapes(cfg)) * 4
    npgpt_memory = rows["npgpt-numba"]["memory"]
    assert npgpt_memory["param_bytes"] == params
    assert npgpt_memory["kv_cache_bytes"] == 2 * 2 * 64 * GPT2_FORWARD_TOKENS * 4
    # what a generation allocates beyond the parameters is the KV cache and little else
    assert npgpt_memory["param_bytes"] + npgpt_memory["kv_cache_bytes"] <= npgpt_memory["traced_peak_bytes"] \
        <= 1.3 * (npgpt_memory["param_bytes"] + npgpt_memory["kv_cache_bytes"])
    assert rows["npgpt-int8"]["memory"]["param_bytes"] < params
    table = format_table({"gpt2": result})
    assert "npgpt-int8" in table and "tok/s" in table and "KV cache" in table


@pytest.mark.slow
def test_gpt2_inference_bench_runs_pytorch_beside_npgpt():
    optional_reference("torch", "the inference benchmark's reference")
    from npgpt.perf.gpt2_inference import GPT2_NEW_TOKENS, GPT2_PROMPT_TOKENS, bench_gpt2
    result = bench_gpt2(threads=1, rounds=1, repeats=1, with_torch=True, log=lambda *a: None, cfg=GPT2_STAND_IN)
    rows = result["contenders"]
    assert set(rows) == {"npgpt-numba", "npgpt-int8", "torch-eager"}
    assert rows["torch-eager"]["memory"]["kv_cache_bytes"] == 2 * 2 * 64 * (GPT2_PROMPT_TOKENS + GPT2_NEW_TOKENS) * 4
    assert rows["npgpt-numba"]["generate_vs_torch"] > 0 and rows["npgpt-numba"]["forward_vs_torch"] > 0


def npgpt_shapes(cfg):
    from npgpt import GPT
    return GPT.param_shapes(cfg).values()


def test_interleaved_timings_and_verdicts(monkeypatch):
    from npgpt.perf import timing
    calls = []
    result = timing.interleaved_ms({"a": lambda: calls.append("a"), "b": lambda: calls.append("b")},
                                  repeats=2, rounds=3)
    assert calls == ["a"] * 3 + ["b"] * 3 + ["a"] * 3 + ["b"] * 3 + ["a"] * 3 + ["b"] * 3   # turns, warm-up included
    assert set(result) == {"a", "b", "rounds"} and len(result["rounds"]["a"]) == 3
    assert result["a"] == min(result["rounds"]["a"]) >= 0

    monkeypatch.setattr(timing.os, "getloadavg", lambda: (7.5, 7.0, 6.0))
    monkeypatch.setattr(timing.os, "cpu_count", lambda: 2)
    assert timing.machine_load() == (7.5, 2)
    assert "load average 7.5 on 2 cores" in timing.busy_note()
    assert timing.speedup_verdict("a stack", 0.5, "one product", 0.4) == "one product is 1.2x faster than a stack"
    slower = timing.speedup_verdict("a stack", 3.0, "one product", 9.45)
    assert slower.startswith("one product was not clearly faster than a stack here (0.32x); the machine was busy")
    monkeypatch.setattr(timing.os, "getloadavg", lambda: (0.2, 0.2, 0.2))
    assert timing.busy_note() == ""
    assert "not busy, so this is a real result" in timing.speedup_verdict("x", 1.0, "y", 1.0)


@pytest.mark.slow
def test_contention_bench_times_quiet_and_busy():
    out = subprocess.run(
        [sys.executable, "-m", "npgpt", "bench", "--contention", "--preset", "baby", "--rounds", "1", "--steps", "2",
         "--warmup", "1", "--no-torch", "--json"],
        capture_output=True, text=True, check=True, cwd=ROOT).stdout
    [result] = json.loads(out)
    assert set(result["quiet_ms"]) == set(result["busy_ms"]) == {"npgpt-numba", "npgpt-numba-auto"}
    assert all(ms > 0 for ms in [*result["quiet_ms"].values(), *result["busy_ms"].values()])
    assert result["threads_busy"]["npgpt-numba"] == result["threads"] == 2      # fixed: it keeps its count
    assert result["threads_busy"]["npgpt-numba-auto"] in (1, 2)
    assert result["warmup_steps"] == 12                 # under load, the governor gets its first trial


def test_busy_process_runs_for_the_block_only():
    from npgpt.perf.contention import busy_process, format_contention_table
    with busy_process() as process:
        assert process.poll() is None
    assert process.poll() is not None
    table = format_contention_table({"preset": "baby", "threads": 2, "warmup_steps": 12,
                                     "quiet_ms": {"npgpt-numba": 30.0, "torch-eager": 36.0},
                                     "busy_ms": {"npgpt-numba": 60.0, "torch-eager": 150.0},
                                     "threads_busy": {"npgpt-numba": 1, "torch-eager": 2}})
    assert "2.00x" in table and "2.50x" in table and "1.20x" in table      # busy/quiet, vs torch busy, quiet


@pytest.mark.slow
def test_the_benches_import_neither_torch_nor_its_twins():
    """torch is optional: the perf/ modules load the PyTorch twins only when a torch contender is built."""
    code = ("import pkgutil, sys, importlib, npgpt.perf\n"
            "for m in pkgutil.iter_modules(npgpt.perf.__path__): importlib.import_module('npgpt.perf.' + m.name)\n"
            "print(sorted({'torch', 'npgpt.verify.twins', 'npgpt.verify.torch_rnn'} & set(sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
