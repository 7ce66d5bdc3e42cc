r"""Text corpora and batches of next-token training pairs.

A corpus is one long string. The tokenizer turns it into ids $u_0 \dots u_{N-1}$ once; the first
90% are the training split, the rest the validation split. A batch is $B$ windows of $T+1$
consecutive ids starting at random offsets $s_b$:

$$x_{b,t} = u_{s_b + t},\qquad y_{b,t} = u_{s_b + t + 1},\qquad 0 \le s_b \le N_{\mathrm{split}} - T - 1$$

so $y$ is $x$ shifted left by one: position $t$ is trained to predict the token that follows it.

The corpora themselves come from :mod:`npgpt.text.corpus`.
"""
import hashlib
import json
import os
import warnings
from pathlib import Path
from typing import Protocol

import numpy as np
from numpy.typing import ArrayLike, NDArray

from ..atomic import atomic_writer
from ..checks import UsageError
from ..text.chars import CharTokenizer
from ..text.corpus import default_cache_dir

SPLITS = ("train", "val")


class Tokenizer(Protocol):
    """What a :class:`Dataset` asks of a tokenizer: ``encode(text)`` -> ids and ``vocab_size``.
    One that also has ``to_json()`` or ``to_dict()`` gets its ids cached (:func:`tokenizer_fingerprint`)."""

    @property
    def vocab_size(self) -> int: ...
    def encode(self, text: str, /) -> ArrayLike: ...


# ----------------------------------------------------------------- datasets
def tokenizer_fingerprint(tokenizer: object) -> str | None:
    """A string that changes whenever the tokenizer would encode differently: its ``to_json()``, or
    its ``to_dict()`` as JSON. None when it has neither (its ids are then not cached)."""
    if hasattr(tokenizer, "to_json"):
        return f"{type(tokenizer).__name__}:{tokenizer.to_json()}"
    if hasattr(tokenizer, "to_dict"):
        description = json.dumps(tokenizer.to_dict(), sort_keys=True, default=repr)
        return f"{type(tokenizer).__name__}:{description}"
    return None


def _cache_key(text: str, fingerprint: str) -> str:
    """Hash of the text and the tokenizer fingerprint: changing either gives a new cache file."""
    digest = hashlib.sha256(text.encode("utf-8", errors="surrogatepass"))
    digest.update(b"\0" + fingerprint.encode("utf-8", errors="surrogatepass"))
    return digest.hexdigest()[:32]


class Dataset:
    """A tokenized corpus split into train and validation ids, served as random batches.

    ``text``: the corpus. ``tokenizer``: anything with ``encode(text) -> ids`` and ``vocab_size``
    (and ``to_json()`` or ``to_dict()`` to be cached); by default a :class:`CharTokenizer` of
    ``text``. ``val_fraction``: share of the ids, at the end, kept for validation. The ids are
    computed once and cached as ``.npy`` in ``cache_dir`` (default: :func:`default_cache_dir`
    ``/ "ids"``), under a name that hashes the text and the tokenizer, so the next run with the same
    corpus skips tokenizing; ``cache=False`` turns the cache off. ``loaded_from_cache`` says whether
    this instance used it. ``source``: a short label of where the text came from (a
    :attr:`npgpt.text.Corpus.source` such as ``"tinyshakespeare"`` or ``"fallback"``), which a
    training checkpoint records; None when unknown.
    """

    def __init__(self, text: str, tokenizer: Tokenizer | None = None, val_fraction: float = 0.1,
                 cache_dir: str | os.PathLike[str] | None = None, cache: bool = True,
                 source: str | None = None) -> None:
        if not isinstance(text, str):
            raise UsageError(f"text must be a str, got {type(text).__name__}")
        if not text:
            raise UsageError("text is empty: a dataset needs some text")
        if (isinstance(val_fraction, bool) or not isinstance(val_fraction, (int, float))
                or not 0.0 <= val_fraction < 1.0):
            raise UsageError(f"val_fraction must be in [0, 1), got {val_fraction!r}")
        if source is not None and not isinstance(source, str):
            raise UsageError(f"source must be a str or None, got {type(source).__name__}")
        self.source = source
        self.tokenizer: Tokenizer = CharTokenizer.from_text(text) if tokenizer is None else tokenizer
        self.cache_path: Path | None = None
        fingerprint = tokenizer_fingerprint(self.tokenizer)
        if cache and fingerprint is not None:
            cache_dir = default_cache_dir() / "ids" if cache_dir is None else Path(cache_dir)
            self.cache_path = cache_dir / f"ids-{_cache_key(text, fingerprint)}.npy"
        self.loaded_from_cache = False
        cached = self._cached_ids()
        self.ids: np.ndarray = self._tokenize(text) if cached is None else cached
        if cached is None:
            self._write_cache()
        n_train = round(len(self.ids) * (1.0 - val_fraction))
        self.train_ids, self.val_ids = self.ids[:n_train], self.ids[n_train:]

    @property
    def vocab_size(self) -> int:
        return self.tokenizer.vocab_size

    def split(self, name: str) -> np.ndarray:
        """The ids of split ``"train"`` or ``"val"``."""
        if name not in SPLITS:
            raise UsageError(f"split must be one of {SPLITS}, got {name!r}")
        return self.train_ids if name == "train" else self.val_ids

    def get_batch(self, split: str, batch_size: int, block_size: int, rng: np.random.Generator
                  ) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
        """``(x, y)``, two int64 arrays of shape (batch_size, block_size) with ``y[:, t] == x[:, t+1]``
        along the corpus: windows of ``split`` at offsets drawn from ``rng`` (a seeded
        ``np.random.Generator``, so a seed fixes the batches)."""
        data = self.split(split)
        for name, value in (("batch_size", batch_size), ("block_size", block_size)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise UsageError(f"{name} must be a positive integer, got {value!r}")
        if not isinstance(rng, np.random.Generator):
            raise UsageError(f"rng must be a np.random.Generator (np.random.default_rng(seed)), "
                             f"got {type(rng).__name__}")
        if len(data) < block_size + 1:
            raise UsageError(f"the {split} split has {len(data)} tokens, too few for block_size="
                             f"{block_size}: a window needs block_size + 1 = {block_size + 1} tokens")
        starts = rng.integers(0, len(data) - block_size, size=batch_size)  # s_b, high exclusive
        window = starts[:, None] + np.arange(block_size)                  # (B, T) positions
        return data[window].astype(np.int64), data[window + 1].astype(np.int64)

    # ----------------------------------------------------------------- tokenizing and the cache
    def _tokenize(self, text: str) -> np.ndarray:
        ids = np.asarray(self.tokenizer.encode(text))
        # uint16 holds ids below 2**16, half the disk and memory of uint32 (GPT-2's 50257 fits).
        return ids.astype(np.uint16 if self.vocab_size <= 2**16 else np.uint32)

    def _cached_ids(self) -> np.ndarray | None:
        """The cached ids, or None when there is no usable cache file (a bad one gives a warning)."""
        if self.cache_path is None or not self.cache_path.is_file():
            return None
        try:
            ids = np.load(self.cache_path, allow_pickle=False)
        except (OSError, ValueError) as e:
            warnings.warn(f"ignoring unreadable token cache {self.cache_path}: {e}", stacklevel=3)
            return None
        if (ids.ndim != 1 or ids.dtype not in (np.uint16, np.uint32) or ids.size == 0
                or ids.max() >= self.vocab_size):
            warnings.warn(f"ignoring token cache {self.cache_path}: it does not hold ids of this "
                          f"tokenizer (shape {ids.shape}, dtype {ids.dtype})", stacklevel=3)
            return None
        self.loaded_from_cache = True
        return ids

    def _write_cache(self) -> None:
        """Store the ids; a cache that cannot be written only costs time, so it is a warning."""
        if self.cache_path is None:
            return
        try:
            with atomic_writer(self.cache_path) as f:
                np.save(f, self.ids, allow_pickle=False)
        except OSError as e:
            warnings.warn(f"could not write token cache {self.cache_path}: {e}", stacklevel=3)

    def __repr__(self) -> str:
        return (f"Dataset(tokens={len(self.ids)}, train={len(self.train_ids)}, "
                f"val={len(self.val_ids)}, vocab_size={self.vocab_size})")
