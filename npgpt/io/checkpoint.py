"""Checkpoints: one ``.npz`` holding a run's arrays and a JSON ``meta`` entry, never pickled.

Written atomically (a temporary file in the same directory, then a rename: a reader sees the old
checkpoint or the new one, never half of one). Read by one reader, :func:`read_checkpoint`, that
trusts nothing in the file before it has checked it:

1. the container: a readable zip whose entries pass their CRC (else "truncated or corrupted");
2. the metadata, against a schema: required keys, their types, the known config keys, the
   random generators' states;
3. every array's shape and dtype, read from its header *before* the array is loaded, against the
   shapes the config implies (so a tampered config cannot make the reader allocate gigabytes);
4. the values: parameters and optimizer state must be finite;
5. the tokenizer's vocabulary against the model's.

Anything wrong raises a ValueError naming the file and what is wrong.
"""
import json
import math
import os
import struct
import zipfile
import zlib
from dataclasses import fields

import numpy as np

from ..atomic import atomic_writer
from ..checks import UsageError
from ..models import GPT, RecurrentConfig, RecurrentLM
from ..models.config import GPTConfig
from ..text.chars import CharTokenizer

CHECKPOINT_FORMAT = 1
# What zipfile raises on a damaged container (a compression method or version it does not know
# comes out as NotImplementedError, "encrypted" as RuntimeError).
CONTAINER_ERRORS = (zipfile.BadZipFile, zlib.error, EOFError, OSError, NotImplementedError, RuntimeError,
                    struct.error)
DTYPES = ("float32", "float64")
META_TYPES = {"format": int, "step": int, "model_config": dict, "dtype": str, "train_config": dict,
              "batch_rng": dict, "dropout_rng": dict, "tokenizer": (str, type(None))}
OPTIONAL_META_TYPES = {"corpus": str}     # where the training text came from (npgpt.text.Corpus.source)
HISTORY_KEYS = ("step", "train_loss", "lr", "eval_step", "eval_train", "eval_val")
OPTIMIZER_BUFFERS = {"adamw": ("m", "v"), "sgd": ("momentum_buffer",)}


def temporary_files(path):
    """The temporary files a killed :func:`write_checkpoint` of ``path`` may have left behind
    (the atomic writer's own pattern, ``.<name>.*.tmp`` beside it)."""
    path = os.fspath(path)
    folder, name = os.path.split(path)
    folder = folder or "."
    if not os.path.isdir(folder):
        return []
    return sorted(os.path.join(folder, f) for f in os.listdir(folder)
                  if f.startswith(f".{name}.") and f.endswith(".tmp"))


def write_checkpoint(path, meta, arrays):
    """Write ``arrays`` (name -> array) and ``meta`` (a JSON-able dict) to ``path`` atomically."""
    with atomic_writer(path) as f:
        np.savez(f, meta=np.array(json.dumps(meta)), **arrays)


# ----------------------------------------------------------------------------- reading
def read_checkpoint(path):
    """(meta dict, arrays dict) of a checkpoint, every part checked (module docstring)."""
    path = os.fspath(path)
    if os.path.isdir(path):
        raise UsageError(f"checkpoint {path!r} is a directory, expected a checkpoint file (OUT_DIR/ckpt.npz)")
    if not os.path.isfile(path):
        raise UsageError(f"checkpoint {path!r} does not exist")
    try:
        with zipfile.ZipFile(path) as archive:
            entries = {name.removesuffix(".npy"): name for name in archive.namelist()}
            if "meta" not in entries:
                raise UsageError("it has no 'meta' entry")
            meta = _read_meta(_load_entry(archive, entries["meta"], (), "U"))
            expected = expected_arrays(meta)
            expected.update(_mask_entries(entries, expected))
            _check_entries(archive, entries, expected)
            arrays = {key: _load_entry(archive, entries[key], *expected[key]) for key in expected}
    except CONTAINER_ERRORS as e:
        raise UsageError(f"checkpoint {path!r} is truncated or corrupted ({type(e).__name__}: {e})") from None
    except ValueError as e:
        raise UsageError(f"checkpoint {path!r} is not a valid npgpt checkpoint: {e}") from None
    try:
        _check_values(meta, arrays)
    except ValueError as e:
        raise UsageError(f"checkpoint {path!r} cannot be used: {e}") from None
    return meta, arrays


def _load_entry(archive, name, shape, kind):
    """One array of the zip, its header checked before the data is read."""
    with archive.open(name) as f:
        header_shape, dtype = read_npy_header(f)
    _check_header(name, header_shape, dtype, shape, kind)
    with archive.open(name) as f:
        return np.lib.format.read_array(f, allow_pickle=False)


def read_npy_header(f):
    """(shape, dtype) from an .npy header. NumPy parses the header's text with a Python literal
    parser, which answers damaged bytes with SyntaxError, TokenError and the like: all of them
    mean the same thing here."""
    try:
        version = np.lib.format.read_magic(f)
        read = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}
        if version not in read:
            raise UsageError(f"unsupported .npy version {version}")
        shape, _, dtype = read[version](f)
    except CONTAINER_ERRORS:
        raise
    except Exception as e:
        raise UsageError(f"an array header is damaged ({type(e).__name__}: {e})") from None
    return shape, dtype


def _check_header(name, shape, dtype, expected_shape, expected_kind):
    """``expected_shape`` is a tuple, or None for any 1-D array; ``expected_kind`` a dtype, or a
    dtype kind letter ("U", "i", "f")."""
    if isinstance(expected_kind, str):
        ok_dtype = dtype.kind == expected_kind and not dtype.hasobject
        wanted = {"U": "a string", "i": "an integer", "f": "a float"}[expected_kind]
    else:
        ok_dtype, wanted = dtype == expected_kind, str(expected_kind)
    if not ok_dtype:
        raise UsageError(f"entry {name} holds dtype {dtype}, expected {wanted} array")
    ok_shape = len(shape) == 1 if expected_shape is None else tuple(shape) == tuple(expected_shape)
    if not ok_shape:
        raise UsageError(f"entry {name} has shape {tuple(shape)}, expected "
                         f"{'a 1-D array' if expected_shape is None else tuple(expected_shape)}")


def _check_entries(archive, entries, expected):
    missing = sorted(set(expected) - set(entries))
    unexpected = sorted(set(entries) - set(expected) - {"meta"})
    if missing or unexpected:
        problems = ([f"missing entries: {', '.join(missing)}"] if missing else []) + \
                   ([f"unexpected entries: {', '.join(unexpected)}"] if unexpected else [])
        raise UsageError("; ".join(problems))
    for key, (shape, kind) in expected.items():
        with archive.open(entries[key]) as f:
            header_shape, dtype = read_npy_header(f)
        _check_header(key, header_shape, dtype, shape, kind)


def _read_meta(array):
    try:
        meta = json.loads(str(array))
    except json.JSONDecodeError as e:
        raise UsageError(f"its metadata is not JSON ({e})") from None
    if not isinstance(meta, dict):
        raise UsageError(f"its metadata is a JSON {type(meta).__name__}, expected an object")
    missing = [k for k in META_TYPES if k not in meta]
    if missing:
        raise UsageError(f"its metadata lacks {', '.join(missing)}")
    for key, types in META_TYPES.items():
        value = meta[key]
        if isinstance(value, bool) or not isinstance(value, types):
            expected = " or ".join(t.__name__ for t in (types if isinstance(types, tuple) else (types,)))
            raise UsageError(f"metadata {key!r} is {value!r}, expected a JSON {expected}")
    for key, kind in OPTIONAL_META_TYPES.items():
        if key in meta and not isinstance(meta[key], kind):
            raise UsageError(f"metadata {key!r} is {meta[key]!r}, expected a JSON {kind.__name__}")
    if meta["format"] != CHECKPOINT_FORMAT:
        raise UsageError(f"checkpoint format {meta['format']!r}, expected {CHECKPOINT_FORMAT}")
    if meta["step"] < 0:
        raise UsageError(f"metadata 'step' is {meta['step']}, expected a count >= 0")
    if meta["dtype"] not in DTYPES:
        raise UsageError(f"metadata 'dtype' is {meta['dtype']!r}, expected one of {DTYPES}")
    for key in ("batch_rng", "dropout_rng"):
        try:
            np.random.default_rng().bit_generator.state = meta[key]
        except (TypeError, ValueError, KeyError) as e:
            raise UsageError(f"metadata {key!r} is not a random generator's state ({e})") from None
    meta["model_config"] = config_from_dict(meta["model_config"])
    optimizer = meta["train_config"].get("optimizer", "adamw")
    if optimizer not in OPTIMIZER_BUFFERS:
        raise UsageError(f"train_config optimizer is {optimizer!r}, expected one of {tuple(OPTIMIZER_BUFFERS)}")
    return meta


def config_from_dict(d):
    """The model config a checkpoint's ``model_config`` describes (a recurrent one when it names a
    ``cell``), checked: known keys only, every required key, values of the right type and range."""
    cls = RecurrentConfig if "cell" in d else GPTConfig
    known = {f.name: f for f in fields(cls)}
    unknown = sorted(set(d) - set(known))
    if unknown:
        raise UsageError(f"model_config has unknown keys {unknown} for a {cls.__name__}")
    for name in ("bias", "tie_weights"):
        if name in d and not isinstance(d[name], bool):
            raise UsageError(f"model_config {name!r} is {d[name]!r}, expected true or false")
    try:
        return cls(**d)
    except TypeError as e:            # a required key is missing
        raise UsageError(f"model_config is incomplete ({e})") from None


def param_shapes(config):
    """Name -> shape of every parameter of the model ``config`` describes, without building it."""
    if isinstance(config, RecurrentConfig):
        return RecurrentLM.param_shapes(config)
    return GPT.param_shapes(config)


def expected_arrays(meta):
    """Entry name -> (shape, dtype or kind) of every array a checkpoint with this metadata holds."""
    config, dtype = meta["model_config"], np.dtype(meta["dtype"])
    shapes = param_shapes(config)
    expected = {f"param/{name}": (shape, dtype) for name, shape in shapes.items()}
    expected["optim/step"] = ((), "i")
    for kind in OPTIMIZER_BUFFERS[meta["train_config"].get("optimizer", "adamw")]:
        if kind == "momentum_buffer" and not meta["train_config"].get("momentum", 0.9):
            continue                                    # SGD without momentum keeps no buffer
        expected.update({f"optim/{kind}.{name}": (shape, dtype) for name, shape in shapes.items()})
    expected.update({f"history/{key}": (None, np.dtype(np.float64)) for key in HISTORY_KEYS})
    return expected


def _mask_entries(entries, expected):
    """The pruning masks a checkpoint may hold: ``mask/<param>``, bool, shaped like the parameter."""
    masks = {}
    for key in entries:
        if key.startswith("mask/") and f"param/{key[len('mask/'):]}" in expected:
            masks[key] = (expected[f"param/{key[len('mask/'):]}"][0], np.dtype(bool))
    return masks


def _check_values(meta, arrays):
    bad = [key for key, a in arrays.items()
           if key.startswith(("param/", "optim/")) and a.dtype.kind == "f" and not np.isfinite(a).all()]
    if bad:
        raise UsageError(f"it holds NaN or infinite values in {', '.join(bad[:5])}"
                         + (f" and {len(bad) - 5} more" if len(bad) > 5 else "")
                         + ": the run it came from had diverged")
    lengths = {key: arrays[f"history/{key}"].size for key in HISTORY_KEYS}
    if not lengths["step"] == lengths["train_loss"] == lengths["lr"] or \
            not lengths["eval_step"] == lengths["eval_train"] == lengths["eval_val"]:
        raise UsageError(f"its loss history has columns of different lengths {lengths}")
    if meta["tokenizer"] is not None:
        tokenizer = CharTokenizer.from_json(meta["tokenizer"])
        vocab = meta["model_config"].vocab_size
        if tokenizer.vocab_size != vocab:
            raise UsageError(f"its tokenizer has {tokenizer.vocab_size} symbols but the model has "
                             f"vocab_size={vocab}: they do not belong together")


def checkpoint_bytes(config, dtype, optimizer="adamw"):
    """About how many bytes a checkpoint of this model takes: the parameters, and the optimizer's
    buffers (two per parameter for AdamW, one for SGD with momentum)."""
    n = sum(math.prod(shape) for shape in param_shapes(config).values())
    return n * np.dtype(dtype).itemsize * (1 + len(OPTIMIZER_BUFFERS[optimizer]))


# ----------------------------------------------------------------------------- models
def build_model(config, seed=0, dtype=np.float32):
    """A fresh model for ``config``: a :class:`npgpt.RecurrentLM` for a :class:`npgpt.RecurrentConfig`,
    a :class:`npgpt.GPT` for a :class:`npgpt.GPTConfig`."""
    cls = RecurrentLM if isinstance(config, RecurrentConfig) else GPT
    return cls(config, seed=seed, dtype=dtype)


def model_from_checkpoint(path, meta=None, arrays=None):
    """The model stored in a checkpoint, parameters loaded strictly: a :class:`npgpt.RecurrentLM` when
    the saved config names a recurrent ``cell``, else a :class:`npgpt.GPT`."""
    if meta is None:
        meta, arrays = read_checkpoint(path)
    model = build_model(meta["model_config"], dtype=np.dtype(meta["dtype"]))
    model.load_state_dict({k[len("param/"):]: v for k, v in arrays.items() if k.startswith("param/")})
    return model


def check_same_corpus(path, meta, corpus):
    """A ValueError when the checkpoint at ``path`` records a corpus other than ``corpus`` (a
    :class:`npgpt.text.Corpus`): its losses and its resume would silently mean something else."""
    trained_on = meta.get("corpus")
    if trained_on is not None and trained_on != corpus.source:
        raise UsageError(f"{path} was trained on corpus {trained_on!r}, but this run's corpus is "
                         f"{corpus.source!r} ({corpus.description}); use the corpus it was trained on")


def tokenizer_from_checkpoint(path, meta):
    """The checkpoint's character tokenizer, or a ValueError when it holds none."""
    if meta["tokenizer"] is None:
        raise UsageError(f"{path} holds no tokenizer; it cannot decode text")
    return CharTokenizer.from_json(meta["tokenizer"])
