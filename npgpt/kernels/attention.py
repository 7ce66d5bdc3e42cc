r"""Causal self-attention with a fused masked softmax: the twin of :func:`npgpt.ops.self_attention_forward`.

The two matrix products per head, $S = QK^\top$ and $Y = AV$, stay on BLAS. What numba fuses is
everything between them: the scale, the causal mask (a loop bound $j \le i$, never a (T, T) array)
and the softmax, in place, in one pass over each row's $j \le i$ part (the rest is set to 0):

$$a_{ij} = \frac{e^{\,c\,(s_{ij}-m_i)}}{\sum_{j'\le i} e^{\,c\,(s_{ij'}-m_i)}},\qquad c = \frac1{\sqrt d},\quad m_i = \max_{j\le i} s_{ij}$$

and its backward, $\partial s_{ij} = c\,a_{ij}\big(g_{ij} - \sum_{j'} a_{ij'} g_{ij'}\big)$ with $g = \delta V^\top$.

The exponential in float32 is written out so that LLVM vectorises it (numba's ``math.exp`` is a
scalar call): $e^x = 2^n e^r$ with $n$ the integer nearest $x/\ln 2$ and $r = x - n\ln 2 \in
[-\tfrac{\ln 2}2, \tfrac{\ln 2}2]$ (Cody and Waite's split of $\ln 2$ into a short head and a tail
keeps $r$ exact), $e^r \approx 1 + r + r^2 P(r)$ with $P$ of degree 4 fitted here to a relative
error of $3.1\cdot10^{-9}$, and $2^n$ built from its exponent bits. Evaluated in float32 it is
within $8.2\cdot10^{-8}$ (relative) of the exact $e^x$, where NumPy's float32 ``np.exp`` is within
$2.1\cdot10^{-7}$. float64 uses ``math.exp``. At the small preset's shapes (B 16, 6 heads, T 256)
the fused pass took 2.8 ms where the earlier three passes (numba's shift and mask, NumPy's
single-threaded SIMD ``np.exp`` over the whole (T, T) square, masked half included, numba's
normalisation) took 11 ms (2 threads, float32, 2-core EPYC with AVX2).

Fusing the products themselves into numba was measured and did not pay (float32, 2-core EPYC):
with hs = 32 each dot product $q_i\cdot k_j$ is two vectors plus a horizontal sum, against BLAS's
register tiles, so numba's $j \le i$ half of $QK^\top$ took 0.11-0.12 ms where BLAS's whole
product took 0.13 (baby: B=12, T=64, nh=4), and $AV$ or the backward's products (sums over a
triangular range) were slower still (fused core forward 0.49 ms, backward 1.9 ms, against 0.36
and 0.53 here). Fusing only the score products into the shift/mask pass for long contexts won in
isolation (small: B=16, T=256, nh=6; 3.9 vs 5.5 ms) but not in a whole layer (110 vs 106 ms).
Nor did cutting each stacked product into one half per thread on single-threaded BLAS: on small
that made $QK^\top$ 1.6x faster (4.5 vs 7.3 ms) but the other five products 1.1-1.8x slower
(e.g. $AV$ 9.4 vs 5.1 ms), and a layer 134 ms against 112. Nor did skipping the blocks above the
diagonal with BLAS (for each block of 64 queries, one stacked product with the keys up to its
end, 62.5% of the arithmetic at T 256): the stacked products got smaller and slower, and the
forward took 59-75 ms against 42-58 for the whole square (small's shapes, 2 threads).

The products write straight into the merged (B, T, C) output and the (B, T, 3C) gradient of the
fused projection, so no split/merge copies are made. Dropout on the attention weights and a KV
cache fall back to the readable op (neither is on the training hot path).
"""
import math
from typing import NamedTuple

import numpy as np
from numba import prange, types
from numba.extending import overload

from ..ops import self_attention_backward as reference_backward
from ..ops import self_attention_forward as reference_forward
from ..ops import self_attention_weights as reference_weights
from ..ops.low_rank_linear import affine_backward, affine_forward
from ._compile import kernel

# e^r ~ 1 + r + r^2 (P0 + P1 r + ... + P4 r^4) on |r| <= ln(2)/2: least squares on Chebyshev nodes,
# reweighted (Lawson) towards the minimax fit of the relative error.
EXP_P = (0.49999993451, 0.16666520688, 0.041668387408, 0.0083687100357, 0.0013814611011)
LN2_HEAD = 0.693359375                      # 355/512: n * LN2_HEAD is exact in float32 for |n| < 2^15
LN2_TAIL = math.log(2) - LN2_HEAD
EXP_LOWEST = -87.33654                      # ln of float32's smallest normal number; below it e^x -> 0
EXP_HIGHEST = 88.37                         # 2^n stays finite; above it e^x -> inf


def exp_float32(x):
    """e^x for a float32 ``x`` (relative error <= 8.2e-8), 0 below -87.3, inf above 88.4; NaN stays NaN."""
    f = np.float32
    y = x
    if y < f(EXP_LOWEST):       # comparisons, not min/max, so that a NaN falls through
        y = f(EXP_LOWEST)
    elif y > f(EXP_HIGHEST):
        y = f(EXP_HIGHEST)
    n = np.floor(y * f(1 / math.log(2)) + f(0.5))
    r = y - n * f(LN2_HEAD) - n * f(LN2_TAIL)
    p = (((f(EXP_P[4]) * r + f(EXP_P[3])) * r + f(EXP_P[2])) * r + f(EXP_P[1])) * r + f(EXP_P[0])
    two_to_n = np.int32((np.int32(n) + np.int32(127)) << np.int32(23)).view(np.float32)   # exponent bits
    e = (p * r * r + r + f(1)) * two_to_n
    if x < f(EXP_LOWEST):
        e = f(0)
    elif x > f(EXP_HIGHEST):
        e = f(np.inf)
    return e


def softmax_exp(x):
    """e^x as the softmax kernel takes it: :func:`exp_float32` in float32, ``math.exp`` otherwise."""
    return math.exp(x)


@overload(softmax_exp, inline="always")
def _softmax_exp_by_type(x):
    """numba picks the implementation from the argument's type when it compiles a kernel."""
    if isinstance(x, types.Float) and x.bitwidth == 32:
        return exp_float32
    return lambda x: math.exp(x)


@kernel()
def causal_softmax_inplace(scores, scale):
    """scores (B, nh, T, T) <- softmax(scale * scores + causal mask) along the last axis, 0 above the diagonal."""
    B, H, T, _ = scores.shape
    f = scores.dtype.type                   # constants in the array's type: no float64 detours
    zero, one = f(0), f(1)
    for bh in prange(B * H):
        for i in range(T):
            row = scores[bh // H, bh % H, i]
            m = row[0]
            for j in range(1, i + 1):
                m = max(m, row[j])
            total = zero
            for j in range(i + 1):
                e = softmax_exp((row[j] - m) * scale)
                row[j] = e
                total += e
            inv = one / total
            for j in range(i + 1):
                row[j] *= inv
            row[i + 1:] = zero


@kernel()
def causal_softmax_backward_inplace(datt, att, scale):
    """datt (B, nh, T, T) <- scale * att * (datt - rowsum(datt * att)), zero above the diagonal."""
    B, H, T, _ = att.shape
    zero = scale - scale
    for bh in prange(B * H):
        for i in range(T):
            a, g = att[bh // H, bh % H, i], datt[bh // H, bh % H, i]
            dot = zero
            for j in range(i + 1):
                dot += a[j] * g[j]
            for j in range(i + 1):
                g[j] = scale * a[j] * (g[j] - dot)
            g[i + 1:] = zero


def self_attention_forward(x, w_attn, b_attn, w_proj, b_proj, n_head,
                           dropout_p=0.0, rng=None, past_kv=None):
    """Same signature and results as :func:`npgpt.ops.self_attention_forward`."""
    if past_kv is not None or (dropout_p > 0.0 and rng is not None):
        return reference_forward(x, w_attn, b_attn, w_proj, b_proj, n_head, dropout_p, rng, past_kv)
    B, T, _ = x.shape
    qkv, qkv_cache = affine_forward(x, w_attn, b_attn)
    D = qkv.shape[-1] // 3                                                      # n_head * hs
    hs = D // n_head
    q, k, v = qkv.reshape(B, T, 3, n_head, hs).transpose(2, 0, 3, 1, 4)       # views (B, nh, T, hs)
    scale = x.dtype.type(1.0 / np.sqrt(hs))
    att = q @ k.swapaxes(-1, -2)                                                # (B, nh, T, T)
    causal_softmax_inplace(att.size)(att, scale)
    y = np.empty((B, T, D), dtype=x.dtype)
    np.matmul(att, v, out=y.reshape(B, T, n_head, hs).transpose(0, 2, 1, 3))   # merged in place
    out, proj_cache = affine_forward(y, w_proj, b_proj)
    return out, FusedCache(qkv_cache, q, k, v, att, proj_cache, scale), (k, v)


class FusedCache(NamedTuple):
    """The fused forward's cache: a type of its own, so the backward can tell it from the readable
    op's cache (made when the forward fell back)."""
    qkv: object             # the fused QKV projection's cache
    q: object               # (B, nh, T, hs) views into the projection's output
    k: object
    v: object
    att: object             # the attention weights (B, nh, T, T), zero above the diagonal
    proj: object            # the output projection's cache
    scale: object


def self_attention_weights(cache):
    """Same as :func:`npgpt.ops.self_attention_weights`, for either kind of cache."""
    return cache.att if isinstance(cache, FusedCache) else reference_weights(cache)


def self_attention_backward(dout, cache):
    """Same results as :func:`npgpt.ops.self_attention_backward`."""
    if not isinstance(cache, FusedCache):
        return reference_backward(dout, cache)
    qkv_cache, q, k, v, att, proj_cache, scale = cache
    B, n_head, T, hs = q.shape
    dy, dw_proj, db_proj = affine_backward(dout, proj_cache)
    dy = dy.reshape(B, T, n_head, hs).transpose(0, 2, 1, 3)                    # (B, nh, T, hs) view
    dqkv = np.empty((B, T, 3 * n_head * hs), dtype=q.dtype)
    dq, dk, dv = dqkv.reshape(B, T, 3, n_head, hs).transpose(2, 0, 3, 1, 4)     # views into dqkv
    np.matmul(att.swapaxes(-1, -2), dy, out=dv)
    datt = dy @ v.swapaxes(-1, -2)
    causal_softmax_backward_inplace(att.size)(datt, att, scale)                 # now dS
    np.matmul(datt, k, out=dq)
    np.matmul(datt.swapaxes(-1, -2), q, out=dk)
    dx, dw_attn, db_attn = affine_backward(dqkv, qkv_cache)
    return dx, dw_attn, db_attn, dw_proj, db_proj
