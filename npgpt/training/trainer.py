r"""The training loop (document section 4.3: minimise the next-token NLL).

One step: draw a batch, forward to the loss, backward to the gradients, clip their global norm,
set the learning rate from the schedule, and let the optimizer update the parameters:

$$\theta \leftarrow \mathrm{AdamW}\big(\theta,\ \mathrm{clip}(\nabla_\theta L),\ \eta(t)\big)$$

Every few steps the model is evaluated: the mean loss over a fixed set of train and val batches
(drawn from their own seeded generator, so every evaluation scores the same batches and the
training batches are not disturbed). Checkpoints hold everything needed to continue exactly:
parameters, optimizer moments, step, configs, tokenizer, loss history and the random generators'
states; resuming reproduces the losses of an uninterrupted run bit for bit.

A run guards the work it has done:

- everything that can be checked before step 1 is (splits long enough for a batch, the checkpoint's
  folder creatable and writable, room on the disk for a checkpoint, with margin);
- a checkpoint is written only when the losses and every parameter are finite: a divergence (a NaN
  or infinite loss or gradient, in training or evaluation) stops the run naming the step and keeps
  the last good checkpoint;
- Ctrl-C (SIGINT) and SIGTERM stop the run at the next step boundary and save a checkpoint there,
  so the saved state never mixes a half-updated step; a second signal stops it at once (the
  atomic writer leaves the previous checkpoint intact);
- one run at a time writes a checkpoint: a run holds its lock (``<checkpoint>.lock``,
  :mod:`npgpt.locks`), and a second run into it is refused before step 1;
- temporary files left by a save that was killed are removed at the next start, under that lock
  (so never a live run's).

The steps run on as many threads as are fastest now (:mod:`npgpt.runtime.threads`): when another program
takes a core, the loop drops to fewer threads and returns when the core is free; the progress bar
says so. ``threads=N`` (or ``NPGPT_THREADS=N``) fixes the count.
"""
import math
import os
import shutil
import signal
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import asdict, replace
from types import FrameType
from typing import Any, Protocol, Self, cast

import numpy as np
from numpy.typing import ArrayLike
from tqdm import tqdm  # plain: tqdm.auto warns in notebooks without ipywidgets

from ..checks import UsageError, check_int
from ..io.checkpoint import (
    CHECKPOINT_FORMAT,
    OPTIMIZER_BUFFERS,
    model_from_checkpoint,
    read_checkpoint,
    temporary_files,
    write_checkpoint,
)
from ..locks import hold_lock
from ..runtime.process import configure
from ..runtime.threads import StepThreads, parse_threads
from .config import TrainConfig
from .optim import SGD, AdamW, clip_grad_norm, global_norm, lr_schedule

FIRST_STEP_NOTE_S = 2.0  # a first step slower than this gets a line saying why
DISK_MARGIN = 2          # a save needs room for the new checkpoint beside the old one
SIGNAL_EXIT = {signal.SIGINT: 130, signal.SIGTERM: 143}     # 128 + the signal number, as shells do
TRAINER_CALLS = ("forward", "backward", "evaluating")   # the methods of TrainableModel
# Where a checkpoint goes (a file name or a path).
CheckpointPath = str | os.PathLike[str]


# --------------------------------------------------------------------------- what the Trainer asks
class TrainableModel(Protocol):
    """What the :class:`Trainer` asks of a model, and nothing else (its docstring says why each):
    ``params``, ``forward(x, y)`` -> (output, mean loss), ``backward()`` -> the gradients keyed as
    ``params``, and ``evaluating()``. A checkpoint also reads :func:`checkpoint_state`."""

    @property
    def params(self) -> dict[str, np.ndarray]: ...
    def forward(self, x: np.ndarray, y: np.ndarray, /) -> tuple[Any, float]: ...
    def backward(self) -> dict[str, np.ndarray]: ...
    def evaluating(self) -> AbstractContextManager[object]: ...


class IgnoreIndexModel(TrainableModel, Protocol):
    """A model the Trainer pairs with data that names an ``ignore_index`` (targets not scored)."""

    def forward(self, x: np.ndarray, y: np.ndarray, /, ignore_index: int | None = None) -> tuple[Any, float]: ...


class BatchSource(Protocol):
    """What the :class:`Trainer` asks of its data: ``get_batch(split, batch_size, block_size, rng)``
    -> (x, y). The optional rest (``split``, ``source``, ``ignore_index``, ``block_size``) is read
    when present: the Trainer's docstring."""

    def get_batch(self, split: str, batch_size: int, block_size: int, rng: np.random.Generator, /
                  ) -> tuple[np.ndarray, np.ndarray]: ...


class SavedTokenizer(Protocol):
    """A tokenizer a checkpoint stores (``python -m npgpt sample`` decodes with it)."""

    def to_json(self) -> str: ...


class TrainingDiverged(RuntimeError):
    """The loss or a gradient became NaN or infinite; the message names the step."""

    kept: str    # set by Trainer.train when a checkpoint of an earlier step is kept (absent otherwise)


class CheckpointNotSaved(RuntimeError):
    """A checkpoint could not be written (disk full, permissions); the previous one is intact."""


class Interrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM outside a training loop (:func:`interrupts`); ``signum`` says which, so
    the command line exits 130 or 143 (:data:`SIGNAL_EXIT`). A KeyboardInterrupt: whatever cleans
    up after Ctrl-C (the atomic writer removing its temporary file) cleans up after SIGTERM too."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


class EvaluationStopped(Interrupted):
    """A signal ended :meth:`Trainer.evaluate` early (every rank of a data-parallel run, agreed)."""


class StopSignals:
    """``with StopSignals() as stop:`` turns SIGINT and SIGTERM into a request, ``stop.signal``,
    that the loop honours at its next step boundary; a second signal of either kind interrupts at
    once. Outside the main thread (where Python cannot set handlers) it does nothing."""

    def __init__(self) -> None:
        self.signal: int | None = None
        self._previous: dict[int, Any] = {}       # signal -> the handler it had

    def _request(self, signum: int, frame: FrameType | None) -> None:
        if self.signal is not None:
            raise Interrupted(signum)       # a KeyboardInterrupt that knows its signal (exit 130 or 143)
        self.signal = signum

    def __enter__(self) -> Self:
        if threading.current_thread() is threading.main_thread():
            for signum in SIGNAL_EXIT:
                self._previous[signum] = signal.signal(signum, self._request)
        return self

    def __exit__(self, *exc: object) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)


@contextmanager
def interrupts() -> Iterator[None]:
    """For the block, SIGINT and SIGTERM raise :class:`Interrupted` where the program is (SIGTERM
    would otherwise end the process at once, with no message, exit status -15, and no cleanup). A
    training loop inside sets its own handlers (:class:`StopSignals`) and restores these. Outside
    the main thread it does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum: int, frame: FrameType | None) -> None:
        raise Interrupted(signum)

    previous = {signum: signal.signal(signum, interrupt) for signum in SIGNAL_EXIT}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


class Trainer:
    """Trains ``model`` on ``data`` with the settings of ``config`` (a :class:`TrainConfig`).

    What it asks of ``model``, and nothing else (in types: :class:`TrainableModel`):

    - ``params``: name -> array, updated in place;
    - ``forward(x, y)`` -> (output, mean loss) and ``backward()`` -> the gradients of that loss,
      keyed as ``params``;
    - ``evaluating()``: evaluation mode for a block (:meth:`npgpt.models.base.Model.evaluating`);
    - for checkpoints, what to record beside the parameters (:func:`checkpoint_state`).

    What it asks of ``data`` (:class:`BatchSource`): ``get_batch(split, batch_size, block_size, rng)``
    -> (x, y); and, when the data has them, ``split(name)`` (a split's ids, checked long enough
    before step 1), ``source`` (where the text came from, recorded in checkpoints), ``ignore_index``
    (a target value the loss skips, such as a prompt's positions and padding: the model then gets
    ``forward(x, y, ignore_index=...)``) and ``block_size``.

    ``block_size``, the positions of one sequence, is the argument when given, else the data's,
    else the context of the language model (``model.config.block_size``, as npgpt's have). The
    dtype is the parameters'. ``tokenizer`` (optional, with ``to_json()``/``from_json()``) is stored
    in checkpoints so that ``python -m npgpt sample`` can decode without the corpus. ``masks``
    (optional, parameter name -> bool array, True = kept) multiply the gradients before every
    update, so pruned weights stay zero (npgpt.allocation.prune); they are saved in checkpoints and
    restored on resume. ``threads`` is "auto" (adapt to the machine's load), a fixed count, or None
    (``NPGPT_THREADS``, else "auto").
    """

    def __init__(self, model: TrainableModel, data: BatchSource, config: TrainConfig | None = None,
                 tokenizer: SavedTokenizer | None = None, masks: Mapping[str, np.ndarray] | None = None,
                 threads: int | str | None = None, block_size: int | None = None) -> None:
        check_trainable(model)
        self.model, self.data, self.tokenizer = model, data, tokenizer
        self.block_size = sequence_length(model, data, block_size)
        self.threads: int | str | None = None if threads is None else parse_threads(threads, "threads")
        self.last_thread_count: int | None = None     # the thread count the last train() ended on
        self.masks = {} if masks is None else self._check_masks(masks)
        self.config = config or TrainConfig()
        c = self.config
        self.optimizer: AdamW | SGD = (
            AdamW(model.params, lr=c.lr, betas=(c.beta1, c.beta2), weight_decay=c.weight_decay)
            if c.optimizer == "adamw"
            else SGD(model.params, lr=c.lr, momentum=c.momentum, weight_decay=c.weight_decay))
        self.batch_rng = np.random.default_rng([c.seed, 0])
        self.step = 0
        self.stopped_by: int | None = None     # the signal that stopped the last train(), if any
        self.saved_step: int | None = None     # the step of the last checkpoint this trainer wrote
        self.history: dict[str, list[float]] = {     # the steps' lists hold ints
            "step": [], "train_loss": [], "lr": [], "eval_step": [], "eval_train": [], "eval_val": []}

    def _check_masks(self, masks: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        params = self.model.params
        bad = [name for name, m in masks.items()
               if name not in params or np.shape(m) != params[name].shape or np.asarray(m).dtype != bool]
        if bad:
            raise UsageError(f"masks must be bool arrays shaped like the parameters they name; these are "
                             f"not: {bad}")
        return dict(masks)

    # ------------------------------------------------------------------ one step
    def learning_rate(self, step: int) -> float:
        c = self.config
        return lr_schedule(step, c.lr, c.min_lr, c.warmup_iters, c.max_iters)

    def train_step(self) -> float:
        """One optimisation step; returns the batch loss before the update. A NaN or infinite loss
        or gradient raises :class:`TrainingDiverged` before anything is updated."""
        c = self.config
        loss, grads = self._loss_and_grads()
        for name, mask in self.masks.items():
            grads[name] *= mask                       # a pruned weight gets no update
        norm = clip_grad_norm(grads, c.grad_clip) if c.grad_clip > 0 else global_norm(grads)
        if not math.isfinite(norm):
            raise TrainingDiverged(f"a gradient became {norm} at step {self.step + 1}; lower the "
                                   f"learning rate (lr={c.lr}) or keep gradient clipping on")
        lr = self.learning_rate(self.step)
        self.optimizer.step(grads, lr=lr)
        self.step += 1
        self.history["step"].append(self.step)
        self.history["train_loss"].append(loss)
        self.history["lr"].append(lr)
        return loss

    def _loss_and_grads(self) -> tuple[float, dict[str, np.ndarray]]:
        """The loss of one batch and its gradients (the part of a step that data-parallel training
        replaces, npgpt.training.distributed); a non-finite loss raises before the backward."""
        c = self.config
        x, y = self.data.get_batch("train", c.batch_size, self.block_size, self.batch_rng)
        _, loss = self._forward(x, y)
        if not np.isfinite(loss):
            raise TrainingDiverged(f"the training loss became {loss} at step {self.step + 1}; lower the "
                                   f"learning rate (lr={c.lr}) or keep gradient clipping on")
        return loss, self.model.backward()

    def _forward(self, x: np.ndarray, y: np.ndarray) -> tuple[Any, float]:
        """(output, loss) of the model on one batch; the targets equal to the data's ``ignore_index``,
        if it names one, are not scored."""
        ignore_index = getattr(self.data, "ignore_index", None)
        if ignore_index is None:
            return self.model.forward(x, y)
        return cast(IgnoreIndexModel, self.model).forward(x, y, ignore_index=ignore_index)

    def _stop_signal(self, stop: StopSignals) -> int | None:
        """The signal that asks the loop to stop at this step boundary, or None."""
        return stop.signal

    def evaluate(self, n_batches: int | None = None, progress: bool = False,
                 stop: StopSignals | None = None) -> dict[str, float]:
        """Mean loss over the same ``n_batches`` batches of each split every time (eval mode).
        ``progress`` shows a bar (a final evaluation of hundreds of batches takes a while).
        ``stop``, a :class:`StopSignals` the caller entered: a signal it catches ends the evaluation
        at the next batch with :class:`EvaluationStopped` (on every rank of a data-parallel run)."""
        n_batches = self.config.eval_iters if n_batches is None else check_int("n_batches", n_batches)
        scored: dict[str, list[float]] = {}
        bar = tqdm(total=2 * n_batches, desc="evaluating", unit="batch", disable=not progress,
                   dynamic_ncols=True, leave=False)
        try:
            with self.model.evaluating():
                for split in ("train", "val"):
                    rng = np.random.default_rng([self.config.seed, 1, split == "val"])
                    scored[split] = []
                    for i in range(n_batches):      # every batch is drawn, so the generator's draws do not
                        if stop is not None and stop.signal is not None:
                            break
                        x, y = self.data.get_batch(split, self.config.batch_size, self.block_size, rng)
                        if self._scores_batch(i):   # depend on which batches this process scores
                            scored[split].append(self._forward(x, y)[1])
                        bar.update(1)
        finally:
            bar.close()
        return self._mean_losses(scored, n_batches, stop)

    def _scores_batch(self, i: int) -> bool:
        """Whether this process scores evaluation batch ``i`` (every one; data parallel: a share)."""
        return True

    def _mean_losses(self, scored: dict[str, list[float]], n_batches: int,
                     stop: StopSignals | None = None) -> dict[str, float]:
        """Split -> the mean of the ``n_batches`` losses of the split, from the losses scored here;
        :class:`EvaluationStopped` if ``stop`` caught a signal."""
        if stop is not None and stop.signal is not None:
            raise EvaluationStopped(stop.signal)
        return {split: float(np.mean(losses)) for split, losses in scored.items()}

    # ------------------------------------------------------------------ the loop
    def check_before_training(self, checkpoint_path: CheckpointPath | None = None) -> None:
        """Everything that can fail later and can be seen now: each split long enough for a batch,
        the checkpoint's folder creatable, a folder and writable, room for a checkpoint. Removes
        the temporary files of killed saves. Raises ValueError saying what is wrong."""
        block = self.block_size
        if hasattr(self.data, "split"):
            for split in ("train", "val"):
                n = len(self.data.split(split))
                if n < block + 1:
                    raise UsageError(f"the {split} split has {n} tokens, too few for block_size={block} "
                                     f"(a batch needs block_size + 1 = {block + 1}): use a longer corpus "
                                     f"or a smaller block_size")
        if checkpoint_path is None:
            return
        folder = prepare_output_folder(os.path.dirname(os.path.abspath(checkpoint_path)))
        if os.path.isdir(checkpoint_path):
            raise UsageError(f"the checkpoint path {checkpoint_path} is a folder")
        # Under the checkpoint's lock (held by train() already, else taken for this): a temporary file
        # is stale only if no live run is writing it, and the lock says none is.
        with hold_lock(checkpoint_lock(checkpoint_path), f"the checkpoint {checkpoint_path}"):
            for stale in temporary_files(checkpoint_path):
                os.remove(stale)
        # the parameters and, beside each, the optimizer's buffers (AdamW two, SGD one)
        needed = (DISK_MARGIN * sum(p.nbytes for p in self.model.params.values())
                  * (1 + len(OPTIMIZER_BUFFERS[self.config.optimizer])))
        free = shutil.disk_usage(folder).free
        if free < needed:
            raise UsageError(f"{folder} has {free / 1e6:.1f} MB free; a checkpoint needs about "
                             f"{needed / DISK_MARGIN / 1e6:.1f} MB (and room for the next one beside it)")

    def train(self, checkpoint_path: CheckpointPath | None = None, progress: bool = True,
              log: Callable[[str], object] = print) -> dict[str, list[float]]:
        """Run until ``max_iters``; evaluate every ``eval_interval`` steps and at the end, saving a
        checkpoint then (when ``checkpoint_path`` is set) if everything is finite.

        SIGINT (Ctrl-C) or SIGTERM stop the run at the next step boundary with a checkpoint saved
        there, and ``stopped_by`` names the signal. A divergence raises :class:`TrainingDiverged`
        naming the step; the last good checkpoint stays. Returns the history dict.
        """
        with self._hold_checkpoint(checkpoint_path):     # no other run writes it while this one trains
            self.check_before_training(checkpoint_path)
            try:
                with configure():    # npgpt's process settings for the loop (npgpt.runtime.process); thread counts restored
                    self._loop(checkpoint_path, progress, log)
            except TrainingDiverged as e:
                if checkpoint_path and self.saved_step is not None:
                    e.kept = f"the last good checkpoint, of step {self.saved_step}, is kept in {checkpoint_path}"
                raise
        return self.history

    def _hold_checkpoint(self, checkpoint_path: CheckpointPath | None) -> AbstractContextManager[object]:
        """The lock of ``checkpoint_path`` (:func:`checkpoint_lock`), held for a run; another run
        holding it is refused (:class:`npgpt.locks.RunInUse`). Its folder is checked and made first,
        so a folder that cannot be made is named as such, not as a lock that cannot be taken."""
        if checkpoint_path is None:
            return nullcontext()
        prepare_output_folder(os.path.dirname(os.path.abspath(checkpoint_path)))
        return hold_lock(checkpoint_lock(checkpoint_path), f"the checkpoint {checkpoint_path}")

    def _loop(self, checkpoint_path: CheckpointPath | None, progress: bool, log: Callable[[str], object]) -> None:
        self.stopped_by = None
        c = self.config
        tokens_per_step = c.batch_size * self.block_size
        bar: tqdm | None = None
        with StopSignals() as stop, StepThreads(self.threads) as threads:
            try:
                while self.step < c.max_iters and self._stop_signal(stop) is None:
                    t0 = time.perf_counter()
                    loss = self.train_step()
                    seconds = time.perf_counter() - t0
                    change = threads.record(seconds) if bar is not None else None   # not the compiling first step
                    if change:
                        say(bar, log, change.message())
                    if bar is None:      # made after the first step, whose compile time would skew the ETA
                        bar = tqdm(total=c.max_iters, initial=self.step, disable=not progress, unit="step",
                                   dynamic_ncols=True)
                        if seconds > FIRST_STEP_NOTE_S:
                            say(bar, log, f"first step: {seconds:.1f} s (numba compiles its kernels on first "
                                          f"use; the rate and ETA count from step {self.step + 1})")
                    else:
                        bar.update(1)
                    bar.set_postfix(loss=f"{loss:.4f}", lr=f"{self.history['lr'][-1]:.2e}",
                                    tok_s=f"{tokens_per_step / seconds:,.0f}", threads=threads.count,
                                    refresh=False)   # tqdm redraws on its own clock, not every step
                    if self.step % c.eval_interval == 0 or self.step == c.max_iters:
                        self._record_eval(log, bar)
                        if checkpoint_path:
                            self.save_checkpoint(checkpoint_path)
            finally:
                self.last_thread_count = threads.count
                if bar is not None:
                    bar.close()
            if stop.signal is not None:
                self.stopped_by = stop.signal
                name = signal.Signals(stop.signal).name
                if checkpoint_path:
                    self.save_checkpoint(checkpoint_path)
                    log(f"{name}: stopped at step {self.step}; checkpoint saved to {checkpoint_path}")
                else:
                    log(f"{name}: stopped at step {self.step}")

    def _record_eval(self, log: Callable[[str], object], bar: tqdm | None) -> None:
        losses = self.evaluate()
        if not all(math.isfinite(v) for v in losses.values()):
            raise TrainingDiverged(f"the evaluation at step {self.step} gave train loss {losses['train']}, "
                                   f"val loss {losses['val']}; lower the learning rate (lr={self.config.lr})")
        self.history["eval_step"].append(self.step)
        self.history["eval_train"].append(losses["train"])
        self.history["eval_val"].append(losses["val"])
        say(bar, log, f"step {self.step}: train loss {losses['train']:.4f}, val loss {losses['val']:.4f}")

    # ------------------------------------------------------------------ checkpoints
    def save_checkpoint(self, path: CheckpointPath) -> None:
        """Write everything needed to resume to an ``.npz``, atomically (temp file, then rename).
        A model with a NaN or infinite parameter is never saved (:class:`TrainingDiverged`); a
        failed write raises :class:`CheckpointNotSaved` and leaves the previous file intact."""
        self._write_checkpoint(path, self.optimizer.state_dict())

    def _write_checkpoint(self, path: CheckpointPath, optimizer_state: Mapping[str, ArrayLike]) -> None:
        bad = [name for name, p in self.model.params.items() if not np.isfinite(p).all()]
        if bad:
            raise TrainingDiverged(f"at step {self.step} the parameters {', '.join(bad[:3])} hold NaN or "
                                   f"infinite values; not saving them over {path}")
        arrays = {f"param/{k}": v for k, v in self.model.params.items()}
        arrays.update({f"optim/{k}": np.asarray(v) for k, v in optimizer_state.items()})
        arrays.update({f"history/{k}": np.asarray(v, dtype=np.float64) for k, v in self.history.items()})
        arrays.update({f"mask/{k}": m for k, m in self.masks.items()})
        model = checkpoint_state(self.model)
        meta: dict[str, Any] = {
            "format": CHECKPOINT_FORMAT,
            "step": self.step,
            "model_config": model["model_config"],
            "dtype": model["dtype"],
            "train_config": asdict(self.config),
            "batch_rng": self.batch_rng.bit_generator.state,
            "dropout_rng": model["dropout_rng"],
            "tokenizer": None if self.tokenizer is None else self.tokenizer.to_json(),
        }
        source = getattr(self.data, "source", None)
        if source is not None:
            meta["corpus"] = source
        try:
            write_checkpoint(path, meta, arrays)
        except OSError as e:
            raise CheckpointNotSaved(f"could not write the checkpoint {path} at step {self.step}: "
                                     f"{e.strerror or e}; the previous checkpoint is intact") from None
        self.saved_step = self.step

    @classmethod
    def from_checkpoint(cls, path: CheckpointPath, data: BatchSource, tokenizer: SavedTokenizer | None = None,
                        **overrides: Any) -> Self:
        """Rebuild model, optimizer and trainer state from ``path`` and continue with ``data``.

        ``overrides`` replace TrainConfig fields (for example a larger ``max_iters``), and
        ``dropout`` the model's dropout."""
        meta, arrays = read_checkpoint(path)
        model = model_from_checkpoint(path, meta, arrays)
        dropout = overrides.pop("dropout", None)
        if dropout is not None:
            set_dropout(model, dropout)
        config = TrainConfig.from_dict({**meta["train_config"], **overrides})
        masks = {k[len("mask/"):]: v for k, v in arrays.items() if k.startswith("mask/")}
        trainer = cls(model, data, config, tokenizer, masks)
        trainer.optimizer.load_state_dict(
            {k[len("optim/"):]: v for k, v in arrays.items() if k.startswith("optim/")})
        trainer.step = trainer.saved_step = meta["step"]
        trainer.batch_rng.bit_generator.state = meta["batch_rng"]
        model.dropout_rng.bit_generator.state = meta["dropout_rng"]
        for k in trainer.history:
            values = arrays.get(f"history/{k}", np.zeros(0))
            trainer.history[k] = [int(v) if "step" in k else float(v) for v in values]
        return trainer


def checkpoint_lock(path: CheckpointPath) -> str:
    """The lock file of a checkpoint (``<path>.lock``), held while a run writes it."""
    return os.fspath(path) + ".lock"


def prepare_output_folder(folder: str | os.PathLike[str]) -> str:
    """``folder``, made if missing; a UsageError if it is a file, cannot be made or is not writable."""
    folder = os.fspath(folder)
    if os.path.exists(folder) and not os.path.isdir(folder):
        raise UsageError(f"the output folder {folder} is a file, not a folder")
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as e:
        raise UsageError(f"cannot create the output folder {folder}: {e.strerror}") from None
    if not os.access(folder, os.W_OK | os.X_OK):
        raise UsageError(f"the output folder {folder} is not writable")
    return folder


def say(bar: tqdm | None, log: Callable[[str], object], message: str) -> None:
    """``message`` above the progress bar when one shows (tqdm redraws the bar below it), else to ``log``."""
    (bar.write if bar is not None and not bar.disable else log)(message)


def check_trainable(model: object) -> None:
    """Refuse, before anything runs, a model lacking a method the Trainer calls (a
    :class:`~npgpt.models.quantized.QuantizedGPT` runs forward only: it has no ``backward()``)."""
    missing = [f"{name}()" for name in TRAINER_CALLS if not callable(getattr(model, name, None))]
    if missing:
        raise UsageError(f"a {type(model).__name__} cannot be trained: it has no {' and no '.join(missing)}")


def sequence_length(model: Any, data: Any, block_size: int | None = None) -> int:
    """The positions of one training sequence: ``block_size`` when given, else the data's own
    ``block_size``, else the language model's context, ``model.config.block_size``."""
    if block_size is not None:
        return check_int("block_size", block_size)
    if getattr(data, "block_size", None) is not None:
        return check_int("data.block_size", data.block_size)
    config = getattr(model, "config", None)
    if config is None or not hasattr(config, "block_size"):
        raise UsageError(f"the Trainer needs the length of a sequence: pass block_size=, or give the data a "
                         f"block_size (a {type(model).__name__} has no config.block_size to read it from)")
    return config.block_size


def checkpoint_state(model: Any) -> dict[str, Any]:
    """What a checkpoint records of ``model`` beside its parameters, as the model itself says with
    its ``checkpoint_state()`` method: ``model_config`` (a dict that rebuilds it,
    :func:`npgpt.io.checkpoint.model_from_checkpoint`), ``dtype`` (the parameters') and
    ``dropout_rng`` (the dropout generator's state, so a resumed run draws the same masks).
    npgpt's language models have it (:meth:`npgpt.models.base.ConfiguredModel.checkpoint_state`);
    the :class:`~npgpt.allocation.distill.Distiller` gives its student's."""
    if not callable(getattr(model, "checkpoint_state", None)):
        raise UsageError(f"a {type(model).__name__} cannot be saved in a checkpoint: it has no "
                         f"checkpoint_state() saying what rebuilds it")
    return model.checkpoint_state()


def set_dropout(model: Any, p: float) -> None:
    """Give ``model`` (a GPT or a recurrent LM) the dropout probability ``p`` from now on."""
    model.config = replace(model.config, dropout=p)
    if hasattr(model, "rnn"):
        model.rnn.dropout = model.config.dropout
