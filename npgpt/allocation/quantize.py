r"""Weights-only quantization of a whole model (document section 2, 量化), the simplest members of the
LLM.int8 / GPTQ family.

The formulas, one tensor at a time, are ops (:mod:`npgpt.ops.quantize`): symmetric absmax per output
channel (int8) or per group of ``group_size`` rows of a channel (int4), $q = \mathrm{rint}(w / s)$,
$\hat w = s\,q$, every error at most $s/2$; int4 packed two values to a byte. They are re-exported
here, so ``npgpt.allocation.quantize`` is the one place to start from.

:func:`quantize_model` turns an :class:`npgpt.GPT` into a :class:`QuantizedGPT`: the four matrices
of every block (and, with ``quantize_embeddings=True``, the token and position tables and an
untied output layer) are stored as integers and scales; LayerNorms and biases stay float. Its
forward dequantizes on the fly. Its cached one-token step hands the integers to the dispatched
:func:`npgpt.ops.quantize.quantized_decode_step_forward` (dequantize, then the float step), whose
numba twin (:func:`npgpt.kernels.quantized.quantized_decode_step_forward`) multiplies by the scales
inside the matrix-vector products and never builds the float weights.
"""
import json
import math
import os
from contextlib import contextmanager

import numpy as np

from ..atomic import atomic_writer
from ..checks import UsageError
from ..io.checkpoint import CONTAINER_ERRORS, DTYPES, config_from_dict, read_npy_header
from ..models import GPT, KVCache
from ..models.config import GPTConfig
from ..ops import BLOCK_WEIGHTS, sinusoidal_table
from ..ops.quantize import (
    BITS,
    INTS,
    QMAX,
    QUANTIZED_BLOCK_WEIGHTS,
    SCALE,
    _check_bits,
    _check_group,
    dequantize_blocks,
    dequantize_tensor,
    pack_int4,
    quantize_tensor,
    quantized_decode_step_forward,
    unpack_int4,
)
from ..runtime import backend

EMBEDDINGS = ("transformer.wte.weight", "transformer.wpe.weight", "lm_head.weight")
FORMAT = 1


# ----------------------------------------------------------------------------- the model
def quantize_model(model, bits, group_size=None, quantize_embeddings=False):
    """A :class:`QuantizedGPT` holding ``model``'s weights with ``bits`` (4 or 8) bits, one scale
    per output channel, or per group of ``group_size`` rows (which must divide n_embd)."""
    return QuantizedGPT.from_float(model, bits, group_size, quantize_embeddings)


class QuantizedGPT(GPT):
    """A GPT whose weight matrices are stored as integers and scales (module docstring). Inference
    only: ``forward``, ``new_cache``, :func:`npgpt.generate`, ``save``/``load``, ``num_bytes``.

    ``params`` holds what stays float; ``quantized`` maps each quantized weight's name to its
    [integers, scale]; ``weight(name)`` is any weight as a float array.
    """

    def __init__(self, config, bits, group_size=None, quantize_embeddings=False, dtype=np.float32):
        if not isinstance(config, GPTConfig):
            raise UsageError(f"config must be a GPTConfig, got {type(config).__name__}")
        # Model's constructor, not GPT's: GPT's would draw a float initialisation only to drop it.
        super(GPT, self).__init__(dtype)
        self.config, self.bits = config, _check_bits(bits)
        _check_group(group_size, config.n_embd, f"n_embd={config.n_embd} (the rows of every quantized matrix)")
        self.group_size = None if group_size is None else int(group_size)
        if not isinstance(quantize_embeddings, bool):
            raise UsageError(f"quantize_embeddings must be True or False, got {quantize_embeddings!r}")
        self.quantize_embeddings = quantize_embeddings
        self.dropout_rng = np.random.default_rng([0, 1])        # what GPT.forward reads
        if config.pos_encoding == "sinusoidal":
            self.pos_table = sinusoidal_table(config.block_size, config.n_embd, self.dtype)
        self._caches = None
        self.params, self.quantized = {}, {}
        for entry, (shape, dtype_) in self.expected_entries().items():   # zeros, with valid scales
            fill = np.finfo(self.dtype).tiny if entry.endswith(SCALE) else 0
            self._store(entry, np.full(shape, fill, dtype_))

    @classmethod
    def from_float(cls, model, bits, group_size=None, quantize_embeddings=False):
        """The quantized twin of the float GPT ``model`` (see :func:`quantize_model`)."""
        if not isinstance(model, GPT) or isinstance(model, QuantizedGPT):
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
    def channel_axis(self, name):
        """The channel axis of a quantized weight (1 for (in, out) block matrices, 0 for the
        (rows, n_embd) tables, whose rows are tokens or positions), None for one that stays float."""
        if name.startswith("transformer.h.") and name.split(".", 3)[3] in QUANTIZED_BLOCK_WEIGHTS:
            return 1
        if self.quantize_embeddings and name in EMBEDDINGS:
            return 0
        return None

    def expected_entries(self):
        """Entry name -> (shape, dtype) of everything this model stores (``state_dict``'s keys)."""
        entries = {}
        for name, shape in self.param_shapes(self.config).items():
            axis = self.channel_axis(name)
            if axis is None:
                entries[name] = (shape, self.dtype)
                continue
            other, q_shape, s_shape = 1 - axis, list(shape), list(shape)
            if self.bits == 4:
                q_shape[other] = (shape[other] + 1) // 2
            s_shape[other] = shape[other] // (self.group_size or shape[other])
            entries[name + INTS] = (tuple(q_shape), np.dtype(np.uint8 if self.bits == 4 else np.int8))
            entries[name + SCALE] = (tuple(s_shape), self.dtype)
        return entries

    def _store(self, entry, array):
        """Put a ``state_dict`` entry where it lives: ``params``, or a slot of ``quantized``."""
        for suffix, slot in ((INTS, 0), (SCALE, 1)):
            if entry.endswith(suffix):
                self.quantized.setdefault(entry[:-len(suffix)], [None, None])[slot] = array
                return
        self.params[entry] = array

    def weight(self, name):
        """Parameter ``name`` as a float array (dequantized when it is stored quantized)."""
        if name in self.params:
            return self.params[name]
        q, scale = self.quantized[name]
        axis = self.channel_axis(name)
        if self.bits == 4:
            q = unpack_int4(q, self.param_shapes(self.config)[name][1 - axis], axis=1 - axis)
        return dequantize_tensor(q, scale, axis, self.group_size)

    def _rows(self, name, rows):
        """Rows ``rows`` of a (rows, n_embd) table as floats, dequantizing only those rows."""
        if name in self.params:
            return self.params[name][rows]
        q, scale = (a[rows] for a in self.quantized[name])
        if self.bits == 4:
            q = unpack_int4(q, self.config.n_embd, axis=1)
        return dequantize_tensor(q, scale, 0, self.group_size)

    def num_params(self):
        """Parameters of the float model this one stands for (quantized or not)."""
        return sum(math.prod(shape) for shape in self.param_shapes(self.config).values())

    def num_bytes(self):
        """Bytes stored: the integers, the scales and what stays float (not the sinusoidal table,
        which is computed)."""
        return sum(a.nbytes for a in self.state_dict(copy=False).values())

    def state_dict(self, copy=True):
        """Every stored array by entry name: float parameters, ``name.q`` integers, ``name.scale``."""
        state = dict(self.params)
        for name, (q, scale) in self.quantized.items():
            state[name + INTS], state[name + SCALE] = q, scale
        return {k: v.copy() for k, v in state.items()} if copy else state

    def load_state_dict(self, state):
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
            _check_entry(entry, np.asarray(state[entry]), shape, dtype, self.bits)
        for entry in expected:
            self._store(entry, np.array(state[entry], copy=True))
        self._stack_blocks()

    def _stack_blocks(self):
        """Keep each kind of block array (integers, scales, LayerNorm weights, biases) in one
        (n_layer, ...) stack, every block's entry a view of it: the one-token step reads the stacks
        with no copy (:meth:`quantized_block_weights`). Built one kind at a time."""
        self._stacks = {}
        for key in BLOCK_WEIGHTS:
            names = [f"transformer.h.{i}.{key}" for i in range(self.config.n_layer)]
            if names[0] in self.quantized:
                for slot, suffix in ((0, ""), (1, SCALE)):
                    stack = self._stacks[key + suffix] = np.stack([self.quantized[n][slot] for n in names])
                    for i, n in enumerate(names):
                        self.quantized[n][slot] = stack[i]
            elif names[0] in self.params:
                stack = self._stacks[key] = np.stack([self.params[n] for n in names])
                self.params.update({n: stack[i] for i, n in enumerate(names)})
        self._stack_views = self._current_block_arrays()

    def _current_block_arrays(self):
        """The block arrays in the order :meth:`_stack_blocks` stacks them (to see whether any was replaced)."""
        arrays = []
        for key in BLOCK_WEIGHTS:
            for i in range(self.config.n_layer):
                name = f"transformer.h.{i}.{key}"
                arrays += self.quantized[name] if name in self.quantized else [self.params.get(name)]
        return arrays

    # ------------------------------------------------------------- forward
    def block_params(self):
        """Per block, its parameters relative to the block, the matrices dequantized (every call)."""
        blocks = [{} for _ in range(self.config.n_layer)]
        for name in self.param_shapes(self.config):
            if name.startswith("transformer.h."):
                i, _, key = name[len("transformer.h."):].partition(".")
                blocks[int(i)][key] = self.weight(name)
        return blocks

    def _head_weight(self):
        return self.weight("transformer.wte.weight" if self.config.tie_weights else "lm_head.weight")

    def quantized_block_weights(self):
        """The blocks' weights stacked by kind, the matrices as integers and scales (the layout
        :func:`quantized_decode_step_forward` reads); zeros for the biases of a ``bias=False`` model.
        The model's own stacks, not a copy, while no block array has been replaced."""
        n_layer, stacked = self.config.n_layer, {}
        views = getattr(self, "_stack_views", None)
        if views is not None and all(a is b for a, b in zip(self._current_block_arrays(), views)):
            stacked = dict(self._stacks)
            for key in BLOCK_WEIGHTS:
                if key not in stacked:                  # a bias the model does not have
                    width = self.param_shapes(self.config)[f"transformer.h.0.{key}".replace(".bias", ".weight")][-1]
                    stacked[key] = np.zeros((n_layer, width), dtype=self.dtype)
            return stacked
        for key in BLOCK_WEIGHTS:
            names = [f"transformer.h.{i}.{key}" for i in range(n_layer)]
            if names[0] in self.quantized:
                stacked[key] = np.stack([self.quantized[n][0] for n in names])
                stacked[key + SCALE] = np.stack([self.quantized[n][1] for n in names])
            elif names[0] in self.params:
                stacked[key] = np.stack([self.params[n] for n in names])
            else:
                width = self.param_shapes(self.config)[names[0].replace(".bias", ".weight")][-1]
                stacked[key] = np.zeros((n_layer, width), dtype=self.dtype)
        return stacked

    def new_cache(self, batch_size=1):
        """A :class:`~npgpt.KVCache` holding the quantized block stacks for one-token steps."""
        c = self.config
        cache = KVCache(c.n_layer, blocks=self.quantized_block_weights(), owner=self)
        cache.reserve(c.block_size, batch_size, c.n_head, c.head_size, self.dtype)
        return cache

    def forward(self, idx, targets=None, ignore_index=None, cache=None):
        """As :meth:`npgpt.GPT.forward`, from the stored integers. With a cache and no targets
        (generation), every position runs :meth:`decode_step` on them in turn, the prompt's too, so
        the float weights are never built: generating takes the integers and the KV cache (GPT-2
        small: 243 MB + 75 MB, against 660 MB when the prompt's forward dequantized every block).
        Anything else runs GPT's forward on dequantized weights."""
        if cache is not None and targets is None and np.ndim(idx) == 2 and np.shape(idx)[1] >= 1:
            steps = [self._one_token(idx[:, t:t + 1], cache) for t in range(np.shape(idx)[1])]
            return (steps[0] if len(steps) == 1 else np.concatenate(steps, axis=1)), None
        with self._float_tables():
            return super().forward(idx, targets, ignore_index, cache)

    def decode_step(self, x, pos, blocks, keys, values):
        """The blocks for one token per row of x (B, C): the dispatched
        :func:`npgpt.ops.quantize.quantized_decode_step_forward` (or its numba twin)."""
        return backend.ops().quantized_decode_step_forward(x, pos, blocks, keys, values, self.config.n_head,
                                                           self.config.layer_norm_epsilon)

    def _one_token(self, idx, cache):
        """Logits (B, 1, V) of one new token per row: the embedding and position rows, the cached
        step through every block, the final LayerNorm and the output layer."""
        c, start = self.config, cache.length
        idx = self._check_ids(idx, "idx", start)
        cache.reserve(start + 1, idx.shape[0], c.n_head, c.head_size, self.dtype)
        positions = self._rows("transformer.wpe.weight", [start]) if c.pos_encoding == "learned" \
            else self.pos_table[start:start + 1]
        x = self._rows("transformer.wte.weight", idx[:, 0]) + positions
        blocks = cache.blocks if cache.owner is self else self.quantized_block_weights()
        x = self.decode_step(x, start, blocks, cache.keys, cache.values)
        cache.length = start + 1
        F = backend.ops()
        x, _ = F.layernorm_forward(x, self.params["transformer.ln_f.weight"], self.params.get("transformer.ln_f.bias"),
                                   c.layer_norm_epsilon)
        logits, _ = F.linear_forward(x, self._head_weight().T)
        return logits[:, None]

    @contextmanager
    def _float_tables(self):
        """Within the block, quantized embedding tables also sit in ``params`` as floats (what
        GPT's forward reads); afterwards they are gone again."""
        names = [n for n in EMBEDDINGS if n in self.quantized]
        self.params.update({n: self.weight(n) for n in names})
        try:
            yield
        finally:
            for n in names:
                del self.params[n]

    def backward(self, dlogits=None):
        raise UsageError("a QuantizedGPT has no backward: it is for inference; train the float "
                         "model and quantize it again")

    # ------------------------------------------------------------- files
    def save(self, path):
        """Write the model to ``path`` (.npz: the stored arrays and a JSON ``meta``), atomically."""
        meta = {"format": FORMAT, "kind": "QuantizedGPT", "model_config": self.config.to_dict(),
                "dtype": self.dtype.name, "bits": self.bits, "group_size": self.group_size,
                "quantize_embeddings": self.quantize_embeddings}
        with atomic_writer(path) as f:
            np.savez(f, meta=np.array(json.dumps(meta)), **self.state_dict(copy=False))

    @classmethod
    def load(cls, path):
        """The model :meth:`save` wrote to ``path``. Nothing is trusted before it is checked: the
        metadata first, then every entry's shape and dtype from its header before its data is read,
        then the values (:meth:`load_state_dict`). Anything wrong is a ValueError naming the file."""
        path = os.fspath(path)
        if not os.path.isfile(path):
            raise UsageError(f"quantized model {path!r} does not exist")
        try:
            with np.load(path, allow_pickle=False) as npz:
                model = cls._from_meta(_read_entry(npz, "meta", (), None))
                expected = model.expected_entries()
                unexpected = sorted(set(npz.files) - set(expected) - {"meta"})
                if unexpected:
                    raise UsageError(f"unexpected entries: {unexpected}")
                missing = sorted(set(expected) - set(npz.files))
                if missing:
                    raise UsageError(f"missing entries: {missing}")
                state = {k: _read_entry(npz, k, shape, dtype) for k, (shape, dtype) in expected.items()}
            model.load_state_dict(state)
        except CONTAINER_ERRORS as e:
            raise UsageError(f"quantized model {path!r} is truncated or corrupted ({type(e).__name__}: {e})") from None
        except ValueError as e:
            raise UsageError(f"quantized model {path!r} cannot be loaded: {e}") from None
        return model

    @classmethod
    def _from_meta(cls, array):
        if array.dtype.kind != "U":
            raise UsageError(f"its meta entry holds dtype {array.dtype}, expected a JSON string")
        try:
            meta = json.loads(str(array))
        except json.JSONDecodeError as e:
            raise UsageError(f"its metadata is not JSON ({e})") from None
        keys = {"format", "kind", "model_config", "dtype", "bits", "group_size", "quantize_embeddings"}
        if not isinstance(meta, dict) or set(meta) != keys:
            raise UsageError(f"its metadata must be a JSON object with the keys {sorted(keys)}, got {meta!r:.200}")
        if meta["format"] != FORMAT or meta["kind"] != "QuantizedGPT":
            raise UsageError(f"it is format {meta['format']!r} of kind {meta['kind']!r}, expected format "
                             f"{FORMAT} of kind 'QuantizedGPT'")
        if meta["dtype"] not in DTYPES:
            raise UsageError(f"metadata 'dtype' is {meta['dtype']!r}, expected one of {DTYPES}")
        if not isinstance(meta["model_config"], dict):
            raise UsageError(f"metadata 'model_config' is {meta['model_config']!r}, expected a JSON object")
        config = config_from_dict(meta["model_config"])
        if not isinstance(config, GPTConfig):
            raise UsageError("its model_config describes a recurrent model, expected a GPT")
        return cls(config, meta["bits"], meta["group_size"], meta["quantize_embeddings"], np.dtype(meta["dtype"]))


def load_quantized(path):
    """The :class:`QuantizedGPT` saved at ``path`` (:meth:`QuantizedGPT.load`)."""
    return QuantizedGPT.load(path)


# ----------------------------------------------------------------------------- input checks
def _check_entry(entry, a, shape, dtype, bits):
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


def _read_entry(npz, key, shape, dtype):
    """One entry of an open .npz, its header (shape, dtype) checked before its data is read."""
    with npz.zip.open(key + ".npy") as f:
        header_shape, header_dtype = read_npy_header(f)      # checkpoint.py's reader: damaged headers too
    if header_shape != tuple(shape) or header_dtype.hasobject or (dtype is not None and header_dtype != dtype):
        raise UsageError(f"entry {key} has shape {header_shape} and dtype {header_dtype}, expected "
                         f"{tuple(shape)} and {'a string' if dtype is None else np.dtype(dtype)}")
    return npz[key]


__all__ = ["BITS", "QUANTIZED_BLOCK_WEIGHTS", "QuantizedGPT", "dequantize_blocks", "dequantize_tensor",
           "load_quantized", "pack_int4", "quantize_model", "quantize_tensor", "quantized_decode_step_forward",
           "unpack_int4"]
