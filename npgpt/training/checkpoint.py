"""Checkpoints: one ``.npz`` holding a run's arrays and a JSON ``meta`` entry, never pickled.

Written atomically (a temporary file in the same directory, then a rename: a reader sees the old
checkpoint or the new one, never half of one) and read with ``allow_pickle=False``.
"""
import json
import os

import numpy as np

from ..atomic import atomic_writer
from ..config import GPTConfig
from ..models import GPT, RecurrentConfig, RecurrentLM

CHECKPOINT_FORMAT = 1


def write_checkpoint(path, meta, arrays):
    """Write ``arrays`` (name -> array) and ``meta`` (a JSON-able dict) to ``path`` atomically."""
    with atomic_writer(path) as f:
        np.savez(f, meta=np.array(json.dumps(meta)), **arrays)


def read_checkpoint(path):
    """(meta dict, arrays dict) of a checkpoint, loaded with ``allow_pickle=False``."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ValueError(f"checkpoint {path!r} does not exist")
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files}
        meta = json.loads(str(arrays.pop("meta")))
    except (OSError, ValueError, KeyError, json.JSONDecodeError) as e:
        raise ValueError(f"{path!r} is not a readable npgpt checkpoint ({e})") from None
    if meta.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path!r} has checkpoint format {meta.get('format')!r}, expected {CHECKPOINT_FORMAT}")
    return meta, arrays


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
    saved = meta["model_config"]
    config = RecurrentConfig.from_dict(saved) if "cell" in saved else GPTConfig.from_dict(saved)
    model = build_model(config, dtype=np.dtype(meta["dtype"]))
    model.load_state_dict({k[len("param/"):]: v for k, v in arrays.items() if k.startswith("param/")})
    return model
