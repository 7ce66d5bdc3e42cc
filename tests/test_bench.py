"""The benchmark command runs and reports every figure (its numbers are measured, not tested)."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

from npgpt.config import GPTConfig
from npgpt.tools.bench import flops_per_step

ROOT = Path(__file__).resolve().parents[1]


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


def test_interleaved_timings_and_verdicts(monkeypatch):
    from npgpt.tools import bench
    calls = []
    result = bench.interleaved_ms({"a": lambda: calls.append("a"), "b": lambda: calls.append("b")},
                                  repeats=2, rounds=3)
    assert calls == ["a"] * 3 + ["b"] * 3 + ["a"] * 3 + ["b"] * 3 + ["a"] * 3 + ["b"] * 3   # turns, warm-up included
    assert set(result) == {"a", "b", "rounds"} and len(result["rounds"]["a"]) == 3
    assert result["a"] == min(result["rounds"]["a"]) >= 0

    monkeypatch.setattr(bench.os, "getloadavg", lambda: (7.5, 7.0, 6.0))
    monkeypatch.setattr(bench.os, "cpu_count", lambda: 2)
    assert bench.machine_load() == (7.5, 2)
    assert "load average 7.5 on 2 cores" in bench.busy_note()
    assert bench.speedup_verdict("a stack", 0.5, "one product", 0.4) == "one product is 1.2x faster than a stack"
    slower = bench.speedup_verdict("a stack", 3.0, "one product", 9.45)
    assert slower.startswith("one product was not clearly faster than a stack here (0.32x); the machine was busy")
    monkeypatch.setattr(bench.os, "getloadavg", lambda: (0.2, 0.2, 0.2))
    assert bench.busy_note() == ""
    assert "not busy, so this is a real result" in bench.speedup_verdict("x", 1.0, "y", 1.0)
