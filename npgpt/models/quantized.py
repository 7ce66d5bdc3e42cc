r"""A GPT whose weight matrices are stored as integers and scales (document section 2, 量化): an
inference model, built from a float :class:`~npgpt.models.gpt.GPT` by
:func:`npgpt.allocation.quantize.quantize_model` (which also saves and loads it).

The formulas, one tensor at a time, are ops (:mod:`npgpt.ops.quantize`): symmetric absmax per output
channel (int8) or per group of ``group_size`` rows of a channel (int4), $q = \mathrm{rint}(w / s)$,
$\hat w = s\,q$; int4 packed two values to a byte. The four matrices of every block (and, with
``quantize_embeddings=True``, the token and position tables and an untied output layer) are stored
so; LayerNorms and biases stay float.

:class:`QuantizedGPT` is built by composition, not inheritance: it holds the
:class:`~npgpt.models.config.GPTConfig` and its entries. A whole-sequence forward runs a float
:class:`~npgpt.models.gpt.GPT` built for the call from the dequantized weights. A cached prompt
of ``BATCHED_PROMPT_MIN_TOKENS`` or more runs block by block, each block's weights dequantized for
its one pass over every position and dropped after it; a shorter one runs token by token. A cached one-token step reads the block stacks
(:class:`~npgpt.models.gpt.BlockStacks`, the GPT's own helper, here holding integers and scales)
and hands them to the dispatched
:func:`npgpt.ops.quantize.quantized_decode_step_forward` (dequantize, then the float step), whose
numba twin (:func:`npgpt.kernels.quantized.quantized_decode_step_forward`) multiplies by the scales
inside the matrix-vector products and never builds the float weights. It has no ``backward``:
train the float model and quantize it again.
"""
import math
import operator
from collections.abc import Mapping

import numpy as np
from numpy.typing import ArrayLike, DTypeLike

from ..checks import UsageError, check_dtype
from ..kernels import backend
from ..ops import BLOCK_WEIGHTS, sinusoidal_table
from ..ops.quantize import (
    INTS,
    QMAX,
    QUANTIZED_BLOCK_WEIGHTS,
    SCALE,
    _check_bits,
    _check_group,
    dequantize_layer,
    dequantize_tensor,
    pack_int4,
    quantize_tensor,
    unpack_int4,
)
from ..runtime.memory import require_memory
from .base import TrainingMode
from .cache import KVCache
from .config import GPTConfig
from .gpt import GPT, SINUSOIDAL_BUILD_BYTES, BlockStacks, check_context, getter

EMBEDDINGS = ("transformer.wte.weight", "transformer.wpe.weight", "lm_head.weight")
# A cached prompt this long or longer runs block by block (QuantizedGPT._prompt); a shorter one token by
# token. Dequantizing every block once costs about what a dozen one-token steps do: GPT-2 small, 2 threads,
# batched against token by token (benchmarks/quantized_prompt.py --prompt N --rounds 5 --no-write):
# 12 tokens 0.166/0.153 s in int8, 0.215/0.171 in int4; 16 tokens 0.142/0.212 and 0.237/0.261.
BATCHED_PROMPT_MIN_TOKENS = 16


class QuantizedGPT(TrainingMode):
    """A GPT whose weight matrices are stored as integers and scales (module docstring). Inference
    only: ``forward``, ``new_cache``, :func:`npgpt.generate`, ``num_bytes``; files through
    :func:`npgpt.allocation.quantize.save_quantized` and ``load_quantized``.

    ``params`` holds what stays float; ``quantized`` maps each quantized weight's name to its
    [integers, scale]; ``weight(name)`` is any weight as a float array. The block arrays are views
    of the model's :class:`~npgpt.models.gpt.BlockStacks` (in-place updates show at the next step,
    a replaced array from the next ``new_cache()`` or ``quantized_block_weights()`` on, as for the GPT).
    """

    def __init__(self, config: GPTConfig, bits: int, group_size: int | None = None,
                 quantize_embeddings: bool = False, dtype: DTypeLike = np.float32) -> None:
        if not isinstance(config, GPTConfig):
            raise UsageError(f"config must be a GPTConfig, got {type(config).__name__}")
        self.config, self.bits, self.dtype = config, _check_bits(bits), check_dtype(dtype)
        _check_group(group_size, config.n_embd, f"n_embd={config.n_embd} (the rows of every quantized matrix)")
        self.group_size = None if group_size is None else int(group_size)
        if not isinstance(quantize_embeddings, bool):
            raise UsageError(f"quantize_embeddings must be True or False, got {quantize_embeddings!r}")
        self.quantize_embeddings = quantize_embeddings
        self._require_memory()
        self.training = True
        self.dropout_rng = np.random.default_rng([0, 1])    # a float forward in training mode draws from it
        if config.pos_encoding == "sinusoidal":
            self.pos_table = sinusoidal_table(config.block_size, config.n_embd, self.dtype)
        self._block_entries = self._stacked_entries()
        where = [_name_and_slot(entry) for entries in self._block_entries.values() for entry in entries]
        self._quantized_blocks = getter([name for name, slot in where if slot >= 0])
        self._slots = tuple(slot for _, slot in where if slot >= 0)
        self._float_blocks = getter([name for name, slot in where if slot < 0])
        zeros = {entry: np.full(shape, np.finfo(self.dtype).tiny if entry.endswith(SCALE) else 0, dtype_)
                 for entry, (shape, dtype_) in self.expected_entries().items()}      # zeros, with valid scales
        self._place(zeros, copy=False)

    def _require_memory(self) -> None:
        """Refuse, before allocating, a model whose arrays do not fit in memory: every entry, and
        the block entries once more (the stacks the one-token step reads are copies), and the
        sinusoidal table (built in float64 beside its temporaries, as for the GPT)."""
        c, entries = self.config, self.expected_entries()
        blocks = sum(math.prod(shape) * dtype.itemsize for name, (shape, dtype) in entries.items()
                     if name.startswith("transformer.h."))
        n_bytes = sum(math.prod(shape) * dtype.itemsize for shape, dtype in entries.values()) + blocks
        table = SINUSOIDAL_BUILD_BYTES * c.block_size * c.n_embd if c.pos_encoding == "sinusoidal" else 0
        require_memory(n_bytes + table, f"QuantizedGPT(n_layer={c.n_layer}, n_embd={c.n_embd}, "
                                        f"vocab_size={c.vocab_size}, block_size={c.block_size}, bits={self.bits})")

    @classmethod
    def from_float(cls, model: GPT, bits: int, group_size: int | None = None,
                   quantize_embeddings: bool = False) -> "QuantizedGPT":
        """The quantized twin of the float GPT ``model`` (see :func:`npgpt.allocation.quantize.quantize_model`)."""
        if not isinstance(model, GPT):
            raise UsageError(f"model must be a float npgpt.GPT, got {type(model).__name__}")
        quantized = cls(model.config, bits, group_size, quantize_embeddings, model.dtype)
        state = {}
        for name, w in model.params.items():
            axis = quantized.channel_axis(name)
            if axis is None:
                state[name] = w
                continue
            q, scale = quantize_tensor(w, bits, axis, quantized.group_size)
            state[name + INTS] = pack_int4(q, axis=1 - axis) if bits == 4 else q
            state[name + SCALE] = scale
        quantized.load_state_dict(state)
        return quantized

    # ------------------------------------------------------------- what is stored, and how
    @staticmethod
    def param_shapes(config: GPTConfig) -> dict[str, tuple[int, ...]]:
        """Name -> shape of every weight of the float GPT this model stands for (:meth:`npgpt.GPT.param_shapes`)."""
        return GPT.param_shapes(config)

    def channel_axis(self, name: str) -> int | None:
        """The channel axis of a quantized weight (1 for (in, out) block matrices, 0 for the
        (rows, n_embd) tables, whose rows are tokens or positions), None for one that stays float."""
        return _channel_axis(name, self.quantize_embeddings)

    def expected_entries(self) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
        """Entry name -> (shape, dtype) of everything this model stores (``state_dict``'s keys)."""
        return self.entries_for(self.config, self.bits, self.group_size, self.quantize_embeddings, self.dtype)

    @classmethod
    def entries_for(cls, config: GPTConfig, bits: int, group_size: int | None, quantize_embeddings: bool,
                    dtype: DTypeLike) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
        """What :meth:`expected_entries` of a model built with these arguments would be, computed
        without building it (nothing is allocated): a file's entries are checked against it before
        the model is built (:func:`npgpt.allocation.quantize.load_quantized`). The arguments are
        taken as checked (the constructor's checks)."""
        dtype, entries = np.dtype(dtype), {}
        for name, shape in cls.param_shapes(config).items():
            axis = _channel_axis(name, quantize_embeddings)
            if axis is None:
                entries[name] = (shape, dtype)
                continue
            other, q_shape, s_shape = 1 - axis, list(shape), list(shape)
            if bits == 4:
                q_shape[other] = (shape[other] + 1) // 2
            s_shape[other] = shape[other] // (group_size or shape[other])
            entries[name + INTS] = (tuple(q_shape), np.dtype(np.uint8 if bits == 4 else np.int8))
            entries[name + SCALE] = (tuple(s_shape), dtype)
        return entries

    def _stacked_entries(self) -> dict[str, list[str]]:
        """Stack kind -> the entry of each block it holds. A quantized matrix is two kinds: its
        integers (named as the matrix, the layout :func:`npgpt.ops.quantize.quantized_decode_step_forward`
        reads) and its scales (``name + ".scale"``). The quantized kinds come first, then the
        float ones: the order :meth:`_block_arrays` reads them in."""
        shapes, n_layer = self.param_shapes(self.config), self.config.n_layer
        quantized, floats = {}, {}
        for key in BLOCK_WEIGHTS:
            if f"transformer.h.0.{key}" not in shapes:
                continue                                  # a bias the model does not have
            if self.channel_axis(f"transformer.h.0.{key}") is not None:
                for kind, suffix in ((key, INTS), (key + SCALE, SCALE)):
                    quantized[kind] = [f"transformer.h.{i}.{key}{suffix}" for i in range(n_layer)]
            else:
                floats[key] = [f"transformer.h.{i}.{key}" for i in range(n_layer)]
        return {**quantized, **floats}

    def _block_arrays(self) -> tuple[np.ndarray, ...]:
        """The block arrays the model holds now, in the order of :meth:`_stacked_entries`."""
        pairs = self._quantized_blocks(self.quantized)
        return (*map(operator.getitem, pairs, self._slots), *self._float_blocks(self.params))

    def _place(self, state: Mapping[str, np.ndarray], copy: bool = True) -> None:
        """Store a checked state: the block entries copied into one stack per kind (each block's
        entry a view of its stack), the others copied, or taken as they are with ``copy=False``."""
        arrays = {kind: [state[entry] for entry in entries] for kind, entries in self._block_entries.items()}
        # Per-channel int8 is read along each output's row (npgpt.kernels.quantized.matrix_form): stored so.
        per_channel_int8 = self.bits == 8 and self.group_size is None
        by_output = [kind for kind in arrays if kind + SCALE in arrays] if per_channel_int8 else []
        self._block_stacks = BlockStacks.of(arrays, self.dtype, by_output=by_output)
        views = {entry: view for kind, entries in self._block_entries.items()
                 for entry, view in zip(entries, self._block_stacks.layers(kind))}
        placed = {entry: views[entry] if entry in views else np.array(state[entry]) if copy else state[entry]
                  for entry in self.expected_entries()}
        self.params = {entry: a for entry, a in placed.items() if _name_and_slot(entry)[1] < 0}
        self.quantized = {name: [placed[name + INTS], placed[name + SCALE]]
                          for name in self.param_shapes(self.config) if self.channel_axis(name) is not None}

    def weight(self, name: str) -> np.ndarray:
        """Parameter ``name`` as a float array (dequantized when it is stored quantized)."""
        if name in self.params:
            return self.params[name]
        q, scale = self.quantized[name]
        axis = self.channel_axis(name)
        assert axis is not None, name                     # what is stored quantized has a channel axis
        if self.bits == 4:
            q = unpack_int4(q, self.param_shapes(self.config)[name][1 - axis], axis=1 - axis)
        return dequantize_tensor(q, scale, axis, self.group_size)

    def _rows(self, name: str, rows: np.ndarray | list[int]) -> np.ndarray:
        """Rows ``rows`` of a (rows, n_embd) table as floats, dequantizing only those rows."""
        if name in self.params:
            return self.params[name][rows]
        q, scale = (a[rows] for a in self.quantized[name])
        if self.bits == 4:
            q = unpack_int4(q, self.config.n_embd, axis=1)
        return dequantize_tensor(q, scale, 0, self.group_size)

    def num_params(self) -> int:
        """Parameters of the float model this one stands for (quantized or not)."""
        return sum(math.prod(shape) for shape in self.param_shapes(self.config).values())

    def num_bytes(self) -> int:
        """Bytes stored: the integers, the scales and what stays float (not the sinusoidal table,
        which is computed)."""
        return sum(a.nbytes for a in self.state_dict(copy=False).values())

    def state_dict(self, copy: bool = True) -> dict[str, np.ndarray]:
        """Every stored array by entry name: float parameters, ``name.q`` integers, ``name.scale``."""
        state = dict(self.params)
        for name, (q, scale) in self.quantized.items():
            state[name + INTS], state[name + SCALE] = q, scale
        return {k: v.copy() for k, v in state.items()} if copy else state

    def load_state_dict(self, state: Mapping[str, ArrayLike]) -> None:
        """Copy ``state`` (entry name -> array, as ``state_dict`` gives) in, all or nothing: every
        entry present with its exact shape and dtype, integers in range, scales positive and floats
        finite; else a ValueError naming what is wrong."""
        if not isinstance(state, dict):
            raise UsageError(f"QuantizedGPT.load_state_dict expects a dict of name -> array, got {type(state).__name__}")
        expected = self.expected_entries()
        missing, unexpected = sorted(set(expected) - set(state)), sorted(set(state) - set(expected))
        if missing or unexpected:
            raise UsageError(f"QuantizedGPT.load_state_dict failed; missing entries: {missing}, "
                             f"unexpected entries: {unexpected}")
        for entry, (shape, dtype) in expected.items():
            check_entry(entry, np.asarray(state[entry]), shape, dtype, self.bits)
        self._place({entry: np.asarray(state[entry]) for entry in expected})

    def quantized_block_weights(self) -> dict[str, np.ndarray]:
        """The blocks' weights stacked by kind, the matrices as integers and scales (the layout
        :func:`npgpt.ops.quantize.quantized_decode_step_forward` reads); zeros for the biases of a
        ``bias=False`` model. The model's own stacks while no block array has been replaced, else a
        copy it keeps until the next replacement or ``new_cache``. The next one-token steps read
        what this returns (:class:`~npgpt.models.gpt.BlockStacks`)."""
        return self._block_stacks.read(self._block_arrays())

    # ------------------------------------------------------------- forward
    def new_cache(self, batch_size: int = 1) -> KVCache:
        """An empty :class:`~npgpt.KVCache` for ``forward(..., cache=)`` with room for ``batch_size``
        sequences of ``block_size`` tokens. The block stacks its steps read are checked now."""
        c = self.config
        self._block_stacks.forget()
        self.quantized_block_weights()
        cache = KVCache(c.n_layer)
        cache.reserve(c.block_size, batch_size, c.n_head, c.head_size, self.dtype)
        return cache

    def forward(self, idx: ArrayLike, targets: ArrayLike | None = None, ignore_index: int | None = None,
                cache: KVCache | None = None) -> tuple[np.ndarray, float | None]:
        """As :meth:`npgpt.GPT.forward`, from the stored integers. With a cache and no targets
        (generation), one new token per row runs :meth:`decode_step` on them, a prompt shorter than
        ``BATCHED_PROMPT_MIN_TOKENS`` runs it token by token (:meth:`_token_by_token`), and a longer
        one block by block, each block's float weights dequantized for it and dropped after it
        (:meth:`_prompt`): generating takes the integers, the KV cache and one block's float weights
        (GPT-2 small: 243 MB + 75 MB + 28 MB and the temporaries of dequantizing one matrix, against
        660 MB when the prompt's forward dequantized every block). Anything else runs a float GPT
        of the dequantized weights (:meth:`_float_model`)."""
        if cache is not None and targets is None and np.ndim(idx) == 2 and np.shape(idx)[1] >= 1:
            idx = np.asarray(idx)
            if idx.shape[1] == 1:
                return self._one_token(idx, cache), None
            if idx.shape[1] < BATCHED_PROMPT_MIN_TOKENS:
                check_context(idx, self.config, cache.length)      # before the cache changes, as _prompt
                return self._token_by_token(idx, cache), None
            return self._prompt(idx, cache), None
        return self._float_model().forward(idx, targets, ignore_index, cache)

    def _prompt(self, idx: ArrayLike, cache: KVCache) -> np.ndarray:
        """Logits (B, T, V) of T new tokens per row, all T positions at once through each block in
        turn (the float block op with the cached keys, as the GPT's forward), the block's weights
        dequantized from the stacks the one-token step reads, as last checked: T positions per pass
        over the weights, where :meth:`_token_by_token` reads every integer T times."""
        c, start = self.config, cache.length
        idx = check_context(idx, c, start)
        cache.reserve(start + idx.shape[1], idx.shape[0], c.n_head, c.head_size, self.dtype)
        x = self._embed(idx, start)
        blocks = self._block_stacks.last() or self.quantized_block_weights()
        for layer in range(c.n_layer):
            x = self._prompt_block(x, blocks, layer, cache)
        cache.length = start + idx.shape[1]
        B, T, C = x.shape
        return self._logits(x.reshape(B * T, C)).reshape(B, T, -1)

    def _prompt_block(self, x: np.ndarray, blocks: Mapping[str, np.ndarray], layer: int, cache: KVCache
                      ) -> np.ndarray:
        """Block ``layer`` over the prompt's rows x (B, T, C), its keys and values stored in the
        cache. A function of its own so that the block's float weights, and the activations the op
        keeps (which hold them too), are let go when it returns, before the next block's are made."""
        c = self.config
        weights = dequantize_layer(blocks, layer, c.n_embd)
        x, _, kv = backend.ops().block_forward(x, weights, c.n_head, past_kv=cache.layer(layer),
                                               eps=c.layer_norm_epsilon)
        cache.store(layer, *kv)
        return x

    def _token_by_token(self, idx: np.ndarray, cache: KVCache) -> np.ndarray:
        """Logits (B, T, V) of a prompt run one token at a time through :meth:`_one_token`: the path of
        short prompts, and the reference the tests hold :meth:`_prompt` to."""
        return np.concatenate([self._one_token(idx[:, t:t + 1], cache) for t in range(idx.shape[1])], axis=1)

    def _float_model(self) -> GPT:
        """A float GPT for one call: the dequantized weights as its parameters (no copy of them),
        this model's mode and dropout generator."""
        model = GPT(self.config, dtype=self.dtype, init=False)
        model.params.update({name: self.weight(name) for name in model.params})
        model.dropout_rng, model.training = self.dropout_rng, self.training
        return model

    def decode_step(self, x: np.ndarray, pos: int, blocks: Mapping[str, np.ndarray], keys: np.ndarray,
                    values: np.ndarray) -> np.ndarray:
        """The blocks for one token per row of x (B, C): the dispatched
        :func:`npgpt.ops.quantize.quantized_decode_step_forward` (or its numba twin)."""
        return backend.ops().quantized_decode_step_forward(x, pos, blocks, keys, values, self.config.n_head,
                                                           self.config.layer_norm_epsilon)

    def _one_token(self, idx: ArrayLike, cache: KVCache) -> np.ndarray:
        """Logits (B, 1, V) of one new token per row: the embedding and position rows, the cached
        step through every block, the final LayerNorm and the output layer."""
        c, start = self.config, cache.length
        idx = check_context(idx, c, start)
        keys, values = cache.reserve(start + 1, idx.shape[0], c.n_head, c.head_size, self.dtype)
        x = self._embed(idx, start)[:, 0]
        blocks = self._block_stacks.last() or self.quantized_block_weights()      # as last checked
        x = self.decode_step(x, start, blocks, keys, values)
        cache.length = start + 1
        return self._logits(x)[:, None]

    def _embed(self, idx: np.ndarray, start: int) -> np.ndarray:
        """The input (B, T, C) of tokens ``idx`` (B, T) at positions start..start+T-1: token rows
        plus position rows, dequantizing only the rows read."""
        (B, T), c = idx.shape, self.config
        positions = self._rows("transformer.wpe.weight", list(range(start, start + T))) \
            if c.pos_encoding == "learned" else self.pos_table[start:start + T]
        return self._rows("transformer.wte.weight", idx.reshape(-1)).reshape(B, T, c.n_embd) + positions

    def _logits(self, x: np.ndarray) -> np.ndarray:
        """Logits (N, V) of the last block's rows x (N, C): the final LayerNorm and the output layer."""
        F = backend.ops()
        x, _ = F.layernorm_forward(x, self.params["transformer.ln_f.weight"], self.params.get("transformer.ln_f.bias"),
                                   self.config.layer_norm_epsilon)
        head = self._head_name()
        if head in self.quantized:                       # read as integers: never dequantized whole
            return F.quantized_head_forward(x, *self.quantized[head])
        return F.head_forward(x, self.params[head])[0]

    def _head_name(self) -> str:
        return "transformer.wte.weight" if self.config.tie_weights else "lm_head.weight"


def _channel_axis(name: str, quantize_embeddings: bool) -> int | None:
    """:meth:`QuantizedGPT.channel_axis` of a model that quantizes its embeddings or not."""
    if name.startswith("transformer.h.") and name.split(".", 3)[3] in QUANTIZED_BLOCK_WEIGHTS:
        return 1
    if quantize_embeddings and name in EMBEDDINGS:
        return 0
    return None


def _name_and_slot(entry: str) -> tuple[str, int]:
    """Where a ``state_dict`` entry lives: (name, 0) for the integers of ``quantized[name]``,
    (name, 1) for its scales, (entry, -1) for a float parameter ``params[entry]``."""
    for suffix, slot in ((INTS, 0), (SCALE, 1)):
        if entry.endswith(suffix):
            return entry[:-len(suffix)], slot
    return entry, -1


def check_entry(entry: str, a: np.ndarray, shape: tuple[int, ...], dtype: DTypeLike, bits: int) -> None:
    """One entry of a state: its exact shape and dtype, then its values."""
    if a.shape != tuple(shape) or a.dtype != dtype:
        raise UsageError(f"entry {entry} has shape {a.shape} and dtype {a.dtype}, expected {tuple(shape)} "
                         f"and {np.dtype(dtype)}")
    if entry.endswith(INTS):
        # -128 in int8, nibble 8 (-8) in int4: the one value of two's complement outside [-Q, Q]
        bad = (a == -128) if bits == 8 else ((a & 0x0F) == 8) | ((a >> 4) == 8)
        if bad.any():
            raise UsageError(f"entry {entry} holds values outside [-{QMAX[bits]}, {QMAX[bits]}] ({bits}-bit)")
    elif entry.endswith(SCALE):
        if not (np.isfinite(a).all() and (a > 0).all()):
            raise UsageError(f"entry {entry} holds scales that are not finite and positive")
    elif not np.isfinite(a).all():
        raise UsageError(f"entry {entry} holds NaN or infinite values")
