r"""The MLP with its bias and GELU fused: the twin of :func:`npgpt.ops.mlp_forward` and ``mlp_backward``.

$$h = xW_{fc} + b_{fc},\qquad a = \mathrm{GELU}(h),\qquad y = aW_{proj} + b_{proj}$$

The two products stay on BLAS. Between them the reference makes three passes over the (N, 4C)
hidden layer forward (add $b_{fc}$, $\tanh$, the GELU) and two backward (GELU', the column sum
$\partial L/\partial b_{fc} = \sum_{\text{rows}} \partial L/\partial h$). Here each direction is
one numba pass: forward ``h += b_fc; a = GELU(h)``, backward ``dh = da * GELU'(h)`` with the
column sums gathered on the way. The cache holds the reference's arrays ($x$, $h$, $\tanh u$, $a$),
so both backends keep the same memory (npgpt.allocation.costs counts it).

$\tanh$ in float32 is a rational function, $\tanh u \approx u\,P(u^2)/Q(u^2)$ with $P$ of degree
6 and $Q$ of degree 3, fitted here to a relative error of $3.4\cdot10^{-7}$ over $|u| \le 9$ (beyond,
float32's $\tanh$ is $\pm1$): numba vectorises it, while NumPy's ``np.tanh`` is SIMD only on
AVX-512 machines (393k float32 values: 0.06 ms with AVX-512, 0.34 ms on AVX2, where it made a
baby step 1.4 ms slower). float64 uses ``math.tanh``, exact to the last bit.
Factorised weights and bias-free layers run the reference composition with the GELU twin.
"""
import math
from typing import NamedTuple

import numba
import numpy as np
from numba import prange, types
from numba.extending import overload

from ..ops import mlp as reference
from ..ops.gelu import GELU_COEF, SQRT_2_OVER_PI
from ..ops.linear import rows
from ..ops.low_rank_linear import Factors, affine_backward, affine_forward
from ._compile import kernel, rebind
from .gelu import gelu_backward, gelu_forward

TANH_CLAMP = 9.0
# tanh u ~ u (P0 + P1 u^2 + ... + P6 u^12) / (1 + Q1 u^2 + Q2 u^4 + Q3 u^6), |u| <= 9: a weighted
# least-squares fit of the relative error (Lawson's reweighting towards the minimax fit).
TANH_P = (9.99999993e-01, 1.30840829e-01, 3.10403735e-03, 1.11551511e-05, -2.02286137e-08,
          5.27956420e-11, -8.49282355e-14)
TANH_Q = (1.0, 4.64174101e-01, 2.44955021e-02, 2.54626302e-04)


def rational_tanh(u):
    """tanh u for a float32 ``u`` (relative error <= 3.4e-7); NaN stays NaN."""
    clamp = np.float32(TANH_CLAMP)
    if u > clamp:               # comparisons, not min/max, so that a NaN falls through
        u = clamp
    elif u < -clamp:
        u = -clamp
    s = u * u
    p = ((((((np.float32(TANH_P[6]) * s + np.float32(TANH_P[5])) * s + np.float32(TANH_P[4])) * s
             + np.float32(TANH_P[3])) * s + np.float32(TANH_P[2])) * s + np.float32(TANH_P[1])) * s
         + np.float32(TANH_P[0]))
    q = ((np.float32(TANH_Q[3]) * s + np.float32(TANH_Q[2])) * s + np.float32(TANH_Q[1])) * s + np.float32(TANH_Q[0])
    t, one = u * p / q, np.float32(1)
    if t > one:                 # rounding near the clamp can give 1 + 2^-23: tanh never exceeds 1
        t = one
    elif t < -one:
        t = -one
    return t


def gelu_tanh(u):
    """tanh as the GELU kernels take it: rational in float32, ``math.tanh`` otherwise."""
    return math.tanh(u)


@overload(gelu_tanh, inline="always")
def _gelu_tanh_by_type(u):
    """numba picks the implementation from the argument's type when it compiles a kernel."""
    if isinstance(u, types.Float) and u.bitwidth == 32:
        return rational_tanh
    return lambda u: math.tanh(u)


@kernel()
def _bias_gelu(h, b, t, a):
    """h (N, H) <- h + b; t <- tanh u(h); a <- GELU(h) = h (1 + t) / 2."""
    f = h.dtype.type                        # constants in the array's type: no float64 detours
    k, c, half, one = f(SQRT_2_OVER_PI), f(GELU_COEF), f(0.5), f(1)
    for n in prange(h.shape[0]):
        for j in range(h.shape[1]):
            x = h[n, j] + b[j]
            h[n, j] = x
            tj = gelu_tanh(k * (x + c * x * x * x))
            t[n, j] = tj
            a[n, j] = half * x * (one + tj)


@kernel()
def _gelu_bias_backward(da, h, t, dh, db_parts):
    """dh (N, H) <- da * GELU'(h); db_parts[p] <- the column sums of the p-th block of rows."""
    f = h.dtype.type
    k, c3, half, one = f(SQRT_2_OVER_PI), f(3 * GELU_COEF), f(0.5), f(1)
    (N, H), parts = h.shape, db_parts.shape[0]
    for p in prange(parts):
        db = np.zeros(H, h.dtype)           # a local row: summing into it vectorises, into db_parts not
        for n in range(p * N // parts, (p + 1) * N // parts):
            for j in range(H):
                x, tj = h[n, j], t[n, j]
                g = da[n, j] * half * ((one + tj) + x * (one - tj * tj) * k * (one + c3 * x * x))
                dh[n, j] = g
                db[j] += g
        for j in range(H):                  # not db_parts[p] = db: numba would compile a shape-mismatch
            db_parts[p, j] = db[j]          # message for it, 2.8 s of a fresh clone's first step


FUSED_DTYPES = (np.float32, np.float64)


class FusedMLPCache(NamedTuple):
    """The same arrays the reference keeps (x, h, tanh u, and a in the projection's cache)."""
    x: object               # the input (..., C)
    w_fc: object
    h: object               # (N, H): x W_fc + b_fc, the GELU's input
    t: object               # (N, H): tanh u(h)
    proj: object            # the output projection's cache (holds a = GELU(h))


def _fused(x, w_fc, b_fc):
    return b_fc is not None and not isinstance(w_fc, Factors) and x.dtype in FUSED_DTYPES


def mlp_forward(x, w_fc, b_fc, w_proj, b_proj):
    """Same signature and results as :func:`npgpt.ops.mlp_forward`."""
    if not _fused(x, w_fc, b_fc):
        return reference_forward(x, w_fc, b_fc, w_proj, b_proj)
    h = rows(x) @ w_fc                                                      # (N, H)
    t, a = np.empty_like(h), np.empty_like(h)
    _bias_gelu(h.size)(h, b_fc, t, a)
    out, proj_cache = affine_forward(a, w_proj, b_proj)
    return out.reshape(*x.shape[:-1], out.shape[-1]), FusedMLPCache(x, w_fc, h, t, proj_cache)


def mlp_backward(dout, cache):
    """Same results as :func:`npgpt.ops.mlp_backward`: (dx, dw_fc, db_fc, dw_proj, db_proj)."""
    if not isinstance(cache, FusedMLPCache):
        return reference_backward(dout, cache)
    x, w_fc, h, t, proj_cache = cache
    da, dw_proj, db_proj = affine_backward(rows(dout), proj_cache)
    backward = _gelu_bias_backward(h.size)
    parts = numba.get_num_threads() if backward is _gelu_bias_backward.parallel else 1
    # dh gets an array of its own: writing it over da would defeat LLVM's vectorised loop (its runtime
    # overlap check sends aliased arrays to the scalar loop: 0.42 ms instead of 0.06 on baby).
    dh, db_parts = np.empty_like(h), np.empty((parts, h.shape[1]), dtype=h.dtype)
    backward(np.ascontiguousarray(da), h, t, dh, db_parts)
    dx = (dh @ w_fc.T).reshape(x.shape)
    dw_fc = rows(x).T @ dh
    return dx, dw_fc, db_parts.sum(axis=0), dw_proj, db_proj


reference_forward = rebind(reference.mlp_forward, gelu_forward=gelu_forward)
reference_backward = rebind(reference.mlp_backward, gelu_backward=gelu_backward)
