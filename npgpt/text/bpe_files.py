"""BPE tokenizer files (document 3.1): reading and writing the vocabulary of a
:class:`~npgpt.text.bpe.BPETokenizer`.

Three formats: npgpt's own readable JSON (:meth:`~npgpt.text.bpe.BPETokenizer.save` /
:meth:`~npgpt.text.bpe.BPETokenizer.load`), tiktoken's rank file (``save_tiktoken`` /
``load_tiktoken``) and GPT-2's Hugging Face ``vocab.json`` + ``merges.txt`` (``save_hf`` /
``load_hf``). This module knows files, not tokenizers: the savers take a :class:`Vocabulary`, the
loaders return one, checked (ranks, the 256 single bytes, the special tokens' container); the
tokenizer's methods of the same names pass it in or install it, and their docstrings describe the
formats. It builds on :mod:`npgpt.text.bpe_merge` (to recover merges) and not on the tokenizer.
"""
import base64
import json
import os
from pathlib import Path
from typing import Any, NamedTuple

from ..atomic import atomic_write_text
from ..checks import UsageError
from .bpe_merge import recover_merges

FORMAT = "npgpt.BPETokenizer"
FORMAT_VERSION = 1


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
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise UsageError(f"{path}: not a valid tokenizer JSON file ({e})") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise UsageError(f"{path}: not an {FORMAT} file (no \"format\": \"{FORMAT}\")")
    if data.get("version") != FORMAT_VERSION:
        raise UsageError(f"{path}: unsupported version {data.get('version')!r} "
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
    ranks: dict[bytes, int] = {}
    text = Path(path).read_bytes().decode("ascii", errors="replace")
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        fields = line.split()
        if len(fields) != 2 or not fields[1].isdigit():
            raise UsageError(f"{path}, line {n}: expected '<base64 token> <rank>', got {line[:80]!r}")
        try:
            token = base64.b64decode(fields[0], validate=True)
        except ValueError:
            raise UsageError(f"{path}, line {n}: bad base64 {fields[0][:80]!r}") from None
        if token in ranks:
            raise UsageError(f"{path}, line {n}: token {token!r} appears twice")
        ranks[token] = int(fields[1])
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
    try:
        vocab = json.loads(Path(vocab_json).read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise UsageError(f"{vocab_json}: not valid JSON ({e})") from None
    if not isinstance(vocab, dict) or not all(isinstance(i, int) for i in vocab.values()):
        raise UsageError(f"{vocab_json}: expected a JSON object {{token: id}}")
    unspell = {ch: b for b, ch in _bytes_to_unicode().items()}
    ranks: dict[bytes, int] = {}
    merges: dict[int, tuple[int, int]] = {}
    for ch, b in unspell.items():
        if ch not in vocab:
            raise UsageError(f"{vocab_json}: the single byte {b} (spelled {ch!r}) is missing")
        ranks[bytes([b])] = vocab[ch]
    try:
        merge_lines = Path(merges_txt).read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as e:
        raise UsageError(f"{merges_txt}: not UTF-8 text ({e})") from None
    for n, line in enumerate(merge_lines, 1):
        if not line.strip() or (n == 1 and line.startswith("#version")):
            continue
        parts = line.split(" ")
        if len(parts) != 2 or not all(parts):
            raise UsageError(f"{merges_txt}, line {n}: expected two tokens separated by a space, "
                             f"got {line!r}")
        for part in parts:
            if part not in vocab:
                raise UsageError(f"{merges_txt}, line {n}: {part!r} is not in {vocab_json}")
        if parts[0] + parts[1] not in vocab:
            raise UsageError(f"{merges_txt}, line {n}: the merge makes {parts[0] + parts[1]!r}, "
                             f"which is not in {vocab_json}")
        token = bytes(unspell[ch] for ch in parts[0] + parts[1])
        ranks[token] = vocab[parts[0] + parts[1]]
        merges.setdefault(ranks[token], (vocab[parts[0]], vocab[parts[1]]))
    made = set(ranks.values())
    specials = {name: i for name, i in vocab.items() if i not in made}
    orphans = {name: i for name, i in specials.items() if not _looks_special(name)}
    if orphans:
        name, i = min(orphans.items(), key=lambda item: item[1])
        raise UsageError(f"{merges_txt} builds no merge for {len(orphans)} token(s) of {vocab_json}, such "
                         f"as {name!r} (id {i}), and they do not look like special tokens (<...>): "
                         f"{merges_txt} looks truncated")
    ids = sorted(vocab.values())
    if ids != list(range(len(vocab))):
        repeated = sorted({i for i in ids if ids.count(i) > 1})[:5] if len(set(ids)) < len(ids) else []
        raise UsageError(f"{vocab_json}: ids must be 0..{len(vocab) - 1}, each used once "
                         + (f"(ids {repeated} are used twice)" if repeated else
                            f"(missing e.g. {sorted(set(range(len(vocab))) - set(ids))[:5]})"))
    return _checked(ranks, merges, specials, f"{vocab_json} + {merges_txt}", dense=False)


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
        raise UsageError(f"{source}: special tokens must be a mapping {{text: id}}")
    return Vocabulary(ranks, merges, special_tokens)


def _ranks_from_token_list(tokens: object,
                           path: str | os.PathLike[str]) -> tuple[dict[bytes, int], dict[int, tuple[int, int]]]:
    """Our JSON ``tokens`` list -> (ranks, merges), checking that every merge refers to earlier tokens."""
    if not isinstance(tokens, list):
        raise UsageError(f"{path}: 'tokens' must be a list")
    by_rank: list[bytes] = []
    merges: dict[int, tuple[int, int]] = {}
    for rank, entry in enumerate(tokens):
        if isinstance(entry, int) and not isinstance(entry, bool) and 0 <= entry < 256:
            by_rank.append(bytes([entry]))
        elif (isinstance(entry, list) and len(entry) in (2, 3)
              and all(isinstance(i, int) and not isinstance(i, bool) for i in entry[:2])):
            left, right = entry[:2]
            if not (0 <= left < rank and 0 <= right < rank):
                raise UsageError(f"{path}: token {rank} merges unknown tokens {left} and {right} "
                                 f"(a merge may only use tokens of lower rank)")
            by_rank.append(by_rank[left] + by_rank[right])
            merges[rank] = (left, right)
        else:
            raise UsageError(f"{path}: token {rank}: expected a byte value 0..255 or [left, right, text], "
                             f"got {entry!r}")
    ranks = {token: rank for rank, token in enumerate(by_rank)}
    if len(ranks) != len(by_rank):
        dup = next(t for t in by_rank if by_rank.count(t) > 1)
        raise UsageError(f"{path}: the token {dup!r} appears twice")
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
