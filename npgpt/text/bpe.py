r"""Byte-level byte-pair encoding (BPE), the tokenizer of GPT-2 and GPT-4 (document 3.1).

This module holds the tokenizer, :class:`BPETokenizer`: pre-tokenization patterns, special tokens,
encoding and decoding. The merge step (how a piece becomes ranks) is in :mod:`npgpt.text.bpe_merge`,
training in :mod:`npgpt.text.bpe_train` and the file formats in :mod:`npgpt.text.bpe_files`; the
tokenizer's ``train``, ``save``, ``load``, ... methods call them. Each of those imports neither the
tokenizer nor each other, except the files, which recover merges with the merge step.

Text is cut into pre-tokens by a regex (words, numbers, punctuation, spaces), each pre-token becomes
its UTF-8 bytes, and the bytes are glued into tokens by the merges that training learned.

**Encoding** a pre-token follows tiktoken exactly: if the whole piece is a token, emit its rank;
otherwise start from single bytes and repeatedly merge the adjacent pair whose concatenation has the
lowest rank (the leftmost on ties), until no adjacent pair is a token. With the same ranks and
pattern, :meth:`BPETokenizer.encode` gives the same ids as ``tiktoken``. For the named patterns
(and no pattern) the work runs compiled, in :mod:`npgpt.text.bpe_encode`, at tiktoken's pace; a
custom pattern runs the readable way, a regex and a dict lookup per piece, with a cache of pieces.

Files: :meth:`~BPETokenizer.save` / :meth:`~BPETokenizer.load` (readable JSON),
:meth:`~BPETokenizer.save_tiktoken` / :meth:`~BPETokenizer.load_tiktoken` (tiktoken's rank file) and
:meth:`~BPETokenizer.save_hf` / :meth:`~BPETokenizer.load_hf` (GPT-2's ``vocab.json`` + ``merges.txt``).
"""
import logging
import os
import warnings
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Literal, Self

import numpy as np
import regex

from ..checks import UsageError
from ..runtime.logs import shown
from . import bpe_encode, bpe_files, bpe_pretokenize
from .bpe_files import Vocabulary
from .bpe_merge import PairTable, bpe_merge, bpe_merge_fast, build_pair_table, recover_merges
from .bpe_train import Merge, train_bpe

log = logging.getLogger(__name__)

# What encode() takes for its special tokens: one of these words, or a set (any collection) of their texts.
AllowedSpecial = Literal["all", "none", "none_raised"] | Iterable[str]
DisallowedSpecial = Literal["all"] | Iterable[str]

# The pre-tokenization patterns, as tiktoken writes them. GPT-2 (r50k/p50k): contractions, letters,
# numbers, other symbols, each optionally after one space, then whitespace runs.
GPT2_PATTERN = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}++| ?\p{N}++| ?[^\s\p{L}\p{N}]++|\s++$|\s+(?!\S)|\s"""
# GPT-4 (cl100k_base): case-insensitive contractions, numbers in groups of at most three digits,
# newlines kept apart from other whitespace.
GPT4_PATTERN = (r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+"""
                r"""| ?[^\s\p{L}\p{N}]++[\r\n]*+|\s++$|\s*[\r\n]|\s+(?!\S)|\s""")
PATTERNS = {"gpt2": GPT2_PATTERN, "gpt4": GPT4_PATTERN}

_LONG_PIECE = 64            # bytes; longer pieces are merged by the O(n log n) numba twin
_CACHE_MAX_PIECE = 256      # characters; longer pieces are not cached
_CACHE_MAX_ENTRIES = 500_000


# ====================================================================== the tokenizer
class BPETokenizer:
    """Byte-level BPE tokenizer: ``tok.train(text, vocab_size)``, ``tok.encode(s)``, ``tok.decode(ids)``.

    ``pattern`` splits text into pre-tokens before BPE: ``"gpt2"``, ``"gpt4"`` (cl100k_base), any
    regex (``regex`` package syntax), or None for no splitting (the whole text is one piece). A
    fresh tokenizer knows only the 256 bytes; train it or load one from a file.
    """
    _merges: dict[int, tuple[int, int]] | None     # None until recovered from the ranks (:attr:`merges`)

    def __init__(self, pattern: str | None = "gpt2") -> None:
        self.pattern_name, self.pattern = _resolve_pattern(pattern)
        self._regex = regex.compile(self.pattern) if self.pattern is not None else None
        self._set_vocab({bytes([b]): b for b in range(256)}, merges={}, special_tokens={})
        self.training_log: list[Merge] = []

    def __repr__(self) -> str:
        pattern = self.pattern_name or ("None" if self.pattern is None else "custom")
        return (f"BPETokenizer(pattern={pattern}, vocab_size={self.vocab_size}, "
                f"special_tokens={len(self._special)})")

    # ------------------------------------------------------------------ vocabulary
    @property
    def vocab_size(self) -> int:
        """One more than the largest id (mergeable tokens and special tokens)."""
        return 1 + max(self._decoder)

    @property
    def mergeable_ranks(self) -> dict[bytes, int]:
        """Token bytes -> rank, the ``mergeable_ranks`` of a ``tiktoken.Encoding`` (a copy)."""
        return dict(self._ranks)

    @property
    def special_tokens(self) -> dict[str, int]:
        """Special token text -> id (a copy)."""
        return dict(self._special)

    @property
    def vocab(self) -> dict[int, bytes]:
        """Id -> token bytes, special tokens included (a copy)."""
        return dict(self._decoder)

    @property
    def merges(self) -> dict[int, tuple[int, int]]:
        """Rank -> (left rank, right rank) for every token longer than one byte."""
        if self._merges is None:
            self._merges = recover_merges(self._ranks)
        return dict(self._merges)

    def _set_vocab(self, ranks: dict[bytes, int], merges: dict[int, tuple[int, int]] | None,
                   special_tokens: dict[str, int]) -> None:
        """Install a validated vocabulary; ``merges`` may be None (recovered from the ranks when needed)."""
        self._ranks = ranks
        self._mergeable_ids = frozenset(ranks.values())
        self._merges = merges
        self._decoder = {rank: token for token, rank in ranks.items()}
        self._byte_ranks = np.array([ranks[bytes([b])] for b in range(256)], dtype=np.int64)
        self._pair_table: PairTable | None = None     # built on first use by the long-piece encoder
        self._encoder: bpe_encode.Encoder | None = None     # built on first use by the compiled encoder
        self._cache: dict[str, list[int]] = {}
        self._special: dict[str, int] = {}
        self._special_regex: dict[tuple[frozenset[str], bool], regex.Pattern[str]] = {}
        if special_tokens:
            self.register_special_tokens(special_tokens)

    def register_special_tokens(self, special_tokens: dict[str, int]) -> None:
        """Add special tokens, a dict ``{text: id}``; ids must not be used by other tokens."""
        if not isinstance(special_tokens, dict):
            raise UsageError(f"special_tokens must be a dict {{text: id}}, "
                             f"got {type(special_tokens).__name__}")
        taken = {i: name for name, i in self._special.items() if name not in special_tokens}
        for name, i in special_tokens.items():
            if not isinstance(name, str) or not name:
                raise UsageError(f"a special token must be a non-empty string, got {name!r}")
            if not isinstance(i, (int, np.integer)) or isinstance(i, bool) or i < 0:
                raise UsageError(f"special token {name!r}: id must be a non-negative int, got {i!r}")
            if i in self._mergeable_ids or i in taken:
                other = f"the special token {taken[i]!r}" if i in taken else "a mergeable token"
                raise UsageError(f"special token {name!r}: id {i} is already used by {other}")
            taken[int(i)] = name
        self._special = {name: i for i, name in sorted(taken.items())}
        self._decoder = {rank: token for token, rank in self._ranks.items()}
        self._decoder.update({i: name.encode("utf-8") for name, i in self._special.items()})
        self._special_regex = {}    # frozenset of names -> compiled alternation, built on demand

    # ------------------------------------------------------------------ training
    def train(self, text: str, vocab_size: int, special_tokens: Iterable[str] | None = None, *,
              verbose: bool = False, progress: bool | None = None) -> Self:
        """Learn ``vocab_size - 256 - len(special_tokens)`` merges from ``text``; returns self.

        ``special_tokens`` (a list of strings such as ``["<|endoftext|>"]``) get the ids after the
        merged tokens; their text in ``text`` is a boundary and is not learned from. ``verbose``
        logs each merge as an info line, shown on stdout unless the application configured npgpt's
        logger (:mod:`npgpt.runtime.logs`; otherwise they are debug lines); ``progress`` shows a tqdm bar (None: only on a terminal). Training
        replaces any previous vocabulary.
        """
        _check_text(text)
        special_tokens = list(special_tokens or [])
        if len(set(special_tokens)) != len(special_tokens):
            raise UsageError(f"special_tokens has duplicates: {special_tokens}")
        if not isinstance(vocab_size, (int, np.integer)) or vocab_size < 256 + len(special_tokens):
            raise UsageError(f"vocab_size must be an int >= 256 + {len(special_tokens)} special tokens "
                             f"= {256 + len(special_tokens)}, got {vocab_size!r}")
        for name in special_tokens:
            if not isinstance(name, str) or not name:
                raise UsageError(f"a special token must be a non-empty string, got {name!r}")
        n_tokens = int(vocab_size) - len(special_tokens)

        counts = self._count_pieces(text, special_tokens)
        tokens, merges_log = train_bpe(list(counts), list(counts.values()), n_tokens, progress=progress)
        if len(tokens) < n_tokens:
            warnings.warn(f"the text has only enough pairs for {len(tokens)} tokens, not {n_tokens}",
                          stacklevel=2)
        ranks = {token: rank for rank, token in enumerate(tokens)}
        merges = {m.token: (m.left, m.right) for m in merges_log}
        specials = {name: len(tokens) + k for k, name in enumerate(special_tokens)}
        self._set_vocab(ranks, merges, specials)
        self.training_log = merges_log
        with shown(verbose) as level:
            if log.isEnabledFor(level):
                for k, m in enumerate(merges_log):
                    log.log(level, f"merge {k + 1}/{len(merges_log)}: {self._decoder[m.left]!r} + "
                                   f"{self._decoder[m.right]!r} -> {m.token} {tokens[m.token]!r} ({m.count} times)")
        return self

    def _count_pieces(self, text: str, special_tokens: Sequence[str] = ()) -> dict[bytes, int]:
        """Distinct pre-tokens of ``text`` as UTF-8 bytes -> how often each occurs."""
        parts = _split_on(text, special_tokens) if special_tokens else [text]
        counts: Counter[str] = Counter()
        for part in parts:
            counts.update(self._pieces(_valid_unicode(part)))
        return {piece.encode("utf-8"): n for piece, n in counts.items()}

    def _pieces(self, text: str) -> list[str]:
        """Pre-tokenize: the compiled scanner's pieces for a named pattern or none (the whole text),
        the regex's matches (empty ones dropped) for a custom pattern."""
        if self._compiled:
            return bpe_pretokenize.pieces(text, self.pattern_name)
        assert self._regex is not None          # a custom pattern (not compiled) has its regex
        pieces = [p for p in self._regex.findall(text) if p]
        if sum(map(len, pieces)) != len(text):  # the pattern passed the probe, yet skips part of this text
            raise UsageError(f"the pre-tokenization pattern {bpe_files.one_line(repr(self.pattern))} skips "
                             f"characters of this text, so encoding would lose them")
        return pieces

    # ------------------------------------------------------------------ encoding
    def encode_ordinary(self, text: str) -> list[int]:
        """Text -> ids, treating special-token text as ordinary text."""
        _check_text(text)
        ids: list[int] = []
        self._encode_into(_valid_unicode(text), ids)
        return ids

    def encode(self, text: str, allowed_special: AllowedSpecial = "none_raised",
               disallowed_special: DisallowedSpecial = "all") -> list[int]:
        """Text -> ids, handling special tokens like tiktoken.

        ``allowed_special``: ``"all"``, a set of special-token texts, ``"none_raised"`` (the
        default, same as ``set()``) or ``"none"`` (special-token text is ordinary text). Allowed
        special tokens encode to their ids. Text of a *disallowed* special token raises ValueError;
        ``disallowed_special`` is ``"all"`` (every special token not allowed) or a set. Where allowed
        special tokens overlap in the text, the longest wins (tiktoken leaves that case unspecified).
        """
        _check_text(text)
        allowed, disallowed = self._resolve_specials(allowed_special, disallowed_special)
        text = _valid_unicode(text)
        if disallowed:
            found = self._special_pattern(disallowed).search(text)
            if found:
                raise UsageError(
                    f"text contains the special token {found.group()!r}, which is disallowed. "
                    f"Pass allowed_special={{{found.group()!r}}} (or 'all') to encode it as its id, "
                    f"or allowed_special='none' to encode it as ordinary text.")
        ids: list[int] = []
        if not allowed:
            self._encode_into(text, ids)
            return ids
        # the split keeps the specials (a capturing group): ordinary, special, ordinary, ...
        for k, part in enumerate(self._special_pattern(allowed, capture=True).split(text)):
            if k % 2:
                ids.append(self._special[part])
            else:
                self._encode_into(part, ids)
        return ids

    def encode_batch(self, texts: Sequence[str], *, num_threads: int = 8,
                     allowed_special: AllowedSpecial = "none_raised",
                     disallowed_special: DisallowedSpecial = "all") -> list[list[int]]:
        """:meth:`encode` of each text, on up to ``num_threads`` threads (tiktoken's signature).

        The compiled encoder releases the GIL, so the texts are encoded on every core; a custom
        pattern's regex path holds it, and gains little."""
        return self._batch(lambda text: self.encode(text, allowed_special, disallowed_special), texts, num_threads)

    def encode_ordinary_batch(self, texts: Sequence[str], *, num_threads: int = 8) -> list[list[int]]:
        """:meth:`encode_ordinary` of each text, on up to ``num_threads`` threads."""
        return self._batch(self.encode_ordinary, texts, num_threads)

    def _batch(self, encode_one: Callable[[str], list[int]], texts: Sequence[str], num_threads: int) -> list[list[int]]:
        if isinstance(texts, str) or not isinstance(texts, Sequence):
            raise UsageError(f"texts must be a list of str, got {type(texts).__name__}")
        if not isinstance(num_threads, int) or isinstance(num_threads, bool) or num_threads < 1:
            raise UsageError(f"num_threads must be a positive int, got {num_threads!r}")
        for k, text in enumerate(texts):
            if not isinstance(text, str):
                raise UsageError(f"texts[{k}] must be a str, got {type(text).__name__}")
        if self._compiled:
            self._compiled_encoder()            # built once, before the threads share it
        if num_threads == 1 or len(texts) < 2:
            return [encode_one(text) for text in texts]
        with ThreadPoolExecutor(max_workers=min(num_threads, len(texts))) as pool:
            return list(pool.map(encode_one, texts))

    @property
    def _compiled(self) -> bool:
        """Whether the pattern has a compiled scanner: a named pattern, or no pattern."""
        return self.pattern is None or self.pattern_name is not None

    def _compiled_encoder(self) -> bpe_encode.Encoder:
        if self._encoder is None:
            self._encoder = bpe_encode.build_encoder(self._ranks, self.pattern_name)
        return self._encoder

    def _encode_into(self, text: str, ids: list[int]) -> None:
        """Append the ids of ordinary text: pre-tokenize, then BPE each piece (compiled, or cached)."""
        if self._compiled:
            ids += bpe_encode.encode(self._compiled_encoder(), text)
            return
        cache = self._cache
        for piece in self._pieces(text):
            piece_ids = cache.get(piece)
            if piece_ids is None:
                piece_ids = self._encode_piece(piece.encode("utf-8"))
                if len(piece) <= _CACHE_MAX_PIECE:
                    if len(cache) >= _CACHE_MAX_ENTRIES:
                        cache.clear()
                    cache[piece] = piece_ids
            ids += piece_ids

    def _encode_piece(self, piece: bytes) -> list[int]:
        """One pre-token (bytes) -> ids, tiktoken's way."""
        rank = self._ranks.get(piece)
        if rank is not None:
            return [rank]               # the whole piece is a token: one id, even if BPE would not reach it
        if len(piece) <= _LONG_PIECE:
            return bpe_merge(self._ranks, piece)
        if self._pair_table is None:
            self._pair_table = build_pair_table(self._ranks)
        pieces = np.frombuffer(piece, dtype=np.uint8)
        return bpe_merge_fast(self._byte_ranks[pieces], self._pair_table).tolist()

    def _resolve_specials(self, allowed_special: AllowedSpecial, disallowed_special: DisallowedSpecial
                          ) -> tuple[frozenset[str], frozenset[str]]:
        """The (allowed, disallowed) frozensets of special-token texts for one encode call."""
        everything = frozenset(self._special)
        if isinstance(allowed_special, str):
            if allowed_special not in ("all", "none", "none_raised"):
                raise UsageError(f"allowed_special must be 'all', 'none', 'none_raised' or a set of special "
                                 f"tokens, got {allowed_special!r}")
            allowed = everything if allowed_special == "all" else frozenset()
            if allowed_special == "none":
                return allowed, frozenset()
        else:
            allowed = self._check_special_names(allowed_special, "allowed_special")
        if isinstance(disallowed_special, str):
            if disallowed_special != "all":
                raise UsageError(f"disallowed_special must be 'all' or a set, got {disallowed_special!r}")
            disallowed = everything - allowed
        else:
            disallowed = self._check_special_names(disallowed_special, "disallowed_special")
        return allowed, disallowed

    def _check_special_names(self, names: Iterable[str], argument: str) -> frozenset[str]:
        names = frozenset(names)
        unknown = sorted(n for n in names if n not in self._special)
        if unknown:
            raise UsageError(f"{argument}: unknown special token(s) {unknown}; "
                             f"registered: {sorted(self._special) or 'none'}")
        return names

    def _special_pattern(self, names: frozenset[str], capture: bool = False) -> regex.Pattern[str]:
        """A regex matching any of ``names``, the longest first (so one special inside another loses)."""
        key = (names, capture)
        if key not in self._special_regex:
            alternation = "|".join(regex.escape(n) for n in sorted(names, key=lambda n: (-len(n), n)))
            self._special_regex[key] = regex.compile(f"({alternation})" if capture else alternation)
        return self._special_regex[key]

    # ------------------------------------------------------------------ decoding
    def decode_bytes(self, ids: Sequence[int] | np.ndarray) -> bytes:
        """Ids (a 1-D sequence of integers) -> the bytes they stand for. Anything else, and unknown
        ids, raise ValueError."""
        decoder = self._decoder
        ids = _integer_ids(ids)
        try:
            return b"".join([decoder[i] for i in ids])
        except KeyError:
            bad = next(i for i in ids if i not in decoder)
            raise UsageError(f"unknown token id {bad!r} (ids run from 0 to {self.vocab_size - 1})") from None

    def decode(self, ids: Sequence[int] | np.ndarray) -> str:
        """Ids -> text; byte sequences that are not valid UTF-8 become U+FFFD."""
        return self.decode_bytes(ids).decode("utf-8", errors="replace")

    def decode_tokens_bytes(self, ids: Sequence[int] | np.ndarray) -> list[bytes]:
        """Ids -> the list of each token's bytes (to see how text was cut)."""
        return [self.decode_bytes([i]) for i in ids]

    # ------------------------------------------------------------------ own format
    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the tokenizer as readable JSON (atomically). The ``tokens`` list has one entry per
        rank: a byte value for a single-byte token, else ``[left, right, text]`` (the merge that
        makes it; ``text`` is only for human eyes)."""
        bpe_files.save(path, self._vocabulary(), self.pattern_name, self.pattern)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Self:
        """Read a tokenizer written by :meth:`save`. A corrupt file raises ValueError naming it."""
        data = bpe_files.read(path)
        try:
            tok = cls(data["pattern"])
        except ValueError as e:             # the file's pattern, quoted: one line, capped
            raise UsageError(f"{path}: {bpe_files.one_line(str(e))}") from None
        return tok._install(bpe_files.vocabulary(data, path), path)

    # ------------------------------------------------------------------ tiktoken's format
    def save_tiktoken(self, path: str | os.PathLike[str]) -> None:
        """Write tiktoken's rank file: per token, ``base64(bytes) rank``. Pattern and special tokens
        are not part of that format: pass them to :meth:`load_tiktoken` (or to ``tiktoken.Encoding``)."""
        bpe_files.save_tiktoken(path, self._ranks)

    @classmethod
    def load_tiktoken(cls, path: str | os.PathLike[str], pattern: str | None,
                      special_tokens: dict[str, int] | None = None) -> Self:
        """Read a tiktoken rank file (e.g. ``cl100k_base.tiktoken`` with ``pattern="gpt4"``)."""
        tok = cls(pattern)
        return tok._install(bpe_files.load_tiktoken(path, special_tokens), path)

    # ------------------------------------------------------------------ Hugging Face GPT-2 files
    def save_hf(self, directory: str | os.PathLike[str]) -> tuple[Path, Path]:
        """Write ``vocab.json`` and ``merges.txt`` the way GPT-2's Hugging Face files are laid out
        (tokens spelled with GPT-2's byte-to-unicode alphabet); returns their paths."""
        return bpe_files.save_hf(directory, self._vocabulary())

    @classmethod
    def load_hf(cls, vocab_json: str | os.PathLike[str], merges_txt: str | os.PathLike[str],
                pattern: str | None = "gpt2") -> Self:
        """Read Hugging Face GPT-2 style files (GPT-2's own load too). Vocabulary entries that are
        neither single bytes nor made by a merge (GPT-2's ``<|endoftext|>``) become special tokens."""
        tok = cls(pattern)
        return tok._install(bpe_files.load_hf(vocab_json, merges_txt), f"{vocab_json} + {merges_txt}")

    def _vocabulary(self) -> Vocabulary:
        """What the file formats write: ranks, merges (recovered once and kept), special tokens."""
        return Vocabulary(self._ranks, self.merges, self._special)

    def _install(self, vocab: Vocabulary, source: str | os.PathLike[str]) -> Self:
        """Make ``vocab``, read and checked from ``source`` (:mod:`npgpt.text.bpe_files`), this
        tokenizer's vocabulary; a special token that clashes is named with the file. Returns self."""
        try:
            self._set_vocab(vocab.ranks, vocab.merges, vocab.special_tokens)
        except ValueError as e:             # a special token's text, quoted: one line, capped
            raise UsageError(f"{source}: {bpe_files.one_line(str(e))}") from None
        return self


# ====================================================================== helpers of the class
def _resolve_pattern(pattern: object) -> tuple[str | None, str | None]:
    """(name or None, regex string or None) for a pattern name, a regex, or None."""
    if pattern is None:
        return None, None
    if not isinstance(pattern, str):
        raise UsageError(f"pattern must be 'gpt2', 'gpt4', a regex string or None, "
                         f"got {type(pattern).__name__}")
    if pattern in PATTERNS:
        return pattern, PATTERNS[pattern]
    try:
        regex.compile(pattern)
    except (regex.error, RecursionError) as e:      # RecursionError: parentheses nested thousands deep
        reason = e if isinstance(e, regex.error) else "it nests too deeply"
        raise UsageError(f"invalid pre-tokenization pattern {bpe_files.one_line(repr(pattern))}: {reason}") from None
    name = next((name for name, p in PATTERNS.items() if p == pattern), None)
    if name is None:
        _check_lossless(regex.compile(pattern), pattern)
    return name, pattern


# Letters, digits, contractions, punctuation, runs of spaces, tabs and newlines, accents, CJK, emoji:
# what a pattern must cut into pieces that join back to the text (a skipped character is lost).
PATTERN_PROBE = "Hello, world! It's 2024: 3.5 km\n\n\t  naïve 你好 ☃ 🙂 end "
PATTERN_PROBE_SECONDS = 1.0     # the probe takes microseconds; more means catastrophic backtracking


def _check_lossless(compiled: regex.Pattern[str], pattern: str) -> None:
    """Refuse a custom pattern whose matches of :data:`PATTERN_PROBE` do not join back to it:
    encoding would silently drop what no match covers (the named patterns cover every character)."""
    shown = bpe_files.one_line(repr(pattern))
    try:
        pieces = compiled.findall(PATTERN_PROBE, timeout=PATTERN_PROBE_SECONDS)
    except TimeoutError:
        raise UsageError(f"pre-tokenization pattern {shown} takes more than {PATTERN_PROBE_SECONDS} s on a "
                         f"{len(PATTERN_PROBE)}-character text (it backtracks without end)") from None
    if any(not isinstance(p, str) for p in pieces):
        raise UsageError(f"pre-tokenization pattern {shown} has capturing groups, so its matches would be the "
                         f"groups' text: write (?:...) instead of (...)")
    if "".join(pieces) != PATTERN_PROBE:
        raise UsageError(f"pre-tokenization pattern {shown} skips characters: its matches of {PATTERN_PROBE!r} "
                         f"join to {bpe_files.one_line(repr(''.join(pieces)))}, so encoding would lose the rest "
                         f"(the 'gpt2' and 'gpt4' patterns cover every character)")


def _check_text(text: object) -> None:
    if not isinstance(text, str):
        raise UsageError(f"text must be a str, got {type(text).__name__}")


def _valid_unicode(text: str) -> str:
    """Replace lone surrogates (not encodable as UTF-8) by U+FFFD, as tiktoken does."""
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")


def _split_on(text: str, names: Iterable[str]) -> list[str]:
    """The parts of ``text`` between occurrences of any of ``names``."""
    alternation = "|".join(regex.escape(n) for n in sorted(names, key=lambda n: (-len(n), n)))
    return regex.split(alternation, text)


def _integer_ids(ids: object) -> list[int]:
    """``ids`` as a list of Python ints, or a ValueError: not None, not floats, not booleans."""
    if ids is None or isinstance(ids, (str, bytes)):
        raise UsageError(f"ids must be a 1-D sequence of integer token ids, got {type(ids).__name__}")
    array = np.asarray(ids)
    if array.size == 0 and array.ndim == 1:
        return []
    if array.ndim != 1 or array.dtype.kind not in "iu":
        raise UsageError(f"ids must be a 1-D sequence of integer token ids, got shape {array.shape} "
                         f"and dtype {array.dtype}")
    return array.tolist()
