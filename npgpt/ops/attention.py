r"""Scaled dot-product attention and multi-head causal self-attention (document section 4.2).

The document prints $\mathrm{softmax}\big(\tfrac{1}{\sqrt{d_k}} W_q X W_k^\top W_v^\top + \mathrm{Mask}\big)$:
that product of shapes does not chain, there is no $V$ to weight, and nothing is applied to the
attention weights. The formula npgpt computes (Vaswani et al., 2017), for one head, is

$$A = \mathrm{softmax}\!\left(\frac{Q K^\top}{\sqrt{d_k}} + M\right),\qquad Y = A V,\qquad
  Q = XW_Q,\; K = XW_K,\; V = XW_V$$

with the causal mask $M_{ij} = 0$ when key $j$ is not after query $i$, and $-\infty$ otherwise.

Backward, with $S = QK^\top/\sqrt{d_k} + M$ and $\delta = \partial L/\partial Y$:

$$\frac{\partial L}{\partial V} = A^\top\delta,\quad
  \frac{\partial L}{\partial A} = \delta V^\top,\quad
  \frac{\partial L}{\partial S} = A\odot\Big(\frac{\partial L}{\partial A} - \mathrm{rowsum}\big(\tfrac{\partial L}{\partial A}\odot A\big)\Big),\quad
  \frac{\partial L}{\partial Q} = \frac{\partial L}{\partial S}\frac{K}{\sqrt{d_k}},\quad
  \frac{\partial L}{\partial K} = \Big(\frac{\partial L}{\partial S}\Big)^{\!\top}\frac{Q}{\sqrt{d_k}}$$

Masked entries have $A_{ij}=0$, so their gradient is zero without any special case.
"""
import functools
from typing import NamedTuple

import numpy as np
from numpy.typing import DTypeLike, NDArray

from .dropout import DropoutCache, dropout_backward, dropout_forward
from .low_rank_linear import AffineCache, Weight, affine_backward, affine_forward
from .softmax import softmax_backward, softmax_forward

# Keys and values (B, n_head, T, head_size): what a KV cache holds for one block.
KeysValues = tuple[NDArray[np.floating], NDArray[np.floating]]


class AttentionCache(NamedTuple):
    """What :func:`attention_forward` keeps for its backward."""
    q: NDArray[np.floating]
    k: NDArray[np.floating]
    v: NDArray[np.floating]
    att_dropped: NDArray[np.floating]   # the weights the values were averaged with (after dropout)
    softmax: NDArray[np.floating]       # the softmax's cache: the weights A before dropout
    dropout: DropoutCache
    scale: float


class SelfAttentionCache(NamedTuple):
    """What :func:`self_attention_forward` keeps for its backward."""
    qkv: AffineCache        # the fused QKV projection's cache
    attention: AttentionCache
    proj: AffineCache       # the output projection's cache
    n_past: int             # cached positions before the new ones (constants: no gradient)


@functools.lru_cache(maxsize=64)
def causal_mask(n_query: int, n_key: int, dtype: DTypeLike = np.float64) -> NDArray[np.floating]:
    """Additive (n_query, n_key) mask: 0 where a query may look, -inf at keys in its future.

    The queries are the last ``n_query`` of the ``n_key`` positions (with a KV cache, the new tokens
    come after the cached ones), so query i sits at position ``n_key - n_query + i``. Masks are
    remembered per shape (every layer and step reuses them), so they are read-only.
    """
    future = np.triu(np.ones((n_query, n_key), dtype=bool), k=1 + n_key - n_query)
    mask = np.where(future, -np.inf, 0.0).astype(dtype)
    mask.flags.writeable = False
    return mask


def attention_forward(q: NDArray[np.floating], k: NDArray[np.floating], v: NDArray[np.floating],
                      mask: NDArray[np.floating] | None = None, dropout_p: float = 0.0,
                      rng: np.random.Generator | None = None) -> tuple[NDArray[np.floating], AttentionCache]:
    """softmax(q k^T / sqrt(d_k) + mask) v for q (..., Tq, d_k), k (..., Tk, d_k), v (..., Tk, d_v).

    ``mask`` is an additive (Tq, Tk) array (use :func:`causal_mask`) or None. Dropout, if any, is
    applied to the attention weights, as in GPT-2.
    """
    scale = 1.0 / np.sqrt(q.shape[-1])
    scores = (q @ k.swapaxes(-1, -2)) * q.dtype.type(scale)     # (..., Tq, Tk)
    if mask is not None:
        scores += mask
    att, softmax_cache = softmax_forward(scores)
    att_dropped, dropout_cache = dropout_forward(att, dropout_p, rng)
    y = att_dropped @ v                                          # (..., Tq, d_v)
    return y, AttentionCache(q, k, v, att_dropped, softmax_cache, dropout_cache, scale)


def attention_backward(dy: NDArray[np.floating], cache: AttentionCache
                       ) -> tuple[NDArray[np.floating], NDArray[np.floating], NDArray[np.floating]]:
    """Return (dq, dk, dv)."""
    q, k, v, att_dropped, softmax_cache, dropout_cache, scale = cache
    dv = att_dropped.swapaxes(-1, -2) @ dy
    datt = dropout_backward(dy @ v.swapaxes(-1, -2), dropout_cache)
    dscores = softmax_backward(datt, softmax_cache) * q.dtype.type(scale)
    dq = dscores @ k
    dk = dscores.swapaxes(-1, -2) @ q
    return dq, dk, dv


def attention_weights(cache: AttentionCache) -> NDArray[np.floating]:
    """The softmax weights A (..., Tq, Tk) kept in an :func:`attention_forward` cache (before dropout)."""
    return cache.softmax


def self_attention_weights(cache: SelfAttentionCache) -> NDArray[np.floating]:
    """The per-head weights A (B, n_head, Tq, Tk) kept in a :func:`self_attention_forward` cache."""
    return attention_weights(cache.attention)


def split_heads(x: NDArray[np.floating], n_head: int) -> NDArray[np.floating]:
    """(B, T, C) -> (B, n_head, T, C // n_head): head h takes columns h*hs .. (h+1)*hs."""
    B, T, C = x.shape
    return x.reshape(B, T, n_head, C // n_head).transpose(0, 2, 1, 3)


def merge_heads(x: NDArray[np.floating]) -> NDArray[np.floating]:
    """(B, n_head, T, hs) -> (B, T, n_head * hs), the inverse of :func:`split_heads`."""
    B, nh, T, hs = x.shape
    return x.transpose(0, 2, 1, 3).reshape(B, T, nh * hs)


def self_attention_forward(x: NDArray[np.floating], w_attn: Weight, b_attn: NDArray[np.floating] | None,
                           w_proj: Weight, b_proj: NDArray[np.floating] | None, n_head: int,
                           dropout_p: float = 0.0, rng: np.random.Generator | None = None,
                           past_kv: KeysValues | None = None
                           ) -> tuple[NDArray[np.floating], SelfAttentionCache, KeysValues]:
    r"""Multi-head causal self-attention with a fused QKV projection (GPT-2's ``attn`` module).

    ``w_attn`` (C, 3C) holds $W_Q, W_K, W_V$ as three consecutive C-wide column blocks; the heads
    are attended in parallel, merged and projected by ``w_proj`` (C, C).

    ``past_kv`` is an optional (k, v) pair of cached keys and values (B, nh, T_past, hs) that the
    new positions attend to (generation with a KV cache). Returns (out, cache, (k, v)) where (k, v)
    covers the past and new positions.
    """
    qkv, qkv_cache = affine_forward(x, w_attn, b_attn)              # (B, T, 3D), D = n_head * hs
    D = qkv.shape[-1] // 3                                          # = C unless heads were pruned
    q, k, v = (split_heads(qkv[..., i * D:(i + 1) * D], n_head) for i in range(3))
    n_past = 0
    if past_kv is not None:
        n_past = past_kv[0].shape[2]
        k = np.concatenate([past_kv[0], k], axis=2)
        v = np.concatenate([past_kv[1], v], axis=2)
    mask = causal_mask(q.shape[2], k.shape[2], x.dtype)
    y, att_cache = attention_forward(q, k, v, mask, dropout_p, rng)  # (B, nh, T, hs)
    out, proj_cache = affine_forward(merge_heads(y), w_proj, b_proj)
    return out, SelfAttentionCache(qkv_cache, att_cache, proj_cache, n_past), (k, v)


def self_attention_backward(dout: NDArray[np.floating], cache: SelfAttentionCache) -> tuple[
        NDArray[np.floating], Weight, NDArray[np.floating] | None, Weight, NDArray[np.floating] | None]:
    """Return (dx, dw_attn, db_attn, dw_proj, db_proj); gradients do not flow into a KV cache."""
    qkv_cache, att_cache, proj_cache, n_past = cache
    n_head = att_cache.q.shape[1]
    dy, dw_proj, db_proj = affine_backward(dout, proj_cache)
    dq, dk, dv = attention_backward(split_heads(dy, n_head), att_cache)
    dk, dv = dk[:, :, n_past:], dv[:, :, n_past:]   # cached positions are constants
    dqkv = np.concatenate([merge_heads(dq), merge_heads(dk), merge_heads(dv)], axis=-1)
    dx, dw_attn, db_attn = affine_backward(dqkv, qkv_cache)
    return dx, dw_attn, db_attn, dw_proj, db_proj
