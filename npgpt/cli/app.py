"""``python -m npgpt app NAME train|eval|run [INPUT]``: the applications of document section 5."""
import json
import os
import sys

from ..checks import UsageError
from .flags import add, command


def register(subparsers) -> None:
    """Register ``app`` on the subcommands of ``python -m npgpt``."""
    from ..checks import at_least, in_range
    p = command(
        subparsers, "app", help="the document's five applications (section 5): train, evaluate or run one",
        description="Train, evaluate or run one of the applications of document section 5: generation, "
                    "translation (English numbers and dates -> Chinese), summarization, qa, sentiment. "
                    "'train' writes a checkpoint (default runs/apps/NAME/ckpt.npz); 'eval' scores it on the "
                    "test split beside the baselines; 'run' prints the model's output for INPUT. The data "
                    "cards are in the docstrings of npgpt/apps/numbers_zh.py, passages.py and reviews.py.")
    p.add_argument("name", help="generation, translation, summarization, qa or sentiment "
                                "(aliases: generate, translate, summarize, classify)")
    p.add_argument("action", choices=["train", "eval", "run"], help="what to do")
    add(p, "input", nargs="?", help="run: the text to translate, summarize, classify or continue "
                                    "(qa: 'REPORT Q: QUESTION')")
    add(p, "--ckpt", help="the checkpoint to write (train) or read (default runs/apps/NAME/ckpt.npz)")
    add(p, "--force", action="store_true", default=False,
        help="train: replace an existing checkpoint (without it, train refuses to write over one)")
    add(p, "--max-iters", type=at_least(1), help="training steps (default: the app's own)")
    add(p, "--batch-size", type=at_least(1), help="sequences per step (default: the app's own)")
    add(p, "--lr", type=in_range(0.0, low_open=True), help="peak learning rate (default: the app's own)")
    add(p, "--seed", type=at_least(0), default=0, help="data and initialisation seed")
    add(p, "--beam", type=at_least(1), default=1, help="translation run: beam width (1: greedy)")
    add(p, "--json", action="store_true", default=False, help="eval: print the result as JSON")
    add(p, "--no-progress", action="store_true", default=False, help="no progress bar")
    p.set_defaults(run=run)


def refuse_to_overwrite(path, force, name):
    """A UsageError (exit 2) when ``path`` already holds a trained model and ``--force`` was not given."""
    if os.path.exists(path) and not force:
        raise UsageError(f"{path} already holds a trained {name} model; replace it with --force, or write the "
                         f"new one elsewhere with --ckpt PATH")


def run(args) -> int:
    from ..apps import resolve
    from ..apps.common import default_checkpoint
    app = resolve(args.name)
    name = app.APP
    if args.action == "train":
        refuse_to_overwrite(args.ckpt or default_checkpoint(name), args.force, name)
        kwargs = {k: v for k, v in (("max_iters", args.max_iters), ("batch_size", args.batch_size),
                                    ("lr", args.lr)) if v is not None}
        result = app.train(ckpt=args.ckpt, seed=args.seed, progress=not (args.no_progress or args.quiet), **kwargs)
        print(f"{name}: trained {result['steps']} steps in {result['seconds']:.1f} s, "
              f"{result['model'].num_params():,} parameters; checkpoint: {result['ckpt']}")
        print(f"score it with: python -m npgpt app {name} eval" + (f" --ckpt {args.ckpt}" if args.ckpt else ""))
        return 0
    if args.action == "eval":
        result = app.evaluate(ckpt=args.ckpt, seed=args.seed)
        examples = result.pop("examples", [])
        if args.json:
            print(json.dumps(result, indent=2, ensure_ascii=False))
            return 0
        print(f"{name}: {result['metric']}: model {result['model']:.4f}")
        for base, value in result["baselines"].items():
            print(f"  baseline {base}: {value:.4f}")
        for key, value in result.items():
            if key not in ("metric", "model", "baselines", "samples"):
                print(f"  {key}: {json.dumps(value, ensure_ascii=False)}")
        for ex in examples[:3]:
            print(f"  e.g. {ex['input'][:70]!r} -> {ex['output']!r} (expected {ex['target']!r})")
        return 0
    if args.input is None:
        raise UsageError(f"run needs an input: python -m npgpt app {name} run \"TEXT\"")
    kwargs = {"beam_width": args.beam} if name == "translation" else {}
    out = app.run(args.input, ckpt=args.ckpt, **kwargs)
    sys.stdout.write(out + "\n")
    return 0
