"""The formulas: one file per operation, each a pair of pure NumPy functions.

``x_forward(inputs..., params...) -> (out, cache)`` and ``x_backward(dout, cache) -> gradients``.
This is the readable reference that the fast kernels are tested against.
"""
from .adamw import adamw_update
from .attention import (attention_backward, attention_forward, attention_weights, causal_mask,
                        merge_heads, self_attention_backward, self_attention_forward,
                        self_attention_weights, split_heads)
from .block import block_attention_weights, block_backward, block_forward
from .cross_entropy import cross_entropy_backward, cross_entropy_forward
from .dropout import dropout_backward, dropout_forward
from .embedding import embedding_backward, embedding_forward
from .gelu import gelu_backward, gelu_forward
from .layernorm import layernorm_backward, layernorm_forward
from .linear import linear_backward, linear_forward
from .mlp import mlp_backward, mlp_forward
from .positional import (learned_positions_backward, learned_positions_forward, sinusoidal_backward,
                         sinusoidal_forward, sinusoidal_table)
from .softmax import log_softmax_backward, log_softmax_forward, softmax_backward, softmax_forward

__all__ = [name for name in dir() if name.endswith(("_forward", "_backward"))] + [
    "adamw_update", "attention_weights", "block_attention_weights", "causal_mask", "merge_heads", "split_heads",
    "self_attention_weights", "sinusoidal_table"]
