r"""Distillation loss: the KL divergence from the teacher's softened distribution to the student's.

With temperature $\tau$, $p = \mathrm{softmax}(t/\tau)$ (teacher) and $q = \mathrm{softmax}(s/\tau)$
(student) on each of the $R$ rows (every leading axis is a row: (B, T, V) logits are $B\,T$ rows),

$$L = \frac{\tau^2}{R}\sum_{r=1}^{R} \mathrm{KL}(p_r \,\|\, q_r),\qquad
  \mathrm{KL}(p \,\|\, q) = \sum_i p_i\,(\log p_i - \log q_i)$$

Both logs are log-softmaxes with the row maximum subtracted, so the loss stays finite for any finite
logits; a $p_i$ that underflows to 0 adds exactly 0, as $0 \log 0 = 0$. Backward: only
$-\sum_i p_i \log q_i$ depends on $s$, and with $\log q_i = s_i/\tau - \log\sum_j e^{s_j/\tau}$,
$\partial/\partial s_j = -p_j/\tau + q_j \sum_i p_i/\tau$; as $\sum_i p_i = 1$,

$$\frac{\partial L}{\partial s} = \frac{\tau^2}{R}\cdot\frac{q - p}{\tau} = \frac{\tau\,(q - p)}{R}$$

times the upstream ``dloss``. The factor $\tau^2$ (Hinton et al., 2015) keeps this gradient's size
about the same whatever $\tau$, so $\tau$ can change without retuning the mixing weight.
"""
import math
import numbers

import numpy as np
from numpy.typing import ArrayLike, NDArray

from .softmax import log_softmax_forward

KLDivCache = tuple[NDArray[np.floating], NDArray[np.floating], float, int]     # (q, p, tau, rows)


def kl_div_forward(student_logits: ArrayLike, teacher_logits: ArrayLike, tau: float
                   ) -> tuple[float, KLDivCache]:
    """tau^2 times the mean over rows of KL(softmax(teacher/tau) || softmax(student/tau)); the last
    axis is the vocabulary. Returns (loss, cache)."""
    if isinstance(tau, bool) or not isinstance(tau, numbers.Real) or not math.isfinite(tau) or tau <= 0:
        raise ValueError(f"tau must be a finite number > 0, got {tau!r}")
    s, t = np.asarray(student_logits), np.asarray(teacher_logits)
    if s.shape != t.shape:
        raise ValueError(f"student logits {s.shape} and teacher logits {t.shape} must have the same shape")
    if s.ndim == 0 or s.size == 0:
        raise ValueError(f"logits must be (..., vocab) with at least one row, got shape {s.shape}")
    tau = float(tau)
    log_q, q = log_softmax_forward(s / tau)
    log_p, p = log_softmax_forward(t / tau)
    n_rows = s.size // s.shape[-1]
    pointwise = np.where(p > 0, p * (log_p - log_q), 0.0)
    loss = tau * tau * pointwise.sum() / n_rows
    return float(loss), (q, p, tau, n_rows)


def kl_div_backward(dloss: float, cache: KLDivCache) -> NDArray[np.floating]:
    """Gradient of the student's logits: dloss * tau * (q - p) / rows."""
    q, p, tau, n_rows = cache
    return (q - p) * (dloss * tau / n_rows)
