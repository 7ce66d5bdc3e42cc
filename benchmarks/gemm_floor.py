"""The floor BLAS sets under a training step: its linear layers' matrix products, timed alone.

    python benchmarks/gemm_floor.py [--preset small] [--rounds 6] [--steps 3] [--threads 2]

Every linear layer of a step (each block's QKV projection, the attention's output projection, the
MLP's two layers, and the output layer) is three products: $y = xW$ forward, $\\partial x = \\delta W^\\top$
and $\\partial W = x^\\top \\delta$ backward. npgpt (NumPy's BLAS) and PyTorch both compute them, so
neither step can be faster than its own products. This times, each in a worker process of its own,
in alternating rounds, medians (:mod:`npgpt.perf.harness`):

- npgpt's whole training step (numba backend, AdamW) and PyTorch eager's (:mod:`npgpt.perf.contenders`);
- the same step's linear-layer products alone, on NumPy arrays and on torch tensors, same threads.

It prints each step's share of products and the largest speed-up over PyTorch npgpt could show if
everything else in its step (attention, LayerNorm, GELU, the loss, AdamW) took no time at all:
PyTorch's step / npgpt's products. Writes ``benchmarks/results/gemm_floor_<preset>.json`` with the
machine's flags. Needs torch (``pip install torch==2.13.0``).
"""
import argparse
import functools
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.quantized_decode import machine  # noqa: E402
from npgpt.models.config import GPTConfig  # noqa: E402
from npgpt.perf.contenders import BENCH_PRESETS, NpgptContender, TorchContender, random_batch  # noqa: E402
from npgpt.perf.harness import time_training, torch_unavailable  # noqa: E402


def linear_shapes(cfg: GPTConfig, batch_size: int) -> list[tuple[int, int, int]]:
    """(rows, in, out) of every linear layer in a step: rows = batch x block, the head last."""
    n, c = batch_size * cfg.block_size, cfg.n_embd
    per_block = [(n, c, 3 * c), (n, c, c), (n, c, 4 * c), (n, 4 * c, c)]
    return per_block * cfg.n_layer + [(n, c, cfg.vocab_size)]


def linear_flops(cfg: GPTConfig, batch_size: int) -> int:
    """Floating-point operations of those products: 2 rows x in x out each, three products a layer."""
    return sum(3 * 2 * n * k * m for n, k, m in linear_shapes(cfg, batch_size))


class LinearProducts:
    """A step's linear-layer products on ``library``'s arrays ("numpy" or "torch"), float32."""

    def __init__(self, cfg: GPTConfig, batch_size: int, library: str, threads: int) -> None:
        import numpy as np
        rng = np.random.default_rng(0)
        arrays = [tuple(rng.standard_normal(shape, dtype=np.float32) for shape in ((n, k), (k, m), (n, m)))
                  for n, k, m in linear_shapes(cfg, batch_size)]
        if library == "torch":
            import torch
            torch.set_num_threads(threads)
            arrays = [tuple(torch.from_numpy(a) for a in operands) for operands in arrays]
        else:
            from npgpt.runtime.threads import set_threads
            set_threads(threads)
        self.name, self.operands = f"{library} linear products", arrays

    def step(self) -> None:
        for x, w, dy in self.operands:
            x @ w           # forward
            dy @ w.T        # the input's gradient
            x.T @ dy        # the weight's gradient


def makers(cfg: GPTConfig, batch_size: int, threads: int) -> list:
    x, y = random_batch(cfg, batch_size)
    return [functools.partial(NpgptContender, cfg, "numba", x, y, threads=threads),
            functools.partial(TorchContender, cfg, x, y, threads),
            functools.partial(LinearProducts, cfg, batch_size, "numpy", threads),
            functools.partial(LinearProducts, cfg, batch_size, "torch", threads)]


def summary(seconds: dict[str, float], cfg: GPTConfig, batch_size: int) -> dict[str, float]:
    npgpt, torch = seconds["npgpt-numba"], seconds["torch-eager"]
    numpy_products, torch_products = seconds["numpy linear products"], seconds["torch linear products"]
    flops = linear_flops(cfg, batch_size)
    return {"products_share_of_npgpt_step": numpy_products / npgpt,
            "products_share_of_torch_step": torch_products / torch,
            "numpy_products_gflops": flops / numpy_products / 1e9,
            "torch_products_gflops": flops / torch_products / 1e9,
            "speed_vs_torch": torch / npgpt,
            "speed_vs_torch_if_only_products_took_time": torch / numpy_products}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="small", choices=sorted(BENCH_PRESETS))
    parser.add_argument("--rounds", type=int, default=6, help="alternating rounds (default: 6)")
    parser.add_argument("--steps", type=int, default=3, help="timed steps per round (default: 3)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps first (default: 2)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, help="result file (default: benchmarks/results/gemm_floor_<preset>.json)")
    args = parser.parse_args(argv)
    if reason := torch_unavailable():
        parser.exit(1, f"gemm_floor: {reason}\n")
    cfg, batch_size = GPTConfig.preset(args.preset), BENCH_PRESETS[args.preset]["batch_size"]
    seconds = time_training(makers(cfg, batch_size, args.threads), args.warmup, args.rounds, args.steps)
    result = {"preset": args.preset, "batch_size": batch_size, "threads": args.threads, "rounds": args.rounds,
              "steps_per_round": args.steps, "machine": machine(),
              "linear_gflop_per_step": linear_flops(cfg, batch_size) / 1e9,
              "ms_per_step": {name: 1e3 * s for name, s in seconds.items()},
              **summary(seconds, cfg, batch_size)}
    out = args.out or ROOT / "benchmarks" / "results" / f"gemm_floor_{args.preset}.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    for name, ms in result["ms_per_step"].items():
        print(f"{name:24s} {ms:9.1f} ms")
    print(f"linear products: {result['products_share_of_npgpt_step']:.0%} of npgpt's step "
          f"({result['numpy_products_gflops']:.0f} GFLOP/s), {result['products_share_of_torch_step']:.0%} of "
          f"PyTorch's ({result['torch_products_gflops']:.0f} GFLOP/s)")
    print(f"speed vs PyTorch: {result['speed_vs_torch']:.2f}x; at most "
          f"{result['speed_vs_torch_if_only_products_took_time']:.2f}x if nothing but the products took time")
    print(f"written: {out}")


if __name__ == "__main__":
    main()
