r"""A copy / reverse task: the smallest sequence-to-sequence problem that shows an encoder-decoder learns.

The source is ``seq_len`` random digits; the target is the same digits (``task="copy"``) or reversed
(``task="reverse"``). The decoder reads the target shifted right behind a BOS token and predicts
each next digit (teacher forcing):

    src      3 1 4 1 5 9
    tgt_in   B 9 5 1 4 1        (B = bos_id)
    targets  9 5 1 4 1 3

A model that only guesses gets 10% of the digits right; one that learned the task writes the reversed
sequence by greedy decoding, never seeing the answer. Reversing needs attention: output position t
must look at source position L-1-t.
"""
import time
from typing import Any, Protocol

import numpy as np
from numpy.typing import NDArray

from ..checks import UsageError
from .optim import AdamW, clip_grad_norm

TASKS = ("copy", "reverse")


class CopyTaskModel(Protocol):
    """What the task asks of an encoder-decoder (:class:`npgpt.models.document.DocumentModel` has
    it): ``num_tokens`` ids, ``batch_first`` (else ids are (L, N)), ``params``, a teacher-forced
    ``forward(src, tgt_in, targets, causal=)`` -> (output, loss), ``backward()`` -> gradients keyed
    as ``params``, and ``greedy_decode(src, bos_id, length)`` -> ids."""

    @property
    def num_tokens(self) -> int: ...
    @property
    def batch_first(self) -> bool: ...
    @property
    def params(self) -> dict[str, np.ndarray]: ...
    def forward(self, src_ids: np.ndarray, tgt_ids: np.ndarray, targets: np.ndarray, /, *,
                causal: bool = True) -> tuple[Any, float]: ...
    def backward(self) -> dict[str, np.ndarray]: ...
    def greedy_decode(self, src_ids: np.ndarray, bos_id: int, length: int, /) -> np.ndarray: ...


def copy_task_batch(rng: np.random.Generator, batch_size: int, seq_len: int = 6, task: str = "reverse",
                    n_digits: int = 10, bos_id: int | None = None
                    ) -> tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.int64]]:
    """(src, tgt_in, targets), each (batch_size, seq_len) batch-first integer ids; ``bos_id`` defaults
    to ``n_digits`` (the first id after the digits)."""
    if task not in TASKS:
        raise UsageError(f"task must be one of {TASKS}, got {task!r}")
    bos_id = n_digits if bos_id is None else bos_id
    src = rng.integers(0, n_digits, (batch_size, seq_len))
    targets = src[:, ::-1].copy() if task == "reverse" else src.copy()
    tgt_in = np.concatenate([np.full((batch_size, 1), bos_id), targets[:, :-1]], axis=1)
    return src, tgt_in, targets


def copy_task_accuracy(model: CopyTaskModel, src: np.ndarray, targets: np.ndarray, bos_id: int
                       ) -> tuple[float, float]:
    """(digit accuracy, whole-sequence accuracy) of ``model.greedy_decode`` on batch-first ``src``."""
    layout = (lambda a: a) if model.batch_first else (lambda a: a.T)
    pred = layout(model.greedy_decode(layout(src), bos_id, targets.shape[1]))
    right = pred == targets
    return float(right.mean()), float(right.all(axis=1).mean())


def train_copy_task(model: CopyTaskModel, steps: int = 300, batch_size: int = 32, seq_len: int = 6,
                    task: str = "reverse", lr: float = 3e-3, seed: int = 0, eval_size: int = 256,
                    clip: float = 1.0, n_digits: int = 10, bos_id: int | None = None, causal: bool = True
                    ) -> dict[str, Any]:
    """Train ``model`` (a :class:`npgpt.models.document.DocumentModel` with at least ``n_digits + 1``
    tokens) with AdamW on fresh batches; evaluate greedy decoding on ``eval_size`` held-out sequences
    before and after. ``causal=False`` trains without the target mask, as the document's code would:
    the decoder can then read each answer from the next input position, the training loss collapses,
    and greedy decoding (which has no next position to read) shows what was really learned.

    Returns a dict: ``losses`` (one per step), ``accuracy_before``, ``accuracy`` (digits right),
    ``sequence_accuracy`` (whole sequences right), ``seconds`` (training time) and ``steps``.
    """
    bos_id = n_digits if bos_id is None else bos_id
    if model.num_tokens <= max(bos_id, n_digits - 1):
        raise UsageError(f"the model has num_tokens={model.num_tokens}: the task needs ids 0..{n_digits - 1} "
                         f"and bos_id={bos_id}")
    layout = (lambda a: a) if model.batch_first else (lambda a: a.T)
    rng = np.random.default_rng(seed)
    eval_src, _, eval_targets = copy_task_batch(np.random.default_rng([seed, 99]), eval_size, seq_len,
                                                task, n_digits, bos_id)
    accuracy_before, _ = copy_task_accuracy(model, eval_src, eval_targets, bos_id)
    optimizer = AdamW(model.params, lr=lr)
    losses: list[float] = []
    start = time.perf_counter()
    for _ in range(steps):
        src, tgt_in, targets = copy_task_batch(rng, batch_size, seq_len, task, n_digits, bos_id)
        _, loss = model.forward(layout(src), layout(tgt_in), layout(targets), causal=causal)
        grads = model.backward()
        if clip:
            clip_grad_norm(grads, clip)
        optimizer.step(grads)
        losses.append(loss)
    seconds = time.perf_counter() - start
    accuracy, sequence_accuracy = copy_task_accuracy(model, eval_src, eval_targets, bos_id)
    return dict(losses=losses, accuracy_before=accuracy_before, accuracy=accuracy,
                sequence_accuracy=sequence_accuracy, seconds=seconds, steps=steps)
