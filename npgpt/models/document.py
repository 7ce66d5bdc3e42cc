r"""The document's model, made runnable (document section 4, "项目实践", its code example).

The document's code stacks four modules: a token embedding (``num_tokens`` rows of width
``embed_dim``), its sinusoidal ``PositionalEncoding``, ``nn.Transformer(embed_dim, num_heads,
num_layers)`` and a linear output layer ``fc_out``. Read the way PyTorch reads those positional
arguments, the Transformer has ``num_layers`` = 24 *encoder* layers, the default 6 decoder layers and
a feed-forward width of 2048. Its forward hands one sequence to a module that needs two (a source
and a target), so it stops with a TypeError before computing anything.

This class is that model with what its forward was missing, a target sequence and a causal mask on
it, in the document's sequence-first layout (ids (S, N)):

$$e_s = W_{emb}[\mathrm{src}] + PE_{0:S},\qquad e_t = W_{emb}[\mathrm{tgt}] + PE_{0:T},\qquad
  h = \mathrm{Transformer}(e_s, e_t;\ M_{causal}),\qquad z = h\,W_{out}^\top + b_{out}$$

One embedding table serves both sequences (the document has one), $PE$ is the document's table
(:func:`npgpt.ops.sinusoidal_table`, no $\sqrt{d}$ scaling of the embeddings, as in the document),
$M_{causal}$ blocks every later target position, and the loss is the mean NLL of the next target
token (section 4.3): $L = -\frac1N\sum_n \log\mathrm{softmax}(z_n)_{y_n}$.

Backward runs the same chain in reverse: the loss gives $\partial L/\partial z$, the output layer
$\partial L/\partial h$, the Transformer $\partial L/\partial e_s$ and $\partial L/\partial e_t$, the
positional table is a constant (identity), and the embedding table receives the scatter-add of both.
"""
import math
from typing import Any, NamedTuple

import numpy as np
from numpy.typing import ArrayLike, DTypeLike

from ..checks import UsageError, check_ids, check_int, check_state_dict
from ..ops import (
    cross_entropy_backward,
    cross_entropy_forward,
    embedding_backward,
    embedding_forward,
    generate_square_subsequent_mask,
    sinusoidal_table,
    torch_linear_backward,
    torch_linear_forward,
)
from .base import Model
from .config import require_model_memory
from .seq2seq import Transformer, transformer_param_shapes

# The configuration the document's code instantiates (vocab_size = 10000 is passed too, but unused).
DOCUMENT_CONFIG = dict(num_tokens=10000, embed_dim=512, num_heads=8, num_layers=24, max_seq_len=512)


def document_model_param_shapes(num_tokens: int = 10000, embed_dim: int = 512, num_layers: int = 24,
                                num_decoder_layers: int = 6, dim_feedforward: int = 2048) -> dict[str, tuple[int, ...]]:
    """Name -> shape of every parameter of :class:`DocumentModel`, named like the document's modules.
    Allocates nothing."""
    shapes: dict[str, tuple[int, ...]] = {"embedding.weight": (num_tokens, embed_dim)}
    shapes.update({"transformer." + name: shape for name, shape in
                   transformer_param_shapes(embed_dim, num_layers, num_decoder_layers,
                                            dim_feedforward).items()})
    shapes.update({"fc_out.weight": (num_tokens, embed_dim), "fc_out.bias": (num_tokens,)})
    return shapes


class DocumentCache(NamedTuple):
    """What :meth:`DocumentModel.forward` keeps for its backward."""
    src_embedding: Any
    tgt_embedding: Any
    head: Any
    loss: Any               # None when the forward had no targets
    logits_shape: tuple[int, ...]


class DocumentModel(Model):
    """Embedding + sinusoidal positions + ``nn.Transformer`` + output layer, as the document's code builds
    them (the defaults are its configuration: 10000 tokens, width 512, 8 heads, 24 encoder and 6 decoder
    layers, feed-forward 2048, positions up to 512).

    ``logits, loss = model.forward(src_ids, tgt_ids, targets)`` with ids (S, N), (T, N) (or (N, S),
    (N, T) with ``batch_first=True``); ``grads = model.backward()``. The document's model has 111M
    parameters (:meth:`count_params`): build a small one to run it, e.g.
    ``DocumentModel(num_tokens=12, embed_dim=32, num_heads=2, num_layers=2, num_decoder_layers=2,
    dim_feedforward=64, max_seq_len=16)``.

    ``params`` holds ``embedding.weight``, ``transformer.*`` (the very arrays of ``model.transformer.params``)
    and ``fc_out.weight`` (V, d), ``fc_out.bias``.
    """

    def __init__(self, num_tokens: int = 10000, embed_dim: int = 512, num_heads: int = 8, num_layers: int = 24,
                 max_seq_len: int = 512, num_decoder_layers: int = 6, dim_feedforward: int = 2048,
                 batch_first: bool = False, dtype: DTypeLike = np.float32, seed: int = 0) -> None:
        self.num_tokens = check_int("num_tokens", num_tokens)
        self.max_seq_len = check_int("max_seq_len", max_seq_len)
        super().__init__(dtype)
        # Before the Transformer: the embedding, the output layer and the position table are what a
        # huge num_tokens or max_seq_len would blow up (the Transformer checks its own layers).
        V, L, E = self.num_tokens, self.max_seq_len, check_int("embed_dim", embed_dim)
        require_model_memory(f"DocumentModel(num_tokens={V}, embed_dim={E}, max_seq_len={L})", 2 * V * E + V,
                             self.dtype, 8 * (V * E + L * E))      # float64 draws and table, held at once
        self.batch_first = bool(batch_first)
        self.transformer = Transformer(embed_dim, num_heads, num_layers, num_decoder_layers, dim_feedforward,
                                       batch_first=batch_first, dtype=dtype, seed=[seed, 1])
        self.embed_dim = self.transformer.d_model
        self.pe = sinusoidal_table(self.max_seq_len, self.embed_dim, self.dtype)   # a constant buffer
        rng = np.random.default_rng([seed, 2])
        V, d = self.num_tokens, self.embed_dim
        bound = 1.0 / math.sqrt(d)         # nn.Linear's default: U(+-1/sqrt(in)) for weight and bias
        self.params = {"embedding.weight": rng.standard_normal((V, d)).astype(self.dtype)}  # nn.Embedding: N(0, 1)
        self.params.update({"transformer." + name: p for name, p in self.transformer.params.items()})
        self.params["fc_out.weight"] = rng.uniform(-bound, bound, (V, d)).astype(self.dtype)
        self.params["fc_out.bias"] = rng.uniform(-bound, bound, (V,)).astype(self.dtype)
        self._cache: DocumentCache | None = None

    # ----------------------------------------------------------------- parameters
    @staticmethod
    def count_params(num_tokens: int = 10000, embed_dim: int = 512, num_heads: int = 8, num_layers: int = 24,
                     max_seq_len: int = 512, num_decoder_layers: int = 6, dim_feedforward: int = 2048) -> int:
        """Parameters of the model with this configuration, from the shapes alone (nothing allocated).
        ``num_heads`` and ``max_seq_len`` do not change the count (heads split the same projections; the
        positional table is a constant buffer)."""
        shapes = document_model_param_shapes(num_tokens, embed_dim, num_layers, num_decoder_layers,
                                             dim_feedforward)
        return sum(math.prod(shape) for shape in shapes.values())

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Copy parameters in, strictly (bad keys raise a ValueError naming them). The ``pos_encoder.pe``
        buffer (max_seq_len, 1, d) of a PyTorch state dict of the document's model is accepted and
        becomes the positional table."""
        state = check_state_dict(state, type(self).__name__)
        pe = state.pop("pos_encoder.pe", None)
        if pe is not None:
            pe = np.asarray(pe)
            if pe.shape != (self.max_seq_len, 1, self.embed_dim):
                raise UsageError(f"pos_encoder.pe has shape {pe.shape}, expected "
                                 f"{(self.max_seq_len, 1, self.embed_dim)}")
        super().load_state_dict(state)
        if pe is not None:
            self.pe = pe[:, 0, :].astype(self.dtype)

    # ----------------------------------------------------------------- forward / backward
    def _check_ids(self, ids: ArrayLike, name: str) -> np.ndarray:
        ids = np.asarray(ids)
        if ids.ndim != 2 or 0 in ids.shape:
            layout = "(N, L)" if self.batch_first else "(L, N)"
            raise UsageError(f"{name} has shape {ids.shape}, expected a non-empty {layout} array "
                             f"(batch_first={self.batch_first})")
        ids = check_ids(ids, name, self.num_tokens, vocab_name="num_tokens")
        length = ids.shape[1] if self.batch_first else ids.shape[0]
        if length > self.max_seq_len:
            raise UsageError(f"{name} has shape {ids.shape}: length {length} exceeds max_seq_len={self.max_seq_len}")
        return ids

    def _embed(self, ids: np.ndarray) -> tuple[np.ndarray, Any]:
        """Token vectors plus the positional table, in the model's layout; returns (x, embedding cache)."""
        x, cache = embedding_forward(ids, self.params["embedding.weight"])
        if self.batch_first:
            return x + self.pe[None, :ids.shape[1]], cache          # (N, L, d)
        return x + self.pe[:ids.shape[0], None], cache              # (L, N, d), as the document's PE

    def _padding(self, ids: np.ndarray, pad_id: int | None) -> np.ndarray | None:
        """(N, L) True at padding, or None."""
        if pad_id is None:
            return None
        return ids == pad_id if self.batch_first else (ids == pad_id).T

    def forward(self, src_ids: ArrayLike, tgt_ids: ArrayLike, targets: ArrayLike | None = None,
                pad_id: int | None = None, causal: bool = True) -> tuple[np.ndarray, Any]:
        """Logits (T, N, num_tokens) for the target positions, and the mean NLL of ``targets`` (shaped like
        ``tgt_ids``) when given, else None.

        ``causal=True`` adds the mask the document's code omits; ``causal=False`` lets every target
        position see the whole target (useful to show the leak). ``pad_id`` marks padding in both
        sequences: it is masked as keys and not scored as a target.
        """
        src_ids = self._check_ids(src_ids, "src_ids")
        tgt_ids = self._check_ids(tgt_ids, "tgt_ids")
        if targets is not None:
            targets = np.asarray(targets)
            if targets.shape != tgt_ids.shape or not np.issubdtype(targets.dtype, np.integer):
                raise UsageError(f"targets must be integer ids shaped like tgt_ids {tgt_ids.shape}, "
                                 f"got shape {targets.shape} and dtype {targets.dtype}")
        T = tgt_ids.shape[1] if self.batch_first else tgt_ids.shape[0]
        es, src_cache = self._embed(src_ids)
        et, tgt_cache = self._embed(tgt_ids)
        src_pad = self._padding(src_ids, pad_id)
        h = self.transformer.forward(
            es, et, tgt_mask=generate_square_subsequent_mask(T, self.dtype) if causal else None,
            src_key_padding_mask=src_pad, tgt_key_padding_mask=self._padding(tgt_ids, pad_id),
            memory_key_padding_mask=src_pad)
        logits, head_cache = torch_linear_forward(h, self.params["fc_out.weight"], self.params["fc_out.bias"])
        loss = loss_cache = None
        if targets is not None:
            V = self.num_tokens
            loss, loss_cache = cross_entropy_forward(logits.reshape(-1, V), targets.reshape(-1), pad_id)
        self._cache = DocumentCache(src_cache, tgt_cache, head_cache, loss_cache, logits.shape)
        return logits, loss

    def backward(self) -> dict[str, np.ndarray]:
        """Gradient of the last forward's loss: a dict with the keys and shapes of ``params``."""
        cache = self._cache
        if cache is None or cache.loss is None:
            raise UsageError("backward() needs a preceding forward(src_ids, tgt_ids, targets) with targets")
        g: dict[str, Any] = {}
        dlogits = cross_entropy_backward(1.0, cache.loss).reshape(cache.logits_shape)
        dh, g["fc_out.weight"], g["fc_out.bias"] = torch_linear_backward(dlogits, cache.head)
        des, det = self.transformer.backward(dh)
        g.update({"transformer." + name: grad for name, grad in self.transformer.grads.items()})
        g["embedding.weight"] = (embedding_backward(des, cache.src_embedding)
                                 + embedding_backward(det, cache.tgt_embedding))
        self.grads = {name: g[name] for name in self.params}
        return self.grads

    def greedy_decode(self, src_ids: ArrayLike, bos_id: int, length: int, pad_id: int | None = None) -> np.ndarray:
        """Write ``length`` target tokens for ``src_ids``, each the argmax given the source and the tokens
        before it, starting from ``bos_id``. Returns ids (length, N) (or (N, length) batch-first),
        without the BOS."""
        src_ids = self._check_ids(src_ids, "src_ids")
        length = check_int("length", length)
        if length > self.max_seq_len:
            raise UsageError(f"length {length} exceeds max_seq_len={self.max_seq_len}")
        es, _ = self._embed(src_ids)
        src_pad = self._padding(src_ids, pad_id)
        memory = self.transformer.encode(es, src_key_padding_mask=src_pad)
        N = src_ids.shape[0] if self.batch_first else src_ids.shape[1]
        out = np.full((N, length + 1), bos_id, dtype=np.int64)      # batch-first while decoding
        for t in range(1, length + 1):
            prefix = out[:, :t] if self.batch_first else out[:, :t].T
            et, _ = self._embed(prefix)
            h = self.transformer.decode(et, memory, tgt_mask=generate_square_subsequent_mask(t, self.dtype),
                                        memory_key_padding_mask=src_pad)
            last = h[:, -1] if self.batch_first else h[-1]             # (N, d)
            logits, _ = torch_linear_forward(last, self.params["fc_out.weight"], self.params["fc_out.bias"])
            out[:, t] = logits.argmax(-1)
        return out[:, 1:] if self.batch_first else out[:, 1:].T
