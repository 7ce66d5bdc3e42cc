r"""The post-LN encoder and decoder layers of ``nn.Transformer`` (document section 4, code example).

PyTorch's defaults: post-LayerNorm (``norm_first=False``), ReLU, LayerNorm eps $10^{-5}$, with
$\mathrm{FF}(h) = \max(0,\, hW_1^\top + b_1)\,W_2^\top + b_2$:

$$\text{encoder:}\quad h = \mathrm{LN}_1\big(x + \mathrm{SA}(x)\big),\qquad y = \mathrm{LN}_2\big(h + \mathrm{FF}(h)\big)$$
$$\text{decoder:}\quad a = \mathrm{LN}_1\big(x + \mathrm{SA}(x)\big),\quad c = \mathrm{LN}_2\big(a + \mathrm{CA}(a, m)\big),\quad
  y = \mathrm{LN}_3\big(c + \mathrm{FF}(c)\big)$$

**Backward of a post-LN residual** $z = \mathrm{LN}(u)$, $u = x + f(x)$: the LayerNorm's backward gives
$\delta_u$, which reaches $x$ twice, along the skip and through the branch:
$\delta_x = \delta_u + J_f^\top \delta_u$. Self-attention's input is its query, key and value at once,
so $\delta_x$ collects all three input gradients; the decoder's memory collects the key and value
gradients of its cross-attention.

Parameters come in a dict keyed relative to the layer, as PyTorch names them (``self_attn.in_proj_weight``,
``linear1.weight``, ``norm2.bias``, ...); gradients come back keyed the same way.
"""
from collections.abc import Mapping
from typing import Any

import numpy as np
from numpy.typing import NDArray

from .layernorm import LayerNormCache, layernorm_backward, layernorm_forward
from .linear import LinearCache, torch_linear_backward, torch_linear_forward
from .multihead_attention import (
    MultiheadAttentionCache,
    multihead_attention_backward,
    multihead_attention_forward,
)
from .relu import relu_backward, relu_forward

# Names relative to the layer, as PyTorch names them -> arrays (the parameters, or their gradients).
LayerParams = Mapping[str, NDArray[np.floating]]
LayerGrads = dict[str, NDArray[np.floating]]
FeedForwardCache = tuple[LinearCache, NDArray[np.bool_], LinearCache]       # (linear1, relu, linear2)
EncoderLayerCache = tuple[MultiheadAttentionCache, LayerNormCache, FeedForwardCache, LayerNormCache]
DecoderLayerCache = tuple[MultiheadAttentionCache, LayerNormCache, MultiheadAttentionCache, LayerNormCache,
                          FeedForwardCache, LayerNormCache]


def sub_params(p: LayerParams, prefix: str) -> dict[str, NDArray[np.floating]]:
    """The entries of ``p`` under ``prefix``, with the prefix removed."""
    return {name[len(prefix):]: a for name, a in p.items() if name.startswith(prefix)}


def prefixed(g: LayerGrads, prefix: str) -> LayerGrads:
    """The entries of ``g`` with ``prefix`` put before each name."""
    return {prefix + name: a for name, a in g.items()}


def feed_forward_forward(x: NDArray[np.floating], p: LayerParams
                         ) -> tuple[NDArray[np.floating], FeedForwardCache]:
    r"""$\mathrm{FF}(x) = \max(0,\, xW_1^\top + b_1)\,W_2^\top + b_2$ with ``p`` holding ``linear1.*``, ``linear2.*``."""
    h, cache1 = torch_linear_forward(x, p["linear1.weight"], p["linear1.bias"])   # (B, T, d_ff)
    a, relu_cache = relu_forward(h)
    y, cache2 = torch_linear_forward(a, p["linear2.weight"], p["linear2.bias"])
    return y, (cache1, relu_cache, cache2)


def feed_forward_backward(dy: NDArray[np.floating], cache: FeedForwardCache
                          ) -> tuple[NDArray[np.floating], LayerGrads]:
    """Return (dx, grads) with grads keyed ``linear1.weight`` ... ``linear2.bias``."""
    cache1, relu_cache, cache2 = cache
    g: dict[str, Any] = {}      # no gradient is None: every bias exists (the ops' types cannot say so)
    da, g["linear2.weight"], g["linear2.bias"] = torch_linear_backward(dy, cache2)
    dh = relu_backward(da, relu_cache)
    dx, g["linear1.weight"], g["linear1.bias"] = torch_linear_backward(dh, cache1)
    return dx, g


def encoder_layer_forward(x: NDArray[np.floating], p: LayerParams, nhead: int,
                          mask: NDArray[np.floating] | None = None, eps: float = 1e-5
                          ) -> tuple[NDArray[np.floating], EncoderLayerCache]:
    r"""``nn.TransformerEncoderLayer`` (post-LN): $h = \mathrm{LN}_1(x + \mathrm{SA}(x))$,
    $y = \mathrm{LN}_2(h + \mathrm{FF}(h))$, for x (B, S, E) and ``p`` keyed relative to the layer."""
    sa, sa_cache = multihead_attention_forward(x, x, x, sub_params(p, "self_attn."), nhead, mask)
    h, ln1_cache = layernorm_forward(x + sa, p["norm1.weight"], p["norm1.bias"], eps)
    ff, ff_cache = feed_forward_forward(h, p)
    y, ln2_cache = layernorm_forward(h + ff, p["norm2.weight"], p["norm2.bias"], eps)
    return y, (sa_cache, ln1_cache, ff_cache, ln2_cache)


def encoder_layer_backward(dy: NDArray[np.floating], cache: EncoderLayerCache
                           ) -> tuple[NDArray[np.floating], LayerGrads]:
    r"""Return (dx, grads). Each residual: $\delta_u = \mathrm{LN}'(\delta)$, then the input of the
    sublayer gets $\delta_u$ along the skip plus the sublayer's own input gradient."""
    sa_cache, ln1_cache, ff_cache, ln2_cache = cache
    g: dict[str, Any] = {}      # as in feed_forward_backward: no gradient is None
    du2, g["norm2.weight"], g["norm2.bias"] = layernorm_backward(dy, ln2_cache)
    dh_ff, ff_grads = feed_forward_backward(du2, ff_cache)
    g.update(ff_grads)
    dh = du2 + dh_ff
    du1, g["norm1.weight"], g["norm1.bias"] = layernorm_backward(dh, ln1_cache)
    dq, dk, dv, sa_grads = multihead_attention_backward(du1, sa_cache)
    g.update(prefixed(sa_grads, "self_attn."))
    dx = du1 + dq + dk + dv
    return dx, g


def decoder_layer_forward(x: NDArray[np.floating], memory: NDArray[np.floating], p: LayerParams, nhead: int,
                          self_mask: NDArray[np.floating] | None = None,
                          cross_mask: NDArray[np.floating] | None = None, eps: float = 1e-5
                          ) -> tuple[NDArray[np.floating], DecoderLayerCache]:
    r"""``nn.TransformerDecoderLayer`` (post-LN) for x (B, T, E) and memory (B, S, E):
    $a = \mathrm{LN}_1(x + \mathrm{SA}(x))$, $c = \mathrm{LN}_2(a + \mathrm{CA}(a, m))$,
    $y = \mathrm{LN}_3(c + \mathrm{FF}(c))$."""
    sa, sa_cache = multihead_attention_forward(x, x, x, sub_params(p, "self_attn."), nhead, self_mask)
    a, ln1_cache = layernorm_forward(x + sa, p["norm1.weight"], p["norm1.bias"], eps)
    ca, ca_cache = multihead_attention_forward(a, memory, memory, sub_params(p, "multihead_attn."),
                                               nhead, cross_mask)
    c, ln2_cache = layernorm_forward(a + ca, p["norm2.weight"], p["norm2.bias"], eps)
    ff, ff_cache = feed_forward_forward(c, p)
    y, ln3_cache = layernorm_forward(c + ff, p["norm3.weight"], p["norm3.bias"], eps)
    return y, (sa_cache, ln1_cache, ca_cache, ln2_cache, ff_cache, ln3_cache)


def decoder_layer_backward(dy: NDArray[np.floating], cache: DecoderLayerCache
                           ) -> tuple[NDArray[np.floating], NDArray[np.floating], LayerGrads]:
    """Return (dx, dmemory, grads): the memory's gradient is the cross-attention's key + value gradient."""
    sa_cache, ln1_cache, ca_cache, ln2_cache, ff_cache, ln3_cache = cache
    g: dict[str, Any] = {}      # as in feed_forward_backward: no gradient is None
    du3, g["norm3.weight"], g["norm3.bias"] = layernorm_backward(dy, ln3_cache)
    dc_ff, ff_grads = feed_forward_backward(du3, ff_cache)
    g.update(ff_grads)
    dc = du3 + dc_ff
    du2, g["norm2.weight"], g["norm2.bias"] = layernorm_backward(dc, ln2_cache)
    da_ca, dmem_k, dmem_v, ca_grads = multihead_attention_backward(du2, ca_cache)
    g.update(prefixed(ca_grads, "multihead_attn."))
    da = du2 + da_ca
    du1, g["norm1.weight"], g["norm1.bias"] = layernorm_backward(da, ln1_cache)
    dq, dk, dv, sa_grads = multihead_attention_backward(du1, sa_cache)
    g.update(prefixed(sa_grads, "self_attn."))
    dx = du1 + dq + dk + dv
    return dx, dmem_k + dmem_v, g
