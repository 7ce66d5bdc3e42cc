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
