r"""Causal self-attention with a fused masked softmax: the twin of :func:`npgpt.ops.self_attention_forward`.

The two matrix products per head, $S = QK^\top$ and $Y = AV$, stay on BLAS. What numba fuses is
everything between them: the scale, the causal mask (a loop bound $j \le i$, never a (T, T) array)
and the softmax, in place, in three passes: numba shifts and scales the lower triangle and writes
$-\infty$ above it, NumPy's SIMD ``np.exp`` exponentiates, numba normalises each row:

$$a_{ij} = \frac{e^{\,c\,(s_{ij}-m_i)}}{\sum_{j'\le i} e^{\,c\,(s_{ij'}-m_i)}},\qquad c = \frac1{\sqrt d},\quad m_i = \max_{j\le i} s_{ij}$$

and its backward, $\partial s_{ij} = c\,a_{ij}\big(g_{ij} - \sum_{j'} a_{ij'} g_{ij'}\big)$ with $g = \delta V^\top$.
Fusing the products themselves into numba was measured and did not pay (float32, 2-core EPYC):
with hs = 32 each dot product $q_i\cdot k_j$ is two vectors plus a horizontal sum, against BLAS's
register tiles, so numba's $j \le i$ half of $QK^\top$ took 0.11-0.12 ms where BLAS's whole
product took 0.13 (baby: B=12, T=64, nh=4), and $AV$ or the backward's products (sums over a
triangular range) were slower still (fused core forward 0.49 ms, backward 1.9 ms, against 0.36
and 0.53 here). Fusing only the score products into the shift/mask pass for long contexts won in
isolation (small: B=16, T=256, nh=6; 3.9 vs 5.5 ms) but not in a whole layer (110 vs 106 ms).
Nor did cutting each stacked product into one half per thread on single-threaded BLAS: on small
that made $QK^\top$ 1.6x faster (4.5 vs 7.3 ms) but the other five products 1.1-1.8x slower
(e.g. $AV$ 9.4 vs 5.1 ms), and a layer 134 ms against 112.

The products write straight into the merged (B, T, C) output and the (B, T, 3C) gradient of the
fused projection, so no split/merge copies are made. Dropout on the attention weights and a KV
cache fall back to the readable op (neither is on the training hot path).
"""
from typing import NamedTuple

import numpy as np
from numba import prange

from ..ops import self_attention_backward as reference_backward
from ..ops import self_attention_forward as reference_forward
from ..ops import self_attention_weights as reference_weights
from ..ops.low_rank_linear import affine_backward, affine_forward
from ._compile import kernel


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
    one = att.dtype.type(1)                 # typed: a bare 1 / total would be float64
    for bh in prange(B * H):
        for i in range(T):
            row = att[bh // H, bh % H, i]
            total = row[0] - row[0]
            for j in range(i + 1):
                total += row[j]
            inv = one / total
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
    causal_softmax_inplace(att, scale)
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
