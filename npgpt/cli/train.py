"""``python -m npgpt train``: train a GPT (or an LSTM, GRU, RNN) on a text corpus, then sample from it.

Its flags are made from the config dataclasses, one per field: GPTConfig and RecurrentConfig (the
model, over its preset), TrainConfig (the loop) and :class:`RunSettings` below (the rest of the run).
``--config FILE`` reads the same settings from a TOML file (:mod:`npgpt.cli.config_file`), and the
flags written beside it win; ``--print-config`` prints the resolved run in that form and stops.

On ``--resume`` only the settings the user gave (by flag or in the file) are compared with the
checkpoint: a field marked ``resumable`` changes the rest of the run, any other must match.

A run whose steps cannot fit in the memory available (the model, the optimizer's moments, and the
gradients and activations of a batch: :func:`check_memory`) is refused in one line before step 1.

One run at a time writes into an --out-dir: the run holds its lock (``OUT_DIR/.npgpt.lock``,
:mod:`npgpt.locks`) from before it reads anything there until it ends, and a second run is refused
in one line naming the first (its pid, start time and command).

Under ``mpiexec -n N`` every rank checks its flags and files before the first collective and the
ranks agree on the outcome, so a usage error exits 2 everywhere; a failure after that ends the job.
"""
import logging
import os
import signal
import time
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from ..checks import UsageError
from ..io.checkpoint import build_model, check_same_corpus, read_checkpoint, tokenizer_from_checkpoint
from ..locks import folder_lock, hold_lock
from ..models.config import PRESETS, RECURRENT_PRESETS, GPTConfig, RecurrentConfig, option, options
from ..runtime.threads import StepThreads, parse_threads, threads_setting
from ..training import TrainConfig
from ..training.trainer import (
    SIGNAL_EXIT,
    EvaluationStopped,
    StopSignals,
    Trainer,
    TrainingDiverged,
    prepare_output_folder,
)
from . import config_file
from .flags import add, add_field, check_folder, command, flag

MODELS = ("gpt", "lstm", "gru", "rnn")
log = logging.getLogger(__name__)


def _threads(value: object) -> str | int:
    return parse_threads(value, "threads")


def _run_option(help: str, group: str, **limits) -> dict:
    """A field of :class:`RunSettings`: an :func:`~npgpt.models.config.option` and the ``--help`` group it shows in."""
    return {**option(help, **limits), "group": group}


@dataclass(frozen=True)
class RunSettings:
    """The settings of a run beside the model's and the loop's; each is a flag of ``npgpt train`` and a
    key of its ``--config`` file (this class only declares them: ``args`` holds the values)."""

    data: str = field(default="shakespeare", metadata=_run_option(
        "corpus: 'shakespeare' (Tiny Shakespeare: $NPGPT_DATA_DIR, the user cache, else a download; falls "
        "back to the built-in corpus offline), 'fallback' (built-in), or the path of any UTF-8 text file",
        "run", resumable=True))
    out_dir: str = field(default="runs/baby", metadata=_run_option(
        "where checkpoint, loss curve and sample go", "run", resumable=True))
    model: str = field(default=None, metadata=_run_option(
        "model family: gpt (decoder-only transformer), or a recurrent LM: lstm, gru, rnn (tanh); unset "
        "means gpt, or on --resume whatever the checkpoint holds", "model", choices=MODELS))
    preset: str = field(default="baby", metadata=_run_option(
        f"model shape to start from (recurrent models: {', '.join(sorted(RECURRENT_PRESETS))})", "model",
        choices=tuple(sorted(PRESETS))))
    dtype: str = field(default="float32", metadata=_run_option("parameter dtype", "model",
                                                               choices=("float32", "float64")))
    grad_accum: int = field(default=1, metadata=_run_option(
        "gradient accumulation: micro-steps summed before each optimizer step; each rank runs "
        "batch-size / (ranks x grad-accum) sequences per micro-step", "training", low=1, resumable=True))
    zero: int = field(default=0, metadata=_run_option(
        "ZeRO stage: 1 shards AdamW's moments over the MPI ranks (each keeps 1/ranks of them); 0 keeps "
        "them whole on every rank", "training", choices=(0, 1), resumable=True))
    final_eval_iters: int = field(default=400, metadata=_run_option(
        "batches per split for the final summary line", "output", low=1, resumable=True))
    sample_tokens: int = field(default=300, metadata=_run_option(
        "characters to generate at the end (0: none)", "output", low=0, resumable=True))
    threads: str = field(default=None, metadata={**_run_option(
        "threads per step: 'auto' adapts when other programs share the CPU (drops to fewer threads, "
        "returns when the cores are free), N fixes them (default: $NPGPT_THREADS, else auto)", "output",
        resumable=True), "parse": _threads})


RUN_FIELDS = options(RunSettings)
GPT_FIELDS, RECURRENT_FIELDS, TRAIN_FIELDS = options(GPTConfig), options(RecurrentConfig), options(TrainConfig)
MODEL_FIELDS = {**GPT_FIELDS, **{name: f for name, f in RECURRENT_FIELDS.items() if name not in GPT_FIELDS}}
SETTINGS = {**RUN_FIELDS, **MODEL_FIELDS, **TRAIN_FIELDS}      # every key of a --config file


# ----------------------------------------------------------------------------- flags
def register(subparsers) -> None:
    p = command(subparsers, "train", help="train a GPT (or an LSTM, GRU, RNN) on a text corpus, then sample from it",
                description="Train a character-level GPT, or a recurrent language model with --model, evaluate "
                            "it, save checkpoints, and print a sample. Defaults are nanoGPT's CPU recipe "
                            "(preset 'baby'). Every setting is also a key of a --config file.")
    groups = {"run": p.add_argument_group("run"),
              "model": p.add_argument_group("model (GPTConfig, RecurrentConfig: each flag overrides the preset)"),
              "training": p.add_argument_group("training (TrainConfig)"),
              "output": p.add_argument_group("evaluation and output")}
    run, model, training, output = groups.values()
    add(run, "--resume", action="store_true", default=False, help="continue from OUT_DIR/ckpt.npz")
    add(run, "--force", action="store_true", default=False,
        help="start a new run even if OUT_DIR already holds a checkpoint, replacing it at the first save "
             "(without --force or --resume, such a folder is refused)")
    add(run, "--config", metavar="FILE", help="read settings from this TOML file, one 'key = value' per flag "
                                              "without its dashes (n_embd = 128); flags given beside it win")
    add(run, "--print-config", action="store_true", default=False,
        help="print the resolved settings as a TOML file for --config, and stop without training")
    for name in ("data", "out_dir"):
        add_field(run, name, RUN_FIELDS[name])
    for name in ("model", "preset"):
        add_field(model, name, RUN_FIELDS[name])
    for name in MODEL_FIELDS:
        add_field(model, name, MODEL_FIELDS[name], help=model_help(name), default=None)
    for name, f in TRAIN_FIELDS.items():
        add_field(training, name, f)
    for name, f in RUN_FIELDS.items():
        if f.metadata["group"] != "run" and name not in ("model", "preset"):
            add_field(groups[f.metadata["group"]], name, f)
    add(output, "--no-progress", action="store_true", default=False, help="no progress bar")
    p.set_defaults(run=run_command)


def model_help(name: str) -> str:
    """The help of a model flag: the GPT's and the recurrent models' meaning of the field."""
    gpt, recurrent = GPT_FIELDS.get(name), RECURRENT_FIELDS.get(name)
    if gpt and recurrent:
        a, b = gpt.metadata["help"], recurrent.metadata["help"]
        text = a if a == b else f"{a} (gpt); {b} (lstm, gru, rnn)"
    else:
        text = f"{gpt.metadata['help']} (gpt only)" if gpt else f"{recurrent.metadata['help']} (lstm, gru, rnn only)"
    return text + " (default: the preset's)"


def where(args, name: str) -> str:
    """How the user gave the setting ``name``: its flag, or its key in the --config file."""
    source = args.sources.get(name, "flag")
    return flag(name) if source == "flag" else f"{name} (in {source})"


def apply_config_file(args) -> None:
    """Settings from ``--config`` for every flag not written on the command line; ``args.sources``
    names where each setting the user gave came from ("flag" or the file)."""
    args.sources = {name: "flag" for name in args.given}
    if args.config is None:
        return
    for name, value in config_file.read(args.config, SETTINGS).items():
        if name not in args.given:
            setattr(args, name, value)
            args.sources[name] = args.config


# ----------------------------------------------------------------------------- the command
def run_command(args) -> int:
    """Train on one process, or on every rank of ``mpiexec -n N`` (npgpt.training.distributed)."""
    from ..training import distributed

    apply_config_file(args)
    check_folder("--out-dir", args.out_dir)
    if args.resume and args.force:
        raise UsageError("--resume continues the checkpoint in --out-dir and --force replaces it: give one of them")
    args.threads = args.threads or threads_setting()       # --threads, else NPGPT_THREADS, checked now
    ranks = distributed.launched_size()
    if not args.resume or "batch_size" in args.sources:     # on --resume, else the checkpoint's, checked then
        check_split(args, args.batch_size, ranks)
    check_zero(args, ranks)
    if args.print_config:
        if distributed.launched_rank() == 0:      # under mpiexec, once
            print(config_file.to_toml(resolved(args)), end="")
        return 0
    comm = args.comm = distributed.world()
    say = log.info if comm.rank == 0 else (lambda *a, **k: None)
    with ExitStack() as held:          # --out-dir's lock, held until the run ends
        error = None
        try:
            trainer, ckpt, out_dir, tokenizer, corpus = setup_training(args, comm, say, held)
            trainer.threads = args.threads
        except Exception as e:             # a usage error, or a bug: either way no rank may wait for this one
            error = e
        distributed.agree(comm, error)
        args.after_agreement = True
        return train_and_report(args, comm, say, trainer, ckpt, out_dir, tokenizer, corpus)


def check_split(args, batch_size: int, ranks: int) -> None:
    """The global batch must split into whole micro-batches over the ranks and micro-steps."""
    if batch_size % (ranks * args.grad_accum):
        raise UsageError(f"{where(args, 'batch_size')} {batch_size} (the global batch) must be divisible by "
                         f"ranks x --grad-accum = {ranks} x {args.grad_accum} = {ranks * args.grad_accum}")


def check_zero(args, ranks: int) -> None:
    if args.zero and ranks == 1:
        raise UsageError("--zero 1 shards the optimizer's state over the ranks, but this run has 1 rank: "
                         "start it with mpiexec -n N (N >= 2), or leave --zero out")
    if args.zero and args.optimizer != "adamw":
        raise UsageError(f"--zero 1 shards AdamW's moments; --optimizer {args.optimizer} has none to shard "
                         f"(use --optimizer adamw, or leave --zero out)")


def train_and_report(args, comm, say, trainer, ckpt, out_dir, tokenizer, corpus) -> int:
    model = trainer.model
    say(f"model: {type(model).__name__}, {model.num_params():,} parameters, {model.config}")
    if parallel(args, comm):
        say(f"data parallel: {comm.size} rank(s) x {args.grad_accum} micro-step(s) of "
            f"{trainer.micro_batch} sequences = global batch {trainer.config.batch_size}"
            + (f"; ZeRO-1: each rank keeps {trainer.optimizer.state_bytes():,} bytes of AdamW's moments "
               f"(1/{comm.size} of them)" if args.zero else ""))
    progress = not (args.no_progress or args.quiet)
    start = time.perf_counter()
    trainer.train(checkpoint_path=ckpt, progress=progress, log=log.info)
    wall = time.perf_counter() - start
    if trainer.stopped_by is not None:
        return SIGNAL_EXIT[trainer.stopped_by]
    try:       # what the last steps ran fastest on; a signal ends it at a batch, on every rank at once
        with StepThreads(trainer.last_thread_count or trainer.threads), StopSignals() as stop:
            final = trainer.evaluate(args.final_eval_iters, progress=progress, stop=stop)
    except EvaluationStopped as e:
        say(f"{signal.Signals(e.signum).name}: stopped during the final evaluation; the checkpoint of step "
            f"{trainer.saved_step} is saved in {ckpt}")
        return SIGNAL_EXIT[e.signum]
    args.after_agreement = False       # no collective follows: a rank failing from here need not end the others
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
        log.warning(fallback_banner(corpus, "trained on"))
    return 0


def fallback_banner(corpus, what: str) -> str:
    """Lines that say loudly that Tiny Shakespeare was asked for and the built-in corpus used."""
    from ..text.corpus import how_to_get_tinyshakespeare
    return (f"NOTE: {what} the built-in fallback corpus ({len(corpus.text):,} characters), NOT Tiny Shakespeare. "
            f"{corpus.fallback_reason}.\n"
            f"      The README's numbers are for Tiny Shakespeare and will not match. To use it, "
            f"{how_to_get_tinyshakespeare()} (--data PATH).")


def parallel(args, comm) -> bool:
    """Whether the run needs the data-parallel trainer (more than one rank or micro-step); a plain
    run keeps the plain :class:`Trainer`, bit for bit."""
    return comm.size > 1 or args.grad_accum > 1


def save_loss_curve(history: dict, path: Path) -> None:
    from ..plots.figures import plot_loss_curve
    plot_loss_curve(history, path=path)


# ----------------------------------------------------------------------------- a new run or a resumed one
def setup_training(args, comm, say, held: ExitStack):
    """(trainer, checkpoint path, out dir, tokenizer, corpus) for ``args``: a new run or a resumed one.
    Rank 0, which alone writes into --out-dir, enters its lock into ``held`` before reading anything
    there: a second run into the folder is refused before it can touch the first one's files."""
    from ..text import load_corpus
    from ..training import Dataset
    from ..training.distributed import DataParallelTrainer

    out_dir = Path(args.out_dir)
    ckpt = out_dir / "ckpt.npz"
    if out_dir.exists() and not out_dir.is_dir():
        raise UsageError(f"--out-dir {out_dir} is a file, expected a folder")
    if comm.rank == 0:
        prepare_output_folder(out_dir)
        held.enter_context(hold_lock(folder_lock(out_dir), f"--out-dir {out_dir}"))
    if not args.resume and not args.force and ckpt.exists():
        raise UsageError(f"--out-dir {out_dir} already holds a checkpoint ({ckpt}); continue it with --resume, "
                         f"replace it with --force, or choose another --out-dir")
    corpus = load_corpus(args.data)
    text = corpus.text
    if corpus.fell_back:
        if comm.rank == 0:
            log.warning(fallback_banner(corpus, "training on"))
    else:
        say(f"corpus: {corpus.description}, {len(text):,} characters")
    if args.resume:
        meta, _ = read_checkpoint(ckpt)
        check_same_corpus(ckpt, meta, corpus)
        tokenizer = tokenizer_from_checkpoint(ckpt, meta)
        unknown = sorted(set(text) - set(tokenizer.chars))
        if unknown:
            shown = ", ".join(repr(ch) for ch in unknown[:5]) + (" ..." if len(unknown) > 5 else "")
            raise UsageError(f"--data {args.data} is not the corpus {ckpt} was trained on: it has {len(unknown)} "
                             f"characters the checkpoint's tokenizer does not know ({shown}); resume with the "
                             f"same --data")
        changes = resume_changes(args, meta, ckpt)
        check_split(args, changes.get("batch_size", (None, meta["train_config"]["batch_size"]))[1], comm.size)
        data = Dataset(text, tokenizer, source=corpus.source)
        check_fits(args, data, meta["model_config"].block_size)
        overrides = {k: new for k, (_, new) in changes.items()}
        trainer = (DataParallelTrainer.from_checkpoint(ckpt, data, tokenizer, comm, args.grad_accum, args.zero,
                                                       **overrides)
                   if parallel(args, comm) else Trainer.from_checkpoint(ckpt, data, tokenizer, **overrides))
        check_memory(args, trainer, comm.size)
        say(f"resuming from {ckpt} at step {trainer.step}")
        for name, (old, new) in changes.items():
            say(f"  {where(args, name)} {new} for the rest of the run (the checkpoint had {old})")
    else:
        data = Dataset(text, source=corpus.source)
        tokenizer = data.tokenizer
        config = model_config(args, args.model or "gpt", data.vocab_size)
        check_fits(args, data, config.block_size)
        model = build_model(config, seed=args.seed, dtype=np.dtype(args.dtype))
        config = train_config(args)
        trainer = (DataParallelTrainer(model, data, config, tokenizer, comm=comm, grad_accum=args.grad_accum,
                                       zero=args.zero)
                   if parallel(args, comm) else Trainer(model, data, config, tokenizer))
    check_memory(args, trainer, comm.size)
    return trainer, ckpt, out_dir, tokenizer, corpus


# Bytes per token and layer, in units of the state width, that a recurrent step keeps or briefly holds
# (gates before and after their nonlinearities, their gradients, the states and their gradients): a
# generous count, as no byte-exact prediction exists for those models (allocation/costs.py: GPT only).
RECURRENT_NUMBERS_PER_WIDTH = 16


def check_memory(args, trainer: Trainer, ranks: int) -> None:
    """Refuse, before step 1, a run whose steps do not fit in memory (one line: what it needs, what
    there is). The model and the optimizer's moments are allocated by now; the rest of a step is the
    gradients and the activations of a batch. The evaluations run the model on whole global batches
    (each rank), so the activations are counted at ``batch_size`` sequences even with micro-steps;
    ranks sharing this machine each need as much."""
    from ..runtime.memory import require_memory
    from ..runtime.ranks import local_ranks
    c, T = trainer.config, trainer.block_size
    here = local_ranks(os.environ) if ranks > 1 else 1
    given = (f"{where(args, 'batch_size')} {c.batch_size}" if "batch_size" in args.sources
             else f"batch_size {c.batch_size} (the checkpoint's)" if args.resume else f"--batch-size {c.batch_size}")
    on = f", on each of the {here} ranks on this machine" if here > 1 else ""
    require_memory(here * step_bytes(trainer.model, c.batch_size, T, c.optimizer),
                   f"training at {given} ({c.batch_size:,} sequences of {T} tokens{on})")


def step_bytes(model, batch_size: int, block_size: int, optimizer: str) -> int:
    """What a training step allocates beyond the parameters and the optimizer's state: a GPT's by
    :func:`npgpt.allocation.costs.training_memory` (byte for byte what its caches hold), another
    model's by a conservative count of its gradients, activations and logits."""
    from ..allocation.costs import training_memory
    config, s = model.config, np.dtype(model.dtype).itemsize
    if isinstance(config, GPTConfig):
        held = ("parameters", "position table (constant)", "optimizer state")
        parts = training_memory(config, batch_size, block_size, model.dtype, optimizer).by_part
        return sum(n for part, n in parts.items() if part not in held)
    width = max(config.n_embd, getattr(config, "n_hidden", config.n_embd))
    per_token = s * (config.n_layer * RECURRENT_NUMBERS_PER_WIDTH * width + 3 * config.vocab_size) + 3 * 8
    return model.num_params() * s + batch_size * block_size * per_token


def check_fits(args, data, block_size: int) -> None:
    """Each split of the corpus must hold one sequence of ``block_size`` + 1 tokens."""
    for split in ("train", "val"):
        n = len(data.split(split))
        if n < block_size + 1:
            raise UsageError(f"--data {args.data}: the {split} split has {n} tokens, too few for "
                             f"block_size={block_size} (a batch needs block_size + 1 = {block_size + 1}): use a "
                             f"longer corpus or a smaller {where(args, 'block_size')}")


def train_config(args) -> TrainConfig:
    return TrainConfig(**{name: getattr(args, name) for name in TRAIN_FIELDS})


def model_config(args, kind: str, vocab_size: int | None = None) -> GPTConfig | RecurrentConfig:
    """The model's config: the preset, with the model settings the user gave (``vocab_size``: the
    corpus's; None keeps the preset's)."""
    fields = check_family(args, kind)
    overrides = {name: getattr(args, name) for name in fields if getattr(args, name) is not None}
    if vocab_size is not None:
        overrides["vocab_size"] = vocab_size
    if kind == "gpt":
        return GPTConfig.preset(args.preset, **overrides)
    return RecurrentConfig.preset(check_recurrent_preset(args), cell=kind, **overrides)


def check_recurrent_preset(args) -> str:
    if args.preset not in RECURRENT_PRESETS:
        raise UsageError(f"{where(args, 'preset')} {args.preset} is a GPT shape; recurrent models have "
                         f"{', '.join(sorted(RECURRENT_PRESETS))}")
    return args.preset


def check_family(args, kind: str) -> dict:
    """The model fields of ``kind`` ("gpt", "lstm", ...); a UsageError naming each model setting the
    user gave that the other family has."""
    fields = GPT_FIELDS if kind == "gpt" else RECURRENT_FIELDS
    foreign = [where(args, name) for name in MODEL_FIELDS if name not in fields and getattr(args, name) is not None]
    if not foreign:
        return fields
    takes = [flag(name) for name in fields]
    takes = f"{', '.join(takes[:-1])} and {takes[-1]}"
    one = len(foreign) == 1
    if kind == "gpt":
        raise UsageError(f"{', '.join(foreign)} {'is an option' if one else 'are options'} of the recurrent "
                         f"models (--model lstm, gru or rnn); a GPT takes {takes}")
    raise UsageError(f"{', '.join(foreign)} {'is a GPT option' if one else 'are GPT options'}; a recurrent "
                     f"model (--model {kind}) takes {takes}")


def checkpoint_model_kind(meta: dict) -> str:
    """"gpt", or the recurrent cell ("lstm", "gru", "rnn") of a checkpoint's model."""
    return getattr(meta["model_config"], "cell", "gpt")


def resume_changes(args, meta: dict, ckpt: Path) -> dict[str, tuple]:
    """{setting: (the checkpoint's value, the new one)} for the resumable settings the user gave that
    differ from the checkpoint; a UsageError naming each setting given that would change the model,
    its optimizer state or the random streams (and only those)."""
    kind = checkpoint_model_kind(meta)
    if args.model is not None and args.model != kind:
        raise UsageError(f"{where(args, 'model')} {args.model} does not match {ckpt}, whose model is {kind}; "
                         f"pass --model {kind} or leave --model out to resume it")
    fields = check_family(args, kind)
    saved_model, saved_train = meta["model_config"], meta["train_config"]
    refused, changes = [], {}
    compared = [(name, f, getattr(saved_model, name)) for name, f in fields.items()]
    compared += [(name, f, saved_train.get(name)) for name, f in TRAIN_FIELDS.items()]
    compared += [("dtype", RUN_FIELDS["dtype"], meta["dtype"])]
    for name, f, theirs in compared:
        mine = getattr(args, name)
        if name not in args.sources or mine == theirs:
            continue
        if f.metadata["resumable"]:
            changes[name] = (theirs, mine)
        else:
            refused.append(f"{where(args, name)} {mine} (the checkpoint has {theirs})")
    if "preset" in args.sources:
        refused += preset_differences(args, kind, fields, saved_model)
    if refused:
        raise UsageError("--resume continues the checkpoint's model, optimizer and random streams, which "
                         "these would change: " + "; ".join(refused)
                         + ". Leave them out, or start a new run in another --out-dir")
    return changes


def preset_differences(args, kind: str, fields: dict, saved) -> list[str]:
    """The given preset's shape where the checkpoint's differs (fields set separately left out)."""
    preset = (PRESETS if kind == "gpt" else RECURRENT_PRESETS).get(
        args.preset if kind == "gpt" else check_recurrent_preset(args))
    differ = [name for name, f in fields.items() if name not in args.sources and not f.metadata["resumable"]
              and getattr(preset, name) != getattr(saved, name)]
    if not differ:
        return []
    return [f"{where(args, 'preset')} {args.preset} ({', '.join(f'{n} {getattr(preset, n)}' for n in differ)}; "
            f"the checkpoint has {', '.join(f'{n} {getattr(saved, n)}' for n in differ)})"]


# ----------------------------------------------------------------------------- --print-config
def resolved(args) -> list[tuple[str, dict]]:
    """The settings the run would use, as :func:`npgpt.cli.config_file.to_toml` sections: the run's, the
    model's (every field, the preset's included) and the loop's."""
    if args.resume:
        ckpt = Path(args.out_dir) / "ckpt.npz"
        meta, _ = read_checkpoint(ckpt)
        changes = {name: new for name, (_, new) in resume_changes(args, meta, ckpt).items()}
        kind, dtype, preset = checkpoint_model_kind(meta), meta["dtype"], None
        model = replace(meta["model_config"], **{k: v for k, v in changes.items() if k in MODEL_FIELDS})
        train = TrainConfig.from_dict({**meta["train_config"],
                                       **{k: v for k, v in changes.items() if k in TRAIN_FIELDS}})
    else:
        kind, dtype, preset = args.model or "gpt", args.dtype, args.preset
        model, train = model_config(args, kind), train_config(args)
    run = {name: getattr(args, name) for name in RUN_FIELDS}
    run.update(model=kind, preset=preset, dtype=dtype)
    fields = GPT_FIELDS if kind == "gpt" else RECURRENT_FIELDS
    train = asdict(train)
    return [("the run (RunSettings in npgpt/cli/train.py)", run),
            (f"the model ({type(model).__name__}; the preset's values, or the ones given)",
             {name: getattr(model, name) for name in fields}),
            ("the training loop (TrainConfig)", {name: train[name] for name in TRAIN_FIELDS})]
