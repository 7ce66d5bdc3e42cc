r"""Weights-only quantization of a whole model (document section 2, 量化), the simplest members of the
LLM.int8 / GPTQ family.

The formulas, one tensor at a time, are ops (:mod:`npgpt.ops.quantize`): symmetric absmax per output
channel (int8) or per group of ``group_size`` rows of a channel (int4), $q = \mathrm{rint}(w / s)$,
$\hat w = s\,q$, every error at most $s/2$; int4 packed two values to a byte. They are re-exported
here, so ``npgpt.allocation.quantize`` is the one place to start from.

:func:`quantize_model` turns an :class:`npgpt.GPT` into a :class:`~npgpt.models.quantized.QuantizedGPT`
(the model lives in :mod:`npgpt.models.quantized` and is re-exported here): the four matrices of
every block (and, with ``quantize_embeddings=True``, the token and position tables and an untied
output layer) are stored as integers and scales; LayerNorms and biases stay float. Its forward
dequantizes on the fly. Its cached one-token step hands the integers to the dispatched
:func:`npgpt.ops.quantize.quantized_decode_step_forward` (dequantize, then the float step), whose
numba twin (:func:`npgpt.kernels.quantized.quantized_decode_step_forward`) multiplies by the scales
inside the matrix-vector products and never builds the float weights.

:func:`save_quantized` writes one to a file, :func:`load_quantized` reads it back.
"""
import json
import math
import os

import numpy as np

from ..atomic import atomic_writer
from ..checks import UsageError
from ..io.checkpoint import ARRAYS_PER_LAYER, DTYPES, MAX_BLOCK_SIZE, config_from_dict
from ..io.npz import Entry, NpzFile
from ..models import GPT
from ..models.config import GPTConfig
from ..models.quantized import QuantizedGPT
from ..ops.quantize import (
    BITS,
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

FORMAT = 1


# ----------------------------------------------------------------------------- the model
def quantize_model(model: GPT, bits: int, group_size: int | None = None,
                   quantize_embeddings: bool = False) -> QuantizedGPT:
    """A :class:`QuantizedGPT` holding ``model``'s weights with ``bits`` (4 or 8) bits, one scale
    per output channel, or per group of ``group_size`` rows (which must divide n_embd)."""
    return QuantizedGPT.from_float(model, bits, group_size, quantize_embeddings)


# ----------------------------------------------------------------------------- files
def save_quantized(model: QuantizedGPT, path: str | os.PathLike) -> None:
    """Write ``model`` to ``path`` (.npz: the stored arrays and a JSON ``meta``), atomically."""
    if not isinstance(model, QuantizedGPT):
        raise UsageError(f"model must be a QuantizedGPT, got {type(model).__name__}")
    meta = {"format": FORMAT, "kind": "QuantizedGPT", "model_config": model.config.to_dict(),
            "dtype": model.dtype.name, "bits": model.bits, "group_size": model.group_size,
            "quantize_embeddings": model.quantize_embeddings}
    with atomic_writer(path) as f:
        np.savez(f, meta=np.array(json.dumps(meta)), **model.state_dict(copy=False))


def load_quantized(path: str | os.PathLike) -> QuantizedGPT:
    """The model :func:`save_quantized` wrote to ``path``, read through the checked container
    (:class:`npgpt.io.npz.NpzFile`): nothing is trusted or allocated before it is checked. The
    metadata first, then its config against the file (:func:`_check_config_fits`) before the model
    is built, then every entry's shape and dtype from its header before its data is read, then the
    scales (:func:`_check_scales`) and the values (:meth:`QuantizedGPT.load_state_dict`). Anything
    wrong is one line naming the file and the key or entry."""
    with NpzFile(path, "quantized model", invalid="cannot be loaded") as npz:
        model = _model_from_meta(npz, npz.read_json("meta"))
        arrays = npz.read(_schema(model.expected_entries()))
        _check_scales(arrays, model.bits)
        model.load_state_dict(arrays)
    return model


def _schema(entries: dict[str, tuple[tuple[int, ...], np.dtype]]) -> dict[str, Entry]:
    return {name: Entry(shape, dtype) for name, (shape, dtype) in entries.items()}


def _model_from_meta(npz: NpzFile, meta: object) -> QuantizedGPT:
    """The empty model the metadata describes, built only once the file has shown that it holds
    exactly that model's entries (names, shapes, dtypes and bytes: :func:`_check_config_fits`)."""
    keys = {"format", "kind", "model_config", "dtype", "bits", "group_size", "quantize_embeddings"}
    if not isinstance(meta, dict) or set(meta) != keys:
        raise UsageError(f"its metadata must be a JSON object with the keys {sorted(keys)}, got {meta!r:.200}")
    if meta["format"] != FORMAT or meta["kind"] != "QuantizedGPT":
        raise UsageError(f"it is format {meta['format']!r:.40} of kind {meta['kind']!r:.40}, expected format "
                         f"{FORMAT} of kind 'QuantizedGPT'")
    if meta["dtype"] not in DTYPES:
        raise UsageError(f"metadata 'dtype' is {meta['dtype']!r:.40}, expected one of {DTYPES}")
    if not isinstance(meta["model_config"], dict):
        raise UsageError(f"metadata 'model_config' is {meta['model_config']!r:.80}, expected a JSON object")
    config = config_from_dict(meta["model_config"])
    if not isinstance(config, GPTConfig):
        raise UsageError("its model_config describes a recurrent model, expected a GPT")
    _check_settings(meta, config)
    if not isinstance(meta["quantize_embeddings"], bool):
        raise UsageError(f"metadata 'quantize_embeddings' is {meta['quantize_embeddings']!r:.40}, expected true or false")
    _check_config_fits(npz, config, meta)
    return QuantizedGPT(config, meta["bits"], meta["group_size"], meta["quantize_embeddings"], np.dtype(meta["dtype"]))


def _check_settings(meta: dict, config: GPTConfig) -> None:
    """bits and group_size, through the ops' own checks: they raise a plain ValueError (ops/ sits
    below npgpt's UsageError), which here is the file's fault, not a bug."""
    try:
        _check_bits(meta["bits"])
        _check_group(meta["group_size"], config.n_embd, f"n_embd={config.n_embd} (the rows of every quantized matrix)")
    except ValueError as e:
        raise UsageError(str(e)) from None


def _check_config_fits(npz: NpzFile, config: GPTConfig, meta: dict) -> None:
    """Refuse a config the file does not hold exactly, before a model of it is built (building
    allocates every array it describes). First at least ARRAYS_PER_LAYER entries a block (so that
    the schema of a million layers is never listed), then the bytes the config's arrays take
    against what the entries hold (a message about the config's sizes), at most MAX_BLOCK_SIZE
    positions (a sinusoidal table is computed, not read), and last every entry: its name, its
    header's shape and dtype, and the bytes it declares, exactly. The model built then allocates
    what the file's arrays hold, no more (the bytes were only bounded below before: a small file
    could make it build a model many times larger)."""
    npz.check_fits(f"model_config n_layer={config.n_layer}", n_entries=ARRAYS_PER_LAYER[GPTConfig] * config.n_layer)
    entries = QuantizedGPT.entries_for(config, meta["bits"], meta["group_size"], meta["quantize_embeddings"],
                                       meta["dtype"])
    n_bytes = sum(math.prod(shape) * dtype.itemsize for shape, dtype in entries.values())
    npz.check_fits(f"model_config (n_layer={config.n_layer}, n_embd={config.n_embd}, vocab_size={config.vocab_size}, "
                   f"block_size={config.block_size}: {len(entries):,} arrays)", n_bytes=n_bytes)
    if config.block_size > MAX_BLOCK_SIZE:
        raise UsageError(f"model_config block_size={config.block_size} is more than the {MAX_BLOCK_SIZE} positions "
                         f"npgpt reads a GPT for")
    npz.check_entries(_schema(entries))


def _check_scales(arrays: dict[str, np.ndarray], bits: int) -> None:
    """Refuse a scale whose weights overflow: q lies in [-Q, Q] (load_state_dict checks it), so the
    largest weight a scale s gives is s * Q, computed as the model computes it (in the scale's
    dtype). A finite 1e38 passes "finite and positive" but makes int8 weights of 1.27e40, infinite
    in float32, and every logit after them NaN or infinite. quantize_tensor's scales pass unless the
    float weights they encode reach the float's largest value, where s * Q rounds past it."""
    for name, scale in arrays.items():
        if not name.endswith(SCALE):
            continue
        with np.errstate(over="ignore", invalid="ignore"):
            overflows = np.isfinite(scale) & ~np.isfinite(scale * scale.dtype.type(QMAX[bits]))
        if overflows.any():
            raise UsageError(f"entry {name} holds a scale of {scale[overflows].flat[0]:.3g}: its weights, up to "
                             f"{QMAX[bits]} times it, overflow {scale.dtype}")


__all__ = ["BITS", "QMAX", "QUANTIZED_BLOCK_WEIGHTS", "QuantizedGPT", "dequantize_blocks", "dequantize_tensor",
           "load_quantized", "pack_int4", "quantize_model", "quantize_tensor", "quantized_decode_step_forward",
           "save_quantized", "unpack_int4"]
