r"""Text corpora and batches of next-token training pairs.

A corpus is one long string. The tokenizer turns it into ids $u_0 \dots u_{N-1}$ once; the first
90% are the training split, the rest the validation split. A batch is $B$ windows of $T+1$
consecutive ids starting at random offsets $s_b$:

$$x_{b,t} = u_{s_b + t},\qquad y_{b,t} = u_{s_b + t + 1},\qquad 0 \le s_b \le N_{\mathrm{split}} - T - 1$$

so $y$ is $x$ shifted left by one: position $t$ is trained to predict the token that follows it.

Corpora (:func:`resolve_corpus`): Tiny Shakespeare (found locally or downloaded once, checksum
verified), a built-in corpus shipped in the package that needs no network, or any UTF-8 text file.
"""
import hashlib
import json
import os
import urllib.request
import warnings
from importlib import resources
from pathlib import Path

import numpy as np

from .atomic import atomic_write_bytes, atomic_writer
from .tokenizer import CharTokenizer

TINYSHAKESPEARE_URL = ("https://raw.githubusercontent.com/karpathy/char-rnn/master/"
                       "data/tinyshakespeare/input.txt")
TINYSHAKESPEARE_SHA256 = "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed"
TINYSHAKESPEARE_SIZE = 1_115_394
TINYSHAKESPEARE_FILENAME = "tinyshakespeare.txt"
DOWNLOAD_TIMEOUT = 30.0  # seconds without a byte before urllib gives up

FALLBACK_RESOURCE = "corpus/fallback.txt"
FALLBACK_DESCRIPTION = ("the built-in corpus (54 of Shakespeare's sonnets and 13 speeches from his "
                        "plays, 48 KB, shipped as npgpt/corpus/fallback.txt)")
SHAKESPEARE_NAMES = ("shakespeare", "tinyshakespeare")
FALLBACK_NAMES = ("fallback", "builtin")
SPLITS = ("train", "val")


class CorpusUnavailableError(RuntimeError):
    """Tiny Shakespeare could not be found locally or downloaded; the message says what was tried."""


# ----------------------------------------------------------------- text files
def load_text(path):
    """The exact contents of a UTF-8 text file (a leading byte-order mark is dropped).

    Missing file: FileNotFoundError naming it. Empty file, a directory, or bytes that are not UTF-8:
    ValueError naming the file (and, for bad bytes, their offset).
    """
    if not isinstance(path, (str, os.PathLike)):
        raise ValueError(f"path must be a str or os.PathLike, got {type(path).__name__}")
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no such text file: {path}")
    if path.is_dir():
        raise ValueError(f"{path} is a directory, expected a text file")
    data = path.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ValueError(f"{path} is not valid UTF-8: byte 0x{data[e.start]:02x} at offset "
                         f"{e.start} ({e.reason})") from None
    text = text.removeprefix("\ufeff")  # a BOM is an encoding marker, not a character of the text
    if not text:
        raise ValueError(f"{path} is empty: a corpus needs some text")
    return text


def fallback_text():
    """The built-in corpus shipped inside the package (no network needed)."""
    return resources.files("npgpt").joinpath(FALLBACK_RESOURCE).read_text(encoding="utf-8")


# ----------------------------------------------------------------- Tiny Shakespeare
def default_cache_dir():
    """``$XDG_CACHE_HOME/npgpt``, or ``~/.cache/npgpt`` when that variable is unset."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "npgpt"


def sha256_of(path):
    """Hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def tinyshakespeare_path(download=True, timeout=DOWNLOAD_TIMEOUT):
    """Path of a verified copy of Tiny Shakespeare (1,115,394 bytes, SHA-256 checked).

    Looks in ``$NPGPT_DATA_DIR/tinyshakespeare.txt``, then in the cache (:func:`default_cache_dir`).
    A copy whose checksum is wrong gives a warning and is skipped (never trusted, never deleted).
    If none is found and ``download`` is true, the file is fetched from :data:`TINYSHAKESPEARE_URL`,
    checked, and written atomically into the cache. Raises :class:`CorpusUnavailableError`, whose
    message lists what was tried, when no verified copy can be had.
    """
    tried = []
    for candidate in _local_candidates():
        if not candidate.is_file():
            tried.append(f"{candidate} does not exist")
        elif _has_expected_checksum(candidate):
            return candidate
        else:
            tried.append(f"{candidate} is not Tiny Shakespeare (wrong checksum)")
    if not download:
        raise CorpusUnavailableError("Tiny Shakespeare not found (" + "; ".join(tried)
                                     + ") and downloading is off")
    target = default_cache_dir() / TINYSHAKESPEARE_FILENAME
    try:
        body = _fetch_url(TINYSHAKESPEARE_URL, timeout)
        _verify_download(body)
        atomic_write_bytes(target, body)
    except (OSError, ValueError) as e:  # URLError and timeouts are OSErrors
        tried.append(f"download from {TINYSHAKESPEARE_URL} failed: {e}")
        raise CorpusUnavailableError("Tiny Shakespeare is unavailable: " + "; ".join(tried)) from e
    return target


def _local_candidates():
    """Where a copy of Tiny Shakespeare may already be, in the order they are tried."""
    candidates = []
    if os.environ.get("NPGPT_DATA_DIR"):
        candidates.append(Path(os.environ["NPGPT_DATA_DIR"]) / TINYSHAKESPEARE_FILENAME)
    candidates.append(default_cache_dir() / TINYSHAKESPEARE_FILENAME)
    return candidates


def _has_expected_checksum(path):
    """True when ``path`` is the real Tiny Shakespeare; warns when it is not (or cannot be read)."""
    try:
        actual = sha256_of(path)
    except OSError as e:
        warnings.warn(f"ignoring {path}: cannot read it ({e})", stacklevel=3)
        return False
    if actual == TINYSHAKESPEARE_SHA256:
        return True
    warnings.warn(f"ignoring {path}: its SHA-256 is {actual}, expected {TINYSHAKESPEARE_SHA256} "
                  f"(a truncated download or a different file)", stacklevel=3)
    return False


def _fetch_url(url, timeout):
    """The body of ``url`` (at most one byte more than Tiny Shakespeare, so a wrong answer cannot
    fill the memory). Tests replace this function, so they never touch the network."""
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return response.read(TINYSHAKESPEARE_SIZE + 1)


def _verify_download(body):
    if len(body) != TINYSHAKESPEARE_SIZE:
        raise ValueError(f"got {len(body)} bytes, expected {TINYSHAKESPEARE_SIZE}")
    actual = hashlib.sha256(body).hexdigest()
    if actual != TINYSHAKESPEARE_SHA256:
        raise ValueError(f"SHA-256 is {actual}, expected {TINYSHAKESPEARE_SHA256}")


# ----------------------------------------------------------------- choosing a corpus
def resolve_corpus(name_or_path, download=True):
    """``(text, description)`` for a corpus name or a text file path.

    ``"shakespeare"`` / ``"tinyshakespeare"``: Tiny Shakespeare (downloaded if needed and
    ``download``); if it cannot be had, the built-in corpus, with a description that says so and
    why -- the caller should print it. ``"fallback"`` / ``"builtin"``: the built-in corpus. Anything
    else is a path to a UTF-8 text file (see :func:`load_text`; write ``./shakespeare`` for a file
    of that name).
    """
    if not isinstance(name_or_path, (str, os.PathLike)):
        raise ValueError(f"corpus must be a name or a path, got {type(name_or_path).__name__}")
    if name_or_path == "":
        raise ValueError("corpus is an empty string; give a corpus name or a text file path")
    name = name_or_path.lower() if isinstance(name_or_path, str) else None
    if name in SHAKESPEARE_NAMES:
        try:
            path = tinyshakespeare_path(download=download)
        except CorpusUnavailableError as e:
            return fallback_text(), f"{e}; using {FALLBACK_DESCRIPTION} instead"
        return load_text(path), f"Tiny Shakespeare ({path})"
    if name in FALLBACK_NAMES:
        return fallback_text(), FALLBACK_DESCRIPTION
    return load_text(name_or_path), f"text file {name_or_path}"


# ----------------------------------------------------------------- datasets
def tokenizer_fingerprint(tokenizer):
    """A string that changes whenever the tokenizer would encode differently: its ``to_json()``, or
    its ``to_dict()`` as JSON. None when it has neither (its ids are then not cached)."""
    if hasattr(tokenizer, "to_json"):
        return f"{type(tokenizer).__name__}:{tokenizer.to_json()}"
    if hasattr(tokenizer, "to_dict"):
        description = json.dumps(tokenizer.to_dict(), sort_keys=True, default=repr)
        return f"{type(tokenizer).__name__}:{description}"
    return None


def _cache_key(text, fingerprint):
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
    this instance used it.
    """

    def __init__(self, text, tokenizer=None, val_fraction=0.1, cache_dir=None, cache=True):
        if not isinstance(text, str):
            raise ValueError(f"text must be a str, got {type(text).__name__}")
        if not text:
            raise ValueError("text is empty: a dataset needs some text")
        if (isinstance(val_fraction, bool) or not isinstance(val_fraction, (int, float))
                or not 0.0 <= val_fraction < 1.0):
            raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction!r}")
        self.tokenizer = CharTokenizer.from_text(text) if tokenizer is None else tokenizer
        self.cache_path = None
        fingerprint = tokenizer_fingerprint(self.tokenizer)
        if cache and fingerprint is not None:
            cache_dir = default_cache_dir() / "ids" if cache_dir is None else Path(cache_dir)
            self.cache_path = cache_dir / f"ids-{_cache_key(text, fingerprint)}.npy"
        self.loaded_from_cache = False
        self.ids = self._cached_ids()
        if self.ids is None:
            self.ids = self._tokenize(text)
            self._write_cache()
        n_train = round(len(self.ids) * (1.0 - val_fraction))
        self.train_ids, self.val_ids = self.ids[:n_train], self.ids[n_train:]

    @property
    def vocab_size(self):
        return self.tokenizer.vocab_size

    def split(self, name):
        """The ids of split ``"train"`` or ``"val"``."""
        if name not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {name!r}")
        return self.train_ids if name == "train" else self.val_ids

    def get_batch(self, split, batch_size, block_size, rng):
        """``(x, y)``, two int64 arrays of shape (batch_size, block_size) with ``y[:, t] == x[:, t+1]``
        along the corpus: windows of ``split`` at offsets drawn from ``rng`` (a seeded
        ``np.random.Generator``, so a seed fixes the batches)."""
        data = self.split(split)
        for name, value in (("batch_size", batch_size), ("block_size", block_size)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if not isinstance(rng, np.random.Generator):
            raise ValueError(f"rng must be a np.random.Generator (np.random.default_rng(seed)), "
                             f"got {type(rng).__name__}")
        if len(data) < block_size + 1:
            raise ValueError(f"the {split} split has {len(data)} tokens, too few for block_size="
                             f"{block_size}: a window needs block_size + 1 = {block_size + 1} tokens")
        starts = rng.integers(0, len(data) - block_size, size=batch_size)  # s_b, high exclusive
        window = starts[:, None] + np.arange(block_size)                  # (B, T) positions
        return data[window].astype(np.int64), data[window + 1].astype(np.int64)

    # ----------------------------------------------------------------- tokenizing and the cache
    def _tokenize(self, text):
        ids = np.asarray(self.tokenizer.encode(text))
        # uint16 holds ids below 2**16, half the disk and memory of uint32 (GPT-2's 50257 fits).
        return ids.astype(np.uint16 if self.vocab_size <= 2**16 else np.uint32)

    def _cached_ids(self):
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

    def _write_cache(self):
        """Store the ids; a cache that cannot be written only costs time, so it is a warning."""
        if self.cache_path is None:
            return
        try:
            with atomic_writer(self.cache_path) as f:
                np.save(f, self.ids, allow_pickle=False)
        except OSError as e:
            warnings.warn(f"could not write token cache {self.cache_path}: {e}", stacklevel=3)

    def __repr__(self):
        return (f"Dataset(tokens={len(self.ids)}, train={len(self.train_ids)}, "
                f"val={len(self.val_ids)}, vocab_size={self.vocab_size})")
