"""BPE tokenizer files (document 3.1): reading and writing the vocabulary of a
:class:`~npgpt.text.bpe.BPETokenizer`.

Three formats: npgpt's own readable JSON (:meth:`~npgpt.text.bpe.BPETokenizer.save` /
:meth:`~npgpt.text.bpe.BPETokenizer.load`), tiktoken's rank file (``save_tiktoken`` /
``load_tiktoken``) and GPT-2's Hugging Face ``vocab.json`` + ``merges.txt`` (``save_hf`` /
``load_hf``). This module knows files, not tokenizers: the savers take a :class:`Vocabulary`, the
loaders return one, checked (ranks, the 256 single bytes, the special tokens' container); the
tokenizer's methods of the same names pass it in or install it, and their docstrings describe the
formats. It builds on :mod:`npgpt.text.bpe_merge` (to recover merges) and not on the tokenizer.

Every reader trusts nothing in its file (issue 28): the path must be a regular file (a FIFO, a device
such as ``/dev/zero`` or a folder is named, not read), its size is checked before it is read
(:data:`MAX_FILE_BYTES`), ids and ranks are bounded (:data:`MAX_TOKENS`), duplicates, unknown merge
parts, deep JSON and bad UTF-8 or base64 are refused, and so is a token list that spells more bytes
than any real vocabulary. Every refusal is one :class:`~npgpt.checks.UsageError` line naming the file
and the entry, whatever the file quotes capped in length (:func:`_show`).
"""
import base64
import binascii
import json
import os
import reprlib
from collections import Counter
from pathlib import Path
from typing import Any, NamedTuple

from ..atomic import atomic_write_text
from ..checks import MissingFile, NotRegularFile, UsageError, open_regular_file
from .bpe_merge import recover_merges

FORMAT = "npgpt.BPETokenizer"
FORMAT_VERSION = 1
# The largest vocabulary file in common use is o200k_base.tiktoken, 3.6 MB (cl100k_base's 1.7 MB,
# GPT-2's vocab.json 1.0 MB and merges.txt 0.46 MB); its 200,019 tokens in npgpt's JSON take about
# 5 MB. Four times the largest is 16 MiB, read whole and parsed into Python objects (a JSON file
# of that size can become about 20 times its size in objects, still below a few hundred MB).
MAX_FILE_BYTES = 16 << 20
# Ids and ranks: real vocabularies have at most about 256,000 (Gemma's 256,000, o200k_base 200,019,
# GPT-2 50,257). Four times that is more than any model npgpt builds has embedding rows.
MAX_TOKENS = 1 << 20
# All the tokens' bytes together. npgpt's JSON builds a token from two earlier ones, so a few dozen
# entries could spell 2**40 bytes; a file written by save() spells every token out in its text, so
# its tokens hold at most as many bytes as the file (o200k_base's: about 1.5 MB).
MAX_TOKEN_BYTES = MAX_FILE_BYTES
SHOWN = 60                      # characters of a value quoted from a file in a message
_REPR = reprlib.Repr()
_REPR.maxstring, _REPR.maxother, _REPR.maxlong, _REPR.maxlist, _REPR.maxdict, _REPR.maxlevel = SHOWN, SHOWN, 30, 3, 3, 2


class Vocabulary(NamedTuple):
    """What a tokenizer file holds: token bytes -> rank, rank -> (left, right) for every merged token
    (None: recover them from the ranks), special token text -> id."""
    ranks: dict[bytes, int]
    merges: dict[int, tuple[int, int]] | None
    special_tokens: dict[str, int]


# ====================================================================== the three formats
def save(path: str | os.PathLike[str], vocab: Vocabulary, pattern_name: str | None, pattern: str | None) -> None:
    """Write ``vocab`` and the pre-tokenization pattern as readable JSON (atomically): one
    ``tokens`` entry per rank."""
    ranks = vocab.ranks
    if sorted(ranks.values()) != list(range(len(ranks))):
        raise UsageError("this tokenizer's special tokens sit among its ranks (as in vocabularies written by "
                         "the tokenizers library); npgpt's own format keeps them after: use save_hf")
    merges = _merges(vocab)
    by_rank = {rank: token for token, rank in ranks.items()}
    tokens: list[int | list] = []
    for rank in range(len(ranks)):
        token = by_rank[rank]
        if len(token) == 1:
            tokens.append(token[0])
        else:
            tokens.append([*merges[rank], token.decode("utf-8", errors="backslashreplace")])
    header = {"format": FORMAT, "version": FORMAT_VERSION, "pattern_name": pattern_name,
              "pattern": pattern, "special_tokens": vocab.special_tokens}
    head = json.dumps(header, ensure_ascii=False, indent=1)[:-2]
    lines = ",\n".join("  " + json.dumps(t, ensure_ascii=False) for t in tokens)
    atomic_write_text(path, f'{head},\n "tokens": [\n{lines}\n ]\n}}\n')


def read(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The JSON object of a file written by :func:`save`, its format, version and keys checked (the
    pattern is the tokenizer's to check; :func:`vocabulary` reads the rest)."""
    data = read_json(path, "a tokenizer file", "not a valid tokenizer JSON file")
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise UsageError(f"{path}: not an {FORMAT} file (no \"format\": \"{FORMAT}\")")
    if data.get("version") != FORMAT_VERSION:
        raise UsageError(f"{path}: unsupported version {_show(data.get('version'))} "
                         f"(this reads version {FORMAT_VERSION})")
    for key in ("pattern", "special_tokens", "tokens"):
        if key not in data:
            raise UsageError(f"{path}: missing {key!r}")
    return data


def vocabulary(data: dict[str, Any], path: str | os.PathLike[str]) -> Vocabulary:
    """The checked vocabulary of a file's JSON object (:func:`read`)."""
    ranks, merges = _ranks_from_token_list(data["tokens"], path)
    return _checked(ranks, merges, data["special_tokens"], path)


def save_tiktoken(path: str | os.PathLike[str], ranks: dict[bytes, int]) -> None:
    """Write tiktoken's rank file: per token, ``base64(bytes) rank``."""
    lines = [f"{base64.b64encode(token).decode('ascii')} {rank}\n"
             for token, rank in sorted(ranks.items(), key=lambda kv: kv[1])]
    atomic_write_text(path, "".join(lines))


def load_tiktoken(path: str | os.PathLike[str], special_tokens: dict[str, int] | None = None) -> Vocabulary:
    """The vocabulary of a tiktoken rank file, with the given special tokens."""
    data = read_file(path, "a tiktoken file")
    try:
        text = data.decode("ascii")
    except UnicodeDecodeError as e:
        line_number = data.count(b"\n", 0, e.start) + 1
        raise UsageError(f"{path}, line {line_number}: byte {data[e.start]:#04x} is not ASCII (a tiktoken file is "
                         f"base64 tokens and decimal ranks)") from None
    lines = text.splitlines()
    if len(lines) > MAX_TOKENS:
        raise UsageError(f"{path}: {len(lines):,} lines, more than the {MAX_TOKENS:,} tokens a vocabulary may have")
    ranks: dict[bytes, int] = {}
    line_of_rank: dict[int, int] = {}
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        fields = line.split()
        if len(fields) != 2 or not fields[1].isdigit():
            raise UsageError(f"{path}, line {n}: expected '<base64 token> <rank>', got {_show(line)}")
        if len(fields[1]) > len(str(MAX_TOKENS)) or int(fields[1]) >= MAX_TOKENS:   # before int() of 5000 digits
            raise UsageError(f"{path}, line {n}: rank {_show(fields[1])} is not below {MAX_TOKENS:,}, the most "
                             f"tokens a vocabulary may have")
        try:
            token = base64.b64decode(fields[0], validate=True)
        except (ValueError, binascii.Error):
            raise UsageError(f"{path}, line {n}: bad base64 {_show(fields[0])}") from None
        if token in ranks:
            raise UsageError(f"{path}, line {n}: token {_show(token)} appears twice")
        rank = int(fields[1])
        if rank in line_of_rank:
            raise UsageError(f"{path}, line {n}: rank {rank} appears twice (also on line {line_of_rank[rank]})")
        ranks[token], line_of_rank[rank] = rank, n
    return _checked(ranks, None, special_tokens or {}, path)


def save_hf(directory: str | os.PathLike[str], vocab: Vocabulary) -> tuple[Path, Path]:
    """Write ``vocab`` as GPT-2's Hugging Face ``vocab.json`` and ``merges.txt``; returns their paths."""
    directory = Path(directory)
    spell = _bytes_to_unicode()
    spelled_vocab = {"".join(spell[b] for b in token): rank
                     for token, rank in sorted(vocab.ranks.items(), key=lambda kv: kv[1])}
    for name, i in vocab.special_tokens.items():
        if name in spelled_vocab:
            raise UsageError(f"special token {name!r} is spelled like a mergeable token")
        spelled_vocab[name] = i
    merges = _merges(vocab)
    spelled = {rank: "".join(spell[b] for b in token) for token, rank in vocab.ranks.items()}
    lines = ["#version: 0.2"] + [f"{spelled[left]} {spelled[right]}"
                                for _, (left, right) in sorted(merges.items())]
    paths = directory / "vocab.json", directory / "merges.txt"
    atomic_write_text(paths[0], json.dumps(spelled_vocab, ensure_ascii=False))
    atomic_write_text(paths[1], "\n".join(lines) + "\n")
    return paths


def load_hf(vocab_json: str | os.PathLike[str], merges_txt: str | os.PathLike[str]) -> Vocabulary:
    """The vocabulary of Hugging Face GPT-2 style ``vocab.json`` and ``merges.txt``.

    The ids are the vocabulary's own. Special tokens (entries no merge builds, spelled ``<...>``)
    may sit anywhere among them: GPT-2's file puts ``<|endoftext|>`` last, the ``tokenizers``
    library writes its special tokens first. Every id from 0 to the largest must be used once. A
    vocabulary entry that no merge builds and that does not look special means ``merges.txt`` was
    cut short, and is refused."""
    vocab = read_json(vocab_json, "a vocab.json", "not valid JSON")
    if not isinstance(vocab, dict):
        raise UsageError(f"{vocab_json}: expected a JSON object {{token: id}}, got a JSON {type(vocab).__name__}")
    if len(vocab) > MAX_TOKENS:
        raise UsageError(f"{vocab_json}: {len(vocab):,} tokens, more than the {MAX_TOKENS:,} a vocabulary may have")
    for name, i in vocab.items():
        if not _is_id(i):
            raise UsageError(f"{vocab_json}: token {_show(name)} has id {_show(i)}, expected an integer in "
                             f"[0, {MAX_TOKENS:,})")
    unspell = {ch: b for b, ch in _bytes_to_unicode().items()}
    ranks: dict[bytes, int] = {}
    merges: dict[int, tuple[int, int]] = {}
    for ch, b in unspell.items():
        if ch not in vocab:
            raise UsageError(f"{vocab_json}: the single byte {b} (spelled {ch!r}) is missing")
        ranks[bytes([b])] = vocab[ch]
    merge_lines = _utf8(read_file(merges_txt, "a merges.txt"), merges_txt).splitlines()
    if len(merge_lines) > MAX_TOKENS:
        raise UsageError(f"{merges_txt}: {len(merge_lines):,} lines, more than the {MAX_TOKENS:,} merges a "
                         f"vocabulary may have")
    for n, line in enumerate(merge_lines, 1):
        if not line.strip() or (n == 1 and line.startswith("#version")):
            continue
        parts = line.split(" ")
        if len(parts) != 2 or not all(parts):
            raise UsageError(f"{merges_txt}, line {n}: expected two tokens separated by a space, "
                             f"got {_show(line)}")
        for part in parts:
            if part not in vocab:
                raise UsageError(f"{merges_txt}, line {n}: {_show(part)} is not in {vocab_json}")
        if parts[0] + parts[1] not in vocab:
            raise UsageError(f"{merges_txt}, line {n}: the merge makes {_show(parts[0] + parts[1])}, "
                             f"which is not in {vocab_json}")
        foreign = next((ch for ch in parts[0] + parts[1] if ch not in unspell), None)
        if foreign is not None:
            raise UsageError(f"{merges_txt}, line {n}: {_show(line)} holds {foreign!r}, which GPT-2's "
                             f"byte alphabet does not spell (a special token cannot be merged)")
        token = bytes(unspell[ch] for ch in parts[0] + parts[1])
        ranks[token] = vocab[parts[0] + parts[1]]
        merges.setdefault(ranks[token], (vocab[parts[0]], vocab[parts[1]]))
    made = set(ranks.values())
    specials = {name: i for name, i in vocab.items() if i not in made}
    orphans = {name: i for name, i in specials.items() if not _looks_special(name)}
    if orphans:
        name, i = min(orphans.items(), key=lambda item: item[1])
        raise UsageError(f"{merges_txt} builds no merge for {len(orphans)} token(s) of {vocab_json}, such "
                         f"as {_show(name)} (id {i}), and they do not look like special tokens (<...>): "
                         f"{merges_txt} looks truncated")
    ids = Counter(vocab.values())           # counted once: a list's count() per id is quadratic
    if sorted(ids) != list(range(len(vocab))):
        repeated = sorted(i for i, k in ids.items() if k > 1)[:5]
        raise UsageError(f"{vocab_json}: ids must be 0..{len(vocab) - 1}, each used once "
                         + (f"(ids {repeated} are used twice)" if repeated else
                            f"(missing e.g. {sorted(set(range(len(vocab))) - set(ids))[:5]})"))
    return _checked(ranks, merges, specials, f"{vocab_json} + {merges_txt}", dense=False)


# ====================================================================== reading files
def read_file(path: str | os.PathLike[str], what: str, max_bytes: int = MAX_FILE_BYTES) -> bytes:
    """The bytes of ``path`` (``what`` names the kind of file in messages: "a tiktoken file"), which
    must be a regular file of at most ``max_bytes``: checked on the open descriptor before anything
    is read, and the read stops one byte past the limit (a file growing meanwhile). A FIFO is opened
    without blocking, and refused like a folder or a device (``/dev/zero`` never ends)."""
    try:
        f = open_regular_file(path)
    except FileNotFoundError:
        raise MissingFile(f"{path}: no such file (expected {what})") from None
    except IsADirectoryError:
        raise UsageError(f"{path}: a directory, not {what}") from None
    except NotRegularFile as e:
        raise UsageError(f"{path}: {e.kind}, not {what}") from None
    except OSError as e:
        raise UsageError(f"{path}: cannot be opened ({e.strerror or e})") from None
    with f:
        size = os.fstat(f.fileno()).st_size
        if size > max_bytes:
            raise UsageError(f"{path}: {size:,} bytes, more than the {max_bytes:,} {what} may have")
        data = f.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise UsageError(f"{path}: grew past the {max_bytes:,} bytes {what} may have while it was read")
    return data


def read_json(path: str | os.PathLike[str], what: str, invalid: str, max_bytes: int = MAX_FILE_BYTES) -> Any:
    """The JSON value of the file ``path`` (:func:`read_file`), which must be UTF-8; ``invalid`` is
    what a message calls a file that is not JSON ("not valid JSON")."""
    text = _utf8(read_file(path, what, max_bytes), path)
    try:
        return json.loads(text)
    except RecursionError:
        raise UsageError(f"{path}: {invalid} (it nests too deeply to read)") from None
    except ValueError as e:             # JSONDecodeError, or an integer of more than 4300 digits
        raise UsageError(f"{path}: {invalid} ({one_line(str(e))})") from None


def _utf8(data: bytes, path: str | os.PathLike[str]) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        raise UsageError(f"{path}: not UTF-8 text (line {line}, byte {e.start:,}: {e.reason})") from None


def _show(value: object) -> str:
    """``repr(value)`` for a message, at most about SHOWN characters: a value quoted from a file may
    be megabytes long (sliced before repr, so a huge one is never copied whole)."""
    if isinstance(value, (bytes, bytearray)) and len(value) > SHOWN:
        return repr(bytes(value[:SHOWN]))[:-1] + "...'"
    return one_line(_REPR.repr(value), 3 * SHOWN)


def one_line(text: str, limit: int = 3 * SHOWN) -> str:
    """``text`` on one line and at most ``limit`` characters (the tokenizer quotes a file's special
    tokens and pattern in its own messages)."""
    text = text.replace("\n", "\\n").replace("\r", "\\r")
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _is_id(value: object) -> bool:
    """Whether ``value`` from a file is an id or rank: an int (not a bool) in [0, MAX_TOKENS)."""
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < MAX_TOKENS


# ====================================================================== helpers
def _looks_special(name: str) -> bool:
    """Whether a vocabulary entry that no merge builds is a special token: GPT-2's
    ``<|endoftext|>``, or the ``<s>``, ``</s>``, ``<pad>`` of other byte-level vocabularies."""
    return len(name) > 2 and name.startswith("<") and name.endswith(">")


def _merges(vocab: Vocabulary) -> dict[int, tuple[int, int]]:
    """``vocab``'s merges, recovered from its ranks when it does not hold them."""
    return vocab.merges if vocab.merges is not None else recover_merges(vocab.ranks)


def _checked(ranks: dict[bytes, int], merges: dict[int, tuple[int, int]] | None, special_tokens: object,
             source: str | os.PathLike[str], dense: bool = True) -> Vocabulary:
    """The :class:`Vocabulary` of ranks and special tokens read from ``source``, checked as far as a
    file can be (the tokenizer checks each special token's text and id when it installs them).
    ``dense``: the ranks must be 0..n-1 (else the caller has checked that ranks and special tokens
    together use every id once)."""
    n = len(ranks)
    if dense and sorted(ranks.values()) != list(range(n)):
        missing = sorted(set(range(n)) - set(ranks.values()))[:5]
        raise UsageError(f"{source}: ranks must be 0..{n - 1} with no gaps or repeats "
                         f"(missing e.g. {missing})")
    lacking = [b for b in range(256) if bytes([b]) not in ranks]
    if lacking:
        raise UsageError(f"{source}: no token for the single byte(s) {lacking[:10]}; "
                         f"byte-level BPE needs all 256")
    if not isinstance(special_tokens, dict):
        raise UsageError(f"{source}: special tokens must be a mapping {{text: id}}, got {_show(special_tokens)}")
    for name, i in special_tokens.items():
        if not isinstance(name, str) or not name or not _is_id(i):
            raise UsageError(f"{source}: special token {_show(name)} has id {_show(i)}, expected a non-empty text "
                             f"and an integer id in [0, {MAX_TOKENS:,})")
    if n + len(special_tokens) > MAX_TOKENS:
        raise UsageError(f"{source}: {n + len(special_tokens):,} tokens, more than the {MAX_TOKENS:,} a "
                         f"vocabulary may have")
    return Vocabulary(ranks, merges, special_tokens)


def _ranks_from_token_list(tokens: object,
                           path: str | os.PathLike[str]) -> tuple[dict[bytes, int], dict[int, tuple[int, int]]]:
    """Our JSON ``tokens`` list -> (ranks, merges), checking that every merge refers to earlier tokens."""
    if not isinstance(tokens, list):
        raise UsageError(f"{path}: 'tokens' must be a list, got {_show(tokens)}")
    if len(tokens) > MAX_TOKENS:
        raise UsageError(f"{path}: {len(tokens):,} tokens, more than the {MAX_TOKENS:,} a vocabulary may have")
    by_rank: list[bytes] = []
    ranks: dict[bytes, int] = {}
    merges: dict[int, tuple[int, int]] = {}
    spelled = 0
    for rank, entry in enumerate(tokens):
        if isinstance(entry, int) and not isinstance(entry, bool) and 0 <= entry < 256:
            token = bytes([entry])
        elif (isinstance(entry, list) and len(entry) in (2, 3)
              and all(isinstance(i, int) and not isinstance(i, bool) for i in entry[:2])):
            left, right = entry[:2]
            if not (0 <= left < rank and 0 <= right < rank):
                raise UsageError(f"{path}: token {rank} merges unknown tokens {_show(left)} and {_show(right)} "
                                 f"(a merge may only use tokens of lower rank)")
            spelled += len(by_rank[left]) + len(by_rank[right])
            if spelled > MAX_TOKEN_BYTES:          # checked before the bytes are joined
                raise UsageError(f"{path}: token {rank}: the tokens up to it spell more than {MAX_TOKEN_BYTES:,} "
                                 f"bytes, more than any real vocabulary")
            token = by_rank[left] + by_rank[right]
            merges[rank] = (left, right)
        else:
            raise UsageError(f"{path}: token {rank}: expected a byte value 0..255 or [left, right, text], "
                             f"got {_show(entry)}")
        if token in ranks:
            raise UsageError(f"{path}: token {rank}: the token {_show(token)} appears twice (also token "
                             f"{ranks[token]})")
        by_rank.append(token)
        ranks[token] = rank
    return ranks, merges


def _bytes_to_unicode() -> dict[int, str]:
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
