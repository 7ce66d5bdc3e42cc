"""The numba twins of the hot ops, with the signatures of their :mod:`npgpt.ops` references.

Primitive twins live in this package's modules, and so does the MLP (:mod:`.mlp` fuses its bias
and GELU into one pass). The transformer block is not rewritten: :func:`rebind` gives the
reference composition's own code the fast ops to call, so there is exactly one place that says
what a block is.
"""
from .. import ops
from ..ops import block as _block
from ._compile import rebind
from .adamw import adamw_update
from .attention import self_attention_backward, self_attention_forward, self_attention_weights
from .cross_entropy import cross_entropy_backward, cross_entropy_forward
from .decode import decode_step_forward
from .embedding import embedding_backward, embedding_forward
from .gelu import gelu_backward, gelu_forward
from .head import head_forward, quantized_head_forward
from .layernorm import layernorm_backward, layernorm_forward
from .mlp import mlp_backward, mlp_forward
from .quantized import quantized_decode_step_forward

block_forward = rebind(_block.block_forward, layernorm_forward=layernorm_forward,
                       self_attention_forward=self_attention_forward, mlp_forward=mlp_forward)
block_backward = rebind(_block.block_backward, layernorm_backward=layernorm_backward,
                        self_attention_backward=self_attention_backward, mlp_backward=mlp_backward)
block_attention_weights = rebind(_block.block_attention_weights, self_attention_weights=self_attention_weights)

TWINS = ["adamw_update", "block_attention_weights", "block_backward", "block_forward",
         "cross_entropy_backward", "cross_entropy_forward", "decode_step_forward", "embedding_backward",
         "embedding_forward", "gelu_backward", "gelu_forward", "head_forward", "layernorm_backward",
         "layernorm_forward", "mlp_backward", "mlp_forward", "quantized_decode_step_forward",
         "quantized_head_forward", "self_attention_backward",
         "self_attention_forward", "self_attention_weights"]
__all__ = [*TWINS, "rebind"]
assert all(hasattr(ops, name) for name in TWINS)
