r"""Parameter counts, computed from the architecture rather than guessed (document section 4.1).

A GPT block of width $C$ holds $12C^2 + 13C$ parameters (with biases): the fused QKV projection
$3C^2 + 3C$, the attention output $C^2 + C$, the MLP $4C^2 + 4C$ and $4C^2 + C$, two LayerNorms $4C$.
A model adds the token table $VC$, a learned position table $TC$ (none for sinusoidal positions),
the final LayerNorm $2C$, and an output layer $VC$ only when it is not tied to the token table.

The document's code (section 4, code example) builds ``nn.Transformer(embed_dim, num_heads,
num_layers)``. PyTorch's positional order is ``(d_model, nhead, num_encoder_layers,
num_decoder_layers=6, dim_feedforward=2048, ...)``: the third argument sets the *encoder* depth
only, and the decoder keeps its default of 6 layers. So its "24 layers" are 24 encoder layers and
6 decoder layers, each decoder layer carrying an extra cross-attention.
"""
from ..models.config import GPTConfig


def _attention(d):
    """``nn.MultiheadAttention`` / GPT-2 attention: a fused (3d, d) input projection and (d, d) output."""
    return 3 * d * d + 3 * d + d * d + d


def _feed_forward(d, d_ff):
    return d * d_ff + d_ff + d_ff * d + d


def _layernorm(d, bias=True):
    return 2 * d if bias else d


def gpt_num_params(config):
    """Trainable parameters of :class:`npgpt.GPT` with ``config`` (equals ``GPT(config).num_params()``)."""
    c, C, V = config, config.n_embd, config.vocab_size
    if c.bias:
        block = _layernorm(C) + _attention(C) + _layernorm(C) + _feed_forward(C, 4 * C)
    else:
        block = C + 4 * C * C + C + 8 * C * C
    positions = c.block_size * C if c.pos_encoding == "learned" else 0
    head = 0 if c.tie_weights else V * C
    return V * C + positions + c.n_layer * block + _layernorm(C, c.bias) + head


def torch_transformer_num_params(d_model=512, nhead=8, num_encoder_layers=6, num_decoder_layers=6,
                                 dim_feedforward=2048):
    """Parameters of ``torch.nn.Transformer`` with these arguments (PyTorch's defaults shown).

    An encoder layer is self-attention + feed-forward + 2 LayerNorms; a decoder layer adds a
    cross-attention and a third LayerNorm; both stacks end with a LayerNorm. ``nhead`` does not
    change the count (heads split the same projections).
    """
    d = d_model
    encoder_layer = _attention(d) + _feed_forward(d, dim_feedforward) + 2 * _layernorm(d)
    decoder_layer = 2 * _attention(d) + _feed_forward(d, dim_feedforward) + 3 * _layernorm(d)
    return (num_encoder_layers * encoder_layer + _layernorm(d)
            + num_decoder_layers * decoder_layer + _layernorm(d))


def document_code_num_params(num_tokens=10000, embed_dim=512, num_heads=8, num_layers=24):
    """Parameters of the document's code, read exactly as written.

    ``nn.Embedding(num_tokens, embed_dim)``, the sinusoidal table (a buffer: zero parameters),
    ``nn.Transformer(embed_dim, num_heads, num_layers)`` -> 24 encoder and 6 decoder layers with
    dim_feedforward 2048, and ``nn.Linear(embed_dim, num_tokens)`` with its bias.
    """
    embedding = num_tokens * embed_dim
    transformer = torch_transformer_num_params(embed_dim, num_heads, num_encoder_layers=num_layers)
    output_layer = embed_dim * num_tokens + num_tokens
    return embedding + transformer + output_layer


DOCUMENT_CLAIMED_PARAMS = 150_000_000   # section 4.1: "1.5亿" parameters


def document_parameter_report():
    """Rows (what, parameters) comparing the document's claim with computed counts."""
    gpt = GPTConfig.preset("document")
    return [
        ("document's claim (section 4.1)", DOCUMENT_CLAIMED_PARAMS),
        ("npgpt GPT, document config, sinusoidal positions", gpt_num_params(gpt)),
        ("npgpt GPT, document config, learned positions",
         gpt_num_params(GPTConfig.preset("document", pos_encoding="learned"))),
        ("document's code as written (24 enc + 6 dec layers)", document_code_num_params()),
    ]
