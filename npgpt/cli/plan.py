"""``python -m npgpt plan``: the compute-optimal model, tokens and layout for a budget (document
section 7; :mod:`npgpt.allocation.planner`)."""
import json

from .flags import add, argparse_type, command


def register(subparsers) -> None:
    from ..allocation import planner
    from ..allocation.network import NETWORKS
    from ..checks import at_least, in_range
    p = command(subparsers, "plan",
                help="the compute-optimal model, tokens and layout for a compute, memory and time budget",
                description="Plan a training run for a budget (document section 7, global optimal allocation): "
                            "the model shape from the scaling study's compute-optimal law, the tokens the compute "
                            "buys, batch, accumulation, ZeRO stage and ranks that fit the memory per rank, and "
                            "the predicted loss, memory and wall time, with the constraint that binds. "
                            "Character-level, like the study (Tiny Shakespeare, 64-character context).")
    p.add_argument("--flops", type=argparse_type(planner.parse_flops), required=True,
                   help="compute budget in training FLOPs (forward and backward), e.g. 3e15")
    p.add_argument("--memory", type=argparse_type(planner.parse_bytes), required=True,
                   help="memory per rank: '8GB' (10^9 bytes), '8GiB' (2^30), or bytes ('8e9')")
    add(p, "--hours", type=argparse_type(planner.parse_hours),
        help="wall-time budget; the FLOP rate is measured on this machine (each rank one like it)")
    add(p, "--ranks", type=at_least(1), default=1, help="data-parallel ranks (mpiexec -n)")
    add(p, "--network", choices=sorted(NETWORKS), default="10GbE", help="the link between ranks, for the all-reduce time")
    add(p, "--flop-rate", type=in_range(0.0, low_open=True),
        help="FLOP/s of one rank instead of measuring it (a few seconds)")
    add(p, "--law", help="a scaling-law JSON (default: the committed study's)")
    add(p, "--json", action="store_true", default=False, help="print the plan as JSON, for scripts")
    p.set_defaults(run=run)


def run(args) -> int:
    from ..allocation import planner
    from ..allocation.scaling import load_law
    law = load_law(args.law)
    result = planner.plan(args.flops, args.memory, args.hours, args.ranks, flop_rate=args.flop_rate,
                          network=args.network, law=law)
    print(json.dumps(result.to_dict(), indent=2) if args.json else planner.format_plan(result))
    return 0
