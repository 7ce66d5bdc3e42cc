r"""Softmax cross-entropy in one pass per row: the twin of :mod:`npgpt.ops.cross_entropy`.

Each row computes its max, $\log\sum_j e^{z_j - m}$, the probabilities and its own NLL term at
once; the backward turns the stored probabilities into $(p - \mathbf 1_y)/N$ in place. Same
cache layout as the readable op, so either backward can consume either forward's cache.
"""
import numpy as np
from numba import prange

from ._compile import kernel


@kernel()
def _softmax_nll_rows(logits, targets, keep, probs, nll):
    N, V = logits.shape
    for n in prange(N):
        m = logits[n, 0]
        for j in range(1, V):
            m = max(m, logits[n, j])
        total = 0.0                                      # float64 sum: V can be 50k
        for j in range(V):
            e = np.exp(logits[n, j] - m)
            probs[n, j] = e
            total += e
        inv = 1.0 / total
        for j in range(V):
            probs[n, j] *= inv
        nll[n] = (np.log(total) - (logits[n, targets[n]] - m)) if keep[n] else 0.0


@kernel(fastmath=False)
def _probs_minus_onehot(probs, targets, keep, scale, dlogits):
    N, V = probs.shape
    for n in prange(N):
        if keep[n]:
            for j in range(V):
                dlogits[n, j] = probs[n, j] * scale
            dlogits[n, targets[n]] -= scale
        else:
            dlogits[n, :] = 0


def cross_entropy_forward(logits, targets, ignore_index=None):
    """Same signature, results and cache as :func:`npgpt.ops.cross_entropy_forward`."""
    keep = np.ones(targets.shape, dtype=bool) if ignore_index is None else targets != ignore_index
    n_scored = int(keep.sum())
    if n_scored == 0:
        raise ValueError(f"every target equals ignore_index={ignore_index}: there is no token to score")
    logits = np.ascontiguousarray(logits)
    probs = np.empty_like(logits)
    nll = np.empty(logits.shape[0])
    safe_targets = np.where(keep, targets, 0)            # ignored rows never index the vocabulary
    _softmax_nll_rows(logits.size)(logits, safe_targets, keep, probs, nll)
    loss = 0.0 + nll.sum() / n_scored
    return float(loss), (probs, np.flatnonzero(keep), targets, n_scored)


def cross_entropy_backward(dloss, cache):
    """Same results as :func:`npgpt.ops.cross_entropy_backward`."""
    probs, rows, targets, n_scored = cache
    keep = np.zeros(probs.shape[0], dtype=bool)
    keep[rows] = True
    dlogits = np.empty_like(probs)
    _probs_minus_onehot(probs.size)(probs, np.where(keep, targets, 0), keep, probs.dtype.type(dloss / n_scored), dlogits)
    return dlogits
