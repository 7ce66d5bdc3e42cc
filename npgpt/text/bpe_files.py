"""BPE tokenizer files (document 3.1): reading and writing a :class:`~npgpt.text.bpe.BPETokenizer`.

Three formats: npgpt's own readable JSON (:meth:`~npgpt.text.bpe.BPETokenizer.save` /
:meth:`~npgpt.text.bpe.BPETokenizer.load`), tiktoken's rank file (``save_tiktoken`` /
``load_tiktoken``) and GPT-2's Hugging Face ``vocab.json`` + ``merges.txt`` (``save_hf`` /
``load_hf``). Those methods are thin: each calls the function of the same name here, passing the
tokenizer (to save) or its class (to load); the methods' docstrings describe the formats.
"""
import base64
import json
from pathlib import Path

from ..atomic import atomic_write_text
from ..checks import UsageError

FORMAT = "npgpt.BPETokenizer"
FORMAT_VERSION = 1


# ====================================================================== the three formats
def save(tok, path):
    """Write ``tok`` as readable JSON (atomically): one ``tokens`` entry per rank."""
    if sorted(tok._ranks.values()) != list(range(len(tok._ranks))):
        raise UsageError("this tokenizer's special tokens sit among its ranks (as in vocabularies written by "
                         "the tokenizers library); npgpt's own format keeps them after: use save_hf")
    merges = tok.merges
    tokens = []
    for rank in range(len(tok._ranks)):
        token = tok._decoder[rank]
        if len(token) == 1:
            tokens.append(token[0])
        else:
            tokens.append([*merges[rank], token.decode("utf-8", errors="backslashreplace")])
    header = {"format": FORMAT, "version": FORMAT_VERSION, "pattern_name": tok.pattern_name,
              "pattern": tok.pattern, "special_tokens": tok._special}
    head = json.dumps(header, ensure_ascii=False, indent=1)[:-2]
    lines = ",\n".join("  " + json.dumps(t, ensure_ascii=False) for t in tokens)
    atomic_write_text(path, f'{head},\n "tokens": [\n{lines}\n ]\n}}\n')


def load(cls, path):
    """A ``cls`` tokenizer read from a file written by :func:`save`; a corrupt file raises ValueError."""
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
    try:
        tok = cls(data["pattern"])
    except ValueError as e:
        raise UsageError(f"{path}: {e}") from None
    ranks, merges = _ranks_from_token_list(data["tokens"], path)
    _install(tok, ranks, merges, data["special_tokens"], path)
    return tok


def save_tiktoken(tok, path):
    """Write ``tok``'s tiktoken rank file: per token, ``base64(bytes) rank``."""
    lines = [f"{base64.b64encode(token).decode('ascii')} {rank}\n"
             for token, rank in sorted(tok._ranks.items(), key=lambda kv: kv[1])]
    atomic_write_text(path, "".join(lines))


def load_tiktoken(cls, path, pattern, special_tokens=None):
    """A ``cls`` tokenizer read from a tiktoken rank file, with the given pattern and special tokens."""
    tok = cls(pattern)
    ranks = {}
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
    _install(tok, ranks, None, special_tokens or {}, path)
    return tok


def save_hf(tok, directory):
    """Write ``tok`` as GPT-2's Hugging Face ``vocab.json`` and ``merges.txt``; returns their paths."""
    directory = Path(directory)
    spell = _bytes_to_unicode()
    vocab = {"".join(spell[b] for b in token): rank
             for token, rank in sorted(tok._ranks.items(), key=lambda kv: kv[1])}
    for name, i in tok._special.items():
        if name in vocab:
            raise UsageError(f"special token {name!r} is spelled like a mergeable token")
        vocab[name] = i
    merges = tok.merges
    spelled = {rank: "".join(spell[b] for b in token) for token, rank in tok._ranks.items()}
    lines = ["#version: 0.2"] + [f"{spelled[left]} {spelled[right]}"
                                for _, (left, right) in sorted(merges.items())]
    paths = directory / "vocab.json", directory / "merges.txt"
    atomic_write_text(paths[0], json.dumps(vocab, ensure_ascii=False))
    atomic_write_text(paths[1], "\n".join(lines) + "\n")
    return paths


def load_hf(cls, vocab_json, merges_txt, pattern="gpt2"):
    """A ``cls`` tokenizer read from Hugging Face GPT-2 style ``vocab.json`` and ``merges.txt``.

    The ids are the vocabulary's own. Special tokens (entries no merge builds, spelled ``<...>``)
    may sit anywhere among them: GPT-2's file puts ``<|endoftext|>`` last, the ``tokenizers``
    library writes its special tokens first. Every id from 0 to the largest must be used once. A
    vocabulary entry that no merge builds and that does not look special means ``merges.txt`` was
    cut short, and is refused."""
    tok = cls(pattern)
    try:
        vocab = json.loads(Path(vocab_json).read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise UsageError(f"{vocab_json}: not valid JSON ({e})") from None
    if not isinstance(vocab, dict) or not all(isinstance(i, int) for i in vocab.values()):
        raise UsageError(f"{vocab_json}: expected a JSON object {{token: id}}")
    unspell = {ch: b for b, ch in _bytes_to_unicode().items()}
    ranks, merges = {}, {}
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
    _install(tok, ranks, merges, specials, f"{vocab_json} + {merges_txt}", dense=False)
    return tok


# ====================================================================== helpers
def _looks_special(name):
    """Whether a vocabulary entry that no merge builds is a special token: GPT-2's
    ``<|endoftext|>``, or the ``<s>``, ``</s>``, ``<pad>`` of other byte-level vocabularies."""
    return len(name) > 2 and name.startswith("<") and name.endswith(">")


def _install(tok, ranks, merges, special_tokens, source, dense=True):
    """Validate ranks and special tokens read from ``source`` and make them ``tok``'s vocabulary.
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
    try:
        tok._set_vocab(ranks, merges, special_tokens)
    except ValueError as e:
        raise UsageError(f"{source}: {e}") from None


def _ranks_from_token_list(tokens, path):
    """Our JSON ``tokens`` list -> (ranks, merges), checking that every merge refers to earlier tokens."""
    if not isinstance(tokens, list):
        raise UsageError(f"{path}: 'tokens' must be a list")
    by_rank, merges = [], {}
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
    from .bpe import bpe_merge  # imported here, not at the top: bpe imports this module
    merges = {}
    for token, rank in ranks.items():
        if len(token) == 1:
            continue
        parts = bpe_merge(ranks, token, max_rank=rank)
        if len(parts) != 2:     # BPE stopped short: take any split into two lower-ranked tokens
            splits = [(ranks.get(token[:k]), ranks.get(token[k:])) for k in range(1, len(token))]
            parts = next((s for s in splits if None not in s and max(s) < rank), None)
            if parts is None:
                raise UsageError(f"token {token!r} (rank {rank}) is not two lower-ranked tokens joined")
        merges[rank] = tuple(parts)
    return merges
