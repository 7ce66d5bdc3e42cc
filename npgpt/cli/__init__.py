"""Command line: ``python -m npgpt train|sample|params|bench|costs|prune`` (``--help`` on each explains every flag).

Usage mistakes (a bad flag value, a bad file) print one line naming the flag or file and exit 2; a
run that diverged or could not save exits 1; a run stopped by Ctrl-C exits 130, by SIGTERM 143,
each with a checkpoint saved at a step boundary.
"""
import argparse
import copy
import json
import signal
import sys
import time
import traceback
from pathlib import Path

import numpy as np

from ..checks import UsageError, at_least, in_range
from ..io.checkpoint import (
    build_model,
    check_same_corpus,
    model_from_checkpoint,
    read_checkpoint,
    tokenizer_from_checkpoint,
)
from ..models import RECURRENT_PRESETS, RecurrentConfig
from ..models.config import PRESETS, GPTConfig
from ..perf.bench import BENCH_PRESETS
from ..runtime.threads import StepThreads, parse_threads, threads_setting
from ..training.trainer import SIGNAL_EXIT, CheckpointNotSaved, TrainConfig, Trainer, TrainingDiverged
from . import app as apps_cli
from . import bench, prune
from . import eval as evaluation_cli

STRATEGIES = ("greedy", "temperature", "top-k", "top-p", "beam")
MODELS = ("gpt", "lstm", "gru", "rnn")
GPT_ONLY_FLAGS = {"n_head": "--n-head", "bias": "--bias", "pos_encoding": "--pos-encoding",
                  "tie_weights": "--tie-weights"}
# On --resume, these must match the checkpoint (they shape the model or its optimizer state) ...
ARCHITECTURE_FLAGS = ("model", "preset", "n_layer", "n_head", "n_embd", "n_hidden", "block_size", "bias",
                      "pos_encoding", "tie_weights", "dtype", "optimizer", "seed")
# ... and these may change for the rest of the run.
TRAINING_FLAGS = ("max_iters", "batch_size", "lr", "min_lr", "warmup_iters", "weight_decay", "beta1", "beta2",
                  "momentum", "grad_clip", "eval_interval", "eval_iters", "dropout")


class CLIError(Exception):
    """A user mistake: printed as one line, exit status 2."""


# ----------------------------------------------------------------------------- train
def threads_arg(text):
    """An argparse ``type``: "auto" or a thread count >= 1 (:func:`npgpt.runtime.threads.parse_threads`)."""
    try:
        return parse_threads(text, "threads")
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def add_train_parser(sub):
    p = sub.add_parser(
        "train", help="train a GPT (or an LSTM, GRU, RNN) on a text corpus, then sample from it",
        description="Train a character-level GPT, or a recurrent language model with --model, evaluate "
                    "it, save checkpoints, and print a sample. Defaults are nanoGPT's CPU recipe "
                    "(preset 'baby').",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--data", default="shakespeare",
                   help="corpus: 'shakespeare' (Tiny Shakespeare: $NPGPT_DATA_DIR, the user cache, else a "
                        "download; falls back to the built-in corpus offline), 'fallback' (built-in), "
                        "or the path of any UTF-8 text file")
    p.add_argument("--out-dir", default="runs/baby", help="where checkpoint, loss curve and sample go")
    p.add_argument("--resume", action="store_true", help="continue from OUT_DIR/ckpt.npz")
    p.add_argument("--force", action="store_true",
                   help="start a new run even if OUT_DIR already holds a checkpoint, replacing it at the first "
                        "save (without --force or --resume, such a folder is refused)")
    m = p.add_argument_group("model (override the preset)")
    m.add_argument("--model", choices=MODELS,
                   help="model family: gpt (decoder-only transformer), or a recurrent LM: lstm, gru, rnn "
                        "(tanh); unset means gpt, or on --resume whatever the checkpoint holds")
    m.add_argument("--preset", default="baby", choices=sorted(PRESETS),
                   help="model shape to start from (recurrent models: "
                        f"{', '.join(sorted(RECURRENT_PRESETS))})")
    m.add_argument("--n-layer", type=at_least(1), help="transformer blocks, or stacked recurrent layers")
    m.add_argument("--n-head", type=at_least(1), help="attention heads (must divide --n-embd; gpt only)")
    m.add_argument("--n-embd", type=at_least(1), help="model width (recurrent models: the embedding width)")
    m.add_argument("--n-hidden", type=at_least(1), help="state width of a recurrent model (lstm, gru, rnn only)")
    m.add_argument("--block-size", type=at_least(1), help="context length in tokens")
    m.add_argument("--dropout", type=in_range(0.0, 1.0, high_open=True), help="dropout probability while training")
    m.add_argument("--bias", action=argparse.BooleanOptionalAction, default=None,
                   help="biases in linear layers and LayerNorms (gpt only)")
    m.add_argument("--pos-encoding", choices=["learned", "sinusoidal"], help="position encoding (gpt only)")
    m.add_argument("--tie-weights", action=argparse.BooleanOptionalAction, default=None,
                   help="share the token embedding with the output layer (gpt only)")
    m.add_argument("--dtype", choices=["float32", "float64"], default="float32", help="parameter dtype")
    o = p.add_argument_group("optimisation")
    d = TrainConfig()
    o.add_argument("--max-iters", type=at_least(1), default=d.max_iters, help="training steps")
    o.add_argument("--batch-size", type=at_least(1), default=d.batch_size,
                   help="sequences per optimizer step (the global batch, over every MPI rank and micro-step)")
    o.add_argument("--grad-accum", type=at_least(1), default=1,
                   help="gradient accumulation: micro-steps summed before each optimizer step; each rank "
                        "runs batch-size / (ranks x grad-accum) sequences per micro-step")
    o.add_argument("--zero", type=int, choices=[0, 1], default=0,
                   help="ZeRO stage: 1 shards AdamW's moments over the MPI ranks (each keeps 1/ranks of "
                        "them); 0 keeps them whole on every rank")
    o.add_argument("--optimizer", choices=["adamw", "sgd"], default=d.optimizer, help="update rule")
    o.add_argument("--lr", type=in_range(0.0), default=d.lr, help="peak learning rate")
    o.add_argument("--min-lr", type=in_range(0.0), default=d.min_lr, help="learning rate at the end of the cosine")
    o.add_argument("--warmup-iters", type=at_least(0), default=d.warmup_iters, help="linear warmup steps")
    o.add_argument("--weight-decay", type=in_range(0.0), default=d.weight_decay,
                   help="decoupled weight decay (2-D weights and embeddings only)")
    o.add_argument("--beta1", type=in_range(0.0, 1.0, high_open=True), default=d.beta1, help="AdamW first-moment decay")
    o.add_argument("--beta2", type=in_range(0.0, 1.0, high_open=True), default=d.beta2, help="AdamW second-moment decay")
    o.add_argument("--momentum", type=in_range(0.0, 1.0, high_open=True), default=d.momentum, help="SGD momentum")
    o.add_argument("--grad-clip", type=in_range(0.0), default=d.grad_clip, help="global gradient-norm clip (0: off)")
    o.add_argument("--seed", type=at_least(0), default=d.seed, help="seed for initialisation, batches and dropout")
    e = p.add_argument_group("evaluation and output")
    e.add_argument("--eval-interval", type=at_least(1), default=d.eval_interval, help="steps between evaluations")
    e.add_argument("--eval-iters", type=at_least(1), default=d.eval_iters, help="batches per split per evaluation")
    e.add_argument("--final-eval-iters", type=at_least(1), default=400,
                   help="batches per split for the final summary line")
    e.add_argument("--sample-tokens", type=at_least(0), default=300, help="characters to generate at the end (0: none)")
    e.add_argument("--no-progress", action="store_true", help="no progress bar")
    e.add_argument("--threads", type=threads_arg, default=None,
                   help="threads per step: 'auto' adapts when other programs share the CPU (drops to fewer "
                        "threads, returns when the cores are free), N fixes them (default: $NPGPT_THREADS, "
                        "else auto)")
    p.set_defaults(run=run_train, parser=p)


def model_config_from_args(args, vocab_size):
    """A GPTConfig, or a RecurrentConfig for ``--model lstm|gru|rnn``; flags that do not belong to the
    chosen family are a CLIError."""
    kind = args.model or "gpt"
    if kind == "gpt":
        if args.n_hidden is not None:
            raise CLIError("--n-hidden sets a recurrent model's state width; a GPT's width is --n-embd "
                           "(or pass --model lstm, gru or rnn)")
        overrides = {name: getattr(args, name) for name in
                     ("n_layer", "n_head", "n_embd", "block_size", "dropout", "bias", "pos_encoding",
                      "tie_weights") if getattr(args, name) is not None}
        return GPTConfig.preset(args.preset, vocab_size=vocab_size, **overrides)
    given = [flag for name, flag in GPT_ONLY_FLAGS.items() if getattr(args, name) is not None]
    if given:
        raise CLIError(f"{', '.join(given)} {'is a GPT option' if len(given) == 1 else 'are GPT options'}; "
                       f"a recurrent model (--model {kind}) takes --n-layer, --n-embd, --n-hidden, "
                       f"--block-size and --dropout")
    if args.preset not in RECURRENT_PRESETS:
        raise CLIError(f"--preset {args.preset} is a GPT shape; recurrent models have "
                       f"{', '.join(sorted(RECURRENT_PRESETS))}")
    overrides = {name: getattr(args, name) for name in ("n_layer", "n_embd", "n_hidden", "block_size", "dropout")
                 if getattr(args, name) is not None}
    return RecurrentConfig.preset(args.preset, vocab_size=vocab_size, cell=kind, **overrides)


def checkpoint_model_kind(meta):
    """"gpt", or the recurrent cell ("lstm", "gru", "rnn") of a checkpoint's model."""
    return getattr(meta["model_config"], "cell", "gpt")


def given_flags(parser, argv):
    """The destinations of the flags written on the command line (not left at their defaults)."""
    probe = copy.deepcopy(parser)
    for action in probe._actions:
        action.default = argparse.SUPPRESS
    given, _ = probe.parse_known_args(argv)
    return set(vars(given))


def flag(name):
    return "--" + name.replace("_", "-")


def resume_overrides(args, meta, vocab_size):
    """The training settings to change for a resumed run, from the flags given on the command
    line; a CLIError naming each flag that would change the model or its optimizer state."""
    given = args.given
    saved_model, saved_train = meta["model_config"], meta["train_config"]
    differences = []
    if given & {"preset", "n_layer", "n_head", "n_embd", "n_hidden", "block_size", "bias", "pos_encoding",
                "tie_weights"}:
        asked = model_config_from_args(args, vocab_size)
        for name in sorted(set(asked.to_dict()) - {"dropout", "vocab_size"}):
            mine, theirs = getattr(asked, name), getattr(saved_model, name, None)
            if mine != theirs:
                differences.append(f"{flag(name)} {mine} (the checkpoint has {theirs})")
    if "dtype" in given and args.dtype != meta["dtype"]:
        differences.append(f"--dtype {args.dtype} (the checkpoint has {meta['dtype']})")
    for name in ("optimizer", "seed"):
        if name in given and getattr(args, name) != saved_train.get(name):
            differences.append(f"{flag(name)} {getattr(args, name)} (the checkpoint has {saved_train.get(name)})")
    if differences:
        raise CLIError("--resume continues the checkpoint's model, optimizer and random streams, which "
                       "these flags would change: " + "; ".join(differences)
                       + ". Leave them out, or start a new run in another --out-dir")
    changes = {}
    for name in TRAINING_FLAGS:
        if name not in given:
            continue
        value = getattr(args, name)
        saved = saved_model.dropout if name == "dropout" else saved_train.get(name)
        if value != saved:
            changes[name] = (saved, value)
    return changes


def train_config_from_args(args):
    names = ("max_iters", "batch_size", "optimizer", "lr", "min_lr", "warmup_iters", "weight_decay",
             "beta1", "beta2", "momentum", "grad_clip", "eval_interval", "eval_iters", "seed")
    return TrainConfig(**{name: getattr(args, name) for name in names})


def run_train(args):
    """Train on one process, or on every rank of ``mpiexec -n N`` (npgpt.training.distributed).
    Each rank checks its flags and files before the first collective, and the ranks agree on
    the outcome, so a usage error exits 2 everywhere; a failure after that ends the whole job."""
    from ..training import distributed

    ranks = distributed.launched_size()
    try:                               # before MPI starts: a bad split stops every rank alike
        distributed.micro_batch_size(args.batch_size, ranks, args.grad_accum)
        distributed.check_zero(args.zero, ranks, args.optimizer)
        args.threads = args.threads or threads_setting()       # --threads, else NPGPT_THREADS, checked now
    except ValueError as e:
        raise CLIError(str(e)) from None
    comm = args.comm = distributed.world()
    say = print if comm.rank == 0 else (lambda *a, **k: None)
    error = None
    try:
        trainer, ckpt, out_dir, tokenizer, corpus = setup_training(args, comm, say)
        trainer.threads = args.threads
    except (CLIError, UsageError) as e:
        error = e
    distributed.agree(comm, error)
    args.after_agreement = True
    model = trainer.model
    say(f"model: {type(model).__name__}, {model.num_params():,} parameters, {model.config}")
    if parallel(args, comm):
        say(f"data parallel: {comm.size} rank(s) x {args.grad_accum} micro-step(s) of "
            f"{trainer.micro_batch} sequences = global batch {trainer.config.batch_size}"
            + (f"; ZeRO-1: each rank keeps {trainer.optimizer.state_bytes():,} bytes of AdamW's moments "
               f"(1/{comm.size} of them)" if args.zero else ""))

    start = time.perf_counter()
    trainer.train(checkpoint_path=ckpt, progress=not args.no_progress)
    wall = time.perf_counter() - start
    if trainer.stopped_by is not None:
        return SIGNAL_EXIT[trainer.stopped_by]
    with StepThreads(trainer.last_thread_count or trainer.threads):   # what the last steps ran fastest on
        final = trainer.evaluate(args.final_eval_iters, progress=not args.no_progress)
    if not all(np.isfinite(v) for v in final.values()):
        raise TrainingDiverged(f"the final evaluation gave train loss {final['train']}, val loss {final['val']}")
    if comm.rank != 0:
        return 0
    save_loss_curve(trainer.history, out_dir / "loss.png")
    if args.sample_tokens > 0:
        from ..decoding import generate
        prompt = tokenizer.encode("\n")[:1] if "\n" in tokenizer.stoi else np.zeros(1, np.int64)
        ids = generate(model, prompt, args.sample_tokens, strategy="temperature", temperature=0.8, seed=args.seed)
        print("sample:\n" + tokenizer.decode(ids) + "\n")
    print(f"final: step={trainer.step} train_loss={final['train']:.4f} val_loss={final['val']:.4f} "
          f"corpus={corpus.source} wall_s={wall:.1f}")
    print(f"checkpoint: {ckpt}   loss curve: {out_dir / 'loss.png'}")
    if corpus.fell_back:
        print(fallback_banner(corpus, "trained on"))
    return 0


def fallback_banner(corpus, what):
    """Lines that say loudly that Tiny Shakespeare was asked for and the built-in corpus used."""
    from ..text.corpus import how_to_get_tinyshakespeare
    return (f"NOTE: {what} the built-in fallback corpus ({len(corpus.text):,} characters), NOT Tiny Shakespeare. "
            f"{corpus.fallback_reason}.\n"
            f"      The README's numbers are for Tiny Shakespeare and will not match. To use it, "
            f"{how_to_get_tinyshakespeare()}.")


def parallel(args, comm):
    """Whether the run needs the data-parallel trainer (more than one rank or micro-step); a plain
    run keeps the plain :class:`Trainer`, bit for bit."""
    return comm.size > 1 or args.grad_accum > 1


def setup_training(args, comm, say):
    """(trainer, checkpoint path, out dir, tokenizer, corpus) for ``args``: a new run or a resumed one."""
    from ..text import load_corpus
    from ..training import Dataset
    from ..training.distributed import DataParallelTrainer

    out_dir = Path(args.out_dir)
    ckpt = out_dir / "ckpt.npz"
    if out_dir.exists() and not out_dir.is_dir():
        raise CLIError(f"--out-dir {out_dir} is a file, expected a folder")
    if args.resume and args.force:
        raise CLIError("--resume continues the checkpoint in --out-dir and --force replaces it: give one of them")
    if not args.resume and not args.force:
        refuse_to_overwrite(ckpt, "--out-dir", "continue it with --resume, replace it with --force")
    corpus = load_corpus(args.data)
    text = corpus.text
    if corpus.fell_back:
        say(fallback_banner(corpus, "training on"))
    else:
        say(f"corpus: {corpus.description}, {len(text):,} characters")
    if args.resume:
        meta, _ = read_checkpoint(ckpt)
        kind = checkpoint_model_kind(meta)
        if args.model is not None and args.model != kind:
            raise CLIError(f"--model {args.model} does not match {ckpt}, whose model is {kind}; "
                           f"pass --model {kind} or leave --model out to resume it")
        check_same_corpus(ckpt, meta, corpus)
        tokenizer = tokenizer_from_checkpoint(ckpt, meta)
        unknown = sorted(set(text) - set(tokenizer.chars))
        if unknown:
            shown = ", ".join(repr(ch) for ch in unknown[:5]) + (" ..." if len(unknown) > 5 else "")
            raise CLIError(f"--data {args.data} is not the corpus {ckpt} was trained on: it has {len(unknown)} "
                           f"characters the checkpoint's tokenizer does not know ({shown}); resume with the "
                           f"same --data")
        changes = resume_overrides(args, meta, tokenizer.vocab_size)
        data = Dataset(text, tokenizer, source=corpus.source)
        overrides = {k: new for k, (_, new) in changes.items()}
        trainer = (DataParallelTrainer.from_checkpoint(ckpt, data, tokenizer, comm, args.grad_accum, args.zero,
                                                       **overrides)
                   if parallel(args, comm) else Trainer.from_checkpoint(ckpt, data, tokenizer, **overrides))
        say(f"resuming from {ckpt} at step {trainer.step}")
        for name, (old, new) in changes.items():
            say(f"  {flag(name)} {new} for the rest of the run (the checkpoint had {old})")
    else:
        data = Dataset(text, source=corpus.source)
        tokenizer = data.tokenizer
        model = build_model(model_config_from_args(args, data.vocab_size), seed=args.seed, dtype=np.dtype(args.dtype))
        config = train_config_from_args(args)
        trainer = (DataParallelTrainer(model, data, config, tokenizer, comm=comm, grad_accum=args.grad_accum,
                                       zero=args.zero)
                   if parallel(args, comm) else Trainer(model, data, config, tokenizer))
    return trainer, ckpt, out_dir, tokenizer, corpus


def refuse_to_overwrite(ckpt, flag_name, ways_out):
    """A CLIError when ``ckpt`` exists: a command never replaces a finished run unless asked to."""
    if ckpt.exists():
        raise CLIError(f"{flag_name} {ckpt.parent} already holds a checkpoint ({ckpt}); {ways_out}, "
                       f"or choose another {flag_name}")


def save_loss_curve(history, path):
    from ..plots.figures import plot_loss_curve
    plot_loss_curve(history, path=path)


# ----------------------------------------------------------------------------- sample
def add_sample_parser(sub):
    p = sub.add_parser(
        "sample", help="generate text from a checkpoint or a GPT-2 folder",
        description="Continue a prompt with a trained model (document section 3, step 3: output decoding).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--ckpt", help="checkpoint written by 'npgpt train' (OUT_DIR/ckpt.npz)")
    source.add_argument("--pretrained", metavar="DIR", help="a Hugging Face GPT-2 folder: config.json, "
                        "model.safetensors, vocab.json, merges.txt (npgpt never downloads it; see the README)")
    p.add_argument("--prompt", default="\n", help="text to continue (characters must be in the vocabulary)")
    p.add_argument("--strategy", choices=STRATEGIES, default="top-k", help="decoding strategy")
    p.add_argument("--max-new-tokens", type=at_least(0), default=300, help="tokens to generate")
    p.add_argument("--temperature", type=in_range(0.0, low_open=True), default=0.8, help="softmax temperature (sampling strategies)")
    p.add_argument("--top-k", type=at_least(1), default=40, help="keep the k most likely tokens (top-k)")
    p.add_argument("--top-p", type=in_range(0.0, 1.0, low_open=True), default=0.9, help="keep the smallest set with this probability (top-p)")
    p.add_argument("--beam-width", type=at_least(1), default=4, help="hypotheses kept (beam)")
    p.add_argument("--num-samples", type=at_least(1), default=1, help="independent samples to print")
    p.add_argument("--seed", type=at_least(0), default=0, help="random seed for sampling")
    p.add_argument("--no-cache", action="store_true", help="recompute the whole context for every token")
    p.set_defaults(run=run_sample)


def run_sample(args):
    from ..decoding import beam_search, generate

    if args.pretrained is not None:
        model, tokenizer, prompt, eos = pretrained_for_sampling(args.pretrained, args.prompt)
    else:
        meta, arrays = read_checkpoint(args.ckpt)
        tokenizer = tokenizer_from_checkpoint(args.ckpt, meta)
        model = model_from_checkpoint(args.ckpt, meta, arrays)
        prompt, eos = tokenizer.encode(args.prompt), None
    for i in range(args.num_samples):
        if args.strategy == "beam":
            ids, _ = beam_search(model, prompt, args.max_new_tokens, beam_width=args.beam_width,
                                 eos_id=eos, use_cache=not args.no_cache)
        else:
            ids = generate(model, prompt, args.max_new_tokens, strategy=args.strategy,
                           temperature=args.temperature, top_k=args.top_k, top_p=args.top_p,
                           seed=args.seed + i, eos_id=eos, use_cache=not args.no_cache)
        print(tokenizer.decode(ids))
        if i + 1 < args.num_samples:
            print("-" * 40)
    return 0


def pretrained_for_sampling(folder, text):
    """(model, tokenizer, prompt ids, id of <|endoftext|> or None) of a Hugging Face GPT-2 folder."""
    from ..io.pretrained import load_pretrained

    model, tokenizer = load_pretrained(folder)
    if tokenizer is None:
        raise CLIError(f"{folder} has no vocab.json and merges.txt: sampling needs GPT-2's tokenizer "
                       f"to read the prompt and write the text")
    prompt = tokenizer.encode(text, allowed_special="all")
    if not prompt:
        raise CLIError("--prompt is empty: give some text to continue")
    return model, tokenizer, prompt, tokenizer.special_tokens.get("<|endoftext|>")


# ----------------------------------------------------------------------------- params
def add_params_parser(sub):
    p = sub.add_parser("params", help="parameter counts: the document's claim vs computed",
                       description="Compare the document's parameter claim (section 4.1) with counts "
                                   "computed from the architectures.")
    p.set_defaults(run=run_params)


def run_params(args):
    from ..verify.counting import document_parameter_report
    for label, count in document_parameter_report():
        print(f"{label:<52} {count:>14,}")
    return 0


# ----------------------------------------------------------------------------- costs
def add_costs_parser(sub):
    p = sub.add_parser(
        "costs", help="what a GPT costs: FLOPs, memory, disk and time (document sections 2 and 7)",
        description="Print what a GPT costs, counted from its configuration: FLOPs per training step by "
                    "part (beside the 6ND estimate) and per generated token, training and inference "
                    "memory by part, checkpoint bytes, and with --measure the predicted and measured "
                    "step time. The formulas are in npgpt/allocation/costs.py.")
    p.add_argument("--preset", default="baby", choices=sorted(PRESETS),
                   help="model shape: baby and small (Tiny Shakespeare), document (the document's "
                        "configuration), gpt2 (GPT-2 small) (default: baby)")
    p.add_argument("--ckpt", metavar="PATH",
                   help="take the model shape, dtype, optimizer and batch size from this checkpoint "
                        "instead of --preset (the flags below still win)")
    p.add_argument("--batch-size", type=at_least(1),
                   help="sequences per training step (default: the checkpoint's, else the benchmark's "
                        "batch for the preset, 12 for baby and 16 for small, else 12)")
    p.add_argument("--seq-len", type=at_least(1), help="tokens per sequence, at most the block size "
                                                       "(default: the block size)")
    p.add_argument("--context", type=at_least(1),
                   help="positions a generated token attends to, at most the block size (default: --seq-len)")
    p.add_argument("--dtype", choices=["float32", "float64"], help="number type (default: the checkpoint's, else float32)")
    p.add_argument("--optimizer", choices=["adamw", "sgd"],
                   help="optimizer state to count: adamw keeps two moments, sgd one momentum (default: the checkpoint's, else adamw)")
    p.add_argument("--measure", action="store_true",
                   help="also time real training steps and the matmul peak (takes a few steps' time)")
    p.set_defaults(run=run_costs)


def costs_model(args):
    """(label, GPTConfig, defaults for batch_size, dtype and optimizer) of ``--preset`` or ``--ckpt``."""
    if args.ckpt is None:
        batch_size = BENCH_PRESETS.get(args.preset, {}).get("batch_size", TrainConfig().batch_size)
        return f"preset {args.preset}", GPTConfig.preset(args.preset), \
            {"batch_size": batch_size, "dtype": "float32", "optimizer": "adamw"}
    meta, _ = read_checkpoint(args.ckpt)
    if not isinstance(meta["model_config"], GPTConfig):
        raise CLIError(f"--ckpt {args.ckpt} holds a recurrent model ({checkpoint_model_kind(meta)}); costs counts a GPT's")
    train = meta["train_config"]
    return f"checkpoint {args.ckpt}", meta["model_config"], \
        {"batch_size": train["batch_size"], "dtype": meta["dtype"], "optimizer": train.get("optimizer", "adamw")}


def run_costs(args):
    from ..allocation import costs

    label, config, default = costs_model(args)
    for name in ("seq_len", "context"):
        value = getattr(args, name)
        if value is not None and value > config.block_size:
            raise CLIError(f"{flag(name)} {value} is longer than the model's block size {config.block_size}")
    figures = costs.report(config, args.batch_size or default["batch_size"], args.seq_len,
                           args.dtype or default["dtype"], args.optimizer or default["optimizer"],
                           args.context, args.measure, label)
    print(costs.format_report(figures))
    return 0


# ----------------------------------------------------------------------------- entry point
# ----------------------------------------------------------------------------- plan
def budget_type(parse):
    """An argparse ``type`` from a budget parser of npgpt.allocation.planner."""
    def parse_flag(text):
        try:
            return parse(text)
        except ValueError as e:
            raise argparse.ArgumentTypeError(str(e)) from None
    return parse_flag


def add_plan_parser(sub):
    from ..allocation import planner
    from ..allocation.network import NETWORKS
    p = sub.add_parser(
        "plan", help="the compute-optimal model, tokens and layout for a compute, memory and time budget",
        description="Plan a training run for a budget (document section 7, global optimal allocation): the "
                    "model shape from the scaling study's compute-optimal law, the tokens the compute buys, "
                    "batch, accumulation, ZeRO stage and ranks that fit the memory per rank, and the predicted "
                    "loss, memory and wall time, with the constraint that binds. Character-level, like the "
                    "study (Tiny Shakespeare, 64-character context).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--flops", type=budget_type(planner.parse_flops), required=True,
                   help="compute budget in training FLOPs (forward and backward), e.g. 3e15")
    p.add_argument("--memory", type=budget_type(planner.parse_bytes), required=True,
                   help="memory per rank: '8GB' (10^9 bytes), '8GiB' (2^30), or bytes ('8e9')")
    p.add_argument("--hours", type=budget_type(planner.parse_hours),
                   help="wall-time budget; the FLOP rate is measured on this machine (each rank one like it)")
    p.add_argument("--ranks", type=at_least(1), default=1, help="data-parallel ranks (mpiexec -n)")
    p.add_argument("--network", choices=sorted(NETWORKS), default="10GbE",
                   help="the link between ranks, for the all-reduce time")
    p.add_argument("--flop-rate", type=in_range(0.0, low_open=True),
                   help="FLOP/s of one rank instead of measuring it (a few seconds)")
    p.add_argument("--law", help="a scaling-law JSON (default: the committed study's)")
    p.add_argument("--json", action="store_true", help="print the plan as JSON, for scripts")
    p.set_defaults(run=run_plan)


def run_plan(args):
    from ..allocation import planner
    from ..allocation.scaling import load_law
    law = load_law(args.law)
    result = planner.plan(args.flops, args.memory, args.hours, args.ranks, flop_rate=args.flop_rate,
                          network=args.network, law=law)
    print(json.dumps(result.to_dict(), indent=2) if args.json else planner.format_plan(result))
    return 0


def build_parser():
    parser = argparse.ArgumentParser(
        prog="npgpt", description="npgpt: a GPT you can read. Train, sample, count, benchmark.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    add_train_parser(sub)
    add_sample_parser(sub)
    evaluation_cli.add_parser(sub)
    add_params_parser(sub)
    bench.add_parser(sub)
    prune.add_parser(sub)
    add_costs_parser(sub)
    add_plan_parser(sub)
    apps_cli.add_parser(sub)
    return parser


def main(argv=None):
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parser.parse_args(argv)
    if getattr(args, "parser", None) is not None:
        args.given = given_flags(args.parser, argv[argv.index(args.command) + 1:])
    try:
        code, failed = run_and_report(args)
    except BaseException:
        if running_together(args):         # print this rank's traceback, then end every rank
            traceback.print_exc()
            args.comm.abort(1)
        raise
    if failed and running_together(args):
        args.comm.abort(code)      # the other ranks may be waiting in a collective: end them too
    return code


def running_together(args):
    """Whether this process trains with other MPI ranks past the point where they agreed to start."""
    comm = getattr(args, "comm", None)
    return comm is not None and comm.size > 1 and getattr(args, "after_agreement", False)


def error_line(text):
    """``text`` and its newline to stderr in one write: under ``mpiexec`` the ranks share stderr,
    and two writes per line (what print does) let their lines interleave."""
    sys.stderr.write(text + "\n")
    sys.stderr.flush()


def run_and_report(args):
    """(exit status, whether an error ended the command), each error printed as one line."""
    from ..training.distributed import launched_rank, launched_size
    who = f"npgpt {args.command}"
    if launched_size() > 1:
        who += f" (rank {launched_rank()} of {launched_size()})"
    try:
        return args.run(args), False
    except TrainingDiverged as e:
        error_line(f"{who}: training diverged: {e}")
        saved = getattr(e, "kept", None)
        if saved:
            error_line(f"{who}: {saved}")
        return 1, True
    except CheckpointNotSaved as e:
        error_line(f"{who}: error: {e}")
        return 1, True
    except KeyboardInterrupt:          # outside a training loop, which handles its own signals
        error_line(f"{who}: interrupted")
        return SIGNAL_EXIT[signal.SIGINT], True
    except (CLIError, UsageError) as e:
        error_line(f"{who}: error: {e}")
        return 2, True


if __name__ == "__main__":
    sys.exit(main())
