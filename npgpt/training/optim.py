r"""Optimizers, the learning-rate schedule and gradient clipping (the last arrow of the data flow:
grads -> optimizer -> params).

An optimizer holds a reference to the model's ``params`` dict (name -> array) and updates the arrays
in place from a ``grads`` dict with the same keys and shapes, so ``model.params`` sees every step.

Weight decay is applied only to tensors with two or more axes (weight matrices and embeddings), not to
biases and LayerNorm gains, as GPT-2 and nanoGPT do: shrinking a LayerNorm gain towards 0 or a bias
towards 0 is not a sensible prior, while shrinking large weight matrices is.

State dicts are flat dicts of NumPy arrays (``{"step": ..., "m.<param name>": ..., ...}``), so they
save to ``.npz`` and load back with ``allow_pickle=False``.
"""
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from ..checks import UsageError, check_int, check_real
from ..kernels import backend


def decays(p: np.ndarray) -> bool:
    """Whether weight decay applies to parameter array ``p``: matrices and embeddings (ndim >= 2)."""
    return p.ndim >= 2


# --------------------------------------------------------------------------- optimizers
class _Optimizer:
    """What SGD and AdamW share: the params they update, a step counter, per-parameter buffers
    (``self.buffers[kind][param name]``), grads checking and the flat state dict."""

    def __init__(self, params: dict[str, np.ndarray], lr: float, buffer_kinds: Iterable[str]) -> None:
        if not isinstance(params, dict) or not params:
            raise UsageError("params must be a non-empty dict name -> array (e.g. model.params)")
        self.params = params
        self.lr = check_real("lr", lr, low=0.0)
        self.t = 0                                  # number of steps taken
        self.buffers = self._new_buffers(buffer_kinds)

    def _new_buffers(self, kinds: Iterable[str]) -> dict[str, Any]:
        """``{kind: {param name: zeros like the param}}``: the state the optimizer keeps per parameter.
        (Typed Any inside: :class:`~npgpt.training.distributed.ZeroAdamW` keeps one flat shard per kind.)"""
        return {kind: {name: np.zeros_like(p) for name, p in self.params.items()} for kind in kinds}

    def state_bytes(self) -> int:
        """Bytes of the state this optimizer holds (its buffers), as allocated."""
        return sum(a.nbytes for arrays in self.buffers.values()
                   for a in (arrays.values() if isinstance(arrays, dict) else [arrays]))

    def _begin_step(self, grads: Mapping[str, np.ndarray], lr: float | None) -> float:
        """Check ``grads`` against the params; return the learning rate for this step."""
        missing = [k for k in self.params if k not in grads]
        unexpected = [k for k in grads if k not in self.params]
        misshaped = [f"{k}: param {self.params[k].shape}, grad {np.shape(grads[k])}"
                     for k in self.params if k in grads and np.shape(grads[k]) != self.params[k].shape]
        problems = [f"{label}: {', '.join(keys)}" for label, keys in
                    (("missing grads", missing), ("grads for unknown params", unexpected),
                     ("mis-shaped grads", misshaped)) if keys]
        if problems:
            raise UsageError("grads do not match params; " + "; ".join(problems))
        self.t += 1
        return self.lr if lr is None else check_real("lr", lr, low=0.0)

    def state_dict(self) -> dict[str, np.ndarray]:
        """``{"step": int64 array, "<buffer>.<param name>": array copy, ...}``: NumPy arrays only."""
        state = {"step": np.array(self.t, dtype=np.int64)}
        for kind, arrays in self.buffers.items():
            state.update({f"{kind}.{name}": a.copy() for name, a in arrays.items()})
        return state

    def load_state_dict(self, state: Mapping[str, ArrayLike]) -> None:
        """Restore a :meth:`state_dict`. Missing, unexpected or mis-shaped keys raise a ValueError
        naming them; nothing is changed unless every key checks out."""
        expected = self._state_shapes()
        missing = [k for k in expected if k not in state]
        unexpected = [k for k in state if k not in expected]
        misshaped = [f"{k}: expected {shape}, got {np.shape(state[k])}"
                     for k, shape in expected.items() if k in state and np.shape(state[k]) != shape]
        problems = [f"{label}: {', '.join(keys)}" for label, keys in
                    (("missing keys", missing), ("unexpected keys", unexpected),
                     ("mis-shaped keys", misshaped)) if keys]
        if problems:
            raise UsageError(f"{type(self).__name__}.load_state_dict failed; " + "; ".join(problems))
        step = np.asarray(state["step"])
        if not np.issubdtype(step.dtype, np.integer) or step < 0:
            raise UsageError(f"state 'step' must be a non-negative integer, got {step!r}")
        self.t = int(step)
        self._load_buffers(state)

    def _state_shapes(self) -> dict[str, tuple[int, ...]]:
        """The shape of every entry of :meth:`state_dict`: ``{"step": (), "<buffer>.<param>": shape}``."""
        expected: dict[str, tuple[int, ...]] = {"step": ()}
        for kind, arrays in self.buffers.items():
            expected.update({f"{kind}.{name}": a.shape for name, a in arrays.items()})
        return expected

    def _load_buffers(self, state: Mapping[str, ArrayLike]) -> None:
        for kind, arrays in self.buffers.items():
            for name, a in arrays.items():
                a[...] = state[f"{kind}.{name}"]


class SGD(_Optimizer):
    r"""Stochastic gradient descent with momentum and L2 weight decay, in PyTorch's convention:

    $$g_t = \nabla_\theta L + \lambda\,\theta_{t-1},\qquad v_t = \mu\, v_{t-1} + g_t,\qquad
      \theta_t = \theta_{t-1} - \eta\, v_t$$

    with $v_0 = 0$ (so $v_1 = g_1$), learning rate $\eta$ = ``lr``, momentum $\mu$ and weight decay
    $\lambda$ (added to the gradient, and only for ``ndim >= 2`` tensors, see :func:`decays`).
    With $\mu = 0$ this is plain gradient descent $\theta \leftarrow \theta - \eta g$.
    """

    def __init__(self, params: dict[str, np.ndarray], lr: float, momentum: float = 0.0,
                 weight_decay: float = 0.0) -> None:
        self.momentum = check_real("momentum", momentum, low=0.0, high=1.0, high_open=True)
        self.weight_decay = check_real("weight_decay", weight_decay, low=0.0)
        super().__init__(params, lr, ["momentum_buffer"] if self.momentum else [])

    def step(self, grads: Mapping[str, np.ndarray], lr: float | None = None) -> None:
        """Update every parameter in place; ``lr`` overrides ``self.lr`` for this step only."""
        lr = self._begin_step(grads, lr)
        for name, p in self.params.items():
            g = grads[name]
            if self.weight_decay and decays(p):
                g = g + self.weight_decay * p
            if self.momentum:
                v = self.buffers["momentum_buffer"][name]
                v *= self.momentum
                v += g
                g = v
            p -= lr * g


class AdamW(_Optimizer):
    r"""Adam with decoupled weight decay (Loshchilov & Hutter, 2019), as ``torch.optim.AdamW``:

    $$\theta \leftarrow \theta - \eta\lambda\,\theta \quad(\text{only } \mathrm{ndim}\ge 2)$$
    $$m_t = \beta_1 m_{t-1} + (1-\beta_1)\, g_t,\qquad v_t = \beta_2 v_{t-1} + (1-\beta_2)\, g_t^2$$
    $$\hat m_t = \frac{m_t}{1-\beta_1^t},\qquad \hat v_t = \frac{v_t}{1-\beta_2^t},\qquad
      \theta_t = \theta - \eta\,\frac{\hat m_t}{\sqrt{\hat v_t} + \epsilon}$$

    with $m_0 = v_0 = 0$ and $t$ counting steps from 1. The bias corrections undo the pull towards
    the zero start: after one step $\hat m_1 = g_1$ and $\hat v_1 = g_1^2$. "Decoupled" means the
    decay shrinks $\theta$ directly instead of entering $g$ (where Adam would rescale it per entry).
    """

    def __init__(self, params: dict[str, np.ndarray], lr: float = 1e-3, betas: Sequence[float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0.0) -> None:
        if not isinstance(betas, (tuple, list)) or len(betas) != 2:
            raise UsageError(f"betas must be a pair (beta1, beta2), got {betas!r}")
        self.betas = tuple(check_real(f"betas[{i}]", b, low=0.0, high=1.0, high_open=True)
                           for i, b in enumerate(betas))
        self.eps = check_real("eps", eps, low=0.0)
        self.weight_decay = check_real("weight_decay", weight_decay, low=0.0)
        super().__init__(params, lr, ["m", "v"])

    def step(self, grads: Mapping[str, np.ndarray], lr: float | None = None) -> None:
        """Update every parameter in place; ``lr`` overrides ``self.lr`` for this step only."""
        lr = self._begin_step(grads, lr)
        update = backend.ops().adamw_update     # the formula: npgpt/ops/adamw.py
        for name, p in self.params.items():
            decay = self.weight_decay if decays(p) else 0.0
            update(p, grads[name], self.buffers["m"][name], self.buffers["v"][name], lr,
                   *self.betas, self.eps, decay, self.t)


# --------------------------------------------------------------------------- schedule and clipping
def lr_schedule(step: int, max_lr: float, min_lr: float, warmup_steps: int, total_steps: int) -> float:
    r"""nanoGPT's learning rate at ``step`` (counted from 0): linear warmup, cosine decay, floor.

    $$\eta(s) = \begin{cases}
      \eta_{max}\,\dfrac{s+1}{W+1} & s < W \\[6pt]
      \eta_{min} + \tfrac12\big(1+\cos(\pi r)\big)(\eta_{max}-\eta_{min}),\quad r=\dfrac{s-W}{S-W}
        & W \le s < S \\[6pt]
      \eta_{min} & s \ge S
    \end{cases}$$

    with $W$ = ``warmup_steps`` and $S$ = ``total_steps``. Warmup climbs from $\eta_{max}/(W+1)$ at
    step 0 (never exactly 0, so the first step moves) to $\eta_{max} W/(W+1)$ at step $W-1$; the
    cosine starts at $\eta_{max}$ at step $W$, is halfway, $(\eta_{max}+\eta_{min})/2$, at
    $s = (W+S)/2$, and reaches $\eta_{min}$ at step $S$, where it stays. With $W \ge S$ (a short
    run with the default warmup) there is no cosine phase: warmup, then $\eta_{min}$ from step $W$.
    """
    step = check_int("step", step, 0)
    max_lr = check_real("max_lr", max_lr, low=0.0)
    min_lr = check_real("min_lr", min_lr, low=0.0, high=max_lr)
    warmup_steps = check_int("warmup_steps", warmup_steps, 0)
    total_steps = check_int("total_steps", total_steps, 0)
    if step < warmup_steps:
        return max_lr * (step + 1) / (warmup_steps + 1)
    if step >= total_steps:
        return min_lr
    ratio = (step - warmup_steps) / (total_steps - warmup_steps)
    return min_lr + 0.5 * (1.0 + math.cos(math.pi * ratio)) * (max_lr - min_lr)


def global_norm(grads: Mapping[str, np.ndarray]) -> float:
    r"""$\sqrt{\sum_i \|g_i\|^2}$ over every array of ``grads``, summed in float64."""
    return math.sqrt(sum(float(np.sum(np.square(g, dtype=np.float64))) for g in grads.values()))


def clip_grad_norm(grads: Mapping[str, np.ndarray], max_norm: float) -> float:
    r"""Clip the gradients to a global L2 norm of at most ``max_norm``; return the norm before clipping.

    $$\|g\| = \sqrt{\textstyle\sum_{\text{tensors}}\sum_i g_i^2},\qquad
      g \leftarrow g\cdot\frac{c}{\|g\| + 10^{-6}} \quad\text{if } \|g\| > c$$

    One norm over all tensors (not one per tensor), so clipping rescales the whole update and keeps
    its direction. The $10^{-6}$ is PyTorch's guard against dividing by ~0. The sum runs in float64
    so float32 gradients cannot overflow it. A non-finite norm (inf/nan in some gradient) leaves the
    gradients untouched and is returned, so the caller can see it and skip the step.
    """
    max_norm = check_real("max_norm", max_norm, low=0.0, low_open=True)
    norm = global_norm(grads)
    if math.isfinite(norm) and norm > max_norm:
        scale = max_norm / (norm + 1e-6)
        for g in grads.values():
            g *= scale
    return norm
