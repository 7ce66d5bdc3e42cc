"""``python -m npgpt bench``: training and generation speed beside PyTorch (:mod:`npgpt.perf.bench`),
and with ``--contention``, beside a busy process (:mod:`npgpt.perf.contention`)."""
import argparse
import json
import logging
import sys

from .flags import add, command, complete

log = logging.getLogger(__name__)


def register(subparsers) -> None:
    from ..checks import at_least
    from ..perf import bench
    p = command(subparsers, "bench", help="training and generation speed vs PyTorch eager",
                description=bench.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add(p, "--preset", choices=["baby", "small", "gpt2", "all"], default="all",
        help="model size(s) to time: training on baby and small ('all'), or inference on GPT-2 small (124M, "
             "random weights; 'gpt2', only when asked)")
    add(p, "--threads", type=at_least(1), default=2, help="threads for npgpt (BLAS and numba) and for PyTorch")
    add(p, "--warmup", type=at_least(0), default=5, help="untimed steps per contender first")
    add(p, "--rounds", type=at_least(1), default=6, help="alternating rounds")
    add(p, "--steps", type=at_least(1),
        help="timed steps per contender per round (default 5; gpt2: calls of each task, default 1)")
    add(p, "--gen-tokens", type=at_least(1), default=200,
        help="new tokens for the generation timing (baby; gpt2 generates 50)")
    add(p, "--no-torch", action="store_true", default=False, help="skip the PyTorch reference")
    add(p, "--no-update", action="store_true", default=False,
        help="time forward + backward only, without the AdamW update")
    add(p, "--no-compile", action="store_true", default=False, help="skip the numba compile-time probe")
    add(p, "--contention", action="store_true", default=False,
        help="time training quiet, then beside one busy process the benchmark starts, for npgpt on --threads, "
             "npgpt adapting its threads ('auto') and PyTorch")
    add(p, "--json", action="store_true", default=False, help="print one JSON object with every figure")
    p.set_defaults(run=run)


def run(args) -> int:
    from ..checks import UsageError
    from ..perf.bench import BenchmarkError, bench_gpt2, format_table
    from ..perf.bench import run as bench_presets
    say = (lambda *a: print(*a, file=sys.stderr)) if args.json else print
    if args.contention and args.preset == "gpt2":
        raise UsageError("--contention times training: use --preset baby, small or all")
    try:
        if args.contention:
            return _contention(args, say)
        if args.preset == "gpt2":
            result = {"gpt2": bench_gpt2(args.threads, args.rounds, args.steps or 1, not args.no_torch, say)}
        else:
            presets = ("baby", "small") if args.preset == "all" else (args.preset,)
            result = bench_presets(presets, args.threads, args.warmup, args.rounds, args.steps or 5, args.gen_tokens,
                                   not args.no_torch, not args.no_compile, say, not args.no_update)
    except BenchmarkError as e:
        log.error(f"npgpt bench: error: {e}")
        return 1
    print(json.dumps(result) if args.json else format_table(result))
    return 0


def _contention(args, say) -> int:
    from ..perf.contention import BUSY_WARMUP, bench_contention, format_contention_table
    presets = ("baby", "small") if args.preset == "all" else (args.preset,)
    results = [bench_contention(name, args.threads, max(args.warmup, BUSY_WARMUP), args.rounds, args.steps or 5,
                                not args.no_torch, say) for name in presets]
    print(json.dumps(results) if args.json else "\n\n".join(map(format_contention_table, results)))
    return 0


# benchmarks/bench_train.py builds its own parser around these two names; they go when it calls npgpt.cli.main.
add_parser = register


def main(args) -> int:
    return run(complete(args))
