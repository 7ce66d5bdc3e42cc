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

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from npgpt.perf.anatomy import step_anatomy, torch_step_anatomy  # noqa: E402
from npgpt.perf.contenders import BENCH_PRESETS  # noqa: E402
from npgpt.perf.harness import run_isolated, torch_unavailable  # noqa: E402
from npgpt.plots.speed import plot_step_anatomy  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="baby", choices=sorted(BENCH_PRESETS))
    parser.add_argument("--repeats", type=int, default=30, help="timed calls per part (median)")
    parser.add_argument("--threads", type=int, default=2, help="PyTorch and numba threads")
    parser.add_argument("--figure", default=str(ROOT / "figures" / "step_anatomy.png"))
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    import numba
    numba.set_num_threads(min(args.threads, numba.config.NUMBA_NUM_THREADS))
    # each contender in a fresh process: thread pools of one library starve another's
    result = {f"npgpt-{b}": run_isolated(step_anatomy, args.preset, b, args.repeats)
              for b in ("numpy", "numba")}
    note = torch_unavailable()
    if note:
        print(note, file=sys.stderr)
    else:
        result["torch-eager"] = run_isolated(torch_step_anatomy, args.preset, args.repeats, args.threads)
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
