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
import os

import numpy as np

from ..atomic import atomic_writer
from ..checks import UsageError
from ..io.checkpoint import CONTAINER_ERRORS, DTYPES, config_from_dict, read_npy_header
from ..models import GPT
from ..models.config import GPTConfig
from ..models.quantized import QuantizedGPT
from ..ops.quantize import (
    BITS,
    QMAX,
    QUANTIZED_BLOCK_WEIGHTS,
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
    """The model :func:`save_quantized` wrote to ``path``. Nothing is trusted before it is checked:
    the metadata first, then every entry's shape and dtype from its header before its data is read,
    then the values (:meth:`QuantizedGPT.load_state_dict`). Anything wrong is a ValueError naming the file."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise UsageError(f"quantized model {path!r} does not exist")
    try:
        with np.load(path, allow_pickle=False) as npz:
            model = _model_from_meta(_read_entry(npz, "meta", (), None))
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


def _model_from_meta(array: np.ndarray) -> QuantizedGPT:
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
    return QuantizedGPT(config, meta["bits"], meta["group_size"], meta["quantize_embeddings"], np.dtype(meta["dtype"]))


# ----------------------------------------------------------------------------- input checks
def _read_entry(npz, key, shape, dtype):
    """One entry of an open .npz, its header (shape, dtype) checked before its data is read."""
    with npz.zip.open(key + ".npy") as f:
        header_shape, header_dtype = read_npy_header(f)      # checkpoint.py's reader: damaged headers too
    if header_shape != tuple(shape) or header_dtype.hasobject or (dtype is not None and header_dtype != dtype):
        raise UsageError(f"entry {key} has shape {header_shape} and dtype {header_dtype}, expected "
                         f"{tuple(shape)} and {'a string' if dtype is None else np.dtype(dtype)}")
    return npz[key]


__all__ = ["BITS", "QMAX", "QUANTIZED_BLOCK_WEIGHTS", "QuantizedGPT", "dequantize_blocks", "dequantize_tensor",
           "load_quantized", "pack_int4", "quantize_model", "quantize_tensor", "quantized_decode_step_forward",
           "save_quantized", "unpack_int4"]
