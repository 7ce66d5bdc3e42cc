r"""LayerNorm, one pass per row: the twin of :mod:`npgpt.ops.layernorm` (same formulas, same cache).

NumPy makes about eight passes over the activations (mean, centre, square, mean, sqrt, divide,
scale, shift); here each row is read twice and written once, rows in parallel.
"""
import numpy as np
from numba import prange

from ._compile import kernel


@kernel()
def _forward_rows(x, w, b, eps, y, xhat, rstd):
    N, C = x.shape
    zero = eps - eps
    width, one = zero + C, zero + 1          # typed like x: an int or a bare 1 would make float64
    for n in prange(N):
        mu = zero
        for c in range(C):
            mu += x[n, c]
        mu /= width
        var = zero
        for c in range(C):
            var += (x[n, c] - mu) * (x[n, c] - mu)
        r = one / np.sqrt(var / width + eps)
        rstd[n] = r
        for c in range(C):
            xhat[n, c] = (x[n, c] - mu) * r
            y[n, c] = xhat[n, c] * w[c] + b[c]


@kernel()
def _backward_rows(dout, xhat, rstd, w, dx):
    N, C = dout.shape
    width = dout.dtype.type(C)
    for n in prange(N):
        mean_g = dout[n, 0] - dout[n, 0]
        mean_gx = mean_g
        for c in range(C):
            g = dout[n, c] * w[c]
            mean_g += g
            mean_gx += g * xhat[n, c]
        mean_g /= width
        mean_gx /= width
        for c in range(C):
            dx[n, c] = rstd[n] * (dout[n, c] * w[c] - mean_g - xhat[n, c] * mean_gx)


def layernorm_forward(x, w, b=None, eps=1e-5):
    """Same signature, results and cache as :func:`npgpt.ops.layernorm_forward`."""
    C = x.shape[-1]
    x2 = np.ascontiguousarray(x).reshape(-1, C)
    y, xhat = np.empty_like(x2), np.empty_like(x2)
    rstd = np.empty(x2.shape[0], dtype=x.dtype)
    _forward_rows(x2.size)(x2, w, np.zeros_like(w) if b is None else b, x.dtype.type(eps), y, xhat, rstd)
    shape = x.shape
    return y.reshape(shape), (xhat.reshape(shape), rstd.reshape((*shape[:-1], 1)), w, b is not None)


def layernorm_backward(dout, cache):
    """Same results as :func:`npgpt.ops.layernorm_backward`; returns (dx, dw, db)."""
    xhat, rstd, w, has_bias = cache
    C = w.shape[0]
    dout2 = np.ascontiguousarray(dout).reshape(-1, C)
    xhat2 = xhat.reshape(-1, C)
    dx = np.empty_like(dout2)
    _backward_rows(dout2.size)(dout2, xhat2, rstd.reshape(-1), w, dx)
    dw = np.einsum("nc,nc->c", dout2, xhat2)
    db = dout2.sum(axis=0) if has_bias else None
    return dx.reshape(dout.shape), dw, db
