"""``python -m npgpt prune``: prune a checkpoint's GPT (:mod:`npgpt.allocation.prune`), optionally fine-tune it,
save it.

Before any work it refuses to write over its input or over an earlier checkpoint (without
``--force``), checks the folder is writable with room for the checkpoint, and holds the folder's
lock (:mod:`npgpt.locks`) until it is done. SIGINT/SIGTERM before the save end it with nothing
saved (exit 130/143); during ``--then-finetune`` they stop at a step boundary with the checkpoint
of the steps that ran, and the summary says how many of them did."""
import logging
from pathlib import Path

from ..checks import UsageError
from .flags import add, check_folder, command

log = logging.getLogger(__name__)


def register(subparsers) -> None:
    """``python -m npgpt prune``: prune a checkpoint's model, optionally fine-tune it, save it."""
    from ..allocation.prune import SCOPES
    from ..checks import at_least, in_range
    p = command(subparsers, "prune", help="prune a trained GPT (magnitude, heads, neurons), optionally fine-tune it",
                description="Prune the model of a checkpoint written by 'npgpt train': zero the smallest weights "
                            "(--sparsity), remove whole attention heads (--heads) or MLP neurons (--neurons), "
                            "report the validation loss before and after, optionally fine-tune the rest "
                            "(--then-finetune N steps, pruned weights kept at zero), and save the result.")
    p.add_argument("--ckpt", required=True, help="checkpoint to prune (OUT_DIR/ckpt.npz of 'npgpt train')")
    add(p, "--data", default="shakespeare",
        help="the corpus the model was trained on (for the validation loss and fine-tuning)")
    p.add_argument("--out-dir", required=True, help="where the pruned checkpoint goes")
    add(p, "--force", action="store_true", default=False,
        help="replace a checkpoint already in --out-dir (without it, prune refuses to write over one)")
    add(p, "--sparsity", type=in_range(0.0, 1.0, high_open=True), default=0.0,
        help="fraction of the blocks' projection weights set to zero, smallest |w| first")
    add(p, "--scope", choices=SCOPES, default="global", help="one threshold for all matrices, or one each")
    add(p, "--heads", type=in_range(0.0, 1.0, high_open=True), default=0.0,
        help="fraction of each block's attention heads removed (lowest output-projection norm)")
    add(p, "--neurons", type=in_range(0.0, 1.0, high_open=True), default=0.0,
        help="fraction of each block's MLP neurons removed (lowest |W_fc[:, j]| |W_proj[j]|)")
    add(p, "--then-finetune", type=at_least(0), default=0, metavar="N", help="fine-tuning steps after pruning")
    add(p, "--lr", type=in_range(0.0, low_open=True), default=3e-4, help="fine-tuning learning rate (constant)")
    add(p, "--eval-iters", type=at_least(1), default=50, help="validation batches for the losses reported")
    add(p, "--no-progress", action="store_true", default=False, help="no progress bar while fine-tuning")
    p.set_defaults(run=run)


def run(args) -> int:
    from ..locks import folder_lock, hold_lock
    out = check_output(args)
    with hold_lock(folder_lock(args.out_dir), f"--out-dir {args.out_dir}"):   # no other run writes there meanwhile
        return prune_and_save(args, out)


def check_output(args) -> Path:
    """The checkpoint prune writes, ``OUT_DIR/ckpt.npz``, checked before any work: not a file given as
    --out-dir, not the input itself, not an earlier checkpoint without --force, a writable folder."""
    from ..training.trainer import prepare_output_folder
    out_dir, ckpt = Path(check_folder("--out-dir", args.out_dir)), Path(args.ckpt)
    out = out_dir / "ckpt.npz"
    if out_dir.exists() and not out_dir.is_dir():
        itself = " (it is the checkpoint being pruned)" if ckpt.exists() and out_dir.samefile(ckpt) else ""
        raise UsageError(f"--out-dir {args.out_dir} is a file, expected a folder{itself}")
    if out.exists() and ckpt.exists() and out.samefile(ckpt):     # also through a symlink or a hard link
        raise UsageError(f"--out-dir {args.out_dir} holds the checkpoint being pruned ({args.ckpt}); "
                         f"write the pruned model to another --out-dir")
    if out.exists() and not args.force:
        raise UsageError(f"--out-dir {args.out_dir} already holds a checkpoint ({out}); replace it with --force, "
                         f"or choose another --out-dir")
    prepare_output_folder(out_dir)
    return out


def prune_and_save(args, out: Path) -> int:
    from ..allocation.prune import prune_heads, prune_magnitude, prune_neurons
    from ..io.checkpoint import (
        check_same_corpus,
        model_from_checkpoint,
        read_checkpoint,
        tokenizer_from_checkpoint,
    )
    from ..locks import hold_lock
    from ..models import GPT
    from ..text import load_corpus
    from ..training import Dataset, TrainConfig, Trainer
    from ..training.trainer import SIGNAL_EXIT, checkpoint_lock
    meta, arrays = read_checkpoint(args.ckpt)
    model = model_from_checkpoint(args.ckpt, meta, arrays)
    if not isinstance(model, GPT):
        raise UsageError(f"{args.ckpt} holds a {type(model).__name__}; pruning works on a GPT")
    tokenizer = tokenizer_from_checkpoint(args.ckpt, meta)
    corpus = load_corpus(args.data)
    if corpus.fell_back:
        log.warning(f"NOTE: Tiny Shakespeare is unavailable; evaluating and fine-tuning on the built-in fallback corpus "
              f"({corpus.fallback_reason})")
    check_same_corpus(args.ckpt, meta, corpus)
    data = Dataset(corpus.text, tokenizer, source=corpus.source)
    saved = meta["train_config"]
    config = TrainConfig(max_iters=max(args.then_finetune, 1), batch_size=saved["batch_size"], lr=args.lr,
                         min_lr=args.lr, warmup_iters=0, eval_interval=max(args.then_finetune, 1),
                         eval_iters=args.eval_iters, seed=saved["seed"])
    # Room and permissions for the checkpoint, before the work: the unpruned model's is the larger.
    Trainer(model, data, config, tokenizer).check_before_training(out)

    def val_loss(m, masks=None):
        return Trainer(m, data, config, tokenizer, masks).evaluate()["val"]

    report = [("trained", model.num_params(), val_loss(model))]
    if args.heads:
        model, _ = prune_heads(model, args.heads)
    if args.neurons:
        model, _ = prune_neurons(model, args.neurons)
    masks = prune_magnitude(model, args.sparsity, args.scope) if args.sparsity else {}
    nonzero = model.num_params() - sum(int((~m).sum()) for m in masks.values())
    report.append(("pruned", nonzero, val_loss(model, masks)))
    trainer = Trainer(model, data, config, tokenizer, masks)
    if args.then_finetune:
        trainer.train(checkpoint_path=out, progress=not (args.no_progress or args.quiet), log=log.info)
        if trainer.stopped_by is not None:        # the checkpoint holds the steps that ran, and says how many
            show(report)
            print(f"fine-tuning stopped at step {trainer.step} of {args.then_finetune} "
                  f"({signal_name(trainer.stopped_by)}); not evaluated")
            print(f"checkpoint: {out} (partial: fine-tuned {trainer.step} of {args.then_finetune} steps)")
            return SIGNAL_EXIT[trainer.stopped_by]
        report.append((f"fine-tuned {args.then_finetune} steps", nonzero, trainer.evaluate()["val"]))
    else:
        with hold_lock(checkpoint_lock(out), f"the checkpoint {out}"):    # as a training run's save is
            trainer.save_checkpoint(out)
    show(report)
    print(f"checkpoint: {out}")
    return 0


def show(report: list[tuple[str, int, float]]) -> None:
    for label, n, loss in report:
        print(f"{label:<24} {n:>12,} non-zero parameters   val loss {loss:.4f}")


def signal_name(signum: int) -> str:
    import signal
    return signal.Signals(signum).name
