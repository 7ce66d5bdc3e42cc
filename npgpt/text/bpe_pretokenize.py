r"""Pre-tokenization without a regex engine: GPT-2's and GPT-4's patterns as scanners over UTF-8 bytes.

The tokenizer (:mod:`npgpt.text.bpe`) cuts text into pieces with a regex, ``regex.findall(pattern,
text)``: that is the readable definition, and the tests hold these scanners to it piece for piece.
Run from Python, the regex engine alone reads Tiny Shakespeare at about 7 MB/s, half of tiktoken's
whole encoder; a scanner compiled by numba reads it many times faster. Each pattern is an
alternation, tried left to right at the current position; the scanner tests the same alternatives in
the same order (the comments quote them).

The alternatives, in order (``GPT2_PATTERN`` and ``GPT4_PATTERN`` in :mod:`npgpt.text.bpe`):

- GPT-2: ``'(?:[sdmt]|ll|ve|re)``, ``␣?\p{L}++``, ``␣?\p{N}++``, ``␣?[^\s\p{L}\p{N}]++``, ``\s++$``,
  ``\s+(?!\S)``, ``\s`` (␣ is the space character);
- GPT-4 (cl100k_base): ``'(?i:[sdmt]|ll|ve|re)``, ``[^\r\n\p{L}\p{N}]?+\p{L}++``, ``\p{N}{1,3}+``,
  ``␣?[^\s\p{L}\p{N}]++[\r\n]*+``, ``\s++$``, ``\s*[\r\n]``, ``\s+(?!\S)``, ``\s``.

Every character is a letter (``\p{L}``), a number (``\p{N}``), whitespace (``\s``) or other.
:func:`character_classes` reads those classes, and which characters ``(?i)`` folds to the
contraction letters, off the ``regex`` module itself, for every code point, so the scanners and the
regex agree on the same Unicode version.
"""
import functools

import numpy as np
import regex
from numba import njit

OTHER, LETTER, NUMBER, SPACE = 0, 1, 2, 3     # a character's kind: the low two bits of its class
KIND_BITS = 3
FOLD_SHIFT = 2                                # bits 2..5: 1 + the index in CONTRACTION_LETTERS it folds to
CONTRACTION_LETTERS = "sdmtlver"
END = 255                                     # the class past the end of the text

Index = int | np.int64                        # a byte position: numba runs them as int64

NO_SPLIT, GPT2, GPT4 = 0, 1, 2                # which scanner: the whole text is one piece, or a pattern
SCANNERS = {None: NO_SPLIT, "gpt2": GPT2, "gpt4": GPT4}

_APOSTROPHE, _SPACE, _CR, _LF = 0x27, 0x20, 0x0D, 0x0A
_CODE_POINTS = 0x110000
CONTRACTION_BYTES = np.frombuffer(CONTRACTION_LETTERS.encode(), np.uint8).copy()   # GPT-2: exact bytes


@functools.cache
def character_classes() -> np.ndarray:
    """uint8 per code point: its kind, and the contraction letter ``(?i)`` folds it to (GPT-4's
    ``'S`` and ``'ſ`` match ``'s``). Read off the ``regex`` module (about 0.1 s, once a process)."""
    points = np.concatenate([np.arange(0xD800), np.arange(0xE000, _CODE_POINTS)]).astype(np.uint32)
    every_character = points.tobytes().decode("utf-32-le")       # surrogates cannot be in a str we encode
    classes = np.zeros(_CODE_POINTS, np.uint8)
    for kind, pattern in ((LETTER, r"\p{L}+"), (NUMBER, r"\p{N}+"), (SPACE, r"\s+")):
        for match in regex.finditer(pattern, every_character):
            classes[points[match.start():match.end()]] = kind
    for index, letter in enumerate(CONTRACTION_LETTERS):
        for match in regex.finditer(f"(?i:{letter})", every_character):
            classes[points[match.start()]] |= (index + 1) << FOLD_SHIFT
    return classes


# ---------------------------------------------------------------------- reading UTF-8
@njit(cache=True, nogil=True)
def _width(lead: int) -> int:
    """Bytes in the UTF-8 character that starts with byte ``lead``."""
    if lead < 0x80:
        return 1
    if lead < 0xE0:
        return 2
    if lead < 0xF0:
        return 3
    return 4


@njit(cache=True, nogil=True)
def _class_at(data: np.ndarray, i: Index, classes: np.ndarray) -> int:
    """The class of the character starting at byte ``i`` (END past the end)."""
    if i >= len(data):
        return END
    lead = data[i]
    if lead < 0x80:
        return classes[lead]
    width = _width(lead)
    code = lead & (0x3F >> (width - 1))          # the lead byte keeps 5, 4 or 3 bits
    for k in range(1, width):
        code = (code << 6) | (data[i + k] & 0x3F)
    return classes[code]


@njit(cache=True, nogil=True)
def _kind_at(data: np.ndarray, i: Index, classes: np.ndarray) -> int:
    c = _class_at(data, i, classes)
    return c if c == END else c & KIND_BITS


@njit(cache=True, nogil=True)
def _folds_to(data: np.ndarray, i: Index, classes: np.ndarray, letter: int, ignore_case: bool) -> Index:
    """End of the character at ``i`` if it is contraction letter ``letter`` (an index into
    CONTRACTION_LETTERS; with ``ignore_case``, any character ``(?i)`` folds to it), else -1."""
    if i >= len(data):
        return -1
    if ignore_case:
        matches = (_class_at(data, i, classes) >> FOLD_SHIFT) == letter + 1
    else:
        matches = data[i] == CONTRACTION_BYTES[letter]
    return i + _width(data[i]) if matches else -1



# ---------------------------------------------------------------------- the alternatives
@njit(cache=True, nogil=True)
def _contraction_end(data: np.ndarray, i: Index, classes: np.ndarray, ignore_case: bool) -> Index:
    """``'(?:[sdmt]|ll|ve|re)``: the end of the contraction at the apostrophe ``i``, or -1."""
    after = i + 1
    for single in range(4):                      # s, d, m, t
        end = _folds_to(data, after, classes, single, ignore_case)
        if end >= 0:
            return end
    for first, second in ((4, 4), (5, 6), (7, 6)):   # ll, ve, re
        middle = _folds_to(data, after, classes, first, ignore_case)
        if middle >= 0:
            return _folds_to(data, middle, classes, second, ignore_case)
    return -1


@njit(cache=True, nogil=True)
def _run_end(data: np.ndarray, i: Index, classes: np.ndarray, kind: int, most: int) -> Index:
    """End of the run of at most ``most`` characters of ``kind`` starting at ``i`` (possessive: ``X++``)."""
    count = 0
    while count < most and _kind_at(data, i, classes) == kind:
        i += _width(data[i])
        count += 1
    return i


@njit(cache=True, nogil=True)
def _whitespace_end(data: np.ndarray, i: Index, classes: np.ndarray, newline_ends: bool) -> Index:
    r"""The whitespace alternatives at ``i``, in order: ``\s++$`` (the run reaches the end),
    GPT-4's ``\s*[\r\n]`` (up to the run's last CR or LF; ``newline_ends``), ``\s+(?!\S)`` (all but
    the run's last character), ``\s`` (one character)."""
    start, last = i, i
    after_newline: Index = -1
    while _kind_at(data, i, classes) == SPACE:
        last = i
        i += _width(data[i])
        if data[last] == _CR or data[last] == _LF:
            after_newline = i
    if i == len(data):
        return i
    if newline_ends and after_newline >= 0:
        return after_newline
    if last > start:
        return last
    return i


@njit(cache=True, nogil=True)
def gpt2_piece_end(data: np.ndarray, i: Index, classes: np.ndarray) -> Index:
    """End of the GPT-2 piece that starts at byte ``i``."""
    if data[i] == _APOSTROPHE:
        end = _contraction_end(data, i, classes, False)
        if end >= 0:
            return end
    start, kind = i, _kind_at(data, i, classes)
    if data[i] == _SPACE:                        # ' ?\p{L}++', ' ?\p{N}++', ' ?[^\s\p{L}\p{N}]++'
        following = _kind_at(data, i + 1, classes)
        if following != SPACE and following != END:
            start, kind = i + 1, following
    if kind != SPACE:
        return _run_end(data, start, classes, kind, len(data))
    return _whitespace_end(data, i, classes, False)


@njit(cache=True, nogil=True)
def gpt4_piece_end(data: np.ndarray, i: Index, classes: np.ndarray) -> Index:
    """End of the GPT-4 (cl100k_base) piece that starts at byte ``i``."""
    if data[i] == _APOSTROPHE:
        end = _contraction_end(data, i, classes, True)
        if end >= 0:
            return end
    kind = _kind_at(data, i, classes)
    if kind == LETTER:                           # '[^\r\n\p{L}\p{N}]?+\p{L}++' without its first character
        return _run_end(data, i, classes, LETTER, len(data))
    if kind != NUMBER and data[i] != _CR and data[i] != _LF:      # ... with it
        after = i + _width(data[i])
        if _kind_at(data, after, classes) == LETTER:
            return _run_end(data, after, classes, LETTER, len(data))
    if kind == NUMBER:                           # '\p{N}{1,3}+'
        return _run_end(data, i, classes, NUMBER, 3)
    start = i + 1 if data[i] == _SPACE and _kind_at(data, i + 1, classes) == OTHER else i
    if _kind_at(data, start, classes) == OTHER:  # ' ?[^\s\p{L}\p{N}]++[\r\n]*+'
        end = _run_end(data, start, classes, OTHER, len(data))
        while end < len(data) and (data[end] == _CR or data[end] == _LF):
            end += 1
        return end
    return _whitespace_end(data, i, classes, True)


@njit(cache=True, nogil=True)
def piece_end(data: np.ndarray, i: Index, classes: np.ndarray, scanner: int) -> Index:
    """End of the piece at byte ``i`` for ``scanner`` (one of NO_SPLIT, GPT2, GPT4)."""
    if scanner == GPT2:
        return gpt2_piece_end(data, i, classes)
    if scanner == GPT4:
        return gpt4_piece_end(data, i, classes)
    return len(data)


@njit(cache=True, nogil=True)
def _piece_ends(data: np.ndarray, classes: np.ndarray, scanner: int) -> np.ndarray:
    ends = np.empty(len(data), np.int64)
    count: Index = np.int64(0)
    i: Index = np.int64(0)
    while i < len(data):
        i = piece_end(data, i, classes, scanner)
        ends[count] = i
        count += 1
    return ends[:count]


def pieces(text: str, pattern_name: str | None) -> list[str]:
    """``text`` cut into pieces by the named pattern's scanner: ``regex.findall`` of the pattern
    with the empty matches dropped (the readable definition the tests hold it to)."""
    data = np.frombuffer(text.encode("utf-8"), np.uint8)
    ends = _piece_ends(data, character_classes(), SCANNERS[pattern_name]).tolist()
    raw = data.tobytes()
    return [raw[a:b].decode("utf-8") for a, b in zip([0, *ends], ends, strict=False)]
