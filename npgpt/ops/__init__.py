"""The formulas: one file per operation, each a pair of pure NumPy functions.

``x_forward(inputs..., params...) -> (out, cache)`` and ``x_backward(dout, cache) -> gradients``.
This is the readable reference that the fast kernels are tested against. Nothing here imports
from another floor of npgpt.
"""
from .adamw import adamw_update
from .attention import (attention_backward, attention_forward, attention_weights, causal_mask,
                        merge_heads, self_attention_backward, self_attention_forward,
                        self_attention_weights, split_heads)
from .block import block_attention_weights, block_backward, block_forward
from .cross_entropy import cross_entropy_backward, cross_entropy_forward
from .decode import BLOCK_WEIGHTS, decode_step_forward
from .dropout import dropout_backward, dropout_forward
from .embedding import embedding_backward, embedding_forward
from .gelu import gelu_backward, gelu_forward
from .kl_div import kl_div_backward, kl_div_forward
from .layernorm import layernorm_backward, layernorm_forward
from .linear import head_forward, linear_backward, linear_forward, torch_linear_backward, torch_linear_forward
from .low_rank_linear import low_rank_linear_backward, low_rank_linear_forward
from .mlp import mlp_backward, mlp_forward
from .multihead_attention import (attention_mask, generate_square_subsequent_mask,
                                  multihead_attention_backward, multihead_attention_forward,
                                  multihead_attention_weights)
from .quantize import dequantize_tensor, quantize_tensor, quantized_decode_step_forward, quantized_head_forward
from .positional import (learned_positions_backward, learned_positions_forward, sinusoidal_backward,
                         sinusoidal_forward, sinusoidal_table)
from .recurrent_cells import (gru_cell_backward, gru_cell_forward, lstm_cell_backward, lstm_cell_forward,
                              rnn_cell_backward, rnn_cell_forward, sigmoid)
from .relu import relu_backward, relu_forward
from .softmax import log_softmax_backward, log_softmax_forward, softmax_backward, softmax_forward
from .transformer_layers import (decoder_layer_backward, decoder_layer_forward, encoder_layer_backward,
                                 encoder_layer_forward, feed_forward_backward, feed_forward_forward)

__all__ = [name for name in dir() if name.endswith(("_forward", "_backward"))] + [
    "BLOCK_WEIGHTS", "adamw_update", "attention_mask", "attention_weights", "block_attention_weights",
    "causal_mask", "generate_square_subsequent_mask", "merge_heads", "multihead_attention_weights",
    "self_attention_weights", "sigmoid", "dequantize_tensor", "quantize_tensor", "sinusoidal_table", "split_heads"]
