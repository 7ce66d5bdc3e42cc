r"""Causal self-attention with a fused masked softmax: the twin of :func:`npgpt.ops.self_attention_forward`.

What numba fuses is everything around the two matrix products per head, $S = QK^\top$ and
$Y = AV$: the scale, the causal mask (a loop bound $j \le i$, never a (T, T) array) and the
softmax, in place, in three passes: numba shifts and scales the lower triangle and writes
$-\infty$ above it, NumPy's SIMD ``np.exp`` exponentiates, numba normalises each row:

$$a_{ij} = \frac{e^{\,c\,(s_{ij}-m_i)}}{\sum_{j'\le i} e^{\,c\,(s_{ij'}-m_i)}},\qquad c = \frac1{\sqrt d},\quad m_i = \max_{j\le i} s_{ij}$$

and its backward, $\partial s_{ij} = c\,a_{ij}\big(g_{ij} - \sum_{j'} a_{ij'} g_{ij'}\big)$ with $g = \delta V^\top$.

From ``FUSED_MIN_CONTEXT`` positions on, the products that feed the softmax are fused into it too:
$s_{ij} = q_i\cdot k_j$ (forward) and $g_{ij} = \delta_i\cdot v_j$ (backward) are computed by numba
for $j \le i$ only, straight into the shifted scores and into $\partial S$, a 2 x 4 block of
dot products at a time (:func:`_block`). Shorter contexts keep BLAS for them, and every context
keeps BLAS for $AV$, $A^\top\delta$, $\partial S\,K$ and $\partial S^\top Q$: numba's code for
these small products (hs = 32: two vectors per dot product, each with a horizontal sum, against
BLAS's register tiles) was measured slower than BLAS's full (T, T) products (see the constant).

The products write straight into the merged (B, T, C) output and the (B, T, 3C) gradient of the
fused projection, so no split/merge copies are made. Dropout on the attention weights and a KV
cache fall back to the readable op (neither is on the training hot path).
"""
from typing import NamedTuple

import numpy as np
from numba import njit, prange

from ..ops import self_attention_backward as reference_backward
from ..ops import self_attention_forward as reference_forward
from ..ops import self_attention_weights as reference_weights
from ..ops.low_rank_linear import affine_backward, affine_forward
from ._compile import FAST_MATH, kernel

# Below this context length the scores come from BLAS (q @ k^T, then a numba pass shifts and
# masks them); from it on, from the fused kernels below. Measured (2-core EPYC, AVX-512, float32,
# one layer, ms): baby (B=12, T=64, nh=4, hs=32) S + shift 0.16 BLAS / 0.20 fused, backward
# g + softmax grad 0.16 / 0.20; small (B=16, T=256, nh=6, hs=64) 5.5-7.8 / 3.9-4.1 and
# 5.6-7.8 / 3.8-5.0. At T = 64 the per-head work is too small for numba's threads (the serial
# build runs) and BLAS's tiles beat numba's dot products; at T = 256 the fused kernels skip the
# upper triangle and a pass over the (T, T) scores, and run on both cores.
FUSED_MIN_CONTEXT = 256

_jit = njit(cache=True, fastmath=FAST_MATH, error_model="numpy")


@kernel()
def _shift_and_mask(scores, scale):
    """scores (B, nh, T, T) <- scale * (s - row max) where j <= i, -inf above the diagonal."""
    B, H, T, _ = scores.shape
    for bh in prange(B * H):
        for i in range(T):
            row = scores[bh // H, bh % H, i]
            m = row[0]
            for j in range(1, i + 1):
                m = max(m, row[j])
            for j in range(i + 1):
                row[j] = (row[j] - m) * scale
            row[i + 1:] = -np.inf


@kernel()
def _normalise_rows(att):
    """att (B, nh, T, T) <- each row divided by its sum over j <= i (the rest is already 0)."""
    B, H, T, _ = att.shape
    for bh in prange(B * H):
        for i in range(T):
            row = att[bh // H, bh % H, i]
            total = row[0] - row[0]
            for j in range(i + 1):
                total += row[j]
            inv = 1 / total
            for j in range(i + 1):
                row[j] *= inv


def causal_softmax_inplace(scores, scale):
    """scores (B, nh, T, T) <- softmax(scale * scores + causal mask) along the last axis.

    The exponential runs as NumPy's SIMD ``np.exp`` over the whole array (numba's is scalar here,
    3x slower); the masked entries are -inf by then, so they come out exactly 0."""
    _shift_and_mask(scores.size)(scores, scale)
    np.exp(scores, out=scores)
    _normalise_rows(scores.size)(scores)


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


@njit(inline="always")
def _block(x, y, out, r, c, n):
    """out[r:r+2, c:c+4] = x[r:r+2, :n] @ y[c:c+4, :n].T: eight running sums, so each pair of x
    rows is loaded once per four y rows; LLVM vectorises the pass over the n columns."""
    zero = x[r, 0] - x[r, 0]
    s00 = s01 = s02 = s03 = s10 = s11 = s12 = s13 = zero
    for t in range(n):
        x0, x1 = x[r, t], x[r + 1, t]
        y0, y1, y2, y3 = y[c, t], y[c + 1, t], y[c + 2, t], y[c + 3, t]
        s00 += x0 * y0
        s01 += x0 * y1
        s02 += x0 * y2
        s03 += x0 * y3
        s10 += x1 * y0
        s11 += x1 * y1
        s12 += x1 * y2
        s13 += x1 * y3
    out[r, c], out[r, c + 1], out[r, c + 2], out[r, c + 3] = s00, s01, s02, s03
    out[r + 1, c], out[r + 1, c + 1], out[r + 1, c + 2], out[r + 1, c + 3] = s10, s11, s12, s13


@_jit
def _causal_dots(x, y, out):
    """out[i, j] = x_i . y_j for j <= i (and the few above the diagonal that finish a block).
    x, y (Tp, hp) are padded with zeros to a multiple of 4 rows and columns."""
    for i in range(0, x.shape[0], 2):
        for j in range(0, i + 2, 4):
            _block(x, y, out, i, j, x.shape[1])


@njit(inline="always")
def _head_rows(src, b, h):
    """src[b, :, h, :] of a (B, T, nh, hs) array, copied into a (Tp, hp) block padded with zeros
    to whole blocks of :func:`_block`."""
    _, T, _, hs = src.shape
    rows = np.zeros(((T + 3) // 4 * 4, (hs + 3) // 4 * 4), src.dtype)
    for i in range(T):
        for d in range(hs):
            rows[i, d] = src[b, i, h, d]
    return rows


@kernel()
def _causal_scores(qkv, att, scale):
    """att (B, nh, T, T) <- scale * (q_i . k_j - m_i) for j <= i, -inf above the diagonal."""
    B, T, _, H, _ = qkv.shape
    for bh in prange(B * H):
        b, h = bh // H, bh % H
        q, k = _head_rows(qkv[:, :, 0], b, h), _head_rows(qkv[:, :, 1], b, h)
        s = np.empty((q.shape[0], q.shape[0]), qkv.dtype)
        _causal_dots(q, k, s)
        for i in range(T):
            m = s[i, 0]
            for j in range(1, i + 1):
                m = max(m, s[i, j])
            for j in range(i + 1):
                att[b, h, i, j] = (s[i, j] - m) * scale
            for j in range(i + 1, T):
                att[b, h, i, j] = -np.inf


@kernel()
def _causal_scores_grad(qkv, att, dy, ds, scale):
    """ds (B, nh, T, T) <- scale * a_ij * (g_ij - sum_j' a_ij' g_ij') with g_ij = dy_i . v_j, for
    j <= i; zero above the diagonal. dy is (B, T, nh, hs)."""
    B, T, _, H, _ = qkv.shape
    for bh in prange(B * H):
        b, h = bh // H, bh % H
        d_y, v = _head_rows(dy, b, h), _head_rows(qkv[:, :, 2], b, h)
        g = np.empty((v.shape[0], v.shape[0]), qkv.dtype)
        _causal_dots(d_y, v, g)
        for i in range(T):
            dot = scale - scale
            for j in range(i + 1):
                dot += att[b, h, i, j] * g[i, j]
            for j in range(i + 1):
                ds[b, h, i, j] = scale * att[b, h, i, j] * (g[i, j] - dot)
            for j in range(i + 1, T):
                ds[b, h, i, j] = 0


def self_attention_forward(x, w_attn, b_attn, w_proj, b_proj, n_head,
                           dropout_p=0.0, rng=None, past_kv=None):
    """Same signature and results as :func:`npgpt.ops.self_attention_forward`."""
    if past_kv is not None or (dropout_p > 0.0 and rng is not None):
        return reference_forward(x, w_attn, b_attn, w_proj, b_proj, n_head, dropout_p, rng, past_kv)
    B, T, _ = x.shape
    qkv, qkv_cache = affine_forward(x, w_attn, b_attn)
    D = qkv.shape[-1] // 3                                                      # n_head * hs
    hs = D // n_head
    scale = x.dtype.type(1.0 / np.sqrt(hs))
    heads = qkv.reshape(B, T, 3, n_head, hs)                                    # (B, T, 3, nh, hs)
    q, k, v = heads.transpose(2, 0, 3, 1, 4)                                    # views (B, nh, T, hs)
    if T >= FUSED_MIN_CONTEXT:
        att = np.empty((B, n_head, T, T), dtype=x.dtype)
        _causal_scores(att.size)(heads, att, scale)
        np.exp(att, out=att)
        _normalise_rows(att.size)(att)
    else:
        att = q @ k.swapaxes(-1, -2)                                            # (B, nh, T, T)
        causal_softmax_inplace(att, scale)
    y = np.empty((B, T, D), dtype=x.dtype)
    np.matmul(att, v, out=y.reshape(B, T, n_head, hs).transpose(0, 2, 1, 3))   # merged in place
    out, proj_cache = affine_forward(y, w_proj, b_proj)
    return out, FusedCache(qkv_cache, heads, q, k, v, att, proj_cache, scale), (k, v)


class FusedCache(NamedTuple):
    """The fused forward's cache: a type of its own, so the backward can tell it from the readable
    op's cache (made when the forward fell back)."""
    qkv: object             # the fused QKV projection's cache
    heads: object           # its output as (B, T, 3, nh, hs): q, k, v are views into it
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
    qkv_cache, heads, q, k, v, att, proj_cache, scale = cache
    B, n_head, T, hs = q.shape
    dy_merged, dw_proj, db_proj = affine_backward(dout, proj_cache)
    dy_rows = dy_merged.reshape(B, T, n_head, hs)
    dy = dy_rows.transpose(0, 2, 1, 3)                                          # (B, nh, T, hs) view
    dqkv = np.empty((B, T, 3 * n_head * hs), dtype=q.dtype)
    dq, dk, dv = dqkv.reshape(B, T, 3, n_head, hs).transpose(2, 0, 3, 1, 4)     # views into dqkv
    np.matmul(att.swapaxes(-1, -2), dy, out=dv)
    if T >= FUSED_MIN_CONTEXT:
        datt = np.empty_like(att)                                               # dS
        _causal_scores_grad(att.size)(heads, att, dy_rows, datt, scale)
    else:
        datt = dy @ v.swapaxes(-1, -2)
        causal_softmax_backward_inplace(att.size)(datt, att, scale)             # now dS
    np.matmul(datt, k, out=dq)
    np.matmul(datt.swapaxes(-1, -2), q, out=dk)
    dx, dw_attn, db_attn = affine_backward(dqkv, qkv_cache)
    return dx, dw_attn, db_attn, dw_proj, db_proj
