r"""GELU (tanh approximation): the twin of :mod:`npgpt.ops.gelu` (same formulas, same cache).

numba cannot vectorise ``tanh`` on this machine (its LLVM has no SVML), while NumPy's ``np.tanh``
is SIMD. So the tanh stays a NumPy call and numba fuses the arithmetic around it: forward is
one pass to build $u$, NumPy's tanh in place, one pass for $\tfrac12 x(1+t)$; backward is one pass
instead of NumPy's ten.
"""
import numpy as np
from numba import prange

from ..ops.gelu import GELU_COEF, SQRT_2_OVER_PI
from ._compile import kernel


@kernel()
def _tanh_argument(x, u):
    k, c = x.dtype.type(SQRT_2_OVER_PI), x.dtype.type(GELU_COEF)
    for i in prange(x.size):
        u[i] = k * (x[i] + c * x[i] * x[i] * x[i])


@kernel()
def _gelu_from_tanh(x, t, y):
    half, one = x.dtype.type(0.5), x.dtype.type(1)       # typed: float32 stays float32
    for i in prange(x.size):
        y[i] = half * x[i] * (one + t[i])


@kernel()
def _gelu_backward(dout, x, t, dx):
    k, c3 = x.dtype.type(SQRT_2_OVER_PI), x.dtype.type(3 * GELU_COEF)
    half, one = x.dtype.type(0.5), x.dtype.type(1)
    for i in prange(x.size):
        du = k * (one + c3 * x[i] * x[i])
        dx[i] = dout[i] * half * ((one + t[i]) + x[i] * (one - t[i] * t[i]) * du)


def gelu_forward(x):
    """Same signature, results and cache (x, tanh u) as :func:`npgpt.ops.gelu_forward`."""
    x = np.ascontiguousarray(x)
    t = np.empty_like(x)
    _tanh_argument(x.size)(x.reshape(-1), t.reshape(-1))
    np.tanh(t, out=t)
    y = np.empty_like(x)
    _gelu_from_tanh(x.size)(x.reshape(-1), t.reshape(-1), y.reshape(-1))
    return y, (x, t)


def gelu_backward(dout, cache):
    """Same results as :func:`npgpt.ops.gelu_backward`."""
    x, t = cache
    dout = np.ascontiguousarray(dout)
    dx = np.empty_like(x)
    _gelu_backward(x.size)(dout.reshape(-1), x.reshape(-1), t.reshape(-1), dx.reshape(-1))
    return dx
