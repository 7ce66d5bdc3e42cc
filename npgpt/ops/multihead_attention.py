r"""Multi-head attention in PyTorch's layout (``nn.MultiheadAttention``), and its masks.

Every weight is (out, in) and $y = xW^\top + b$; the query, key and value weights are stacked in
one ``in_proj_weight`` $= [W_Q; W_K; W_V]$ (3E, E):

$$Q = X_q W_Q^\top + b_Q,\quad K = X_k W_K^\top + b_K,\quad V = X_v W_V^\top + b_V,\qquad
  \mathrm{MHA} = \mathrm{Concat}_h\Big(\mathrm{softmax}\big(\tfrac{Q_h K_h^\top}{\sqrt{d_k}} + M\big)V_h\Big)\,W_O^\top + b_O$$

Self-attention has $X_q = X_k = X_v$; cross-attention takes its queries from the decoder and its keys
and values from the encoder's output. $M$ (B, H, T, S) is the sum of the attention mask (float:
added as is; bool: True becomes $-\infty$) and the key padding mask (True, i.e. padding, becomes
$-\infty$ for every query).
"""
import numbers
from collections.abc import Mapping
from typing import Any, NamedTuple

import numpy as np
from numpy.typing import ArrayLike, DTypeLike, NDArray

from .attention import (
    AttentionCache,
    attention_backward,
    attention_forward,
    attention_weights,
    causal_mask,
    merge_heads,
    split_heads,
)
from .linear import LinearCache, torch_linear_backward, torch_linear_forward


def generate_square_subsequent_mask(sz: int, dtype: DTypeLike = np.float64) -> NDArray[np.floating]:
    """The (sz, sz) causal mask ``nn.Transformer.generate_square_subsequent_mask`` makes: 0 on and below
    the diagonal, -inf above it (query i may not look at a later position j > i)."""
    if isinstance(sz, bool) or not isinstance(sz, numbers.Integral) or sz < 1:
        raise ValueError(f"sz must be a positive integer, got {sz!r}")
    return causal_mask(int(sz), int(sz), dtype)


class MultiheadAttentionCache(NamedTuple):
    """What :func:`multihead_attention_forward` keeps for its backward."""
    q: LinearCache          # the three projections' caches
    k: LinearCache
    v: LinearCache
    attention: AttentionCache   # the scaled dot-product attention's cache (its weights among them)
    out: LinearCache        # the output projection's cache
    nhead: int


def _as_additive(mask: ArrayLike, name: str, dtype: DTypeLike) -> NDArray[np.floating]:
    """A bool mask (True blocks) as 0 / -inf; a float mask as is (cast to ``dtype``)."""
    mask = np.asarray(mask)
    if mask.dtype == np.bool_:
        return np.where(mask, -np.inf, 0.0).astype(dtype)
    if not np.issubdtype(mask.dtype, np.floating):
        raise ValueError(f"{name} must be bool (True blocks) or float (added to the scores), "
                         f"got dtype {mask.dtype}")
    return mask.astype(dtype, copy=False)


def attention_mask(attn_mask: ArrayLike | None, key_padding_mask: ArrayLike | None, batch: int, nhead: int,
                   n_query: int, n_key: int, dtype: DTypeLike = np.float64,
                   names: tuple[str, str] = ("attn_mask", "key_padding_mask")) -> NDArray[np.floating] | None:
    r"""Combine PyTorch-style masks into one additive mask $M$ for (B, H, T, S) scores, or None.

    ``attn_mask`` is (T, S), the same for every sequence, or (B*H, T, S), one per sequence and head
    (row ``b*H + h``, PyTorch's order); ``key_padding_mask`` is (B, S), True (or -inf) at keys that are
    padding. Bool entries that are True become $-\infty$; float entries are added as they are. A
    query left with no key to attend to would divide 0 by 0 in the softmax (PyTorch returns NaN):
    that raises a ValueError instead. ``names`` label the two masks in error messages.
    """
    B, H, T, S = batch, nhead, n_query, n_key
    M = None
    if attn_mask is not None:
        m = _as_additive(attn_mask, names[0], dtype)
        if m.shape == (T, S):
            M = m[None, None]                       # (1, 1, T, S)
        elif m.shape == (B * H, T, S):
            M = m.reshape(B, H, T, S)
        else:
            raise ValueError(f"{names[0]} has shape {m.shape}, expected (T, S) = {(T, S)} "
                             f"or (N*nhead, T, S) = {(B * H, T, S)}")
    if key_padding_mask is not None:
        m = _as_additive(key_padding_mask, names[1], dtype)
        if m.shape != (B, S):
            raise ValueError(f"{names[1]} has shape {m.shape}, expected (N, S) = {(B, S)}")
        m = m[:, None, None, :]                     # (B, 1, 1, S)
        M = m if M is None else M + m
    if M is not None:
        blocked = np.isneginf(M).all(-1)            # a query whose every key is masked
        if blocked.any():
            b, h, t = np.argwhere(blocked)[0]
            where = "".join([f" in sequence {b}" if M.shape[0] > 1 else "",
                             f" for head {h}" if M.shape[1] > 1 else ""])
            raise ValueError(f"{names[0]} and {names[1]} mask every key of query {t}{where}: "
                             "its attention weights would be 0/0 (PyTorch returns NaN there)")
    return M


def multihead_attention_forward(query: NDArray[np.floating], key: NDArray[np.floating],
                                value: NDArray[np.floating], p: Mapping[str, NDArray[np.floating]],
                                nhead: int, mask: NDArray[np.floating] | None = None
                                ) -> tuple[NDArray[np.floating], MultiheadAttentionCache]:
    r"""``nn.MultiheadAttention`` on batch-first arrays: query (B, T, E), key and value (B, S, E).

    ``p`` holds ``in_proj_weight`` (3E, E), ``in_proj_bias`` (3E,), ``out_proj.weight`` (E, E) and
    ``out_proj.bias`` (E,); ``mask`` is an additive mask broadcastable to (B, nhead, T, S) (see
    :func:`attention_mask`). The rows of ``in_proj_weight`` are $W_Q$, $W_K$, $W_V$ in that order.
    """
    E = query.shape[-1]
    W, b = p["in_proj_weight"], p["in_proj_bias"]
    q, q_cache = torch_linear_forward(query, W[:E], b[:E])               # (B, T, E)
    k, k_cache = torch_linear_forward(key, W[E:2 * E], b[E:2 * E])       # (B, S, E)
    v, v_cache = torch_linear_forward(value, W[2 * E:], b[2 * E:])       # (B, S, E)
    y, att_cache = attention_forward(split_heads(q, nhead), split_heads(k, nhead),
                                     split_heads(v, nhead), mask)      # (B, H, T, hs)
    out, out_cache = torch_linear_forward(merge_heads(y), p["out_proj.weight"], p["out_proj.bias"])
    return out, MultiheadAttentionCache(q_cache, k_cache, v_cache, att_cache, out_cache, nhead)


def multihead_attention_backward(dout: NDArray[np.floating], cache: MultiheadAttentionCache) -> tuple[
        NDArray[np.floating], NDArray[np.floating], NDArray[np.floating], dict[str, NDArray[np.floating]]]:
    r"""Return (dquery, dkey, dvalue, grads); grads keyed like ``p``.

    The three projections are independent affine maps, so ``in_proj_weight``'s gradient is the three
    blocks $[\delta_Q^\top X_q;\ \delta_K^\top X_k;\ \delta_V^\top X_v]$ stacked back in order.
    """
    q_cache, k_cache, v_cache, att_cache, out_cache, nhead = cache
    g: dict[str, Any] = {}      # no gradient is None: every bias exists (the ops' types cannot say so)
    dy, g["out_proj.weight"], g["out_proj.bias"] = torch_linear_backward(dout, out_cache)
    dq, dk, dv = attention_backward(split_heads(dy, nhead), att_cache)
    dquery, dWq, dbq = torch_linear_backward(merge_heads(dq), q_cache)
    dkey, dWk, dbk = torch_linear_backward(merge_heads(dk), k_cache)
    dvalue, dWv, dbv = torch_linear_backward(merge_heads(dv), v_cache)
    g["in_proj_weight"] = np.concatenate([dWq, dWk, dWv])
    g["in_proj_bias"] = np.concatenate([dbq, dbk, dbv])
    return dquery, dkey, dvalue, g


def multihead_attention_weights(cache: MultiheadAttentionCache) -> NDArray[np.floating]:
    """The softmax weights (B, nhead, T, S) kept in a :func:`multihead_attention_forward` cache."""
    return attention_weights(cache.attention)
