r"""An encoder-decoder Transformer equal to ``torch.nn.Transformer`` (document section 4, code example).

The document's code builds its model on ``nn.Transformer``: an encoder reads the source, a decoder
writes the target while attending to the encoder's output (the *memory*). This file is that module
in NumPy, with PyTorch's defaults (post-LayerNorm, ReLU, LayerNorm eps $10^{-5}$, a final LayerNorm
after each stack, sequence-first layout) and no dropout, differentiated by hand.

Its pieces are ops: multi-head attention in PyTorch's layout and its masks
(:mod:`npgpt.ops.multihead_attention`), the post-LN encoder and decoder layers and their backward
passes (:mod:`npgpt.ops.transformer_layers`). This file stacks them:
and $\mathrm{memory} = \mathrm{LN}_{enc}(\text{encoder stack}(src))$, $\mathrm{out} = \mathrm{LN}_{dec}(\text{decoder stack}(tgt, \mathrm{memory}))$.

The memory collects the key and value gradients of the cross-attention of *every* decoder layer
before it flows back into the encoder.

Parameters are keyed and shaped as PyTorch's ``state_dict`` (``encoder.layers.0.self_attn.in_proj_weight``,
``decoder.layers.1.multihead_attn.out_proj.bias``, ``encoder.norm.weight``, ...), so a PyTorch
state dict converted to NumPy loads as is.
"""
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple, cast

import numpy as np
from numpy.typing import ArrayLike, DTypeLike

from ..checks import UsageError, check_int
from ..ops import (
    attention_mask,
    decoder_layer_backward,
    decoder_layer_forward,
    encoder_layer_backward,
    encoder_layer_forward,
    generate_square_subsequent_mask,
    layernorm_backward,
    layernorm_forward,
    multihead_attention_backward,
    multihead_attention_forward,
    multihead_attention_weights,
)
from ..ops.transformer_layers import prefixed, sub_params
from .base import Model, check_sequences
from .config import require_model_memory


# --------------------------------------------------------------------------- shapes, init, loading
def _attention_shapes(prefix: str, E: int) -> dict[str, tuple[int, ...]]:
    return {prefix + "in_proj_weight": (3 * E, E), prefix + "in_proj_bias": (3 * E,),
            prefix + "out_proj.weight": (E, E), prefix + "out_proj.bias": (E,)}


def transformer_param_shapes(d_model: int = 512, num_encoder_layers: int = 6, num_decoder_layers: int = 6,
                             dim_feedforward: int = 2048) -> dict[str, tuple[int, ...]]:
    """Name -> shape of every parameter of ``nn.Transformer``, in its ``state_dict`` order.

    Nothing is allocated, so this also counts the parameters of models too big to build.
    """
    E, F = d_model, dim_feedforward

    def feed_forward_and_norms(prefix: str, n_norms: int) -> dict[str, tuple[int, ...]]:
        shapes: dict[str, tuple[int, ...]] = {prefix + "linear1.weight": (F, E), prefix + "linear1.bias": (F,),
                  prefix + "linear2.weight": (E, F), prefix + "linear2.bias": (E,)}
        for j in range(1, n_norms + 1):
            shapes.update({f"{prefix}norm{j}.weight": (E,), f"{prefix}norm{j}.bias": (E,)})
        return shapes

    shapes: dict[str, tuple[int, ...]] = {}
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


def transformer_param_count(d_model: int = 512, num_encoder_layers: int = 6, num_decoder_layers: int = 6,
                            dim_feedforward: int = 2048) -> int:
    """The number of parameters :func:`transformer_param_shapes` lists, counted without listing them."""
    E, F = d_model, dim_feedforward
    attention = 4 * E * E + 4 * E                       # in_proj (3E, E) + (3E,), out_proj (E, E) + (E,)
    feed_forward = 2 * E * F + F + E
    encoder = attention + feed_forward + 2 * 2 * E      # two LayerNorms
    decoder = 2 * attention + feed_forward + 3 * 2 * E  # three LayerNorms
    return num_encoder_layers * encoder + num_decoder_layers * decoder + 2 * 2 * E   # the final norms


def _torch_init(name: str, shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray | None:
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
class TransformerCache(NamedTuple):
    """What :meth:`Transformer.forward` keeps for its backward."""
    encoder_layers: list[Any]  # each encoder layer's cache
    encoder_norm: Any
    decoder_layers: list[Any]
    decoder_norm: Any
    out_shape: tuple[int, ...]  # (N, T, E), batch first


class Transformer(Model):
    """``torch.nn.Transformer`` with its defaults and dropout 0, on embedded inputs.

    ``out = model.forward(src, tgt, ...)`` with src (S, N, E) and tgt (T, N, E) (or (N, S, E), (N, T, E)
    with ``batch_first=True``) returns (T, N, E); ``dsrc, dtgt = model.backward(dout)`` leaves the
    parameter gradients in ``model.grads``, keyed like ``model.params``. No dropout: ``dropout=0.0``
    in PyTorch gives the same function.
    """

    def __init__(self, d_model: int = 512, nhead: int = 8, num_encoder_layers: int = 6, num_decoder_layers: int = 6,
                 dim_feedforward: int = 2048, batch_first: bool = False, dtype: DTypeLike = np.float64,
                 seed: int | Sequence[int] = 0, layer_norm_eps: float = 1e-5) -> None:
        self.d_model = check_int("d_model", d_model)
        self.nhead = check_int("nhead", nhead)
        self.num_encoder_layers = check_int("num_encoder_layers", num_encoder_layers)
        self.num_decoder_layers = check_int("num_decoder_layers", num_decoder_layers)
        self.dim_feedforward = check_int("dim_feedforward", dim_feedforward)
        if self.d_model % self.nhead:
            raise UsageError(f"d_model={d_model} is not divisible by nhead={nhead}: "
                             "each head needs d_model / nhead columns")
        self.batch_first = bool(batch_first)
        super().__init__(dtype)
        self.eps = float(layer_norm_eps)
        self._require_memory()
        self.params = self._init_params(np.random.default_rng(seed))
        self._cache: TransformerCache | None = None

    # ----------------------------------------------------------------- parameters
    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        """Name -> shape of every parameter, as in PyTorch's state_dict."""
        return transformer_param_shapes(self.d_model, self.num_encoder_layers,
                                        self.num_decoder_layers, self.dim_feedforward)

    def _require_memory(self) -> None:
        """Refuse, before allocating, a model whose parameters do not fit in memory (each one is
        drawn in float64, then cast: the largest draw is held beside them)."""
        E, F = self.d_model, self.dim_feedforward
        count = transformer_param_count(E, self.num_encoder_layers, self.num_decoder_layers, F)
        require_model_memory(f"Transformer(d_model={E}, num_encoder_layers={self.num_encoder_layers}, "
                             f"num_decoder_layers={self.num_decoder_layers}, dim_feedforward={F})",
                             count, self.dtype, 8 * E * max(3 * E, F))

    def _init_params(self, rng: np.random.Generator) -> dict[str, np.ndarray]:
        """PyTorch's initialisation (see :func:`_torch_init`), drawn in float64 then cast."""
        params: dict[str, np.ndarray] = {}
        for name, shape in self.param_shapes().items():
            value = _torch_init(name, shape, rng)
            if value is None:                    # a feed-forward bias: nn.Linear's U(+-1/sqrt(in))
                fan_in = self.d_model if name.endswith("linear1.bias") else self.dim_feedforward
                value = rng.uniform(-1.0, 1.0, size=shape) / np.sqrt(fan_in)
            params[name] = value.astype(self.dtype)
        return params

    # ----------------------------------------------------------------- input checks
    def _layout(self, seq: str) -> str:
        return f"(N, {seq}, E)" if self.batch_first else f"({seq}, N, E)"

    def _check_input(self, x: ArrayLike, name: str, seq: str) -> np.ndarray:
        """``x`` as a batch-first (N, L, E) array of the model's dtype, or a ValueError naming its shape."""
        layout = f"{self._layout(seq)} (batch_first={self.batch_first})"
        x = check_sequences(x, name, self.d_model, "d_model", layout, self.dtype)
        return x if self.batch_first else x.transpose(1, 0, 2)

    def _to_user(self, x: np.ndarray) -> np.ndarray:
        """Batch-first (N, L, E) -> the model's layout."""
        return x if self.batch_first else x.transpose(1, 0, 2)

    def _check_batch(self, a: np.ndarray, b: np.ndarray, a_name: str, b_name: str) -> None:
        if a.shape[0] != b.shape[0]:
            raise UsageError(f"{a_name} and {b_name} hold different batch sizes ({a.shape[0]} vs {b.shape[0]}) "
                             f"in layout {self._layout('L')}")

    # ----------------------------------------------------------------- encoder and decoder
    def _encode(self, src: np.ndarray, src_mask: ArrayLike | None, src_key_padding_mask: ArrayLike | None
                ) -> tuple[np.ndarray, tuple[list[Any], Any]]:
        """src (N, S, E) -> memory (N, S, E) and the caches."""
        N, S, _ = src.shape
        mask = attention_mask(src_mask, src_key_padding_mask, N, self.nhead, S, S, self.dtype,
                              ("src_mask", "src_key_padding_mask"))
        x, layer_caches = src, list[Any]()
        for i in range(self.num_encoder_layers):
            x, cache = encoder_layer_forward(x, sub_params(self.params, f"encoder.layers.{i}."),
                                             self.nhead, mask, self.eps)
            layer_caches.append(cache)
        memory, norm_cache = layernorm_forward(x, self.params["encoder.norm.weight"],
                                               self.params["encoder.norm.bias"], self.eps)
        return memory, (layer_caches, norm_cache)

    def _decode(self, tgt: np.ndarray, memory: np.ndarray, tgt_mask: ArrayLike | None, memory_mask: ArrayLike | None,
                tgt_key_padding_mask: ArrayLike | None, memory_key_padding_mask: ArrayLike | None
                ) -> tuple[np.ndarray, tuple[list[Any], Any]]:
        """tgt (N, T, E), memory (N, S, E) -> out (N, T, E) and the caches."""
        N, T, _ = tgt.shape
        S = memory.shape[1]
        self_mask = attention_mask(tgt_mask, tgt_key_padding_mask, N, self.nhead, T, T, self.dtype,
                                   ("tgt_mask", "tgt_key_padding_mask"))
        cross_mask = attention_mask(memory_mask, memory_key_padding_mask, N, self.nhead, T, S, self.dtype,
                                    ("memory_mask", "memory_key_padding_mask"))
        y, layer_caches = tgt, list[Any]()
        for i in range(self.num_decoder_layers):
            y, cache = decoder_layer_forward(y, memory, sub_params(self.params, f"decoder.layers.{i}."),
                                             self.nhead, self_mask, cross_mask, self.eps)
            layer_caches.append(cache)
        out, norm_cache = layernorm_forward(y, self.params["decoder.norm.weight"],
                                            self.params["decoder.norm.bias"], self.eps)
        return out, (layer_caches, norm_cache)

    def encode(self, src: ArrayLike, src_mask: ArrayLike | None = None,
               src_key_padding_mask: ArrayLike | None = None) -> np.ndarray:
        """The memory for ``src`` (PyTorch's ``model.encoder(src, ...)``), in the model's layout.
        Inference only: nothing is kept for :meth:`backward`."""
        src = self._check_input(src, "src", "S")
        return self._to_user(self._encode(src, src_mask, src_key_padding_mask)[0])

    def decode(self, tgt: ArrayLike, memory: ArrayLike, tgt_mask: ArrayLike | None = None,
               memory_mask: ArrayLike | None = None, tgt_key_padding_mask: ArrayLike | None = None,
               memory_key_padding_mask: ArrayLike | None = None) -> np.ndarray:
        """The decoder's output for ``tgt`` given ``memory`` (PyTorch's ``model.decoder(tgt, memory, ...)``).
        Inference only."""
        tgt_ = self._check_input(tgt, "tgt", "T")
        memory_ = self._check_input(memory, "memory", "S")
        self._check_batch(memory_, tgt_, "memory", "tgt")
        out, _ = self._decode(tgt_, memory_, tgt_mask, memory_mask, tgt_key_padding_mask,
                              memory_key_padding_mask)
        return self._to_user(out)

    def forward(self, src: ArrayLike, tgt: ArrayLike, src_mask: ArrayLike | None = None,
                tgt_mask: ArrayLike | None = None, memory_mask: ArrayLike | None = None,
                src_key_padding_mask: ArrayLike | None = None, tgt_key_padding_mask: ArrayLike | None = None,
                memory_key_padding_mask: ArrayLike | None = None) -> np.ndarray:
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
        self._cache = TransformerCache(*enc_cache, *dec_cache, out.shape)
        return self._to_user(out)

    def backward(self, dout: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
        """Gradients of ``src`` and ``tgt`` given the gradient ``dout`` of the last forward's output;
        the parameter gradients go to ``self.grads`` (same keys and shapes as ``self.params``)."""
        if self._cache is None:
            raise UsageError("backward() needs a preceding forward(src, tgt)")
        cache = self._cache
        enc_layers, enc_norm, dec_layers, dec_norm = (cache.encoder_layers, cache.encoder_norm,
                                                      cache.decoder_layers, cache.decoder_norm)
        dout = np.asarray(dout, dtype=self.dtype)
        N, T, E = cache.out_shape
        expected = (N, T, E) if self.batch_first else (T, N, E)
        if dout.shape != expected:
            raise UsageError(f"dout has shape {dout.shape}, the output has {expected}")
        dy = dout if self.batch_first else dout.transpose(1, 0, 2)
        g: dict[str, Any] = {}
        dy, g["decoder.norm.weight"], g["decoder.norm.bias"] = layernorm_backward(dy, dec_norm)
        dmemory: Any = 0.0                              # summed over the decoder layers' cross-attentions
        for i in reversed(range(self.num_decoder_layers)):
            dy, dmem, layer_grads = decoder_layer_backward(dy, dec_layers[i])
            dmemory = dmemory + dmem
            g.update(prefixed(layer_grads, f"decoder.layers.{i}."))
        dtgt = dy
        dx, g["encoder.norm.weight"], g["encoder.norm.bias"] = layernorm_backward(dmemory, enc_norm)
        for i in reversed(range(self.num_encoder_layers)):
            dx, layer_grads = encoder_layer_backward(dx, enc_layers[i])
            g.update(prefixed(layer_grads, f"encoder.layers.{i}."))
        self.grads = {name: g[name] for name in self.params}
        return self._to_user(dx), self._to_user(dtgt)

    generate_square_subsequent_mask = staticmethod(generate_square_subsequent_mask)


class MultiheadAttention(Model):
    """``torch.nn.MultiheadAttention(embed_dim, num_heads, batch_first=...)`` with dropout 0, bias, and
    equal query/key/value widths: ``out = mha.forward(query, key, value, key_padding_mask, attn_mask)``,
    ``dquery, dkey, dvalue = mha.backward(dout)``, gradients in ``mha.grads``.

    PyTorch returns ``(out, head-averaged weights)``; this returns ``out`` and keeps the per-head
    weights (N, H, T, S) in :attr:`weights`.
    """

    def __init__(self, embed_dim: int, num_heads: int, batch_first: bool = False, dtype: DTypeLike = np.float64,
                 seed: int = 0) -> None:
        self.embed_dim = check_int("embed_dim", embed_dim)
        self.num_heads = check_int("num_heads", num_heads)
        if self.embed_dim % self.num_heads:
            raise UsageError(f"embed_dim={embed_dim} is not divisible by num_heads={num_heads}")
        self.batch_first = bool(batch_first)
        super().__init__(dtype)
        E = self.embed_dim
        require_model_memory(f"MultiheadAttention(embed_dim={E})", 4 * E * E + 4 * E, self.dtype, 8 * 3 * E * E)
        rng = np.random.default_rng(seed)
        self.params = {name: cast(np.ndarray, _torch_init(name, shape, rng)).astype(self.dtype)  # never None here
                       for name, shape in _attention_shapes("", self.embed_dim).items()}
        self._cache: Any = None

    @property
    def weights(self) -> np.ndarray | None:
        """The attention weights (N, H, T, S) of the last forward."""
        return None if self._cache is None else multihead_attention_weights(self._cache)

    def _check(self, x: ArrayLike, name: str) -> np.ndarray:
        """``x`` as a batch-first (N, L, E) array of the layer's dtype, or a ValueError naming its shape."""
        layout = "(N, L, E)" if self.batch_first else "(L, N, E)"
        x = check_sequences(x, name, self.embed_dim, "embed_dim", layout, self.dtype)
        return x if self.batch_first else x.transpose(1, 0, 2)

    def forward(self, query: ArrayLike, key: ArrayLike, value: ArrayLike,
                key_padding_mask: ArrayLike | None = None, attn_mask: ArrayLike | None = None) -> np.ndarray:
        q, k, v = self._check(query, "query"), self._check(key, "key"), self._check(value, "value")
        if not (q.shape[0] == k.shape[0] == v.shape[0]) or k.shape[1] != v.shape[1]:
            raise UsageError(f"query {np.shape(query)}, key {np.shape(key)} and value {np.shape(value)} "
                             "must share the batch size, and key and value the sequence length")
        N, T, S = q.shape[0], q.shape[1], k.shape[1]
        mask = attention_mask(attn_mask, key_padding_mask, N, self.num_heads, T, S, self.dtype)
        out, self._cache = multihead_attention_forward(q, k, v, self.params, self.num_heads, mask)
        return out if self.batch_first else out.transpose(1, 0, 2)

    def backward(self, dout: ArrayLike) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if self._cache is None:
            raise UsageError("backward() needs a preceding forward(query, key, value)")
        dout = np.asarray(dout, dtype=self.dtype)
        dout = dout if self.batch_first else dout.transpose(1, 0, 2)
        dq, dk, dv, self.grads = multihead_attention_backward(dout, self._cache)
        back: Callable[[np.ndarray], np.ndarray] = (lambda a: a) if self.batch_first else (lambda a: a.transpose(1, 0, 2))
        return back(dq), back(dk), back(dv)
