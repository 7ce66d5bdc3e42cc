r"""Distillation (document section 7): a small student trained to match a large teacher.

On each batch the teacher (eval mode, no gradients) gives logits $t$, the student logits $s$, and the
student minimises

$$L = \alpha\,\tau^2\,\overline{\mathrm{KL}}\big(\mathrm{softmax}(t/\tau)\,\|\,\mathrm{softmax}(s/\tau)\big)
   + (1 - \alpha)\,\mathrm{NLL}(s, y),\qquad
  \frac{\partial L}{\partial s} = \alpha\,\frac{\tau\,(q - p)}{R} + (1 - \alpha)\,\frac{\mathrm{softmax}(s) - \mathbf 1_y}{R}$$

over the $R = B\,T$ positions (:mod:`npgpt.ops.kl_div`, :mod:`npgpt.ops.cross_entropy`). The
mixing happens here, not in the ops: both gradients of the logits are added and handed to
``student.backward(dlogits=...)`` once.

The existing :class:`~npgpt.training.Trainer` runs the loop (progress bar, evaluations, checkpoints,
exact resume, divergence checks) on a :class:`Distiller`: what the Trainer asks of a model (its
parameters, ``forward(x, y)``, ``backward()``, ``evaluating()`` and what a checkpoint records),
where the parameters *are* the student's. So a distillation run's checkpoints hold the
student (:func:`~npgpt.io.checkpoint.model_from_checkpoint` returns it), and its evaluation
losses are the student's plain NLL, comparable with any other run; its training losses are $L$.
"""
import inspect
from contextlib import AbstractContextManager
from dataclasses import asdict
from typing import Any

import numpy as np

from ..checks import UsageError, check_real, check_targets
from ..kernels import backend
from ..ops import kl_div_backward, kl_div_forward
from ..training.trainer import Trainer, checkpoint_state


class Distiller:
    """The student, seen by the Trainer as a model whose training loss is the distillation loss.

    In training mode ``forward(idx, targets)`` returns (student logits, alpha KL + (1 - alpha) NLL)
    and ``backward()`` the gradients of that loss for the student's parameters. In the student's
    evaluation mode (``evaluating()``) ``forward`` is the student's own (loss: the plain NLL) and
    the teacher does not run. ``params`` are the student's arrays, and a checkpoint records the
    student (``checkpoint_state()``). ``history`` holds the KL and the NLL of every training forward
    (not saved in checkpoints); ``kl`` and ``nll`` are the last ones.
    """

    def __init__(self, teacher, student, alpha=0.5, tau=2.0):
        if "dlogits" not in inspect.signature(student.backward).parameters:
            raise UsageError(f"the student must be a model whose backward(dlogits=...) takes the gradient "
                             f"of its logits (a GPT); a {type(student).__name__} does not")
        v_teacher, v_student = teacher.config.vocab_size, student.config.vocab_size
        if v_teacher != v_student:
            raise UsageError(f"the teacher has vocab_size={v_teacher} and the student vocab_size={v_student}: "
                             f"distillation compares their next-token distributions, which needs one vocabulary")
        b_teacher, b_student = teacher.config.block_size, student.config.block_size
        if b_teacher < b_student:
            raise UsageError(f"the teacher has block_size={b_teacher}, shorter than the student's "
                             f"block_size={b_student}: it cannot score the student's batches")
        self.teacher, self.student = teacher, student
        self.params = student.params           # the same arrays: the optimizer updates the student
        self.alpha = check_real("alpha", alpha, 0.0, 1.0)
        self.tau = check_real("tau", tau, 0.0, low_open=True)
        self.history = {"kl": [], "nll": []}
        self.kl = self.nll = None
        self._last = None        # caches of the last training forward; None after an eval-mode one

    # ----------------------------------------------------------------- what the Trainer asks
    def evaluating(self) -> AbstractContextManager[Any]:
        """The student's evaluation mode for a block (the teacher always runs in evaluation mode)."""
        return self.student.evaluating()

    def checkpoint_state(self) -> dict[str, Any]:
        """What a checkpoint records beside the parameters: the student's (the teacher is not saved)."""
        return checkpoint_state(self.student)

    def teacher_logits(self, idx):
        """The teacher's logits for ``idx``, in eval mode (no dropout), cast to the student's dtype."""
        with self.teacher.evaluating():
            logits, _ = self.teacher.forward(idx)
        return logits.astype(self.student.dtype, copy=False)

    def forward(self, idx, targets):
        """(student logits, loss): alpha KL + (1 - alpha) NLL in training mode, the NLL in eval mode."""
        if not self.student.training:
            self._last = None
            return self.student.forward(idx, targets)
        targets = check_targets(targets, np.shape(idx), self.student.config.vocab_size)
        t = self.teacher_logits(idx)
        s, _ = self.student.forward(idx)
        B, T, V = s.shape
        F = backend.ops()       # the NLL as the student's own forward computes it, on the same backend
        nll, nll_cache = F.cross_entropy_forward(s.reshape(B * T, V), targets.reshape(B * T))
        kl, kl_cache = kl_div_forward(s, t, self.tau)
        self._last = (F, nll_cache, kl_cache, s.shape)
        self.kl, self.nll = kl, nll
        self.history["kl"].append(kl)
        self.history["nll"].append(nll)
        return s, self.alpha * kl + (1.0 - self.alpha) * nll

    def backward(self):
        """Gradients of the last forward's loss for the student's parameters (``student.grads``)."""
        if self._last is None:                  # the last forward ran in eval mode: its loss is the NLL
            return self.student.backward()
        F, nll_cache, kl_cache, shape = self._last
        dlogits = (kl_div_backward(self.alpha, kl_cache)
                   + F.cross_entropy_backward(1.0 - self.alpha, nll_cache).reshape(shape))
        return self.student.backward(dlogits=dlogits)


def distill(teacher, student, data, train_config=None, alpha=0.5, tau=2.0, checkpoint_path=None,
            progress=True, resume=False, tokenizer=None, log=print):
    """Train ``student`` (in place) on alpha KL(teacher || student at temperature tau) + (1 - alpha) NLL
    with the :class:`~npgpt.training.Trainer`; returns the Trainer (``.history``, ``.model``, the
    :class:`Distiller`, whose ``.history`` holds the KL and NLL of each step).

    ``train_config``, ``checkpoint_path``, ``progress``, ``tokenizer`` and ``log`` mean what they mean
    for the Trainer. ``resume=True`` continues exactly from ``checkpoint_path``: the student (which
    must have the checkpoint's config and dtype) gets the saved parameters, and the optimizer, step,
    history and random generators continue; ``train_config``, when given, replaces the saved one
    (for a larger ``max_iters``, say). The checkpoint does not store the teacher, alpha or tau: pass
    the same ones again.

    As for any Trainer run, the checkpoint is locked while the run writes it (another run into it is
    refused before step 1, :class:`npgpt.locks.RunInUse`), and SIGINT/SIGTERM stop the run at a step
    boundary with the checkpoint saved there: ``stopped_by`` of the Trainer returned names the
    signal, and the checkpoint's ``step`` says how many of ``max_iters`` ran.
    """
    model = Distiller(teacher, student, alpha, tau)
    if resume:
        trainer = _resumed(model, data, train_config, checkpoint_path, tokenizer)
    else:
        trainer = Trainer(model, data, train_config, tokenizer, block_size=student.config.block_size)
    trainer.train(checkpoint_path, progress, log)
    return trainer


def _resumed(model, data, train_config, checkpoint_path, tokenizer):
    """A Trainer of ``model`` in the state a distillation run saved to ``checkpoint_path``."""
    if checkpoint_path is None:
        raise UsageError("resume=True needs the checkpoint_path to resume from")
    overrides = {} if train_config is None else asdict(train_config)
    saved = Trainer.from_checkpoint(checkpoint_path, data, tokenizer, **overrides)
    student = model.student
    if saved.model.config != student.config or saved.model.dtype != student.dtype:
        raise UsageError(f"the checkpoint {checkpoint_path} holds a {saved.model.dtype} student with "
                         f"{saved.model.config}, but the student given is {student.dtype} with {student.config}")
    student.load_state_dict(saved.model.params)
    student.dropout_rng.bit_generator.state = saved.model.dropout_rng.bit_generator.state
    trainer = Trainer(model, data, saved.config, tokenizer, block_size=student.config.block_size)
    trainer.optimizer.load_state_dict(saved.optimizer.state_dict())
    trainer.step = trainer.saved_step = saved.step
    trainer.batch_rng.bit_generator.state = saved.batch_rng.bit_generator.state
    trainer.history = saved.history
    return trainer
