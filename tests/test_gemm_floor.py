"""benchmarks/gemm_floor.py: the products it times are every linear layer of a step, counted right,
and the figures it prints are read off its timings right."""
import sys
from pathlib import Path

import pytest

from npgpt import GPT, GPTConfig

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks import gemm_floor


@pytest.mark.parametrize("config", [GPTConfig.preset("baby"), GPTConfig.preset("small"),
                                    GPTConfig(vocab_size=7, block_size=5, n_layer=3, n_head=2, n_embd=6)])
def test_the_products_are_every_weight_matrix_of_the_model_once(config):
    """Each (in, out) is one weight matrix: the blocks' four and the output layer (the tied token
    embedding); the position table is looked up, not multiplied. A layer left out fails the count."""
    matrices = [p.size for name, p in GPT(config).params.items() if p.ndim == 2 and name != "transformer.wpe.weight"]
    shapes = gemm_floor.linear_shapes(config, batch_size=3)
    assert sorted(k * m for _, k, m in shapes) == sorted(matrices)
    assert {n for n, _, _ in shapes} == {3 * config.block_size}
    assert gemm_floor.linear_flops(config, 3) == 6 * sum(matrices) * 3 * config.block_size


def test_the_summary_reads_each_share_and_the_bound_off_the_four_timings():
    config = GPTConfig.preset("baby")
    seconds = {"npgpt-numba": 0.050, "torch-eager": 0.060, "numpy linear products": 0.040, "torch linear products": 0.045}
    summary = gemm_floor.summary(seconds, config, 12)
    assert summary["products_share_of_npgpt_step"] == pytest.approx(0.8)
    assert summary["products_share_of_torch_step"] == pytest.approx(0.75)
    assert summary["speed_vs_torch"] == pytest.approx(1.2)
    assert summary["speed_vs_torch_if_only_products_took_time"] == pytest.approx(1.5)
    assert summary["numpy_products_gflops"] == pytest.approx(gemm_floor.linear_flops(config, 12) / 0.040 / 1e9)
