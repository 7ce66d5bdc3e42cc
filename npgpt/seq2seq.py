r"""An encoder-decoder Transformer equal to ``torch.nn.Transformer`` (document section 4, code example).

The document's code builds its model on ``nn.Transformer``: an encoder reads the source, a decoder
writes the target while attending to the encoder's output (the *memory*). This file is that module
in NumPy, with PyTorch's defaults (post-LayerNorm, ReLU, LayerNorm eps $10^{-5}$, a final LayerNorm
after each stack, sequence-first layout) and no dropout, differentiated by hand.

**Multi-head attention** in PyTorch's layout, where every weight is (out, in) and $y = xW^\top + b$;
the query, key and value weights are stacked in one ``in_proj_weight`` $= [W_Q; W_K; W_V]$ (3E, E):

$$Q = X_q W_Q^\top + b_Q,\quad K = X_k W_K^\top + b_K,\quad V = X_v W_V^\top + b_V,\qquad
  \mathrm{MHA} = \mathrm{Concat}_h\Big(\mathrm{softmax}\big(\tfrac{Q_h K_h^\top}{\sqrt{d_k}} + M\big)V_h\Big)\,W_O^\top + b_O$$

Self-attention has $X_q = X_k = X_v$; cross-attention takes its queries from the decoder and its keys
and values from the memory. $M$ (B, H, T, S) is the sum of the attention mask (float: added as is;
bool: True becomes $-\infty$) and the key padding mask (True, i.e. padding, becomes $-\infty$ for
every query).

**Post-LN layers** (``norm_first=False``), with $\mathrm{FF}(h) = \max(0,\, hW_1^\top + b_1)\,W_2^\top + b_2$:

$$\text{encoder:}\quad h = \mathrm{LN}_1\big(x + \mathrm{SA}(x)\big),\qquad y = \mathrm{LN}_2\big(h + \mathrm{FF}(h)\big)$$
$$\text{decoder:}\quad a = \mathrm{LN}_1\big(x + \mathrm{SA}(x)\big),\quad c = \mathrm{LN}_2\big(a + \mathrm{CA}(a, m)\big),\quad
  y = \mathrm{LN}_3\big(c + \mathrm{FF}(c)\big)$$

and $\mathrm{memory} = \mathrm{LN}_{enc}(\text{encoder stack}(src))$, $\mathrm{out} = \mathrm{LN}_{dec}(\text{decoder stack}(tgt, \mathrm{memory}))$.

**Backward of a post-LN residual** $z = \mathrm{LN}(u)$, $u = x + f(x)$: the LayerNorm's backward gives
$\delta_u$, which reaches $x$ twice, along the skip and through the branch:
$\delta_x = \delta_u + J_f^\top \delta_u$. Self-attention's input is its query, key and value at once,
so $\delta_x$ collects all three input gradients; the memory collects the key and value gradients of
the cross-attention of *every* decoder layer before it flows back into the encoder.

Parameters are keyed and shaped as PyTorch's ``state_dict`` (``encoder.layers.0.self_attn.in_proj_weight``,
``decoder.layers.1.multihead_attn.out_proj.bias``, ``encoder.norm.weight``, ...), so a PyTorch
state dict converted to NumPy loads as is.
"""
import numbers

import numpy as np

from .checks import check_dtype, load_strict
from .ops import (
    attention_backward,
    attention_forward,
    attention_weights,
    causal_mask,
    layernorm_backward,
    layernorm_forward,
    linear_backward,
    linear_forward,
    merge_heads,
    split_heads,
)


# --------------------------------------------------------------------------- PyTorch-layout pieces
def torch_linear_forward(x, W, b=None):
    r"""``nn.Linear``: the weight is stored (out, in), so $y = xW^\top + b$ (npgpt's GPT stores (in, out)).

    The same op as :func:`npgpt.ops.linear_forward`, applied to the transposed view $W^\top$.
    """
    return linear_forward(x, W.T, b)


def torch_linear_backward(dout, cache):
    r"""Return (dx, dW, db) with dW (out, in): $\partial L/\partial W = \delta^\top x$, the transpose of
    what :func:`npgpt.ops.linear_backward` computes for $W^\top$."""
    dx, dWT, db = linear_backward(dout, cache)
    return dx, np.ascontiguousarray(dWT.T), db


def relu_forward(x):
    r"""$\mathrm{ReLU}(x) = \max(0, x)$; backward passes the gradient where $x > 0$ (0 at $x = 0$, as PyTorch)."""
    return np.maximum(x, 0), x > 0


def relu_backward(dout, cache):
    """dx = dout where the input was positive, else 0."""
    return dout * cache


def feed_forward_forward(x, p):
    r"""$\mathrm{FF}(x) = \max(0,\, xW_1^\top + b_1)\,W_2^\top + b_2$ with ``p`` holding ``linear1.*``, ``linear2.*``."""
    h, cache1 = torch_linear_forward(x, p["linear1.weight"], p["linear1.bias"])   # (B, T, d_ff)
    a, relu_cache = relu_forward(h)
    y, cache2 = torch_linear_forward(a, p["linear2.weight"], p["linear2.bias"])
    return y, (cache1, relu_cache, cache2)


def feed_forward_backward(dy, cache):
    """Return (dx, grads) with grads keyed ``linear1.weight`` ... ``linear2.bias``."""
    cache1, relu_cache, cache2 = cache
    g = {}
    da, g["linear2.weight"], g["linear2.bias"] = torch_linear_backward(dy, cache2)
    dh = relu_backward(da, relu_cache)
    dx, g["linear1.weight"], g["linear1.bias"] = torch_linear_backward(dh, cache1)
    return dx, g


# --------------------------------------------------------------------------- masks
def generate_square_subsequent_mask(sz, dtype=np.float64):
    """The (sz, sz) causal mask ``nn.Transformer.generate_square_subsequent_mask`` makes: 0 on and below
    the diagonal, -inf above it (query i may not look at a later position j > i)."""
    if isinstance(sz, bool) or not isinstance(sz, numbers.Integral) or sz < 1:
        raise ValueError(f"sz must be a positive integer, got {sz!r}")
    return causal_mask(int(sz), int(sz), dtype)


def _as_additive(mask, name, dtype):
    """A bool mask (True blocks) as 0 / -inf; a float mask as is (cast to ``dtype``)."""
    mask = np.asarray(mask)
    if mask.dtype == np.bool_:
        return np.where(mask, -np.inf, 0.0).astype(dtype)
    if not np.issubdtype(mask.dtype, np.floating):
        raise ValueError(f"{name} must be bool (True blocks) or float (added to the scores), "
                         f"got dtype {mask.dtype}")
    return mask.astype(dtype, copy=False)


def attention_mask(attn_mask, key_padding_mask, batch, nhead, n_query, n_key, dtype=np.float64,
                   names=("attn_mask", "key_padding_mask")):
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


# --------------------------------------------------------------------------- multi-head attention
def multihead_attention_forward(query, key, value, p, nhead, mask=None):
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
    return out, (q_cache, k_cache, v_cache, att_cache, out_cache, nhead)


def multihead_attention_backward(dout, cache):
    r"""Return (dquery, dkey, dvalue, grads); grads keyed like ``p``.

    The three projections are independent affine maps, so ``in_proj_weight``'s gradient is the three
    blocks $[\delta_Q^\top X_q;\ \delta_K^\top X_k;\ \delta_V^\top X_v]$ stacked back in order.
    """
    q_cache, k_cache, v_cache, att_cache, out_cache, nhead = cache
    g = {}
    dy, g["out_proj.weight"], g["out_proj.bias"] = torch_linear_backward(dout, out_cache)
    dq, dk, dv = attention_backward(split_heads(dy, nhead), att_cache)
    dquery, dWq, dbq = torch_linear_backward(merge_heads(dq), q_cache)
    dkey, dWk, dbk = torch_linear_backward(merge_heads(dk), k_cache)
    dvalue, dWv, dbv = torch_linear_backward(merge_heads(dv), v_cache)
    g["in_proj_weight"] = np.concatenate([dWq, dWk, dWv])
    g["in_proj_bias"] = np.concatenate([dbq, dbk, dbv])
    return dquery, dkey, dvalue, g


def multihead_attention_weights(cache):
    """The softmax weights (B, nhead, T, S) kept in a :func:`multihead_attention_forward` cache."""
    return attention_weights(cache[3])


def _sub(p, prefix):
    """The entries of ``p`` under ``prefix``, with the prefix removed."""
    return {name[len(prefix):]: a for name, a in p.items() if name.startswith(prefix)}


def _prefixed(g, prefix):
    return {prefix + name: a for name, a in g.items()}


# --------------------------------------------------------------------------- layers
def encoder_layer_forward(x, p, nhead, mask=None, eps=1e-5):
    r"""``nn.TransformerEncoderLayer`` (post-LN): $h = \mathrm{LN}_1(x + \mathrm{SA}(x))$,
    $y = \mathrm{LN}_2(h + \mathrm{FF}(h))$, for x (B, S, E) and ``p`` keyed relative to the layer."""
    sa, sa_cache = multihead_attention_forward(x, x, x, _sub(p, "self_attn."), nhead, mask)
    h, ln1_cache = layernorm_forward(x + sa, p["norm1.weight"], p["norm1.bias"], eps)
    ff, ff_cache = feed_forward_forward(h, p)
    y, ln2_cache = layernorm_forward(h + ff, p["norm2.weight"], p["norm2.bias"], eps)
    return y, (sa_cache, ln1_cache, ff_cache, ln2_cache)


def encoder_layer_backward(dy, cache):
    r"""Return (dx, grads). Each residual: $\delta_u = \mathrm{LN}'(\delta)$, then the input of the
    sublayer gets $\delta_u$ along the skip plus the sublayer's own input gradient."""
    sa_cache, ln1_cache, ff_cache, ln2_cache = cache
    g = {}
    du2, g["norm2.weight"], g["norm2.bias"] = layernorm_backward(dy, ln2_cache)
    dh_ff, ff_grads = feed_forward_backward(du2, ff_cache)
    g.update(ff_grads)
    dh = du2 + dh_ff
    du1, g["norm1.weight"], g["norm1.bias"] = layernorm_backward(dh, ln1_cache)
    dq, dk, dv, sa_grads = multihead_attention_backward(du1, sa_cache)
    g.update(_prefixed(sa_grads, "self_attn."))
    dx = du1 + dq + dk + dv
    return dx, g


def decoder_layer_forward(x, memory, p, nhead, self_mask=None, cross_mask=None, eps=1e-5):
    r"""``nn.TransformerDecoderLayer`` (post-LN) for x (B, T, E) and memory (B, S, E):
    $a = \mathrm{LN}_1(x + \mathrm{SA}(x))$, $c = \mathrm{LN}_2(a + \mathrm{CA}(a, m))$,
    $y = \mathrm{LN}_3(c + \mathrm{FF}(c))$."""
    sa, sa_cache = multihead_attention_forward(x, x, x, _sub(p, "self_attn."), nhead, self_mask)
    a, ln1_cache = layernorm_forward(x + sa, p["norm1.weight"], p["norm1.bias"], eps)
    ca, ca_cache = multihead_attention_forward(a, memory, memory, _sub(p, "multihead_attn."),
                                               nhead, cross_mask)
    c, ln2_cache = layernorm_forward(a + ca, p["norm2.weight"], p["norm2.bias"], eps)
    ff, ff_cache = feed_forward_forward(c, p)
    y, ln3_cache = layernorm_forward(c + ff, p["norm3.weight"], p["norm3.bias"], eps)
    return y, (sa_cache, ln1_cache, ca_cache, ln2_cache, ff_cache, ln3_cache)


def decoder_layer_backward(dy, cache):
    """Return (dx, dmemory, grads): the memory's gradient is the cross-attention's key + value gradient."""
    sa_cache, ln1_cache, ca_cache, ln2_cache, ff_cache, ln3_cache = cache
    g = {}
    du3, g["norm3.weight"], g["norm3.bias"] = layernorm_backward(dy, ln3_cache)
    dc_ff, ff_grads = feed_forward_backward(du3, ff_cache)
    g.update(ff_grads)
    dc = du3 + dc_ff
    du2, g["norm2.weight"], g["norm2.bias"] = layernorm_backward(dc, ln2_cache)
    da_ca, dmem_k, dmem_v, ca_grads = multihead_attention_backward(du2, ca_cache)
    g.update(_prefixed(ca_grads, "multihead_attn."))
    da = du2 + da_ca
    du1, g["norm1.weight"], g["norm1.bias"] = layernorm_backward(da, ln1_cache)
    dq, dk, dv, sa_grads = multihead_attention_backward(du1, sa_cache)
    g.update(_prefixed(sa_grads, "self_attn."))
    dx = du1 + dq + dk + dv
    return dx, dmem_k + dmem_v, g


# --------------------------------------------------------------------------- shapes, init, loading
def _check_positive_int(name, value, low=1):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
        raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
    return int(value)


def _attention_shapes(prefix, E):
    return {prefix + "in_proj_weight": (3 * E, E), prefix + "in_proj_bias": (3 * E,),
            prefix + "out_proj.weight": (E, E), prefix + "out_proj.bias": (E,)}


def transformer_param_shapes(d_model=512, num_encoder_layers=6, num_decoder_layers=6,
                             dim_feedforward=2048):
    """Name -> shape of every parameter of ``nn.Transformer``, in its ``state_dict`` order.

    Nothing is allocated, so this also counts the parameters of models too big to build.
    """
    E, F = d_model, dim_feedforward

    def feed_forward_and_norms(prefix, n_norms):
        shapes = {prefix + "linear1.weight": (F, E), prefix + "linear1.bias": (F,),
                  prefix + "linear2.weight": (E, F), prefix + "linear2.bias": (E,)}
        for j in range(1, n_norms + 1):
            shapes.update({f"{prefix}norm{j}.weight": (E,), f"{prefix}norm{j}.bias": (E,)})
        return shapes

    shapes = {}
    for i in range(num_encoder_layers):
        prefix = f"encoder.layers.{i}."
        shapes.update(_attention_shapes(prefix + "self_attn.", E))
        shapes.update(feed_forward_and_norms(prefix, 2))
    shapes.update({"encoder.norm.weight": (E,), "encoder.norm.bias": (E,)})
    for i in range(num_decoder_layers):
        prefix = f"decoder.layers.{i}."
        shapes.update(_attention_shapes(prefix + "self_attn.", E))
        shapes.update(_attention_shapes(prefix + "multihead_attn.", E))
        shapes.update(feed_forward_and_norms(prefix, 3))
    shapes.update({"decoder.norm.weight": (E,), "decoder.norm.bias": (E,)})
    return shapes


def _torch_init(name, shape, rng):
    r"""PyTorch's initialisation of ``nn.Transformer``: Xavier-uniform for every matrix
    ($U(\pm\sqrt{6/(\mathrm{in}+\mathrm{out})})$), zero attention biases, ``nn.Linear``'s
    $U(\pm 1/\sqrt{\mathrm{in}})$ for the feed-forward biases (filled in by the caller, who knows
    the fan-in: this returns None for them), LayerNorm weight 1 and bias 0."""
    if len(shape) == 2:
        fan_out, fan_in = shape
        bound = np.sqrt(6.0 / (fan_in + fan_out))
        return rng.uniform(-bound, bound, size=shape)
    if ".norm" in name or name.startswith(("encoder.norm", "decoder.norm")):
        return np.ones(shape) if name.endswith(".weight") else np.zeros(shape)
    if "linear" in name:
        return None
    return np.zeros(shape)                                  # attention biases


# --------------------------------------------------------------------------- the model
class Transformer:
    """``torch.nn.Transformer`` with its defaults and dropout 0, on embedded inputs.

    ``out = model.forward(src, tgt, ...)`` with src (S, N, E) and tgt (T, N, E) (or (N, S, E), (N, T, E)
    with ``batch_first=True``) returns (T, N, E); ``dsrc, dtgt = model.backward(dout)`` leaves the
    parameter gradients in ``model.grads``, keyed like ``model.params``. No dropout: ``dropout=0.0``
    in PyTorch gives the same function.
    """

    def __init__(self, d_model=512, nhead=8, num_encoder_layers=6, num_decoder_layers=6,
                 dim_feedforward=2048, batch_first=False, dtype=np.float64, seed=0, layer_norm_eps=1e-5):
        self.d_model = _check_positive_int("d_model", d_model)
        self.nhead = _check_positive_int("nhead", nhead)
        self.num_encoder_layers = _check_positive_int("num_encoder_layers", num_encoder_layers)
        self.num_decoder_layers = _check_positive_int("num_decoder_layers", num_decoder_layers)
        self.dim_feedforward = _check_positive_int("dim_feedforward", dim_feedforward)
        if self.d_model % self.nhead:
            raise ValueError(f"d_model={d_model} is not divisible by nhead={nhead}: "
                             "each head needs d_model / nhead columns")
        self.batch_first = bool(batch_first)
        self.dtype = check_dtype(dtype)
        self.eps = float(layer_norm_eps)
        self.params = self._init_params(np.random.default_rng(seed))
        self.grads = {}
        self._cache = None

    # ----------------------------------------------------------------- parameters
    def param_shapes(self):
        """Name -> shape of every parameter, as in PyTorch's state_dict."""
        return transformer_param_shapes(self.d_model, self.num_encoder_layers,
                                        self.num_decoder_layers, self.dim_feedforward)

    def _init_params(self, rng):
        """PyTorch's initialisation (see :func:`_torch_init`), drawn in float64 then cast."""
        params = {}
        for name, shape in self.param_shapes().items():
            value = _torch_init(name, shape, rng)
            if value is None:                    # a feed-forward bias: nn.Linear's U(+-1/sqrt(in))
                fan_in = self.d_model if name.endswith("linear1.bias") else self.dim_feedforward
                value = rng.uniform(-1.0, 1.0, size=shape) / np.sqrt(fan_in)
            params[name] = value.astype(self.dtype)
        return params

    def num_params(self):
        """Number of trainable scalars."""
        return sum(p.size for p in self.params.values())

    def state_dict(self):
        """A copy of every parameter, keyed by its PyTorch name."""
        return {name: p.copy() for name, p in self.params.items()}

    def load_state_dict(self, state):
        """Copy a (NumPy-converted) PyTorch ``state_dict`` in. Strict: bad keys raise a ValueError naming them."""
        load_strict(self.params, state, self.dtype, type(self).__name__)

    # ----------------------------------------------------------------- input checks
    def _layout(self, seq):
        return f"(N, {seq}, E)" if self.batch_first else f"({seq}, N, E)"

    def _check_input(self, x, name, seq):
        """``x`` as a batch-first (N, L, E) array of the model's dtype, or a ValueError naming its shape."""
        x = np.asarray(x)
        if not np.issubdtype(x.dtype, np.floating):
            raise ValueError(f"{name} must be a float array of embeddings, got dtype {x.dtype}")
        if x.ndim != 3:
            raise ValueError(f"{name} has shape {x.shape}, expected 3 axes {self._layout(seq)} "
                             f"(batch_first={self.batch_first})")
        if x.shape[-1] != self.d_model:
            raise ValueError(f"{name} has shape {x.shape}: its last axis must be d_model={self.d_model} "
                             f"(layout {self._layout(seq)}, batch_first={self.batch_first})")
        if 0 in x.shape:
            raise ValueError(f"{name} has shape {x.shape}: it holds no sequence to attend over")
        x = x.astype(self.dtype, copy=False)
        return x if self.batch_first else x.transpose(1, 0, 2)

    def _to_user(self, x):
        """Batch-first (N, L, E) -> the model's layout."""
        return x if self.batch_first else x.transpose(1, 0, 2)

    def _check_batch(self, a, b, a_name, b_name):
        if a.shape[0] != b.shape[0]:
            raise ValueError(f"{a_name} and {b_name} hold different batch sizes ({a.shape[0]} vs {b.shape[0]}) "
                             f"in layout {self._layout('L')}")

    # ----------------------------------------------------------------- encoder and decoder
    def _encode(self, src, src_mask, src_key_padding_mask):
        """src (N, S, E) -> memory (N, S, E) and the caches."""
        N, S, _ = src.shape
        mask = attention_mask(src_mask, src_key_padding_mask, N, self.nhead, S, S, self.dtype,
                              ("src_mask", "src_key_padding_mask"))
        x, layer_caches = src, []
        for i in range(self.num_encoder_layers):
            x, cache = encoder_layer_forward(x, _sub(self.params, f"encoder.layers.{i}."),
                                             self.nhead, mask, self.eps)
            layer_caches.append(cache)
        memory, norm_cache = layernorm_forward(x, self.params["encoder.norm.weight"],
                                               self.params["encoder.norm.bias"], self.eps)
        return memory, (layer_caches, norm_cache)

    def _decode(self, tgt, memory, tgt_mask, memory_mask, tgt_key_padding_mask, memory_key_padding_mask):
        """tgt (N, T, E), memory (N, S, E) -> out (N, T, E) and the caches."""
        N, T, _ = tgt.shape
        S = memory.shape[1]
        self_mask = attention_mask(tgt_mask, tgt_key_padding_mask, N, self.nhead, T, T, self.dtype,
                                   ("tgt_mask", "tgt_key_padding_mask"))
        cross_mask = attention_mask(memory_mask, memory_key_padding_mask, N, self.nhead, T, S, self.dtype,
                                    ("memory_mask", "memory_key_padding_mask"))
        y, layer_caches = tgt, []
        for i in range(self.num_decoder_layers):
            y, cache = decoder_layer_forward(y, memory, _sub(self.params, f"decoder.layers.{i}."),
                                             self.nhead, self_mask, cross_mask, self.eps)
            layer_caches.append(cache)
        out, norm_cache = layernorm_forward(y, self.params["decoder.norm.weight"],
                                            self.params["decoder.norm.bias"], self.eps)
        return out, (layer_caches, norm_cache)

    def encode(self, src, src_mask=None, src_key_padding_mask=None):
        """The memory for ``src`` (PyTorch's ``model.encoder(src, ...)``), in the model's layout.
        Inference only: nothing is kept for :meth:`backward`."""
        src = self._check_input(src, "src", "S")
        return self._to_user(self._encode(src, src_mask, src_key_padding_mask)[0])

    def decode(self, tgt, memory, tgt_mask=None, memory_mask=None, tgt_key_padding_mask=None,
               memory_key_padding_mask=None):
        """The decoder's output for ``tgt`` given ``memory`` (PyTorch's ``model.decoder(tgt, memory, ...)``).
        Inference only."""
        tgt = self._check_input(tgt, "tgt", "T")
        memory = self._check_input(memory, "memory", "S")
        self._check_batch(memory, tgt, "memory", "tgt")
        out, _ = self._decode(tgt, memory, tgt_mask, memory_mask, tgt_key_padding_mask,
                              memory_key_padding_mask)
        return self._to_user(out)

    def forward(self, src, tgt, src_mask=None, tgt_mask=None, memory_mask=None, src_key_padding_mask=None,
                tgt_key_padding_mask=None, memory_key_padding_mask=None):
        """Encode ``src``, decode ``tgt`` against the memory; returns the decoder's output (T, N, E).

        Masks as PyTorch takes them: ``src_mask`` (S, S), ``tgt_mask`` (T, T), ``memory_mask`` (T, S),
        float (added) or bool (True blocks), optionally one per sequence and head (N*nhead, ., .);
        ``*_key_padding_mask`` (N, S) or (N, T), True at padding. No mask is added for you: pass
        ``tgt_mask=generate_square_subsequent_mask(T)`` to keep the decoder from seeing the future.
        """
        src = self._check_input(src, "src", "S")
        tgt = self._check_input(tgt, "tgt", "T")
        self._check_batch(src, tgt, "src", "tgt")
        memory, enc_cache = self._encode(src, src_mask, src_key_padding_mask)
        out, dec_cache = self._decode(tgt, memory, tgt_mask, memory_mask, tgt_key_padding_mask,
                                      memory_key_padding_mask)
        self._cache = (enc_cache, dec_cache, out.shape)
        return self._to_user(out)

    def backward(self, dout):
        """Gradients of ``src`` and ``tgt`` given the gradient ``dout`` of the last forward's output;
        the parameter gradients go to ``self.grads`` (same keys and shapes as ``self.params``)."""
        if self._cache is None:
            raise ValueError("backward() needs a preceding forward(src, tgt)")
        (enc_layers, enc_norm), (dec_layers, dec_norm), out_shape = self._cache
        dout = np.asarray(dout, dtype=self.dtype)
        N, T, E = out_shape
        expected = (N, T, E) if self.batch_first else (T, N, E)
        if dout.shape != expected:
            raise ValueError(f"dout has shape {dout.shape}, the output has {expected}")
        dy = dout if self.batch_first else dout.transpose(1, 0, 2)
        g = {}
        dy, g["decoder.norm.weight"], g["decoder.norm.bias"] = layernorm_backward(dy, dec_norm)
        dmemory = 0.0                                   # summed over the decoder layers' cross-attentions
        for i in reversed(range(self.num_decoder_layers)):
            dy, dmem, layer_grads = decoder_layer_backward(dy, dec_layers[i])
            dmemory = dmemory + dmem
            g.update(_prefixed(layer_grads, f"decoder.layers.{i}."))
        dtgt = dy
        dx, g["encoder.norm.weight"], g["encoder.norm.bias"] = layernorm_backward(dmemory, enc_norm)
        for i in reversed(range(self.num_encoder_layers)):
            dx, layer_grads = encoder_layer_backward(dx, enc_layers[i])
            g.update(_prefixed(layer_grads, f"encoder.layers.{i}."))
        self.grads = {name: g[name] for name in self.params}
        return self._to_user(dx), self._to_user(dtgt)

    generate_square_subsequent_mask = staticmethod(generate_square_subsequent_mask)


class MultiheadAttention:
    """``torch.nn.MultiheadAttention(embed_dim, num_heads, batch_first=...)`` with dropout 0, bias, and
    equal query/key/value widths: ``out = mha.forward(query, key, value, key_padding_mask, attn_mask)``,
    ``dquery, dkey, dvalue = mha.backward(dout)``, gradients in ``mha.grads``.

    PyTorch returns ``(out, head-averaged weights)``; this returns ``out`` and keeps the per-head
    weights (N, H, T, S) in :attr:`weights`.
    """

    def __init__(self, embed_dim, num_heads, batch_first=False, dtype=np.float64, seed=0):
        self.embed_dim = _check_positive_int("embed_dim", embed_dim)
        self.num_heads = _check_positive_int("num_heads", num_heads)
        if self.embed_dim % self.num_heads:
            raise ValueError(f"embed_dim={embed_dim} is not divisible by num_heads={num_heads}")
        self.batch_first = bool(batch_first)
        self.dtype = check_dtype(dtype)
        rng = np.random.default_rng(seed)
        self.params = {name: _torch_init(name, shape, rng).astype(self.dtype)
                       for name, shape in _attention_shapes("", self.embed_dim).items()}
        self.grads = {}
        self._cache = None

    def state_dict(self):
        return {name: p.copy() for name, p in self.params.items()}

    def load_state_dict(self, state):
        """Copy an ``nn.MultiheadAttention`` state dict (as NumPy) in; strict, like :meth:`Transformer.load_state_dict`."""
        load_strict(self.params, state, self.dtype, type(self).__name__)

    @property
    def weights(self):
        """The attention weights (N, H, T, S) of the last forward."""
        return None if self._cache is None else multihead_attention_weights(self._cache)

    def _check(self, x, name):
        x = np.asarray(x)
        if x.ndim != 3 or x.shape[-1] != self.embed_dim or not np.issubdtype(x.dtype, np.floating):
            layout = "(N, L, E)" if self.batch_first else "(L, N, E)"
            raise ValueError(f"{name} has shape {x.shape} and dtype {x.dtype}, expected a float array "
                             f"{layout} with E = embed_dim = {self.embed_dim}")
        x = x.astype(self.dtype, copy=False)
        return x if self.batch_first else x.transpose(1, 0, 2)

    def forward(self, query, key, value, key_padding_mask=None, attn_mask=None):
        q, k, v = self._check(query, "query"), self._check(key, "key"), self._check(value, "value")
        if not (q.shape[0] == k.shape[0] == v.shape[0]) or k.shape[1] != v.shape[1]:
            raise ValueError(f"query {np.shape(query)}, key {np.shape(key)} and value {np.shape(value)} "
                             "must share the batch size, and key and value the sequence length")
        N, T, S = q.shape[0], q.shape[1], k.shape[1]
        mask = attention_mask(attn_mask, key_padding_mask, N, self.num_heads, T, S, self.dtype)
        out, self._cache = multihead_attention_forward(q, k, v, self.params, self.num_heads, mask)
        return out if self.batch_first else out.transpose(1, 0, 2)

    def backward(self, dout):
        if self._cache is None:
            raise ValueError("backward() needs a preceding forward(query, key, value)")
        dout = np.asarray(dout, dtype=self.dtype)
        dout = dout if self.batch_first else dout.transpose(1, 0, 2)
        dq, dk, dv, self.grads = multihead_attention_backward(dout, self._cache)
        back = (lambda a: a) if self.batch_first else (lambda a: a.transpose(1, 0, 2))
        return back(dq), back(dk), back(dv)
