r"""Byte-level byte-pair encoding (BPE), the tokenizer of GPT-2 and GPT-4 (document 3.1).

Text is cut into pre-tokens by a regex (words, numbers, punctuation, spaces), each pre-token becomes
its UTF-8 bytes, and the bytes are glued into tokens. **Training** starts from the 256 single bytes
(ranks 0..255 are the byte values) and repeats

$$(a, b) = \arg\max_{(a,b)} \sum_{w} f_w \cdot \#\{\text{adjacent } a\,b \text{ in } w\},\qquad
  \text{replace every adjacent } a\,b \text{ by the new token } ab$$

where $w$ runs over the distinct pre-tokens and $f_w$ is how often $w$ occurs. Ties between equally
frequent pairs go to the smallest pair of ids, compared as $(a, b)$ (so older tokens first; other
trainers break ties differently, so the same text can give them a slightly different vocabulary).
The new token's id (its *rank*) is the next free one: 256, 257, ...

**Encoding** a pre-token follows tiktoken exactly: if the whole piece is a token, emit its rank;
otherwise start from single bytes and repeatedly merge the adjacent pair whose concatenation has the
lowest rank (the leftmost on ties), until no adjacent pair is a token. With the same ranks and
pattern, :meth:`BPETokenizer.encode` gives the same ids as ``tiktoken``.

The trainer is numba code over a linked list of the distinct pre-tokens' bytes: pair counts are kept
up to date on each merge by touching only the places where the merged pair occurs, and the best pair
comes off a max-heap whose stale entries are skipped ("lazy deletion"). A 10,000-token vocabulary
on Tiny Shakespeare trains in well under a second. ``benchmarks/bpe_naive.py`` is the classic
recount-everything trainer it is tested against.

Files: :meth:`~BPETokenizer.save` / :meth:`~BPETokenizer.load` (readable JSON),
:meth:`~BPETokenizer.save_tiktoken` / :meth:`~BPETokenizer.load_tiktoken` (tiktoken's rank file) and
:meth:`~BPETokenizer.save_hf` / :meth:`~BPETokenizer.load_hf` (GPT-2's ``vocab.json`` + ``merges.txt``).
"""
import base64
import heapq
import json
import warnings
from collections import Counter, namedtuple
from pathlib import Path

import numpy as np
import regex
from numba import njit, typed, types

from ..atomic import atomic_write_text

# The pre-tokenization patterns, as tiktoken writes them. GPT-2 (r50k/p50k): contractions, letters,
# numbers, other symbols, each optionally after one space, then whitespace runs.
GPT2_PATTERN = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}++| ?\p{N}++| ?[^\s\p{L}\p{N}]++|\s++$|\s+(?!\S)|\s"""
# GPT-4 (cl100k_base): case-insensitive contractions, numbers in groups of at most three digits,
# newlines kept apart from other whitespace.
GPT4_PATTERN = (r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+"""
                r"""| ?[^\s\p{L}\p{N}]++[\r\n]*+|\s++$|\s*[\r\n]|\s+(?!\S)|\s""")
PATTERNS = {"gpt2": GPT2_PATTERN, "gpt4": GPT4_PATTERN}

FORMAT = "npgpt.BPETokenizer"
FORMAT_VERSION = 1

Merge = namedtuple("Merge", "left right token count")
Merge.__doc__ = "One training step: tokens ``left`` and ``right`` (seen ``count`` times) became ``token``."

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

    def __init__(self, pattern="gpt2"):
        self.pattern_name, self.pattern = _resolve_pattern(pattern)
        self._regex = regex.compile(self.pattern) if self.pattern is not None else None
        self._set_vocab({bytes([b]): b for b in range(256)}, merges={}, special_tokens={})
        self.training_log = []

    def __repr__(self):
        pattern = self.pattern_name or ("None" if self.pattern is None else "custom")
        return (f"BPETokenizer(pattern={pattern}, vocab_size={self.vocab_size}, "
                f"special_tokens={len(self._special)})")

    # ------------------------------------------------------------------ vocabulary
    @property
    def vocab_size(self):
        """One more than the largest id (mergeable tokens and special tokens)."""
        return 1 + max(self._decoder)

    @property
    def mergeable_ranks(self):
        """Token bytes -> rank, the ``mergeable_ranks`` of a ``tiktoken.Encoding`` (a copy)."""
        return dict(self._ranks)

    @property
    def special_tokens(self):
        """Special token text -> id (a copy)."""
        return dict(self._special)

    @property
    def vocab(self):
        """Id -> token bytes, special tokens included (a copy)."""
        return dict(self._decoder)

    @property
    def merges(self):
        """Rank -> (left rank, right rank) for every token longer than one byte."""
        if self._merges is None:
            self._merges = _recover_merges(self._ranks)
        return dict(self._merges)

    def _set_vocab(self, ranks, merges, special_tokens):
        """Install a validated vocabulary; ``merges`` may be None (recovered from the ranks when needed)."""
        self._ranks = ranks
        self._merges = merges
        self._decoder = {rank: token for token, rank in ranks.items()}
        self._byte_ranks = np.array([ranks[bytes([b])] for b in range(256)], dtype=np.int64)
        self._pair_table = None     # built on first use by the long-piece encoder
        self._cache = {}
        self._special = {}
        self._special_regex = {}
        if special_tokens:
            self.register_special_tokens(special_tokens)

    def register_special_tokens(self, special_tokens):
        """Add special tokens, a dict ``{text: id}``; ids must not be used by other tokens."""
        if not isinstance(special_tokens, dict):
            raise ValueError(f"special_tokens must be a dict {{text: id}}, "
                             f"got {type(special_tokens).__name__}")
        taken = {i: name for name, i in self._special.items() if name not in special_tokens}
        for name, i in special_tokens.items():
            if not isinstance(name, str) or not name:
                raise ValueError(f"a special token must be a non-empty string, got {name!r}")
            if not isinstance(i, (int, np.integer)) or isinstance(i, bool) or i < 0:
                raise ValueError(f"special token {name!r}: id must be a non-negative int, got {i!r}")
            if i < len(self._ranks) or i in taken:
                other = f"the special token {taken[i]!r}" if i in taken else "a mergeable token"
                raise ValueError(f"special token {name!r}: id {i} is already used by {other}")
            taken[int(i)] = name
        self._special = {name: i for i, name in sorted(taken.items())}
        self._decoder = {rank: token for token, rank in self._ranks.items()}
        self._decoder.update({i: name.encode("utf-8") for name, i in self._special.items()})
        self._special_regex = {}    # frozenset of names -> compiled alternation, built on demand

    # ------------------------------------------------------------------ training
    def train(self, text, vocab_size, special_tokens=None, *, verbose=False, progress=None):
        """Learn ``vocab_size - 256 - len(special_tokens)`` merges from ``text``; returns self.

        ``special_tokens`` (a list of strings such as ``["<|endoftext|>"]``) get the ids after the
        merged tokens; their text in ``text`` is a boundary and is not learned from. ``verbose``
        prints each merge; ``progress`` shows a tqdm bar (None: only on a terminal). Training
        replaces any previous vocabulary.
        """
        _check_text(text)
        special_tokens = list(special_tokens or [])
        if len(set(special_tokens)) != len(special_tokens):
            raise ValueError(f"special_tokens has duplicates: {special_tokens}")
        if not isinstance(vocab_size, (int, np.integer)) or vocab_size < 256 + len(special_tokens):
            raise ValueError(f"vocab_size must be an int >= 256 + {len(special_tokens)} special tokens "
                             f"= {256 + len(special_tokens)}, got {vocab_size!r}")
        for name in special_tokens:
            if not isinstance(name, str) or not name:
                raise ValueError(f"a special token must be a non-empty string, got {name!r}")
        n_tokens = int(vocab_size) - len(special_tokens)

        counts = self._count_pieces(text, special_tokens)
        tokens, log = train_bpe(list(counts), list(counts.values()), n_tokens, progress=progress)
        if len(tokens) < n_tokens:
            warnings.warn(f"the text has only enough pairs for {len(tokens)} tokens, not {n_tokens}",
                          stacklevel=2)
        ranks = {token: rank for rank, token in enumerate(tokens)}
        merges = {m.token: (m.left, m.right) for m in log}
        specials = {name: len(tokens) + k for k, name in enumerate(special_tokens)}
        self._set_vocab(ranks, merges, specials)
        self.training_log = log
        if verbose:
            for k, m in enumerate(log):
                print(f"merge {k + 1}/{len(log)}: {self._decoder[m.left]!r} + {self._decoder[m.right]!r}"
                      f" -> {m.token} {tokens[m.token]!r} ({m.count} times)")
        return self

    def _count_pieces(self, text, special_tokens=()):
        """Distinct pre-tokens of ``text`` as UTF-8 bytes -> how often each occurs."""
        parts = _split_on(text, special_tokens) if special_tokens else [text]
        counts = Counter()
        for part in parts:
            counts.update(self._pieces(_valid_unicode(part)))
        return {piece.encode("utf-8"): n for piece, n in counts.items()}

    def _pieces(self, text):
        """Pre-tokenize: the regex's matches (empty ones dropped), or the whole text."""
        if self._regex is None:
            return [text] if text else []
        return [p for p in self._regex.findall(text) if p]

    # ------------------------------------------------------------------ encoding
    def encode_ordinary(self, text):
        """Text -> ids, treating special-token text as ordinary text."""
        _check_text(text)
        ids = []
        self._encode_into(_valid_unicode(text), ids)
        return ids

    def encode(self, text, allowed_special="none_raised", disallowed_special="all"):
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
                raise ValueError(
                    f"text contains the special token {found.group()!r}, which is disallowed. "
                    f"Pass allowed_special={{{found.group()!r}}} (or 'all') to encode it as its id, "
                    f"or allowed_special='none' to encode it as ordinary text.")
        ids = []
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

    def _encode_into(self, text, ids):
        """Append the ids of ordinary text: pre-tokenize, then BPE each piece (cached)."""
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

    def _encode_piece(self, piece):
        """One pre-token (bytes) -> ids, tiktoken's way."""
        rank = self._ranks.get(piece)
        if rank is not None:
            return [rank]               # the whole piece is a token: one id, even if BPE would not reach it
        if len(piece) <= _LONG_PIECE:
            return bpe_merge(self._ranks, piece)
        if self._pair_table is None:
            self._pair_table = _build_pair_table(self._ranks)
        pieces = np.frombuffer(piece, dtype=np.uint8)
        return _bpe_merge_fast(self._byte_ranks[pieces], self._pair_table).tolist()

    def _resolve_specials(self, allowed_special, disallowed_special):
        """The (allowed, disallowed) frozensets of special-token texts for one encode call."""
        everything = frozenset(self._special)
        if isinstance(allowed_special, str):
            if allowed_special not in ("all", "none", "none_raised"):
                raise ValueError(f"allowed_special must be 'all', 'none', 'none_raised' or a set of special "
                                 f"tokens, got {allowed_special!r}")
            allowed = everything if allowed_special == "all" else frozenset()
            if allowed_special == "none":
                return allowed, frozenset()
        else:
            allowed = self._check_special_names(allowed_special, "allowed_special")
        if isinstance(disallowed_special, str):
            if disallowed_special != "all":
                raise ValueError(f"disallowed_special must be 'all' or a set, got {disallowed_special!r}")
            disallowed = everything - allowed
        else:
            disallowed = self._check_special_names(disallowed_special, "disallowed_special")
        return allowed, disallowed

    def _check_special_names(self, names, argument):
        names = frozenset(names)
        unknown = sorted(n for n in names if n not in self._special)
        if unknown:
            raise ValueError(f"{argument}: unknown special token(s) {unknown}; "
                             f"registered: {sorted(self._special) or 'none'}")
        return names

    def _special_pattern(self, names, capture=False):
        """A regex matching any of ``names``, the longest first (so one special inside another loses)."""
        key = (names, capture)
        if key not in self._special_regex:
            alternation = "|".join(regex.escape(n) for n in sorted(names, key=lambda n: (-len(n), n)))
            self._special_regex[key] = regex.compile(f"({alternation})" if capture else alternation)
        return self._special_regex[key]

    # ------------------------------------------------------------------ decoding
    def decode_bytes(self, ids):
        """Ids -> the bytes they stand for. Unknown ids raise ValueError."""
        decoder = self._decoder
        try:
            return b"".join([decoder[i] for i in ids])
        except (KeyError, TypeError):
            bad = next(i for i in ids if not _is_hashable(i) or i not in decoder)
            raise ValueError(f"unknown token id {bad!r} (ids run from 0 to {self.vocab_size - 1})") from None

    def decode(self, ids):
        """Ids -> text; byte sequences that are not valid UTF-8 become U+FFFD."""
        return self.decode_bytes(ids).decode("utf-8", errors="replace")

    def decode_tokens_bytes(self, ids):
        """Ids -> the list of each token's bytes (to see how text was cut)."""
        return [self.decode_bytes([i]) for i in ids]

    # ------------------------------------------------------------------ own format
    def save(self, path):
        """Write the tokenizer as readable JSON (atomically). The ``tokens`` list has one entry per
        rank: a byte value for a single-byte token, else ``[left, right, text]`` (the merge that
        makes it; ``text`` is only for human eyes)."""
        merges = self.merges
        tokens = []
        for rank in range(len(self._ranks)):
            token = self._decoder[rank]
            if len(token) == 1:
                tokens.append(token[0])
            else:
                tokens.append([*merges[rank], token.decode("utf-8", errors="backslashreplace")])
        header = {"format": FORMAT, "version": FORMAT_VERSION, "pattern_name": self.pattern_name,
                  "pattern": self.pattern, "special_tokens": self._special}
        head = json.dumps(header, ensure_ascii=False, indent=1)[:-2]
        lines = ",\n".join("  " + json.dumps(t, ensure_ascii=False) for t in tokens)
        atomic_write_text(path, f'{head},\n "tokens": [\n{lines}\n ]\n}}\n')

    @classmethod
    def load(cls, path):
        """Read a tokenizer written by :meth:`save`. A corrupt file raises ValueError naming it."""
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise ValueError(f"{path}: not a valid tokenizer JSON file ({e})") from None
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise ValueError(f"{path}: not an {FORMAT} file (no \"format\": \"{FORMAT}\")")
        if data.get("version") != FORMAT_VERSION:
            raise ValueError(f"{path}: unsupported version {data.get('version')!r} "
                             f"(this reads version {FORMAT_VERSION})")
        for key in ("pattern", "special_tokens", "tokens"):
            if key not in data:
                raise ValueError(f"{path}: missing {key!r}")
        try:
            tok = cls(data["pattern"])
        except ValueError as e:
            raise ValueError(f"{path}: {e}") from None
        ranks, merges = _ranks_from_token_list(data["tokens"], path)
        _install(tok, ranks, merges, data["special_tokens"], path)
        return tok

    # ------------------------------------------------------------------ tiktoken's format
    def save_tiktoken(self, path):
        """Write tiktoken's rank file: per token, ``base64(bytes) rank``. Pattern and special tokens
        are not part of that format: pass them to :meth:`load_tiktoken` (or to ``tiktoken.Encoding``)."""
        lines = [f"{base64.b64encode(token).decode('ascii')} {rank}\n"
                 for token, rank in sorted(self._ranks.items(), key=lambda kv: kv[1])]
        atomic_write_text(path, "".join(lines))

    @classmethod
    def load_tiktoken(cls, path, pattern, special_tokens=None):
        """Read a tiktoken rank file (e.g. ``cl100k_base.tiktoken`` with ``pattern="gpt4"``)."""
        tok = cls(pattern)
        ranks = {}
        text = Path(path).read_bytes().decode("ascii", errors="replace")
        for n, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            fields = line.split()
            if len(fields) != 2 or not fields[1].isdigit():
                raise ValueError(f"{path}, line {n}: expected '<base64 token> <rank>', got {line[:80]!r}")
            try:
                token = base64.b64decode(fields[0], validate=True)
            except ValueError:
                raise ValueError(f"{path}, line {n}: bad base64 {fields[0][:80]!r}") from None
            if token in ranks:
                raise ValueError(f"{path}, line {n}: token {token!r} appears twice")
            ranks[token] = int(fields[1])
        _install(tok, ranks, None, special_tokens or {}, path)
        return tok

    # ------------------------------------------------------------------ Hugging Face GPT-2 files
    def save_hf(self, directory):
        """Write ``vocab.json`` and ``merges.txt`` the way GPT-2's Hugging Face files are laid out
        (tokens spelled with GPT-2's byte-to-unicode alphabet); returns their paths."""
        directory = Path(directory)
        spell = _bytes_to_unicode()
        vocab = {"".join(spell[b] for b in token): rank
                 for token, rank in sorted(self._ranks.items(), key=lambda kv: kv[1])}
        for name, i in self._special.items():
            if name in vocab:
                raise ValueError(f"special token {name!r} is spelled like a mergeable token")
            vocab[name] = i
        merges = self.merges
        spelled = {rank: "".join(spell[b] for b in token) for token, rank in self._ranks.items()}
        lines = ["#version: 0.2"] + [f"{spelled[left]} {spelled[right]}"
                                    for _, (left, right) in sorted(merges.items())]
        paths = directory / "vocab.json", directory / "merges.txt"
        atomic_write_text(paths[0], json.dumps(vocab, ensure_ascii=False))
        atomic_write_text(paths[1], "\n".join(lines) + "\n")
        return paths

    @classmethod
    def load_hf(cls, vocab_json, merges_txt, pattern="gpt2"):
        """Read Hugging Face GPT-2 style files (GPT-2's own load too). Vocabulary entries that are
        neither single bytes nor made by a merge (GPT-2's ``<|endoftext|>``) become special tokens."""
        tok = cls(pattern)
        try:
            vocab = json.loads(Path(vocab_json).read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise ValueError(f"{vocab_json}: not valid JSON ({e})") from None
        if not isinstance(vocab, dict) or not all(isinstance(i, int) for i in vocab.values()):
            raise ValueError(f"{vocab_json}: expected a JSON object {{token: id}}")
        unspell = {ch: b for b, ch in _bytes_to_unicode().items()}
        ranks, merges = {}, {}
        for ch, b in unspell.items():
            if ch not in vocab:
                raise ValueError(f"{vocab_json}: the single byte {b} (spelled {ch!r}) is missing")
            ranks[bytes([b])] = vocab[ch]
        try:
            merge_lines = Path(merges_txt).read_text(encoding="utf-8").splitlines()
        except UnicodeDecodeError as e:
            raise ValueError(f"{merges_txt}: not UTF-8 text ({e})") from None
        for n, line in enumerate(merge_lines, 1):
            if not line.strip() or (n == 1 and line.startswith("#version")):
                continue
            parts = line.split(" ")
            if len(parts) != 2 or not all(parts):
                raise ValueError(f"{merges_txt}, line {n}: expected two tokens separated by a space, "
                                 f"got {line!r}")
            for part in parts:
                if part not in vocab:
                    raise ValueError(f"{merges_txt}, line {n}: {part!r} is not in {vocab_json}")
            if parts[0] + parts[1] not in vocab:
                raise ValueError(f"{merges_txt}, line {n}: the merge makes {parts[0] + parts[1]!r}, "
                                 f"which is not in {vocab_json}")
            token = bytes(unspell[ch] for ch in parts[0] + parts[1])
            ranks[token] = vocab[parts[0] + parts[1]]
            merges.setdefault(ranks[token], (vocab[parts[0]], vocab[parts[1]]))
        made = set(ranks.values())
        specials = {name: i for name, i in vocab.items() if i not in made}
        _install(tok, ranks, merges, specials, f"{vocab_json} + {merges_txt}")
        return tok


# ====================================================================== helpers of the class
def _resolve_pattern(pattern):
    """(name or None, regex string or None) for a pattern name, a regex, or None."""
    if pattern is None:
        return None, None
    if not isinstance(pattern, str):
        raise ValueError(f"pattern must be 'gpt2', 'gpt4', a regex string or None, "
                         f"got {type(pattern).__name__}")
    if pattern in PATTERNS:
        return pattern, PATTERNS[pattern]
    try:
        regex.compile(pattern)
    except regex.error as e:
        raise ValueError(f"invalid pre-tokenization pattern {pattern!r}: {e}") from None
    return next((name for name, p in PATTERNS.items() if p == pattern), None), pattern


def _check_text(text):
    if not isinstance(text, str):
        raise ValueError(f"text must be a str, got {type(text).__name__}")


def _valid_unicode(text):
    """Replace lone surrogates (not encodable as UTF-8) by U+FFFD, as tiktoken does."""
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")


def _split_on(text, names):
    """The parts of ``text`` between occurrences of any of ``names``."""
    alternation = "|".join(regex.escape(n) for n in sorted(names, key=lambda n: (-len(n), n)))
    return regex.split(alternation, text)


def _is_hashable(x):
    try:
        hash(x)
        return True
    except TypeError:
        return False


def _install(tok, ranks, merges, special_tokens, source):
    """Validate ranks and special tokens read from ``source`` and make them ``tok``'s vocabulary."""
    n = len(ranks)
    if sorted(ranks.values()) != list(range(n)):
        missing = sorted(set(range(n)) - set(ranks.values()))[:5]
        raise ValueError(f"{source}: ranks must be 0..{n - 1} with no gaps or repeats "
                         f"(missing e.g. {missing})")
    lacking = [b for b in range(256) if bytes([b]) not in ranks]
    if lacking:
        raise ValueError(f"{source}: no token for the single byte(s) {lacking[:10]}; "
                         f"byte-level BPE needs all 256")
    if not isinstance(special_tokens, dict):
        raise ValueError(f"{source}: special tokens must be a mapping {{text: id}}")
    try:
        tok._set_vocab(ranks, merges, special_tokens)
    except ValueError as e:
        raise ValueError(f"{source}: {e}") from None


def _ranks_from_token_list(tokens, path):
    """Our JSON ``tokens`` list -> (ranks, merges), checking that every merge refers to earlier tokens."""
    if not isinstance(tokens, list):
        raise ValueError(f"{path}: 'tokens' must be a list")
    by_rank, merges = [], {}
    for rank, entry in enumerate(tokens):
        if isinstance(entry, int) and not isinstance(entry, bool) and 0 <= entry < 256:
            by_rank.append(bytes([entry]))
        elif (isinstance(entry, list) and len(entry) in (2, 3)
              and all(isinstance(i, int) and not isinstance(i, bool) for i in entry[:2])):
            left, right = entry[:2]
            if not (0 <= left < rank and 0 <= right < rank):
                raise ValueError(f"{path}: token {rank} merges unknown tokens {left} and {right} "
                                 f"(a merge may only use tokens of lower rank)")
            by_rank.append(by_rank[left] + by_rank[right])
            merges[rank] = (left, right)
        else:
            raise ValueError(f"{path}: token {rank}: expected a byte value 0..255 or [left, right, text], "
                             f"got {entry!r}")
    ranks = {token: rank for rank, token in enumerate(by_rank)}
    if len(ranks) != len(by_rank):
        dup = next(t for t in by_rank if by_rank.count(t) > 1)
        raise ValueError(f"{path}: the token {dup!r} appears twice")
    return ranks, merges


def _bytes_to_unicode():
    """GPT-2's byte -> printable character table, used to spell byte tokens in ``vocab.json``.

    Bytes that are printable Latin-1 characters (``!``..``~``, ``¡``..``¬``, ``®``..``ÿ``) stand
    for themselves; the other 68 bytes (controls, space, ...) take the characters 256, 257, ... in
    byte order, so the space byte 32 is ``Ġ`` (U+0120) and the newline 10 is ``Ċ`` (U+010A).
    """
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1),
                 *range(ord("®"), ord("ÿ") + 1)]
    table = {b: chr(b) for b in printable}
    shifted = (b for b in range(256) if b not in table)
    table.update({b: chr(256 + k) for k, b in enumerate(shifted)})
    return dict(sorted(table.items()))


def _recover_merges(ranks):
    """Rank -> (left, right) for every multi-byte token, as tiktoken recovers GPT-2's merges: BPE the
    token's bytes using only lower ranks; the two parts left are its merge."""
    merges = {}
    for token, rank in ranks.items():
        if len(token) == 1:
            continue
        parts = bpe_merge(ranks, token, max_rank=rank)
        if len(parts) != 2:     # BPE stopped short: take any split into two lower-ranked tokens
            splits = [(ranks.get(token[:k]), ranks.get(token[k:])) for k in range(1, len(token))]
            parts = next((s for s in splits if None not in s and max(s) < rank), None)
            if parts is None:
                raise ValueError(f"token {token!r} (rank {rank}) is not two lower-ranked tokens joined")
        merges[rank] = tuple(parts)
    return merges


# ====================================================================== encoding a piece
def bpe_merge(ranks, piece, max_rank=None):
    """tiktoken's BPE of one piece (bytes) -> ranks: repeatedly merge the adjacent pair whose
    concatenation has the lowest rank (leftmost on ties) until none is a token. ``max_rank``: only
    use tokens ranked below it. This is the readable reference; it is O(len(piece)^2)."""
    parts = [piece[i:i + 1] for i in range(len(piece))]
    while len(parts) > 1:
        best, best_rank = -1, max_rank
        for i in range(len(parts) - 1):
            rank = ranks.get(parts[i] + parts[i + 1])
            if rank is not None and (best_rank is None or rank < best_rank):
                best, best_rank = i, rank
        if best == -1:
            break
        parts[best:best + 2] = [parts[best] + parts[best + 1]]
    return [ranks[p] for p in parts]


def _build_pair_table(ranks):
    """(left, right) -> rank of their concatenation, for every way to cut each token in two tokens.

    With it the fast encoder can merge ids without touching bytes, yet get tiktoken's answer: two
    adjacent tokens merge exactly when their joined bytes form a token.
    """
    keys, values = [], []
    for token, rank in ranks.items():
        for k in range(1, len(token)):
            left, right = ranks.get(token[:k]), ranks.get(token[k:])
            if left is not None and right is not None:
                keys.append((left << 32) | right)
                values.append(rank)
    return _int_dict(np.array(keys, dtype=np.int64), np.array(values, dtype=np.int64))


@njit(cache=True)
def _int_dict(keys, values):
    """A numba dict {keys[i]: values[i]} (filled here: inserting from Python is slow)."""
    table = typed.Dict.empty(types.int64, types.int64)
    for i in range(len(keys)):
        table[keys[i]] = values[i]
    return table


@njit(cache=True)
def _pair_rank(pair_table, a, b):
    """Rank of the token that tokens a and b make together, or -1."""
    key = (a << 32) | b
    return pair_table[key] if key in pair_table else -1  # noqa: SIM401 (.get returns an Optional in numba)


@njit(cache=True)
def _bpe_merge_fast(ids, pair_table):
    """The numba twin of :func:`bpe_merge` for long pieces, O(n log n): a heap of (rank, position)
    picks the lowest-ranked, leftmost pair; a linked list makes each merge O(1). ``ids``: the
    piece's bytes as ranks."""
    n = len(ids)
    ids = ids.copy()
    nxt = np.arange(1, n + 1)
    prv = np.arange(-1, n - 1)
    nxt[n - 1] = -1
    heap = [(np.int64(0), np.int64(0))]     # (rank, position); the dummy fixes the type
    heap.pop()
    for i in range(n - 1):
        r = _pair_rank(pair_table, ids[i], ids[i + 1])
        if r >= 0:
            heap.append((r, np.int64(i)))
    heapq.heapify(heap)
    while len(heap) > 0:
        r, i = heapq.heappop(heap)
        j = nxt[i]
        if ids[i] < 0 or j < 0 or _pair_rank(pair_table, ids[i], ids[j]) != r:
            continue                        # stale: this spot has changed since it was pushed
        ids[i] = r                          # merge j into i
        ids[j] = -1
        k = nxt[j]
        nxt[i] = k
        if k >= 0:
            prv[k] = i
            r2 = _pair_rank(pair_table, r, ids[k])
            if r2 >= 0:
                heapq.heappush(heap, (r2, i))
        h = prv[i]
        if h >= 0:
            r2 = _pair_rank(pair_table, ids[h], r)
            if r2 >= 0:
                heapq.heappush(heap, (r2, h))
    return ids[ids >= 0]


# ====================================================================== training
# The trainer's state. The corpus is every distinct pre-token once, its bytes laid end to end as
# nodes of a doubly linked list (``prev``/``nxt`` are -1 at a pre-token's ends); a node's ``weight``
# is how often its pre-token occurs. Each distinct adjacent pair has a row: its tokens, weighted
# count, and the head of a singly linked list (``occ_pos``/``occ_next``) of the nodes where it was
# seen -- entries go stale as merges change the text and are checked when used. ``heap`` holds
# (-count, a, b, row); an entry whose count is out of date is refiled when popped. ``log`` holds
# (a, b, new token, count) per merge; merge k makes token 256 + k.
_TrainState = namedtuple("_TrainState", [
    "ids", "prev", "nxt", "weight",
    "pair_row", "pair_a", "pair_b", "pair_count", "pair_head", "pair_stamp",
    "occ_pos", "occ_next", "heap", "log",
])


def train_bpe(pieces, counts, n_tokens, progress=None):
    """Learn a vocabulary of ``n_tokens`` tokens from distinct pre-tokens ``pieces`` (bytes) occurring
    ``counts`` times. Returns (tokens in rank order as bytes, list of :class:`Merge`); fewer tokens
    if the pairs run out first."""
    st = _new_train_state(pieces, counts)
    _count_pairs(st)
    n_merges = n_tokens - 256
    bar = _progress_bar(progress, n_merges)
    while len(st.log) < n_merges:
        before = len(st.log)
        goal = n_merges if bar is None else min(n_merges, before + max(100, n_merges // 100))
        more = _train_until(st, goal)
        if bar is not None:
            bar.update(len(st.log) - before)
        if not more:
            break       # no pairs left
    if bar is not None:
        bar.close()
    tokens = [bytes([b]) for b in range(256)]
    log = [Merge(*m) for m in st.log]
    for m in log:
        tokens.append(tokens[m.left] + tokens[m.right])
    # Merges applied left to right everywhere never build the same bytes twice (if "a|bc" and
    # "ab|c" both occurred, one of the pairs (a,b), (b,c) would have been merged over the other).
    assert len(set(tokens)) == len(tokens), "BPE training made a token twice"
    return tokens, log


def _progress_bar(progress, total):
    if progress is False or total <= 0:
        return None
    from tqdm import tqdm
    return tqdm(total=total, desc="BPE merges", unit="merge", disable=None if progress is None else False)


def _new_train_state(pieces, counts):
    """Lay the pieces end to end as linked lists (NumPy) and make the empty tables (numba containers)."""
    lengths = np.array([len(p) for p in pieces], dtype=np.int64)
    ids = np.frombuffer(b"".join(pieces), dtype=np.uint8).astype(np.int64)
    starts = np.cumsum(lengths) - lengths
    prev = np.arange(-1, len(ids) - 1)
    prev[starts] = -1
    nxt = np.arange(1, len(ids) + 1)
    nxt[starts + lengths - 1] = -1
    weight = np.repeat(np.asarray(counts, dtype=np.int64), lengths)
    def ints():
        return typed.List.empty_list(types.int64)

    def quads():
        return typed.List.empty_list(types.UniTuple(types.int64, 4))

    return _TrainState(ids, prev, nxt, weight, typed.Dict.empty(types.int64, types.int64),
                       ints(), ints(), ints(), ints(), ints(), ints(), ints(), quads(), quads())


@njit(cache=True)
def _count_pairs(st):
    """Fill the pair table from the corpus and heap up every pair."""
    for i in range(len(st.ids)):
        if st.nxt[i] >= 0:
            _add_pair(st, st.ids[i], st.ids[st.nxt[i]], i, st.weight[i])
    for p in range(len(st.pair_a)):
        st.heap.append((-st.pair_count[p], st.pair_a[p], st.pair_b[p], p))
    heapq.heapify(st.heap)


@njit(cache=True)
def _add_pair(st, a, b, node, w):
    """Count one more pair (a, b), starting at ``node``, of weight ``w``; returns its row."""
    key = (a << 32) | b
    if key in st.pair_row:
        p = st.pair_row[key]
    else:
        p = len(st.pair_a)
        st.pair_row[key] = p
        st.pair_a.append(a)
        st.pair_b.append(b)
        st.pair_count.append(0)
        st.pair_head.append(-1)
        st.pair_stamp.append(-1)
    st.pair_count[p] += w
    st.occ_pos.append(node)
    st.occ_next.append(st.pair_head[p])
    st.pair_head[p] = len(st.occ_pos) - 1
    return p


@njit(cache=True)
def _remove_pair(st, a, b, w):
    st.pair_count[st.pair_row[(a << 32) | b]] -= w


@njit(cache=True)
def _pop_best_pair(st):
    """Row of the most frequent pair (smallest (a, b) on ties), or -1 if no pair is left."""
    while len(st.heap) > 0:
        negcount, a, b, p = heapq.heappop(st.heap)
        count = st.pair_count[p]
        if count == -negcount:
            return p
        if count > 0:           # the count fell since this entry was filed: file it again
            heapq.heappush(st.heap, (-count, a, b, p))
    return -1


@njit(cache=True)
def _train_until(st, n_merges):
    """Merge best pairs until ``n_merges`` merges are done; False if the pairs ran out first."""
    while len(st.log) < n_merges:
        p = _pop_best_pair(st)
        if p < 0:
            return False
        a, b, t = st.pair_a[p], st.pair_b[p], 256 + len(st.log)
        st.log.append((a, b, t, st.pair_count[p]))
        _merge_pair(st, p, a, b, t)
    return True


@njit(cache=True)
def _merge_pair(st, p, a, b, t):
    """Replace every adjacent (a, b) by t, updating only the counts of the pairs around each spot."""
    n = 0
    o = st.pair_head[p]
    while o >= 0:
        n += 1
        o = st.occ_next[o]
    nodes = np.empty(n, dtype=np.int64)
    o = st.pair_head[p]
    for k in range(n):
        nodes[k] = st.occ_pos[o]
        o = st.occ_next[o]
    nodes.sort()                # left to right, so "a a a" becomes "(aa) a" as a recount would have it
    st.pair_head[p] = -1
    touched = []                # rows whose count went up: they need a fresh heap entry
    ids, prev, nxt = st.ids, st.prev, st.nxt
    for i in nodes:
        j = nxt[i]
        if ids[i] != a or j < 0 or ids[j] != b:
            continue            # stale: merged away since it was recorded
        w = st.weight[i]
        st.pair_count[p] -= w
        h, k = prev[i], nxt[j]
        if h >= 0:              # (x, a) becomes (x, t)
            _remove_pair(st, ids[h], a, w)
            touched.append(_add_pair(st, ids[h], t, h, w))
        if k >= 0:              # (b, y) becomes (t, y)
            _remove_pair(st, b, ids[k], w)
            touched.append(_add_pair(st, t, ids[k], i, w))
        ids[i] = t              # node j leaves the list
        ids[j] = -1
        nxt[i] = k
        if k >= 0:
            prev[k] = i
    for q in touched:
        if st.pair_stamp[q] != t and st.pair_count[q] > 0:
            st.pair_stamp[q] = t
            heapq.heappush(st.heap, (-st.pair_count[q], st.pair_a[q], st.pair_b[q], q))
