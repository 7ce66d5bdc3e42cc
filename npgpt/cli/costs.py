"""``python -m npgpt costs``: what a GPT costs, counted from its configuration (document sections 2
and 7; the formulas are in :mod:`npgpt.allocation.costs`)."""
from ..checks import UsageError
from .flags import add, command, flag


def register(subparsers) -> None:
    from ..checks import at_least
    from ..models.config import PRESETS
    p = command(subparsers, "costs", help="what a GPT costs: FLOPs, memory, disk and time (document sections 2 and 7)",
                description="Print what a GPT costs, counted from its configuration: FLOPs per training step by "
                            "part (beside the 6ND estimate) and per generated token, training and inference "
                            "memory by part, checkpoint bytes, and with --measure the predicted and measured "
                            "step time. The formulas are in npgpt/allocation/costs.py.")
    add(p, "--preset", default="baby", choices=sorted(PRESETS),
        help="model shape: baby and small (Tiny Shakespeare), document (the document's configuration), gpt2 "
             "(GPT-2 small)")
    add(p, "--ckpt", metavar="PATH", help="take the model shape, dtype, optimizer and batch size from this "
                                          "checkpoint instead of --preset (the flags below still win)")
    add(p, "--batch-size", type=at_least(1),
        help="sequences per training step (default: the checkpoint's, else the benchmark's batch for the "
             "preset, 12 for baby and 16 for small, else 12)")
    add(p, "--seq-len", type=at_least(1), help="tokens per sequence, at most the block size (default: the block size)")
    add(p, "--context", type=at_least(1),
        help="positions a generated token attends to, at most the block size (default: --seq-len)")
    add(p, "--dtype", choices=["float32", "float64"], help="number type (default: the checkpoint's, else float32)")
    add(p, "--optimizer", choices=["adamw", "sgd"],
        help="optimizer state to count: adamw keeps two moments, sgd one momentum (default: the checkpoint's, "
             "else adamw)")
    add(p, "--measure", action="store_true", default=False,
        help="also time real training steps and the matmul peak (takes a few steps' time)")
    p.set_defaults(run=run)


def costs_model(args):
    """(label, GPTConfig, defaults for batch_size, dtype and optimizer) of ``--preset`` or ``--ckpt``."""
    from ..io.checkpoint import read_checkpoint
    from ..models.config import GPTConfig
    from ..perf.bench import BENCH_PRESETS
    from ..training import TrainConfig
    if args.ckpt is None:
        batch_size = BENCH_PRESETS.get(args.preset, {}).get("batch_size", TrainConfig().batch_size)
        return f"preset {args.preset}", GPTConfig.preset(args.preset), \
            {"batch_size": batch_size, "dtype": "float32", "optimizer": "adamw"}
    meta, _ = read_checkpoint(args.ckpt)
    if not isinstance(meta["model_config"], GPTConfig):
        raise UsageError(f"--ckpt {args.ckpt} holds a recurrent model ({meta['model_config'].cell}); "
                         f"costs counts a GPT's")
    train = meta["train_config"]
    return f"checkpoint {args.ckpt}", meta["model_config"], \
        {"batch_size": train["batch_size"], "dtype": meta["dtype"], "optimizer": train.get("optimizer", "adamw")}


def run(args) -> int:
    from ..allocation import costs

    label, config, default = costs_model(args)
    for name in ("seq_len", "context"):
        value = getattr(args, name)
        if value is not None and value > config.block_size:
            raise UsageError(f"{flag(name)} {value} is longer than the model's block size {config.block_size}")
    figures = costs.report(config, args.batch_size or default["batch_size"], args.seq_len,
                           args.dtype or default["dtype"], args.optimizer or default["optimizer"],
                           args.context, args.measure, label)
    print(costs.format_report(figures))
    return 0
