r"""One new token through every block, with a KV cache: the step of cached generation.

For each block $l$, the new token's row $x$ (one per sequence) at position $t$ goes through the
same block as in training (:func:`npgpt.ops.block_forward`), attending to the cached keys and values
of positions $0..t-1$ and to its own:

$$x \leftarrow \mathrm{Block}_l\big(x;\ K^{(l)}_{0..t},\, V^{(l)}_{0..t}\big),\qquad
  K^{(l)}_t, V^{(l)}_t \text{ written into the cache}$$

The blocks' weights come stacked by kind, ``blocks["attn.c_attn.weight"]`` (n_layer, C, 3C) and so
on (GPT-2's names relative to a block, see :data:`BLOCK_WEIGHTS`), so the whole step takes a dozen
arrays; a model without biases passes zeros. The numba twin
(:func:`npgpt.kernels.decode.decode_step_forward`) computes the same in one compiled call.
Nothing is kept for a backward pass: this is inference only.
"""
from collections.abc import Mapping

import numpy as np

from .block import block_forward

BLOCK_WEIGHTS = ("ln_1.weight", "ln_1.bias", "attn.c_attn.weight", "attn.c_attn.bias",
                 "attn.c_proj.weight", "attn.c_proj.bias", "ln_2.weight", "ln_2.bias",
                 "mlp.c_fc.weight", "mlp.c_fc.bias", "mlp.c_proj.weight", "mlp.c_proj.bias")


def decode_step_forward(x: np.ndarray, pos: int, blocks: Mapping[str, np.ndarray], keys: np.ndarray,
                        values: np.ndarray, n_head: int, eps: float = 1e-5) -> np.ndarray:
    """x (B, C), one new token per row at position ``pos`` -> the last block's output (B, C).

    ``keys`` and ``values`` (n_layer, B, heads, capacity, head_size) hold positions 0..pos-1 and
    gain position ``pos`` in their first ``n_head`` heads (every block has ``n_head``; a pruned model
    may have fewer than the buffer); ``blocks`` maps each name of :data:`BLOCK_WEIGHTS` to its (n_layer, ...)
    stack; ``eps`` is the LayerNorms' epsilon.
    """
    h = x[:, None]                                                   # (B, 1, C)
    for layer in range(keys.shape[0]):
        p = {name: blocks[name][layer] for name in BLOCK_WEIGHTS}
        past = keys[layer, :, :n_head, :pos], values[layer, :, :n_head, :pos]      # (B, nh, pos, hs)
        h, _, (k, v) = block_forward(h, p, n_head, past_kv=past, eps=eps)
        keys[layer, :, :n_head, pos], values[layer, :, :n_head, pos] = k[:, :, pos], v[:, :, pos]
    return h[:, 0]
