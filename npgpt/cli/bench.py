"""``python -m npgpt bench``: training and generation speed beside PyTorch (:mod:`npgpt.perf.bench`),
and with ``--contention``, beside a busy process (:mod:`npgpt.perf.contention`)."""
import json
import sys

from ..checks import at_least
from ..perf.bench import BenchmarkError, bench_gpt2, format_table, run


def add_parser(sub):
    import argparse
    p = sub.add_parser("bench", help="training and generation speed vs PyTorch eager",
                       description=bench_doc(), formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", choices=["baby", "small", "gpt2", "all"], default="all",
                   help="model size(s) to time: training on baby and small ('all'), or inference on GPT-2 "
                        "small (124M, random weights; 'gpt2', only when asked)")
    p.add_argument("--threads", type=at_least(1), default=2, help="threads for npgpt (BLAS and numba) and for PyTorch")
    p.add_argument("--warmup", type=at_least(0), default=5, help="untimed steps per contender first")
    p.add_argument("--rounds", type=at_least(1), default=6, help="alternating rounds")
    p.add_argument("--steps", type=at_least(1), default=None,
                   help="timed steps per contender per round (default 5; gpt2: calls of each task, default 1)")
    p.add_argument("--gen-tokens", type=at_least(1), default=200, help="new tokens for the generation timing (baby; gpt2 generates 50)")
    p.add_argument("--no-torch", action="store_true", help="skip the PyTorch reference")
    p.add_argument("--no-update", action="store_true",
                   help="time forward + backward only, without the AdamW update")
    p.add_argument("--no-compile", action="store_true", help="skip the numba compile-time probe")
    p.add_argument("--contention", action="store_true",
                   help="time training quiet, then beside one busy process the benchmark starts, for npgpt on "
                        "--threads, npgpt adapting its threads ('auto') and PyTorch")
    p.add_argument("--json", action="store_true", help="print one JSON object with every figure")
    p.set_defaults(run=main)


def main(args):
    log = (lambda *a: print(*a, file=sys.stderr)) if args.json else print
    try:
        if args.contention:
            return _main_contention(args, log)
        if args.preset == "gpt2":
            result = {"gpt2": bench_gpt2(args.threads, args.rounds, args.steps or 1, not args.no_torch, log)}
        else:
            presets = ("baby", "small") if args.preset == "all" else (args.preset,)
            result = run(presets, args.threads, args.warmup, args.rounds, args.steps or 5, args.gen_tokens,
                         not args.no_torch, not args.no_compile, log, not args.no_update)
    except BenchmarkError as e:
        print(f"npgpt bench: error: {e}", file=sys.stderr)
        return 1
    print(json.dumps(result) if args.json else format_table(result))
    return 0


def _main_contention(args, log):
    from ..perf.contention import BUSY_WARMUP, bench_contention, format_contention_table
    if args.preset == "gpt2":
        print("npgpt bench: error: --contention times training: use --preset baby, small or all", file=sys.stderr)
        return 2
    presets = ("baby", "small") if args.preset == "all" else (args.preset,)
    results = [bench_contention(name, args.threads, max(args.warmup, BUSY_WARMUP), args.rounds, args.steps or 5,
                                not args.no_torch, log) for name in presets]
    print(json.dumps(results) if args.json else "\n\n".join(map(format_contention_table, results)))
    return 0




def bench_doc():
    from ..perf import bench
    return bench.__doc__
