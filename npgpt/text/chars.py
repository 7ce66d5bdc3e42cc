r"""Character-level tokenizer: every distinct character of the training text is one token.

$$\mathcal V = \mathrm{sorted}(\{c : c \in \text{text}\}),\qquad
  \mathrm{encode}(s)_t = \mathrm{stoi}[s_t],\qquad
  \mathrm{decode}(\mathrm{ids}) = \mathrm{itos}[\mathrm{ids}_0]\,\mathrm{itos}[\mathrm{ids}_1]\cdots$$

(document 3.1: the simplest text encoding; Tiny Shakespeare has 65 characters). Characters are sorted
by code point, so the same text always gives the same ids. An optional *unknown* token gets the id
after the last character; characters outside the vocabulary then encode to it instead of raising.

The tokenizer is stored as JSON: :meth:`CharTokenizer.save` / :meth:`CharTokenizer.load` for a file,
:meth:`CharTokenizer.to_array` / :meth:`CharTokenizer.from_array` for a 0-d string array that an
``.npz`` checkpoint can hold and ``np.load(..., allow_pickle=False)`` can read back.
"""
import json
import os
from collections.abc import Sequence
from typing import Any, Self

import numpy as np
from numpy.typing import ArrayLike, NDArray

from ..atomic import atomic_write_text
from ..checks import UsageError
from .bpe_files import one_line, read_file

# A vocabulary of every Unicode code point (1.1 million) takes about 9 MB of JSON; Tiny Shakespeare's 65
# characters take 400 bytes. A tokenizer file is read whole, so it is refused beyond this.
MAX_FILE_BYTES = 16 << 20

FORMAT = "npgpt.CharTokenizer"
FORMAT_VERSION = 1


class CharTokenizer:
    """Maps characters to integer ids and back.

    ``chars``: the vocabulary characters in id order (distinct, one character each); ``unknown``:
    an optional token string (such as ``"\ufffd"`` or ``"<unk>"``) that unknown characters encode
    to. If ``unknown`` is itself one of ``chars`` it shares that character's id; otherwise it gets
    the id ``len(chars)``. Build one from text with :meth:`from_text`.
    """

    def __init__(self, chars: Sequence[str], unknown: str | None = None) -> None:
        chars = _check_chars(chars)
        if unknown is not None and (not isinstance(unknown, str) or unknown == ""):
            raise UsageError(f"unknown must be None or a non-empty string, got {unknown!r}")
        self.chars = chars
        self.unknown = unknown
        self.itos = dict(enumerate(chars))
        self.stoi = {ch: i for i, ch in self.itos.items()}
        self.unknown_id: int | None = None
        if unknown is not None:
            self.unknown_id = self.stoi.get(unknown, len(chars))
            self.itos.setdefault(self.unknown_id, unknown)
            self.stoi.setdefault(unknown, self.unknown_id)

    @classmethod
    def from_text(cls, text: str, unknown: str | None = None) -> Self:
        """The tokenizer whose vocabulary is the sorted set of characters in ``text``."""
        _check_str(text, "text")
        if not text:
            raise UsageError("text is empty: a character vocabulary needs at least one character")
        return cls(sorted(set(text)), unknown=unknown)

    @property
    def vocab_size(self) -> int:
        """Number of ids: the characters, plus one for the unknown token when it is not a character."""
        return len(self.itos)

    # ----------------------------------------------------------------- encode / decode
    def encode(self, text: str) -> NDArray[np.int64]:
        """The ids of ``text``'s characters, as a 1-D int64 array (the dtype the model takes)."""
        _check_str(text, "text")
        if self.unknown_id is not None:
            return np.array([self.stoi.get(ch, self.unknown_id) for ch in text], dtype=np.int64)
        try:
            return np.array([self.stoi[ch] for ch in text], dtype=np.int64)
        except KeyError as e:
            ch = e.args[0]
            raise UsageError(f"character {ch!r} at position {text.index(ch)} is not in the "
                             f"vocabulary of {len(self.chars)} characters; build the tokenizer "
                             f"with unknown=... to map such characters to one id") from None

    def decode(self, ids: ArrayLike) -> str:
        """The text of a 1-D sequence of ids (list or integer array)."""
        ids = np.asarray(ids)
        if ids.size == 0:
            return ""
        if ids.ndim != 1 or ids.dtype.kind not in "iu":
            raise UsageError(f"ids must be a 1-D sequence of integers, got shape {ids.shape} "
                             f"and dtype {ids.dtype}")
        bad = (ids < 0) | (ids >= self.vocab_size)
        if bad.any():
            raise UsageError(f"id {int(ids[bad][0])} is out of range for a vocabulary of "
                             f"{self.vocab_size} ids (valid ids are 0..{self.vocab_size - 1})")
        return "".join(self.itos[i] for i in ids.tolist())

    # ----------------------------------------------------------------- storage
    def to_dict(self) -> dict[str, Any]:
        """A JSON-able description: ``{"format", "version", "chars", "unknown"}``."""
        return {"format": FORMAT, "version": FORMAT_VERSION, "chars": list(self.chars),
                "unknown": self.unknown}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Self:
        """The tokenizer described by :meth:`to_dict`'s output; malformed input raises ValueError."""
        if not isinstance(d, dict):
            raise UsageError(f"a tokenizer description must be a dict, got {type(d).__name__}")
        if d.get("format") != FORMAT or d.get("version") != FORMAT_VERSION:
            raise UsageError(f"not a {FORMAT} version {FORMAT_VERSION} description: format "
                             f"{d.get('format')!r}, version {d.get('version')!r}")
        if "chars" not in d:
            raise UsageError("tokenizer description has no 'chars' entry")
        return cls(d["chars"], unknown=d.get("unknown"))

    def to_json(self) -> str:
        """:meth:`to_dict` as a JSON string."""
        return json.dumps(self.to_dict())

    @classmethod
    def from_json(cls, s: str | bytes) -> Self:
        """The tokenizer of a :meth:`to_json` string; malformed JSON raises ValueError."""
        try:
            d = json.loads(s)
        except RecursionError:
            raise UsageError("tokenizer JSON is malformed: it nests too deeply to read") from None
        except (TypeError, ValueError) as e:        # JSONDecodeError, or an integer of over 4300 digits
            raise UsageError(f"tokenizer JSON is malformed: {one_line(str(e))}") from None
        return cls.from_dict(d)

    def to_array(self) -> NDArray[np.str_]:
        """A 0-d unicode array holding :meth:`to_json` -- storable in an ``.npz`` without pickle."""
        return np.array(self.to_json())

    @classmethod
    def from_array(cls, a: ArrayLike) -> Self:
        """The tokenizer stored by :meth:`to_array` (as read back by ``np.load``)."""
        a = np.asarray(a)
        if a.shape != () or a.dtype.kind != "U":
            raise UsageError(f"a stored tokenizer is a 0-d unicode array, got shape {a.shape} "
                             f"and dtype {a.dtype}")
        return cls.from_json(str(a))

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the tokenizer to ``path`` as JSON (atomically: no half-written file on a crash)."""
        atomic_write_text(path, json.dumps(self.to_dict(), indent=1) + "\n")

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Self:
        """Read a tokenizer written by :meth:`save`; a corrupt file raises ValueError naming it. The
        path must be a regular file of at most MAX_FILE_BYTES, in UTF-8 (checked before it is read)."""
        data = read_file(path, "a tokenizer file", MAX_FILE_BYTES)
        try:
            content = data.decode("utf-8")
        except UnicodeDecodeError as e:
            raise UsageError(f"{path} is not a valid tokenizer file: not UTF-8 text (byte {e.start:,}: "
                             f"{e.reason})") from None
        try:
            return cls.from_json(content)
        except ValueError as e:             # what the file says, quoted: one line, capped
            raise UsageError(f"{path} is not a valid tokenizer file: {one_line(str(e))}") from None

    # ----------------------------------------------------------------- conveniences
    def __eq__(self, other: object) -> bool:
        if not isinstance(other, CharTokenizer):
            return NotImplemented
        return self.chars == other.chars and self.unknown == other.unknown

    def __repr__(self) -> str:
        return (f"CharTokenizer(vocab_size={self.vocab_size}, "
                f"chars={''.join(self.chars)!r}, unknown={self.unknown!r})")


def _check_str(value: object, name: str) -> None:
    if not isinstance(value, str):
        raise UsageError(f"{name} must be a str, got {type(value).__name__}")


def _check_chars(chars: object) -> tuple[str, ...]:
    """``chars`` as a tuple of distinct one-character strings, or a ValueError naming the culprit."""
    if isinstance(chars, str):
        chars = list(chars)
    if not isinstance(chars, (list, tuple)):
        raise UsageError(f"chars must be a list of characters, got {type(chars).__name__}")
    if not chars:
        raise UsageError("chars is empty: a character vocabulary needs at least one character")
    for i, ch in enumerate(chars):
        if not isinstance(ch, str) or len(ch) != 1:
            raise UsageError(f"chars[{i}] must be a single character, got {ch!r}")
    seen = set()
    for ch in chars:
        if ch in seen:
            raise UsageError(f"character {ch!r} appears twice in chars; each needs its own id")
        seen.add(ch)
    return tuple(chars)
