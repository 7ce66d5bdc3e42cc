"""Hostile tokenizer files (issue 28, item 1): the BPE tokenizer's own JSON, tiktoken rank files,
GPT-2's vocab.json + merges.txt and the character tokenizer's JSON. Each is refused in one line that
names the file and the entry, before what it claims costs memory or time: a path that is no regular
file (a FIFO would block, /dev/zero never ends), a file over the size cap, JSON nested too deeply or
holding an integer of 5000 digits, ids huge, negative or boolean, duplicates, merges of unknown
tokens or of characters GPT-2's alphabet does not spell, invalid UTF-8, ASCII or base64, a token
list that spells 2**40 bytes, values of a megabyte quoted in a message. Every read runs under the
memory and time cap of tests/zip_craft.py. The random and hostile fuzz of the same readers is in
test_fuzz_readers.py."""
import base64
import json
import os
from pathlib import Path

import pytest
from zip_craft import capped

from npgpt import BPETokenizer
from npgpt.checks import MissingFile, UsageError
from npgpt.text.bpe_files import MAX_FILE_BYTES, MAX_TOKENS
from npgpt.text.chars import CharTokenizer

CAP = 512 << 20         # bytes beyond the process's own: the bombs below claim gigabytes or more
SECONDS = 5             # a refusal takes milliseconds; the quadratic checks of the old readers took hours
LONGEST = 400           # characters a refusal may add to the file's name (the messages quote at most ~180)
TEXT = "the cat sat on the mat. the dog ate the log. " * 20
VOCAB = 270             # ids: 269 mergeable tokens (TEXT has pairs for 275), then <|endoftext|>


@pytest.fixture(scope="module")
def trained():
    return BPETokenizer("gpt2").train(TEXT + "<|endoftext|>", VOCAB, special_tokens=["<|endoftext|>"])


def refusal(read, path, named=None):
    """The message of the one-line UsageError ``read()`` raises under the caps; it names ``path``."""
    named = str(path) if named is None else named
    with pytest.raises(UsageError) as caught, capped(CAP, SECONDS):
        read()
    message = str(caught.value)
    assert "\n" not in message and named in message, message[:1000]
    assert len(message) <= len(named) + LONGEST, message[:1000]
    return message


# ----------------------------------------------------------------------------- the readers, by format
def readers(tmp_path, trained):
    """Format -> (the file each reader reads, read it). vocab.json and merges.txt are read as a pair."""
    own, tiktoken, chars = tmp_path / "tok.json", tmp_path / "tok.tiktoken", tmp_path / "chars.json"
    trained.save(own)
    trained.save_tiktoken(tiktoken)
    vocab, merges = trained.save_hf(tmp_path)
    CharTokenizer.from_text(TEXT).save(chars)
    return {"own": (own, lambda: BPETokenizer.load(own)),
            "tiktoken": (tiktoken, lambda: BPETokenizer.load_tiktoken(tiktoken, "gpt2")),
            "vocab.json": (vocab, lambda: BPETokenizer.load_hf(vocab, merges)),
            "merges.txt": (merges, lambda: BPETokenizer.load_hf(vocab, merges)),
            "chars": (chars, lambda: CharTokenizer.load(chars))}


FORMATS = ["own", "tiktoken", "vocab.json", "merges.txt", "chars"]


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("kind, says", [("fifo", "a FIFO"), ("device", "a character device"),
                                        ("folder", "a directory")])
def test_a_path_that_is_no_file_is_named_not_read(tmp_path, trained, fmt, kind, says):
    """The old readers blocked on a FIFO (TimeoutError under the cap), read /dev/zero until memory
    ran out (MemoryError) and raised IsADirectoryError for a folder: tracebacks, all three."""
    path, read = readers(tmp_path, trained)[fmt]
    path.unlink()
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "device":
        path.symlink_to(Path("/dev/zero"))
    else:
        path.mkdir()
    assert f"{path}: {says}, not a" in refusal(read, path)


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_missing_file_is_a_missing_file(tmp_path, trained, fmt):
    """The old readers raised a bare FileNotFoundError (a traceback from the command line)."""
    path, read = readers(tmp_path, trained)[fmt]
    path.unlink()
    with pytest.raises(MissingFile, match=f"{path}: no such file"):
        read()


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_file_over_the_size_cap_is_refused_unread(tmp_path, trained, fmt):
    """A sparse file one byte over the cap: the old readers read it whole (and then parsed it)."""
    path, read = readers(tmp_path, trained)[fmt]
    with open(path, "r+b") as f:
        f.truncate(MAX_FILE_BYTES + 1)
    assert f"{MAX_FILE_BYTES + 1:,} bytes, more than the {MAX_FILE_BYTES:,}" in refusal(read, path)


@pytest.mark.parametrize("fmt", ["own", "vocab.json", "chars"])
@pytest.mark.parametrize("content, says", [
    ("[" * 100_000 + "]" * 100_000, "nests too deeply to read"),       # old: RecursionError traceback
    ('{"a": ' + "1" * 5000 + "}", "Exceeds the limit (4300 digits)"),  # old: a ValueError, not a UsageError
])
def test_json_python_cannot_parse_is_refused(tmp_path, trained, fmt, content, says):
    path, read = readers(tmp_path, trained)[fmt]
    path.write_text(content)
    assert says in refusal(read, path)


@pytest.mark.parametrize("fmt", ["own", "vocab.json", "merges.txt", "chars"])
def test_invalid_utf8_is_refused(tmp_path, trained, fmt):
    """The character tokenizer's old reader replaced bad bytes by U+FFFD and loaded a vocabulary
    with a character the file never held."""
    path, read = readers(tmp_path, trained)[fmt]
    data = path.read_bytes()
    at = data.index(b'"', 40) + 1 if fmt != "merges.txt" else len(data) - 3
    path.write_bytes(data[:at] + b"\xff" + data[at:])
    assert "not UTF-8 text" in refusal(read, path)


# ----------------------------------------------------------------------------- npgpt's own JSON
def own_file(tmp_path, trained, edit):
    path = tmp_path / "own.json"
    trained.save(path)
    data = json.loads(path.read_text(encoding="utf-8"))
    edit(data)
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def doubling(data):
    """Every token after the 256 bytes is the previous one twice: 40 entries spell 2**40 bytes."""
    data["tokens"] = [*range(256), [97, 97, "aa"], *([256 + k, 256 + k] for k in range(40))]


def late_duplicate(data):
    """200,000 distinct tokens, then the last one again: the old reader looked for the duplicate
    with list.count() per token, 4e10 steps."""
    pairs = [[a, b] for a in range(256) for b in range(256)]                  # ranks 256..65791
    triples = [[256 + k // 256, k % 256] for k in range(200_000 - len(pairs))]  # a pair and a byte
    data["tokens"] = [*range(256), *pairs, *triples, triples[-1]]
    data["special_tokens"] = {}


@pytest.mark.parametrize("edit, says", [
    (doubling, "the tokens up to it spell more than 16,777,216 bytes"),
    (late_duplicate, "token 200256: the token b'"),
    (lambda d: d.update(special_tokens={"<|eot|>": 10**12}),        # old: loaded, vocab_size 10**12 + 1
     "special token '<|eot|>' has id 1000000000000, expected a non-empty text and an integer id in [0, 1,048,576)"),
    (lambda d: d.update(special_tokens={"<|eot|>": -1}), "special token '<|eot|>' has id -1"),
    (lambda d: d.update(special_tokens={"<|eot|>": True}), "special token '<|eot|>' has id True"),
    (lambda d: d.update(special_tokens=["<|eot|>"]), "special tokens must be a mapping {text: id}, got ['<|eot|>']"),
    (lambda d: d.update(special_tokens={"x" * 10**6: 5}), "special token 'xxxxx"),
    (lambda d: d["tokens"].__setitem__(260, "x" * 10**6), "token 260: expected a byte value 0..255 or [left, right, "
                                                          "text], got 'xxxx"),      # old: a line of 1 MB
    (lambda d: d["tokens"].__setitem__(260, [3, 10**30]), "token 260 merges unknown tokens 3 and 1000000000000"),
    (lambda d: d.update(tokens=list(range(256)) * 5000), "1,280,000 tokens, more than the 1,048,576"),
    (lambda d: d.update(pattern="(" * 10**6), "invalid pre-tokenization pattern '(((("),     # old: RecursionError
    (lambda d: d.update(version="v" * 10**6), "unsupported version 'vvvv"),
])
def test_hostile_own_files_are_refused_naming_the_entry(tmp_path, trained, edit, says):
    path = own_file(tmp_path, trained, edit)
    message = refusal(lambda: BPETokenizer.load(path), path)
    assert says in message, message[:1000]


def test_a_special_token_id_clash_is_named_with_the_file(tmp_path, trained):
    path = own_file(tmp_path, trained, lambda d: d.update(special_tokens={"<|a|>": VOCAB, "<|b|>": VOCAB}))
    assert f"id {VOCAB} is already used by the special token" in refusal(lambda: BPETokenizer.load(path), path)


# ----------------------------------------------------------------------------- tiktoken's rank file
def tiktoken_file(tmp_path, trained, edit):
    path = tmp_path / "tok.tiktoken"
    trained.save_tiktoken(path)
    lines = path.read_text().splitlines()
    path.write_bytes("\n".join(edit(lines)).encode("latin-1") + b"\n")
    return path


def b64(token: bytes) -> str:
    return base64.b64encode(token).decode()


@pytest.mark.parametrize("edit, says", [
    (lambda ls: [*ls, b64(b"zzq") + " " + "9" * 5000], f"line {VOCAB}: rank '999999"),       # old: int() ValueError
    (lambda ls: [*ls, b64(b"zzq") + " 10000000000000"], f"line {VOCAB}: rank '10000000000000' is not below 1,048,576"),
    (lambda ls: [*ls, b64(b"zzq") + " 5"], f"line {VOCAB}: rank 5 appears twice (also on line 6)"),
    (lambda ls: [*ls, f"\u00e9\u00e9\u00e9= {VOCAB - 1}"], f"line {VOCAB}: byte 0xe9 is not ASCII"),    # old: "bad base64"
    (lambda ls: [*ls, f"@@@@ {VOCAB - 1}"], f"line {VOCAB}: bad base64 '@@@@'"),
    (lambda ls: [*ls, "A" * (10**6 + 1) + f" {VOCAB - 1}"], f"line {VOCAB}: bad base64 'AAAA"),
    (lambda ls: [*ls, *(["AA== 0"] * MAX_TOKENS)], "lines, more than the 1,048,576 tokens"),
])
def test_hostile_tiktoken_files_are_refused_naming_the_line(tmp_path, trained, edit, says):
    path = tiktoken_file(tmp_path, trained, edit)
    message = refusal(lambda: BPETokenizer.load_tiktoken(path, "gpt2"), path)
    assert says in message, message[:1000]


# ----------------------------------------------------------------------------- GPT-2's vocab.json + merges.txt
def hf_files(tmp_path, trained, vocab_edit=None, merges_edit=None):
    vocab_path, merges_path = trained.save_hf(tmp_path)
    if vocab_edit:
        vocab = json.loads(vocab_path.read_text(encoding="utf-8"))
        vocab_edit(vocab)
        vocab_path.write_text(json.dumps(vocab), encoding="utf-8")
    if merges_edit:
        lines = merges_path.read_text(encoding="utf-8").splitlines()
        merges_path.write_text("\n".join(merges_edit(lines)) + "\n", encoding="utf-8")
    return vocab_path, merges_path


def many_specials_one_id_twice(vocab):
    """200,000 special tokens, one id used twice: the old reader counted every id with list.count()."""
    n = len(vocab)
    vocab.update({f"<t{k}>": n + k for k in range(200_000)})
    vocab["<t199999>"] = n


@pytest.mark.parametrize("vocab_edit, merges_edit, says", [
    (lambda v: v.update({"!": True}), None, "vocab.json: token '!' has id True, expected an integer in [0, 1,048,576)"),
    (lambda v: v.update({"<|x|>": 10**12}), None, "token '<|x|>' has id 1000000000000"),
    (lambda v: v.update({"<|x|>": -3}), None, "token '<|x|>' has id -3"),
    (lambda v: v.update({"<|x|>": [1, 2]}), None, "token '<|x|>' has id [1, 2]"),   # old: "expected a JSON object"
    (many_specials_one_id_twice, None, f"ids must be 0..{VOCAB + 199_999}, each used once (ids [{VOCAB}] are used twice)"),
    (lambda v: v.update({"\u20ac": VOCAB, "\u20ac\u20ac": VOCAB + 1}), lambda ls: [*ls, "\u20ac \u20ac"],   # old: KeyError
     "'€ €' holds '€', which GPT-2's byte alphabet does not spell"),
    (None, lambda ls: [*ls, "x" * 10**6 + " y"], "is not in"),
    (None, lambda ls: [*ls, *(["a b"] * MAX_TOKENS)], "lines, more than the 1,048,576 merges"),
])
def test_hostile_hf_files_are_refused_naming_the_entry(tmp_path, trained, vocab_edit, merges_edit, says):
    vocab, merges = hf_files(tmp_path, trained, vocab_edit, merges_edit)
    message = refusal(lambda: BPETokenizer.load_hf(vocab, merges), tmp_path, named=str(tmp_path))
    assert says in message, message[:1000]


def test_a_vocab_json_that_is_no_object_says_what_it_is(tmp_path, trained):
    vocab, merges = hf_files(tmp_path, trained)
    vocab.write_text("[1, 2, 3]")
    assert "vocab.json: expected a JSON object {token: id}, got a JSON list" in \
        refusal(lambda: BPETokenizer.load_hf(vocab, merges), vocab)


# ----------------------------------------------------------------------------- the character tokenizer's JSON
@pytest.mark.parametrize("content, says", [
    ({"format": "npgpt.CharTokenizer", "version": 1, "chars": ["a", "x" * 10**6]}, "chars[1] must be a single "
                                                                                     "character, got 'xxxx"),
    ({"format": "f" * 10**6, "version": 1, "chars": ["a"]}, "format 'ffff"),
    ({"format": "npgpt.CharTokenizer", "version": 1, "chars": ["a", "a"]}, "character 'a' appears twice"),
    ([1, 2], "a tokenizer description must be a dict, got list"),
])
def test_hostile_char_tokenizer_files_are_refused_in_one_short_line(tmp_path, content, says):
    path = tmp_path / "chars.json"
    path.write_text(json.dumps(content))
    assert says in refusal(lambda: CharTokenizer.load(path), path)


# ----------------------------------------------------------------------------- what real files hold still loads
def test_the_three_formats_still_load_as_the_same_tokenizer(tmp_path, trained):
    files = readers(tmp_path, trained)
    loaded = [BPETokenizer.load(files["own"][0]),
              BPETokenizer.load_tiktoken(files["tiktoken"][0], "gpt2", trained.special_tokens),
              BPETokenizer.load_hf(files["vocab.json"][0], files["merges.txt"][0])]
    for tok in loaded:
        assert tok.mergeable_ranks == trained.mergeable_ranks and tok.special_tokens == trained.special_tokens
        assert tok.encode(TEXT) == trained.encode(TEXT)
    assert CharTokenizer.load(files["chars"][0]) == CharTokenizer.from_text(TEXT)
    assert MAX_TOKENS > 256_000     # the largest real vocabularies (Gemma's) fit


def test_one_very_long_token_costs_no_quadratic_time_when_encoding(tmp_path):
    """A 10 MiB token is legal (the file stays under its cap) but must not make the first encode of a
    long piece slice it 10 million times: the pair table tries only cuts into lengths some token
    has. Before, a 200 KB token took 23 s here, so this one hours."""
    ranks = {bytes([b]): b for b in range(256)}
    ranks[b"ab" * (5 << 20)] = 256      # 10 MiB: 14 MB in base64, under the file cap
    path = tmp_path / "long.tiktoken"
    path.write_text("".join(f"{base64.b64encode(t).decode()} {r}\n" for t, r in ranks.items()))
    tok = BPETokenizer.load_tiktoken(path, "gpt2")
    # 20 s: the numba encoder may compile here on a cold cache (a few seconds); the table itself
    # takes about 0.3 s
    with capped(CAP, 20):
        ids = tok.encode("ab" * 50)      # a piece longer than the 64 bytes the pure-Python merge takes
    assert ids == [97, 98] * 50


@pytest.mark.parametrize("pattern, says", [
    (r"\p{L}+", "skips characters"),              # letters only: "the cat" would come back "thecat"
    (r"(\w+)(\s*)|.", "capturing groups"),        # findall would give the groups, not the matches
    (r"(?:(?:x+x+)+y)|\S+|\s+", None),            # harmless here: the probe never starts the backtracking
])
def test_a_file_whose_pattern_drops_text_is_refused(tmp_path, trained, pattern, says):
    """A pre-tokenization pattern whose matches do not cover the text would make encoding lose what
    they skip (the fuzz found a file with pattern \\p{L}+ whose "the cat" decoded as "thecat")."""
    path = tmp_path / "tok.json"
    trained.save(path)
    data = json.loads(path.read_text(encoding="utf-8"))
    data["pattern"], data["pattern_name"] = pattern, None
    path.write_text(json.dumps(data), encoding="utf-8")
    if says is None:
        assert BPETokenizer.load(path).decode(BPETokenizer.load(path).encode_ordinary("the cat")) == "the cat"
        return
    with pytest.raises(UsageError, match=says) as caught, capped(CAP, SECONDS):
        BPETokenizer.load(path)
    assert str(path) in str(caught.value) and "\n" not in str(caught.value)


def test_a_custom_pattern_that_skips_a_character_the_probe_lacks_is_caught_when_encoding():
    tok = BPETokenizer(r"[^\x00]+")             # covers every character but NUL, which the probe has not
    assert tok.decode(tok.encode_ordinary("a b")) == "a b"
    with pytest.raises(UsageError, match="skips characters of this text"):
        tok.encode_ordinary("a\x00b")
