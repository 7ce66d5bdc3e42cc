"""Checkpoints: one ``.npz`` holding a run's arrays and a JSON ``meta`` entry, never pickled.

Written atomically (a temporary file in the same directory, then a rename: a reader sees the old
checkpoint or the new one, never half of one). Read by one reader, :func:`read_checkpoint`, that
trusts nothing in the file before it has checked it, through npgpt's checked ``.npz`` reader
(:class:`npgpt.io.npz.NpzFile`, which says what it checks of the container and of each entry):

1. the container: a regular file, a zip whose records are sane (no bomb: what each entry declares
   fits what its compressed bytes can hold) and whose entries pass their CRC;
2. the metadata, its size capped before it is read, against a schema: required keys, their types,
   the known config keys, the random generators' states;
3. the config against the file: a config that implies more entries than the file holds is refused
   before its schema is built (a file cannot hold more weights than its bytes);
4. every array's shape and dtype, read from its header *before* the array is loaded, against the
   shapes the config implies (so a tampered config cannot make the reader allocate gigabytes), and
   the size the zip declares for it against its header's;
5. the values: parameters and optimizer state must be finite;
6. the tokenizer's vocabulary against the model's.

Anything wrong raises a UsageError of one line naming the file and what is wrong.
"""
import json
import math
import os
from dataclasses import fields

import numpy as np

from ..atomic import atomic_writer
from ..checks import UsageError
from ..models import GPT, RecurrentConfig, RecurrentLM
from ..models.config import GPTConfig
from ..text.chars import CharTokenizer
from ..text.corpus import Corpus
from .npz import CONTAINER_ERRORS, Entry, NpzFile, read_npy_header

CHECKPOINT_FORMAT = 1
DTYPES = ("float32", "float64")
META_TYPES: dict[str, type | tuple[type, ...]] = {"format": int, "step": int, "model_config": dict, "dtype": str, "train_config": dict,
              "batch_rng": dict, "dropout_rng": dict, "tokenizer": (str, type(None))}
OPTIONAL_META_TYPES = {"corpus": str}     # where the training text came from (npgpt.text.Corpus.source)
HISTORY_KEYS = ("step", "train_loss", "lr", "eval_step", "eval_train", "eval_val")
OPTIMIZER_BUFFERS = {"adamw": ("m", "v"), "sgd": ("momentum_buffer",)}
# Every block stores at least this many arrays (a GPT block: two LayerNorm weights and four matrices;
# a recurrent layer: its two matrices), so n_layer bounds the entries a checkpoint must hold.
ARRAYS_PER_LAYER = {GPTConfig: 6, RecurrentConfig: 2}
# Positions a GPT may be configured for: a sinusoidal model derives a (block_size, n_embd) table that
# no entry of the file bounds. A NumPy GPT attends over a few thousand at most.
MAX_BLOCK_SIZE = 1 << 20

__all__ = ["CHECKPOINT_FORMAT", "CONTAINER_ERRORS", "DTYPES", "OPTIMIZER_BUFFERS", "build_model",
           "check_same_corpus", "checkpoint_bytes", "config_from_dict", "expected_arrays", "model_from_checkpoint",
           "param_shapes", "read_checkpoint", "read_npy_header", "temporary_files", "tokenizer_from_checkpoint",
           "write_checkpoint"]


def temporary_files(path: str | os.PathLike) -> list[str]:
    """The temporary files a killed :func:`write_checkpoint` of ``path`` may have left behind
    (the atomic writer's own pattern, ``.<name>.*.tmp`` beside it)."""
    path = os.fspath(path)
    folder, name = os.path.split(path)
    folder = folder or "."
    if not os.path.isdir(folder):
        return []
    return sorted(os.path.join(folder, f) for f in os.listdir(folder)
                  if f.startswith(f".{name}.") and f.endswith(".tmp"))


def write_checkpoint(path: str | os.PathLike, meta: dict, arrays: dict[str, np.ndarray]) -> None:
    """Write ``arrays`` (name -> array) and ``meta`` (a JSON-able dict) to ``path`` atomically."""
    with atomic_writer(path) as f:      # (numpy's stub fears **arrays could hold allow_pickle)
        np.savez(f, meta=np.array(json.dumps(meta)), **arrays)  # type: ignore[arg-type]


# ----------------------------------------------------------------------------- reading
def read_checkpoint(path: str | os.PathLike) -> tuple[dict, dict[str, np.ndarray]]:
    """(meta dict, arrays dict) of a checkpoint, every part checked (module docstring)."""
    path = os.fspath(path)
    with NpzFile(path, "checkpoint", invalid="is not a valid npgpt checkpoint") as npz:
        meta = _read_meta(npz.read_json("meta"))
        config = meta["model_config"]
        npz.check_fits(f"model_config n_layer={config.n_layer}", n_entries=_entries_at_least(meta))
        expected = expected_arrays(meta)
        arrays = npz.read(expected, optional=_mask_entries(expected))
    try:
        _check_values(meta, arrays)
    except ValueError as e:
        raise UsageError(f"checkpoint {path!r} cannot be used: {e}") from None
    return meta, arrays


def _read_meta(meta: object) -> dict:
    """The checkpoint's metadata (a JSON value) checked against the schema; its model_config becomes
    a config object."""
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
        except (TypeError, ValueError, KeyError, OverflowError) as e:
            raise UsageError(f"metadata {key!r} is not a random generator's state ({e})") from None
    meta["model_config"] = config = config_from_dict(meta["model_config"])
    if isinstance(config, GPTConfig) and config.block_size > MAX_BLOCK_SIZE:
        raise UsageError(f"model_config block_size={config.block_size} is more than the {MAX_BLOCK_SIZE} positions "
                         f"npgpt reads a GPT for")
    optimizer = meta["train_config"].get("optimizer", "adamw")
    if not isinstance(optimizer, str) or optimizer not in OPTIMIZER_BUFFERS:
        raise UsageError(f"train_config optimizer is {optimizer!r}, expected one of {tuple(OPTIMIZER_BUFFERS)}")
    return meta


def config_from_dict(d: dict) -> GPTConfig | RecurrentConfig:
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


def param_shapes(config: GPTConfig | RecurrentConfig) -> dict[str, tuple[int, ...]]:
    """Name -> shape of every parameter of the model ``config`` describes, without building it."""
    if isinstance(config, RecurrentConfig):
        return RecurrentLM.param_shapes(config)
    return GPT.param_shapes(config)


def expected_arrays(meta: dict) -> dict[str, Entry]:
    """Entry name -> :class:`~npgpt.io.npz.Entry` (shape, dtype) of every array a checkpoint with
    this metadata holds. The loss history has one value per step at most (a step records its loss
    and learning rate, and at most one evaluation)."""
    config, dtype = meta["model_config"], np.dtype(meta["dtype"])
    shapes = param_shapes(config)
    expected = {f"param/{name}": Entry(shape, dtype) for name, shape in shapes.items()}
    expected["optim/step"] = Entry((), "i")
    for kind in OPTIMIZER_BUFFERS[meta["train_config"].get("optimizer", "adamw")]:
        if kind == "momentum_buffer" and not meta["train_config"].get("momentum", 0.9):
            continue                                    # SGD without momentum keeps no buffer
        expected.update({f"optim/{kind}.{name}": Entry(shape, dtype) for name, shape in shapes.items()})
    expected.update({f"history/{key}": Entry(None, np.dtype(np.float64), max_length=meta["step"])
                     for key in HISTORY_KEYS})
    return expected


def _entries_at_least(meta: dict) -> int:
    """A lower bound of the entries ``expected_arrays(meta)`` lists, found without listing them: every
    layer's smallest arrays, for the parameters and each optimizer buffer."""
    config = meta["model_config"]
    copies = 1 + len(OPTIMIZER_BUFFERS[meta["train_config"].get("optimizer", "adamw")])
    return config.n_layer * ARRAYS_PER_LAYER[type(config)] * copies


def _mask_entries(expected: dict[str, Entry]) -> dict[str, Entry]:
    """The pruning masks a checkpoint may hold: ``mask/<param>``, bool, shaped like the parameter."""
    return {f"mask/{key[len('param/'):]}": Entry(entry.shape, np.dtype(bool))
            for key, entry in expected.items() if key.startswith("param/")}


def _check_values(meta: dict, arrays: dict[str, np.ndarray]) -> None:
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


def checkpoint_bytes(config: GPTConfig | RecurrentConfig, dtype: np.dtype | type | str, optimizer: str = "adamw") -> int:
    """About how many bytes a checkpoint of this model takes: the parameters, and the optimizer's
    buffers (two per parameter for AdamW, one for SGD with momentum)."""
    n = sum(math.prod(shape) for shape in param_shapes(config).values())
    return n * np.dtype(dtype).itemsize * (1 + len(OPTIMIZER_BUFFERS[optimizer]))


# ----------------------------------------------------------------------------- models
def build_model(config: GPTConfig | RecurrentConfig, seed: int = 0, dtype: np.dtype | type | str = np.float32
                ) -> GPT | RecurrentLM:
    """A fresh model for ``config``: a :class:`npgpt.RecurrentLM` for a :class:`npgpt.RecurrentConfig`,
    a :class:`npgpt.GPT` for a :class:`npgpt.GPTConfig`."""
    if isinstance(config, RecurrentConfig):
        return RecurrentLM(config, seed=seed, dtype=dtype)
    return GPT(config, seed=seed, dtype=dtype)


def model_from_checkpoint(path: str | os.PathLike, meta: dict | None = None,
                          arrays: dict[str, np.ndarray] | None = None) -> GPT | RecurrentLM:
    """The model stored in a checkpoint, parameters loaded strictly: a :class:`npgpt.RecurrentLM` when
    the saved config names a recurrent ``cell``, else a :class:`npgpt.GPT`."""
    if meta is None or arrays is None:
        meta, arrays = read_checkpoint(path)
    model = build_model(meta["model_config"], dtype=np.dtype(meta["dtype"]))
    model.load_state_dict({k[len("param/"):]: v for k, v in arrays.items() if k.startswith("param/")})
    return model


def check_same_corpus(path: str | os.PathLike, meta: dict, corpus: Corpus) -> None:
    """A ValueError when the checkpoint at ``path`` records a corpus other than ``corpus`` (a
    :class:`npgpt.text.Corpus`): its losses and its resume would silently mean something else."""
    trained_on = meta.get("corpus")
    if trained_on is not None and trained_on != corpus.source:
        raise UsageError(f"{path} was trained on corpus {trained_on!r}, but this run's corpus is "
                         f"{corpus.source!r} ({corpus.description}); use the corpus it was trained on")


def tokenizer_from_checkpoint(path: str | os.PathLike, meta: dict) -> CharTokenizer:
    """The checkpoint's character tokenizer, or a ValueError when it holds none."""
    if meta["tokenizer"] is None:
        raise UsageError(f"{path} holds no tokenizer; it cannot decode text")
    return CharTokenizer.from_json(meta["tokenizer"])
