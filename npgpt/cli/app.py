"""``python -m npgpt app NAME train|eval|run [INPUT]``: the applications of document section 5 and the chat model.

The input may come anywhere among the options (``app translation run --ckpt F 'four'``). ``train``
exits 130 or 143 when SIGINT or SIGTERM stopped it (nothing is saved then unless every step had run:
:class:`npgpt.apps.common.AppTraining`)."""
import argparse
import json
import os
import signal
import sys

from ..checks import UsageError, at_least
from ..training.trainer import SIGNAL_EXIT
from .flags import Parser, add, command, complete


class IntermixedParser(Parser):
    """The ``app`` command's parser: options and the positionals in any order. argparse matches the
    positionals it can as soon as it sees them, so after ``app translation run`` the optional INPUT
    is taken as absent and a later ``'four'`` is an unrecognized argument; parsing the options first,
    then the positionals (``parse_known_intermixed_args``) reads it as the input."""

    _parsing = False           # set while the intermixed parse calls parse_known_args in its two passes

    def parse_known_args(self, args=None, namespace=None):
        if self._parsing:
            return argparse.ArgumentParser.parse_known_args(self, args, namespace)
        self._parsing = True
        try:
            namespace, extras = self.parse_known_intermixed_args(args, namespace)
        finally:
            self._parsing = False
        return complete(namespace), extras        # the defaults, once both passes are done


def register(subparsers) -> None:
    """Register ``app`` on the subcommands of ``python -m npgpt``."""
    from ..apps.translation import MAX_BEAM
    from ..checks import in_range
    p = command(
        subparsers, "app", help="the document's five applications (section 5) and a chat model (sections 1 and 5): train, evaluate or run one",
        description="Train, evaluate or run one of the applications of document section 5: generation, "
                    "translation (English numbers and dates -> Chinese), summarization, qa, sentiment; and chat, a "
                    "model fine-tuned on a shop's dialogues (sections 1 and 5, 智能对话). "
                    "'train' writes a checkpoint (default runs/apps/NAME/ckpt.npz); 'eval' scores it on the "
                    "test split beside the baselines; 'run' prints the model's output for INPUT. The data "
                    "cards are in the docstrings of npgpt/apps/numbers_zh.py, passages.py, reviews.py and dialogues.py. "
                    "chat's INPUT is the shop's list, then 'User: ...' and 'Assistant: ...' turns ending "
                    "with a user's.")
    p.__class__ = IntermixedParser        # made by the subparsers' own class, which is Parser
    p.add_argument("name", help="generation, translation, summarization, qa, sentiment or chat "
                                "(aliases: generate, translate, summarize, classify, dialogue)")
    p.add_argument("action", choices=["train", "eval", "run"], help="what to do")
    add(p, "input", nargs="?", help="run: the text to translate, summarize, classify or continue "
                                    "(qa: 'REPORT Q: QUESTION'; chat: 'LIST User: ... Assistant: ... User: ...')")
    add(p, "--ckpt", help="the checkpoint to write (train) or read (default runs/apps/NAME/ckpt.npz)")
    add(p, "--force", action="store_true", default=False,
        help="train: replace an existing checkpoint (without it, train refuses to write over one)")
    add(p, "--max-iters", type=at_least(1), help="training steps (default: the app's own)")
    add(p, "--batch-size", type=at_least(1), help="sequences per step (default: the app's own)")
    add(p, "--lr", type=in_range(0.0, low_open=True), help="peak learning rate (default: the app's own)")
    add(p, "--seed", type=at_least(0), default=0, help="data and initialisation seed")
    add(p, "--beam", type=beam_width(MAX_BEAM), default=1,
        help=f"translation run: beam width (1: greedy), at most {MAX_BEAM} and the model's vocabulary")
    add(p, "--json", action="store_true", default=False, help="eval: print the result as JSON")
    add(p, "--no-progress", action="store_true", default=False, help="no progress bar")
    p.set_defaults(run=run)


def beam_width(cap: int):
    """An argparse ``type``: an integer in [1, ``cap``] (see npgpt.apps.translation.MAX_BEAM)."""
    def parse(text: str) -> int:
        value = at_least(1)(text)
        if value > cap:
            raise argparse.ArgumentTypeError(f"expected an integer in [1, {cap}], got {text!r} (a wider beam "
                                             f"costs more and translates no better)")
        return value
    return parse


def refuse_to_overwrite(path, force, name):
    """A UsageError (exit 2) when ``path`` is a folder, or already holds a trained model and ``--force``
    was not given."""
    if os.path.isdir(path):
        raise UsageError(f"--ckpt {path} is a folder; give the path of the checkpoint file to write "
                         f"(e.g. {os.path.join(path, 'ckpt.npz')})")
    if os.path.exists(path) and not force:
        raise UsageError(f"{path} already holds a trained {name} model; replace it with --force, or write the "
                         f"new one elsewhere with --ckpt PATH")


def run(args) -> int:
    from ..apps import resolve
    app = resolve(args.name)
    if args.action == "train":
        return train(app, args)
    if args.action == "eval":
        return evaluate(app, args)
    return run_input(app, args)


def train(app, args) -> int:
    """Train ``app``; the summary says the steps that ran, and a signal's exit code (130/143) is returned."""
    from ..apps.common import default_checkpoint
    name = app.APP
    refuse_to_overwrite(args.ckpt or default_checkpoint(name), args.force, name)
    kwargs = {k: v for k, v in (("max_iters", args.max_iters), ("batch_size", args.batch_size),
                                ("lr", args.lr)) if v is not None}
    result = app.train(ckpt=args.ckpt, seed=args.seed, progress=not (args.no_progress or args.quiet), **kwargs)
    if result["saved"]:
        print(f"{name}: trained {result['steps']} steps in {result['seconds']:.1f} s, "
              f"{result['model'].num_params():,} parameters; checkpoint: {result['ckpt']}")
        print(f"score it with: python -m npgpt app {name} eval" + (f" --ckpt {args.ckpt}" if args.ckpt else ""))
    stopped_by = result["stopped_by"]
    if stopped_by is None:
        return 0
    if result["saved"]:                  # the signal came after the last step (app.train said what was saved)
        print(f"{name}: {signal.Signals(stopped_by).name} came after the last step; the finished model was saved")
    return SIGNAL_EXIT[stopped_by]


def evaluate(app, args) -> int:
    name = app.APP
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


def run_input(app, args) -> int:
    name = app.APP
    if args.input is None:
        raise UsageError(f"run needs an input: python -m npgpt app {name} run \"TEXT\"")
    model, tokenizer = app.load(args.ckpt)
    kwargs = {}
    if name == "translation":
        if args.beam > tokenizer.vocab_size:
            raise UsageError(f"--beam {args.beam} is more than the model's vocabulary of {tokenizer.vocab_size} "
                             f"tokens: a beam keeps at most one hypothesis per token at its first step")
        kwargs["beam_width"] = args.beam
    out = app.run(args.input, model=model, tokenizer=tokenizer, **kwargs)
    sys.stdout.write(out + "\n")
    return 0
