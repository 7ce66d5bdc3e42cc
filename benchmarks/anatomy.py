"""Where one training step's time goes: npgpt's numpy and numba backends beside PyTorch eager.

Each part (attention, the MLP's matrix products, GELU, LayerNorm, output layer + loss, embedding,
AdamW) is timed alone, forward and backward, on the baby step's real shapes and multiplied by
how often a step runs it; "other" is the measured full step minus the parts. Writes
``figures/step_anatomy.png`` and prints (or ``--json``) the numbers.

    python benchmarks/anatomy.py [--preset baby] [--repeats 30] [--threads 2] [--json]
"""
import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from npgpt.models.config import GPTConfig  # noqa: E402
from npgpt.perf import bench  # noqa: E402
from npgpt.plots.figures import plot_step_anatomy  # noqa: E402


def torch_anatomy(preset="baby", repeats=30, threads=2):
    """The same parts, timed in PyTorch eager with the twin's own modules."""
    import torch
    import torch.nn.functional as F

    from npgpt.verify.twins import TorchGPT

    torch.set_num_threads(threads)
    cfg = GPTConfig.preset(preset)
    B, T, C, L, V = bench.BENCH_PRESETS[preset]["batch_size"], cfg.block_size, cfg.n_embd, cfg.n_layer, cfg.vocab_size
    model = TorchGPT(cfg)
    block = model.transformer.h[0]
    x = torch.randn(B, T, C, requires_grad=True)
    h = torch.randn(B, T, 4 * C, requires_grad=True)
    ids = torch.randint(0, V, (B, T))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, betas=(0.9, 0.99), weight_decay=0.1)

    def fwd_bwd(fn):
        def run():
            out = fn()
            out.backward(torch.ones_like(out))
        return run

    def adamw():
        for p in model.parameters():
            p.grad = torch.full_like(p, 1e-3)
        optimizer.step()

    def median_ms(fn):
        return bench.median_ms(fn, repeats)

    wte = model.transformer.wte.weight
    parts = {
        "attention": L * median_ms(fwd_bwd(lambda: block.attn(x))),
        "MLP matmuls": L * (median_ms(fwd_bwd(lambda: block.mlp.c_fc(x))) + median_ms(fwd_bwd(lambda: block.mlp.c_proj(h)))),
        "GELU": L * median_ms(fwd_bwd(lambda: F.gelu(h, approximate="tanh"))),
        "LayerNorm": (2 * L + 1) * median_ms(fwd_bwd(lambda: block.ln_1(x))),
        "head + loss": median_ms(fwd_bwd(lambda: F.cross_entropy((x @ wte.T).view(-1, V), ids.view(-1)))),
        "embedding": median_ms(fwd_bwd(lambda: model.transformer.wte(ids))),
        "AdamW": median_ms(adamw),
    }
    rng = np.random.default_rng(0)
    xb = rng.integers(0, V, (B, T))
    contender = bench.TorchContender(cfg, xb, xb, threads)
    step_ms = median_ms(contender.step)
    parts["other"] = max(step_ms - sum(parts.values()), 0.0)
    return {"parts_ms": parts, "step_ms": step_ms}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="baby", choices=sorted(bench.BENCH_PRESETS))
    parser.add_argument("--repeats", type=int, default=30, help="timed calls per part (median)")
    parser.add_argument("--threads", type=int, default=2, help="PyTorch and numba threads")
    parser.add_argument("--figure", default=str(ROOT / "figures" / "step_anatomy.png"))
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    import numba
    numba.set_num_threads(min(args.threads, numba.config.NUMBA_NUM_THREADS))
    # each contender in a fresh process: thread pools of one library starve another's
    result = {f"npgpt-{b}": bench.run_isolated(bench.step_anatomy, args.preset, b, args.repeats)
              for b in ("numpy", "numba")}
    note = bench.torch_unavailable()
    if note:
        print(note, file=sys.stderr)
    else:
        result["torch-eager"] = bench.run_isolated(torch_anatomy, args.preset, args.repeats, args.threads)
    plot_step_anatomy(result, title=f"One training step of '{args.preset}', by part", path=args.figure)
    if args.json:
        print(json.dumps(result))
        return
    for name, r in result.items():
        parts = ", ".join(f"{k} {v:.1f}" for k, v in r["parts_ms"].items())
        print(f"{name:<12} step {r['step_ms']:6.1f} ms: {parts}")
    print(f"figure: {args.figure}")


if __name__ == "__main__":
    main()
