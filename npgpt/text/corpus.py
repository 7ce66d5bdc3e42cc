r"""Text corpora (document section 3, step 1 starts from text): where the text comes from.

A corpus is one long string: Tiny Shakespeare (found locally or downloaded once, checksum
verified), a built-in corpus shipped in the package that needs no network, or any UTF-8 text file
(:func:`resolve_corpus` picks one by name).
"""
import hashlib
import os
import urllib.request
import warnings
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from ..atomic import atomic_write_bytes
from ..checks import MissingFile, NotRegularFile, UsageError, open_regular_file
from ..runtime import settings
from ..runtime.memory import require_memory

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


class CorpusUnavailableError(RuntimeError):
    """Tiny Shakespeare could not be found locally or downloaded; the message says what was tried."""


# ----------------------------------------------------------------- text files
def load_text(path: str | os.PathLike[str]) -> str:
    """The exact contents of a UTF-8 text file (a leading byte-order mark is dropped).

    Missing file: :class:`npgpt.checks.MissingFile` (a FileNotFoundError) naming it. Empty file, a directory,
    a FIFO or a device (never read: a FIFO waits for a writer, /dev/zero never ends), an unreadable
    file, or bytes that are not UTF-8: ValueError naming the file (and, for bad bytes, their offset).
    """
    if not isinstance(path, (str, os.PathLike)):
        raise UsageError(f"path must be a str or os.PathLike, got {type(path).__name__}")
    path = Path(path)
    if not path.exists():
        raise MissingFile(f"no such text file: {path}")
    if path.is_dir():
        raise UsageError(f"{path} is a directory, expected a text file")
    data = _read_regular_file(path)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise UsageError(f"{path} is not valid UTF-8: byte 0x{data[e.start]:02x} at offset "
                         f"{e.start} ({e.reason})") from None
    text = text.removeprefix("\ufeff")  # a BOM is an encoding marker, not a character of the text
    if not text:
        raise UsageError(f"{path} is empty: a corpus needs some text")
    return text


def _read_regular_file(path: Path) -> bytes:
    """The bytes of ``path``, checked on the open descriptor to be a regular file before it is read.
    Opened without blocking, so a FIFO is refused instead of waiting for a writer."""
    try:
        f = open_regular_file(path)
    except NotRegularFile as e:
        raise UsageError(f"{path} is {e.kind}, expected a text file") from None
    except OSError as e:
        raise UsageError(f"{path} cannot be read ({e.strerror or e}), expected a text file") from None
    with f:
        size = os.fstat(f.fileno()).st_size
        # The bytes and the decoded text are held at once: up to 1 + 4 bytes per byte of the file
        # (a str of non-Latin text stores 2 or 4 bytes a character).
        require_memory(5 * size, f"reading the {size:,}-byte text file {path}")
        return f.read()


def fallback_text() -> str:
    """The built-in corpus shipped inside the package (no network needed)."""
    return resources.files("npgpt").joinpath(FALLBACK_RESOURCE).read_text(encoding="utf-8")


# ----------------------------------------------------------------- Tiny Shakespeare
def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/npgpt``, or ``~/.cache/npgpt`` when that variable is unset."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "npgpt"


def sha256_of(path: str | os.PathLike[str]) -> str:
    """Hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def tinyshakespeare_path(download: bool = True, timeout: float = DOWNLOAD_TIMEOUT) -> Path:
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


def _local_candidates() -> list[Path]:
    """Where a copy of Tiny Shakespeare may already be, in the order they are tried."""
    candidates = []
    data_dir = settings.data_dir()
    if data_dir is not None:
        candidates.append(data_dir / TINYSHAKESPEARE_FILENAME)
    candidates.append(default_cache_dir() / TINYSHAKESPEARE_FILENAME)
    return candidates


def _has_expected_checksum(path: Path) -> bool:
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


def _fetch_url(url: str, timeout: float) -> bytes:
    """The body of ``url`` (at most one byte more than Tiny Shakespeare, so a wrong answer cannot
    fill the memory). Tests replace this function, so they never touch the network."""
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return response.read(TINYSHAKESPEARE_SIZE + 1)


def _verify_download(body: bytes) -> None:
    if len(body) != TINYSHAKESPEARE_SIZE:
        raise UsageError(f"got {len(body)} bytes, expected {TINYSHAKESPEARE_SIZE}")
    actual = hashlib.sha256(body).hexdigest()
    if actual != TINYSHAKESPEARE_SHA256:
        raise UsageError(f"SHA-256 is {actual}, expected {TINYSHAKESPEARE_SHA256}")


# ----------------------------------------------------------------- choosing a corpus
@dataclass(frozen=True)
class Corpus:
    """A corpus and where it came from.

    ``source`` is ``"tinyshakespeare"``, ``"fallback"`` (the built-in corpus) or ``"file"``;
    ``fallback_reason`` says why Tiny Shakespeare was asked for and the built-in corpus given instead
    (None when no fallback happened). A run records ``source`` in its checkpoint and its summary, so
    a result can never be mistaken for one on another corpus.
    """

    text: str
    description: str
    source: str
    fallback_reason: str | None = None

    @property
    def fell_back(self) -> bool:
        """True when Tiny Shakespeare was asked for and the built-in corpus is used instead."""
        return self.fallback_reason is not None


def load_corpus(name_or_path: str | os.PathLike, download: bool = True) -> Corpus:
    """The :class:`Corpus` for a corpus name or a text file path.

    ``"shakespeare"`` / ``"tinyshakespeare"``: Tiny Shakespeare (downloaded if needed and
    ``download``); if it cannot be had, the built-in corpus, with ``fallback_reason`` saying why --
    the caller should say so loudly. ``"fallback"`` / ``"builtin"``: the built-in corpus. Anything
    else is a path to a UTF-8 text file (see :func:`load_text`; write ``./shakespeare`` for a file
    of that name).
    """
    if not isinstance(name_or_path, (str, os.PathLike)):
        raise UsageError(f"corpus must be a name or a path, got {type(name_or_path).__name__}")
    if name_or_path == "":
        raise UsageError("corpus is an empty string; give a corpus name or a text file path")
    name = name_or_path.lower() if isinstance(name_or_path, str) else None
    if name in SHAKESPEARE_NAMES:
        try:
            path = tinyshakespeare_path(download=download)
        except CorpusUnavailableError as e:
            return Corpus(fallback_text(), f"{e}; using {FALLBACK_DESCRIPTION} instead", "fallback", str(e))
        return Corpus(load_text(path), f"Tiny Shakespeare ({path})", "tinyshakespeare")
    if name in FALLBACK_NAMES:
        return Corpus(fallback_text(), FALLBACK_DESCRIPTION, "fallback")
    return Corpus(load_text(name_or_path), f"text file {name_or_path}", "file")


def resolve_corpus(name_or_path: str | os.PathLike, download: bool = True) -> tuple[str, str]:
    """``(text, description)`` of :func:`load_corpus`; when Tiny Shakespeare falls back to the
    built-in corpus, the description says so and why -- the caller should print it."""
    corpus = load_corpus(name_or_path, download)
    return corpus.text, corpus.description


def how_to_get_tinyshakespeare() -> str:
    """One sentence on where npgpt looks for Tiny Shakespeare, for messages about a fallback."""
    return (f"put {TINYSHAKESPEARE_FILENAME} ({TINYSHAKESPEARE_SIZE:,} bytes, from {TINYSHAKESPEARE_URL}) "
            f"in $NPGPT_DATA_DIR or {default_cache_dir()}, or pass the file's path as the corpus")
