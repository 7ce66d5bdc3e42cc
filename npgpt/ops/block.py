r"""A pre-LayerNorm transformer block (GPT-2):

$$h = x + \mathrm{Drop}\big(\mathrm{Attn}(\mathrm{LN}_1(x))\big),\qquad
  y = h + \mathrm{Drop}\big(\mathrm{MLP}(\mathrm{LN}_2(h))\big)$$

Each residual connection copies the gradient to both of its branches, so backward adds the
branch's input gradient to the gradient arriving on the skip path.

Parameters come in a dict keyed by GPT-2's names relative to the block (``ln_1.weight``,
``attn.c_attn.weight``, ``mlp.c_fc.bias``, ...); the gradients come back keyed the same way.
With ``bias=False`` models the ``.bias`` keys are simply absent. ``eps`` is both LayerNorms'
$\epsilon$ (GPT-2's $10^{-5}$ unless its config says otherwise).
"""
from collections.abc import Mapping
from typing import Any, NamedTuple

import numpy as np
from numpy.typing import NDArray

from .attention import (
    KeysValues,
    SelfAttentionCache,
    self_attention_backward,
    self_attention_forward,
    self_attention_weights,
)
from .dropout import DropoutCache, dropout_backward, dropout_forward
from .layernorm import LayerNormCache, layernorm_backward, layernorm_forward
from .low_rank_linear import Weight
from .mlp import MLPCache, mlp_backward, mlp_forward

# GPT-2's names relative to the block -> arrays; the four projection weights may be Factors
# (npgpt.allocation.low_rank), the LayerNorms' never are, so the values are typed loosely.
BlockParams = Mapping[str, Any]


class BlockCache(NamedTuple):
    """What :func:`block_forward` keeps for its backward: each sub-op's cache."""
    ln_1: LayerNormCache
    attn: SelfAttentionCache
    drop_1: DropoutCache
    ln_2: LayerNormCache
    mlp: MLPCache
    drop_2: DropoutCache


def block_forward(x: NDArray[np.floating], p: BlockParams, n_head: int, dropout_p: float = 0.0,
                  rng: np.random.Generator | None = None, past_kv: KeysValues | None = None, eps: float = 1e-5
                  ) -> tuple[NDArray[np.floating], BlockCache, KeysValues]:
    """x (B, T, C) -> (B, T, C). Returns (y, cache, (k, v)) like the attention op."""
    a_in, ln1_cache = layernorm_forward(x, p["ln_1.weight"], p.get("ln_1.bias"), eps)
    a, attn_cache, kv = self_attention_forward(
        a_in, p["attn.c_attn.weight"], p.get("attn.c_attn.bias"),
        p["attn.c_proj.weight"], p.get("attn.c_proj.bias"), n_head, dropout_p, rng, past_kv)
    a, drop1_cache = dropout_forward(a, dropout_p, rng)
    h = x + a
    m_in, ln2_cache = layernorm_forward(h, p["ln_2.weight"], p.get("ln_2.bias"), eps)
    m, mlp_cache = mlp_forward(m_in, p["mlp.c_fc.weight"], p.get("mlp.c_fc.bias"),
                               p["mlp.c_proj.weight"], p.get("mlp.c_proj.bias"))
    m, drop2_cache = dropout_forward(m, dropout_p, rng)
    y = h + m
    return y, BlockCache(ln1_cache, attn_cache, drop1_cache, ln2_cache, mlp_cache, drop2_cache), kv


def block_backward(dy: NDArray[np.floating], cache: BlockCache
                   ) -> tuple[NDArray[np.floating], dict[str, Weight]]:
    """Return (dx, grads) with ``grads`` keyed like the block's parameters."""
    ln1_cache, attn_cache, drop1_cache, ln2_cache, mlp_cache, drop2_cache = cache
    g: dict[str, Weight | None] = {}
    dm = dropout_backward(dy, drop2_cache)
    dm_in, g["mlp.c_fc.weight"], g["mlp.c_fc.bias"], g["mlp.c_proj.weight"], g["mlp.c_proj.bias"] = \
        mlp_backward(dm, mlp_cache)
    dh_branch, g["ln_2.weight"], g["ln_2.bias"] = layernorm_backward(dm_in, ln2_cache)
    dh = dy + dh_branch
    da = dropout_backward(dh, drop1_cache)
    da_in, g["attn.c_attn.weight"], g["attn.c_attn.bias"], g["attn.c_proj.weight"], \
        g["attn.c_proj.bias"] = self_attention_backward(da, attn_cache)
    dx_branch, g["ln_1.weight"], g["ln_1.bias"] = layernorm_backward(da_in, ln1_cache)
    dx = dh + dx_branch
    return dx, {name: grad for name, grad in g.items() if grad is not None}


def block_attention_weights(cache: BlockCache) -> NDArray[np.floating]:
    """The attention weights (B, n_head, T, T) kept in a :func:`block_forward` cache."""
    return self_attention_weights(cache.attn)
