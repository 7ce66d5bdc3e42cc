"""Fuzzing the checked .npz reader (npgpt/io/npz.py) and the training checkpoint read through it:
random bytes, random zip archives, bit flips of a real checkpoint, hostile .npy headers, huge
declared shapes and sizes, deflate bombs, hostile metadata; a GPT-2 folder's config.json and
safetensors header (npgpt/io/gpt2_files.py, npgpt/io/safetensors.py); and tokenizer files (the BPE
tokenizer's JSON, tiktoken rank files, vocab.json + merges.txt, the character tokenizer's JSON:
npgpt/text/bpe_files.py, npgpt/text/chars.py): random bytes, bit flips and hostile entries. Whatever the file, a read either succeeds
or raises one UsageError of one line naming the file; every read runs under a memory cap and a time
limit (tests/zip_craft.py), so a reader that allocated or inflated what a file claims fails here
instead of passing slowly. About 10 s in all."""
import base64
import io
import json
import os
import re
import struct
import zlib

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from zip_craft import DEFLATED, STORED, Raw, bomb, capped, npy_bytes, npy_header, npz_of, write

from npgpt import GPT, BPETokenizer, Dataset, GPTConfig, TrainConfig, Trainer
from npgpt.checks import UsageError
from npgpt.io.checkpoint import model_from_checkpoint, read_checkpoint
from npgpt.io.npz import MAX_MESSAGE, Entry, NpzFile
from npgpt.text.bpe_files import MAX_TOKENS
from npgpt.text.chars import CharTokenizer

CAP = 512 << 20         # bytes beyond the process's own for one read: every claim fuzzed here is larger
SECONDS = 5             # for one read, which takes milliseconds when the reader checks before it works
FUZZ = settings(max_examples=int(os.environ.get("NPGPT_FUZZ_EXAMPLES", 80)), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    folder = tmp_path_factory.mktemp("fuzz")
    data = Dataset("To be, or not to be, that is the question.\n" * 30, cache_dir=folder / "cache")
    config = GPTConfig(vocab_size=data.vocab_size, block_size=8, n_layer=1, n_head=1, n_embd=8)
    trainer = Trainer(GPT(config), data, TrainConfig(max_iters=2, batch_size=2, warmup_iters=1, eval_interval=1,
                                                     eval_iters=1), data.tokenizer)
    trainer.train(checkpoint_path=folder / "ckpt.npz", progress=False, log=lambda *_: None)
    return folder / "ckpt.npz"


def read_everything(path):
    """What npgpt does with a checkpoint: read it, then build its model."""
    meta, arrays = read_checkpoint(path)
    model_from_checkpoint(path, meta, arrays)


def read_generic(path):
    """The container alone, with a small schema of its own: metadata, a matrix, a bounded column."""
    with NpzFile(path, "file") as npz:
        npz.read_json("meta")
        npz.read({"w": Entry((2, 3), np.float32)}, optional={"col": Entry(None, "fiu", max_length=1000)})


def only_refused(read, path, named=None):
    """``read(path)`` succeeds or raises a one-line UsageError naming ``path`` (or ``named``), within
    the caps. Anything else (a MemoryError, a TimeoutError, a bug's own exception) fails the test."""
    named = repr(str(path)) if named is None else named
    try:
        with capped(CAP, SECONDS):
            read(path)
        event(f"{read.__name__}: read")
    except UsageError as e:
        message = str(e)
        assert "\n" not in message and named in message, message
        assert len(message) <= len(named) + 100 + MAX_MESSAGE, message
        # what refused it, for `pytest --hypothesis-show-statistics`: the words after the path
        reason = re.sub(r"entry \S+", "entry E", message.split("' ", 1)[-1].split(named, 1)[-1])
        event(f"{read.__name__}: " + " ".join(re.sub(r"[\d,.]+", "N", reason).split()[:9]))


def both(path):
    """A file that may be anything: read as a checkpoint, and by the container with a schema of its own."""
    only_refused(read_everything, path)
    only_refused(read_generic, path)


# ----------------------------------------------------------------------------- strategies
NAMES = st.sampled_from(["meta.npy", "w.npy", "col.npy", "param/transformer.wte.weight.npy", "history/lr.npy",
                         "optim/step.npy", "meta", "w.npy/", "x" * 300, "\u00e9.npy", ""])
DESCRS = st.sampled_from(["<f4", "<f8", ">f4", "<i8", "|b1", "|u1", "<U7", "|O", "|V8", "<c16", "[('a', '<f4')]",
                          "('<f4', (1000000000,))", "<U999999999", "no-such", "<f4'", "{}"])
SHAPES = st.one_of(st.tuples(), st.tuples(st.integers(-3, 10**13)),
                   st.tuples(st.integers(0, 10**7), st.integers(0, 10**7)),
                   st.lists(st.integers(0, 2**63), max_size=4).map(tuple))


@st.composite
def hostile_header(draw):
    """The bytes of a .npy entry whose header says anything (mostly a well-formed dict, so the reader's
    own checks are reached), followed by a few data bytes."""
    fields = {"descr": repr(draw(DESCRS)), "shape": repr(draw(SHAPES)),
              "fortran_order": draw(st.sampled_from(["False", "True", "False", "True", "1", "'no'"]))}
    keys = draw(st.permutations(list(fields)))
    if draw(st.integers(0, 9)) == 0:
        keys = keys[:draw(st.integers(0, 2))]                   # a key missing
    text = "{" + ", ".join(f"'{k}': {fields[k]}" for k in keys) + ", }"
    if draw(st.integers(0, 9)) == 0:
        text = draw(st.text(max_size=60))                       # not a dict at all
    return npy_header(text, draw(st.sampled_from([1, 2, 1, 2, 3]))) + draw(st.binary(max_size=64))


@st.composite
def raw_entry(draw):
    """A zip entry that may lie about its method, sizes, CRC and flags."""
    data = draw(st.one_of(hostile_header(), st.binary(max_size=200),
                          st.just(npy_bytes(np.zeros((2, 3), np.float32)))))
    method = draw(st.sampled_from([STORED, DEFLATED, 12, 14, 99]))
    if method == DEFLATED and draw(st.booleans()):
        c = zlib.compressobj(9, zlib.DEFLATED, -15)
        data = c.compress(data + bytes(draw(st.integers(0, 1 << 18)))) + c.flush()    # zeros: a small bomb
    return Raw(draw(NAMES), data, method,
               size=draw(st.one_of(st.none(), st.integers(0, 2**32 - 1))),
               crc=draw(st.one_of(st.none(), st.integers(0, 2**32 - 1))),
               flags=draw(st.sampled_from([0, 0, 1, 8, 0x800])),
               compressed=draw(st.one_of(st.none(), st.none(), st.integers(0, 2**32 - 1))))


# ----------------------------------------------------------------------------- the fuzz tests
@FUZZ
@given(st.one_of(st.binary(max_size=600), st.binary(max_size=600).map(lambda b: b"PK\x03\x04" + b),
                 st.binary(max_size=600).map(lambda b: b"PK" + b + b"PK\x05\x06" + bytes(18))))
def test_random_bytes(tmp_path, data):
    path = tmp_path / "random.npz"
    path.write_bytes(data)
    both(path)


@pytest.mark.slow          # 0.6 s or more: out of the quick loop, in CI
@FUZZ
@given(st.lists(raw_entry(), max_size=4), st.one_of(st.none(), st.integers(0, 2**40)))
def test_random_zip_archives_with_lying_records(tmp_path, entries, count):
    path = write(tmp_path / "lying.npz", entries, declared_count=count)
    both(path)


@FUZZ
@given(st.lists(st.tuples(st.integers(0, 2**32), st.integers(1, 255)), min_size=1, max_size=8))
def test_bit_flips_of_a_real_checkpoint(checkpoint, tmp_path, flips):
    data = bytearray(checkpoint.read_bytes())
    for where, mask in flips:
        data[where % len(data)] ^= mask
    path = tmp_path / "flipped.npz"
    path.write_bytes(bytes(data))
    only_refused(read_everything, path)


HUGE = st.sampled_from([2**26, 2**28, 10**9, 2**31, 10**12, 2**40, 2**62])       # lengths no file here holds
TARGETS = st.sampled_from(["param/transformer.wte.weight.npy", "param/transformer.ln_f.bias.npy", "history/lr.npy",
                           "history/eval_val.npy", "optim/step.npy", "meta.npy"])


def real_entries(checkpoint):
    """The checkpoint's entries as Raw records, by name, to replace some of."""
    with np.load(checkpoint) as f:
        return {e.name: e for e in npz_of({k: f[k] for k in f.files})}


@pytest.mark.slow          # 0.6 s or more: out of the quick loop, in CI
@FUZZ
@given(TARGETS, st.one_of(hostile_header(), st.tuples(HUGE, st.sampled_from(["<f8", "<f4", "<U1", "<i8"]))))
def test_hostile_headers_in_a_real_checkpoint(checkpoint, tmp_path, name, entry):
    """Any header, or a well-formed one claiming a huge 1-D length, in place of one real entry."""
    if isinstance(entry, tuple):
        length, descr = entry
        entry = npy_header(f"{{'descr': '{descr}', 'fortran_order': False, 'shape': ({length},), }}") + bytes(8)
    entries = real_entries(checkpoint)
    entries[name] = Raw(name, entry)
    only_refused(read_everything, write(tmp_path / "header.npz", list(entries.values())))


@pytest.mark.slow          # 0.6 s or more: out of the quick loop, in CI
@FUZZ
@given(TARGETS, st.sampled_from([1, 6, 30, 64, 512, 1024, 2048]), st.sampled_from(["<f8", "<f4", "<U1"]))
def test_deflate_bombs_in_a_real_checkpoint(checkpoint, tmp_path, name, mib, descr):
    """One entry replaced by ``mib`` MiB of deflated zeros (about 1000:1) whose header and directory
    record agree, so a reader that trusts them inflates it; the metadata claims steps enough for it."""
    itemsize = int(descr[2:]) * (4 if descr[1] == "U" else 1)
    shape = "()" if name == "meta.npy" else f"({(mib << 20) // itemsize},)"
    descr = f"<U{(mib << 20) // 4}" if name == "meta.npy" else descr
    entries = real_entries(checkpoint)
    if name != "meta.npy":
        meta = json.loads(str(np.lib.format.read_array(io.BytesIO(entries["meta.npy"].data))))
        meta["step"] = (mib << 20) // itemsize
        entries["meta.npy"] = npz_of({"meta": np.array(json.dumps(meta))})[0]
    entries[name] = bomb(name, npy_header(f"{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}"),
                         mib << 20)
    only_refused(read_everything, write(tmp_path / "bomb.npz", list(entries.values())))


JSON = st.recursive(st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats() | st.text(max_size=20),
                    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
                    max_leaves=12)
SIZE_KEYS = st.sampled_from(["vocab_size", "block_size", "n_layer", "n_head", "n_embd", "n_hidden"])
CONFIG_KEYS = st.sampled_from(["pos_encoding", "bias", "head_counts", "mlp_widths", "factorized", "cell", "dropout"])
META_KEYS = st.sampled_from(["format", "step", "dtype", "tokenizer", "train_config", "batch_rng", "corpus",
                             "model_config"])
SIZES = st.one_of(HUGE, st.sampled_from([0, 1, 2, 3, 8, 65, 2**63, -1]))
POSITIONS = st.sampled_from(["learned", "sinusoidal"])


@pytest.mark.slow          # 0.6 s or more: out of the quick loop, in CI
@FUZZ
@given(st.lists(st.one_of(st.tuples(st.just("model_config"), SIZE_KEYS, SIZES),
                          st.tuples(st.just("model_config"), st.just("pos_encoding"), POSITIONS),
                          st.tuples(st.just("model_config"), CONFIG_KEYS, JSON),
                          st.tuples(st.just(""), META_KEYS, st.one_of(SIZES, JSON))), min_size=1, max_size=4))
def test_hostile_metadata_in_a_real_checkpoint(checkpoint, tmp_path, changes):
    """Sizes up to 2**63 for the config's sizes (a million layers, a vocabulary of 1e12, a block of
    2**40 positions for a sinusoidal model, ...), and any JSON value where the schema expects another."""
    with np.load(checkpoint) as f:
        arrays = {k: f[k] for k in f.files}
    meta = json.loads(str(arrays.pop("meta")))
    for where, key, value in changes:
        (meta[where] if where and isinstance(meta.get(where), dict) else meta)[key] = value
    config = meta.get("model_config")
    if isinstance(config, dict) and config.get("pos_encoding") == "sinusoidal":     # its file has no wpe entries
        arrays = {k: a for k, a in arrays.items() if "wpe" not in k}
    only_refused(read_everything, write(tmp_path / "meta.npz", npz_of({"meta": np.array(json.dumps(meta)), **arrays})))


# ----------------------------------------------------------------------------- GPT-2 folders
@pytest.fixture(scope="module")
def gpt2_folder(tmp_path_factory):
    model = GPT(GPTConfig(vocab_size=37, block_size=12, n_layer=2, n_head=2, n_embd=8), seed=1)
    return model.save_pretrained(tmp_path_factory.mktemp("gpt2") / "gpt")


def read_folder(path):
    GPT.from_pretrained(path.parent, verbose=False)


HF_SIZE_KEYS = st.sampled_from(["vocab_size", "n_positions", "n_embd", "n_layer", "n_head", "n_inner", "n_ctx"])


@FUZZ
@given(st.lists(st.tuples(st.one_of(HF_SIZE_KEYS, st.text(max_size=12)), st.one_of(SIZES, JSON)), min_size=1,
                max_size=4))
def test_hostile_config_json_beside_real_weights(gpt2_folder, tmp_path, changes):
    """config.json sizes up to 2**63 (and any JSON) beside a 2-layer model's weights: refused before
    the model is allocated (issue 28: MemoryError tracebacks, 2.5 GB in 20 s)."""
    folder = tmp_path / "gpt"
    folder.mkdir(exist_ok=True)
    config = json.loads((gpt2_folder / "config.json").read_text())
    config.update(dict(changes))
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "model.safetensors").write_bytes((gpt2_folder / "model.safetensors").read_bytes())
    only_refused(read_folder, folder / "config.json", named=str(folder))


SPEC_VALUES = st.one_of(st.sampled_from(["F32", "F16", "BF16", "I64", "BOOL", "X9"]), SIZES, JSON,
                        st.lists(st.one_of(SIZES, st.integers(0, 64)), max_size=4))


@FUZZ
@given(st.lists(st.tuples(st.integers(0, 40), st.sampled_from(["dtype", "shape", "data_offsets", "extra"]),
                          SPEC_VALUES), min_size=1, max_size=4),
       st.integers(0, 64))
def test_hostile_safetensors_headers_in_a_real_folder(gpt2_folder, tmp_path, changes, cut):
    """Any dtype, shape or offsets (huge ones too) in the weights file's header, its data cut short."""
    data = (gpt2_folder / "model.safetensors").read_bytes()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    names = sorted(k for k in header if k != "__metadata__")
    for which, field, value in changes:
        header[names[which % len(names)]][field] = value
    raw = json.dumps(header).encode()
    folder = tmp_path / "gpt"
    folder.mkdir(exist_ok=True)
    (folder / "config.json").write_bytes((gpt2_folder / "config.json").read_bytes())
    (folder / "model.safetensors").write_bytes(struct.pack("<Q", len(raw)) + raw + data[8 + n:len(data) - cut])
    only_refused(read_folder, folder / "model.safetensors", named=str(folder))


# ----------------------------------------------------------------------------- tokenizer files
TOKENIZER_TEXT = "the cat sat on the mat. the dog ate the log. " * 20


@pytest.fixture(scope="module")
def tokenizer_files(tmp_path_factory):
    """A BPE tokenizer of 270 ids in its three formats, and a character tokenizer's file."""
    folder = tmp_path_factory.mktemp("tokenizers")
    tok = BPETokenizer("gpt2").train(TOKENIZER_TEXT + "<|endoftext|>", 270, special_tokens=["<|endoftext|>"])
    tok.save(folder / "tok.json")
    tok.save_tiktoken(folder / "tok.tiktoken")
    tok.save_hf(folder)
    CharTokenizer.from_text(TOKENIZER_TEXT).save(folder / "chars.json")
    return folder


def sane(tok):
    """What a tokenizer a file gave may hold: ids no model is built for (10**12, say) are refused, not
    loaded; a token's bytes are what some text can be cut into."""
    assert tok.vocab_size <= MAX_TOKENS, tok.vocab_size
    assert all(isinstance(i, int) and 0 <= i < MAX_TOKENS for i in tok.special_tokens.values()), tok.special_tokens
    assert tok.decode_bytes(tok.encode_ordinary("the cat")) == b"the cat"


def read_own(path):
    sane(BPETokenizer.load(path))


def read_tiktoken(path):
    sane(BPETokenizer.load_tiktoken(path, "gpt2"))


def read_hf(folder):
    sane(BPETokenizer.load_hf(folder / "vocab.json", folder / "merges.txt"))


def read_chars(path):
    tok = CharTokenizer.load(path)
    assert tok.decode(tok.encode(tok.chars[0])) == tok.chars[0]


TOKENIZER_READERS = {"tok.json": read_own, "tok.tiktoken": read_tiktoken, "vocab.json": read_hf, "merges.txt": read_hf,
                     "chars.json": read_chars}


def tokenizer_refused(tokenizer_files, tmp_path, name, data):
    """The file ``name`` (its companion, if any, as the real one) holding ``data``: read or refused
    in one line naming the file (the pair's folder for vocab.json + merges.txt)."""
    folder = tmp_path / "tok"
    folder.mkdir(exist_ok=True)
    for companion in ("vocab.json", "merges.txt"):
        (folder / companion).write_bytes((tokenizer_files / companion).read_bytes())
    (folder / name).write_bytes(data)
    read = TOKENIZER_READERS[name]
    target = folder if read is read_hf else folder / name
    only_refused(read, target, named=str(folder / name) if read is not read_hf else str(folder))


TOKENIZER_FILES = st.sampled_from(sorted(TOKENIZER_READERS))
# A start that each format's reader gets past, so that random bytes after it reach its checks.
FORMAT_STARTS = st.sampled_from([b"", b'{"format": "npgpt.BPETokenizer", "version": 1, "pattern": "gpt2", ',
                                 b'{"format": "npgpt.CharTokenizer", "version": 1, "chars": [', b"IQ== 0\n", b'{"!": 0',
                                 b"#version: 0.2\n"])


# What Python's own parsers choke on: JSON nested 100,000 deep, an integer of 5000 digits.
PARSER_BOMBS = st.sampled_from([b"", b"", b"[" * 100_000, b'"x": ' + b"1" * 5000, b"9" * 5000])


@FUZZ
@given(TOKENIZER_FILES, FORMAT_STARTS, PARSER_BOMBS, st.binary(max_size=400))
def test_random_tokenizer_files(tokenizer_files, tmp_path, name, start, bomb, data):
    tokenizer_refused(tokenizer_files, tmp_path, name, start + bomb + data)


@FUZZ
@given(TOKENIZER_FILES, st.lists(st.tuples(st.integers(0, 2**32), st.integers(1, 255)), min_size=1, max_size=8))
def test_bit_flips_of_real_tokenizer_files(tokenizer_files, tmp_path, name, flips):
    data = bytearray((tokenizer_files / name).read_bytes())
    for where, mask in flips:
        data[where % len(data)] ^= mask
    tokenizer_refused(tokenizer_files, tmp_path, name, bytes(data))


IDS = st.one_of(st.integers(-3, 300), HUGE, st.sampled_from([2**63, 10**30, -(2**40), True, False]), JSON)


@FUZZ
@given(st.lists(st.one_of(
    st.tuples(st.just("tokens"), st.integers(0, 400), st.one_of(IDS, st.lists(IDS, min_size=2, max_size=3))),
    st.tuples(st.just("special_tokens"), st.text(max_size=6), IDS),
    st.tuples(st.just("grow"), st.integers(1, 60), st.none()),
    st.tuples(st.just("top"), st.sampled_from(["format", "version", "pattern", "special_tokens", "tokens", "x"]),
              st.one_of(JSON, st.sampled_from(["gpt2", "gpt4", "(", "a{99999999999}", "\\p{L}+"])))),
    min_size=1, max_size=4))
def test_hostile_values_in_a_real_own_tokenizer_file(tokenizer_files, tmp_path, changes):
    """Any JSON where the file holds a token, a special token's id or a top-level key (huge, negative
    and boolean ids, merges of later or unknown tokens, lists where a number is expected, bad patterns)."""
    data = json.loads((tokenizer_files / "tok.json").read_text(encoding="utf-8"))
    for where, key, value in changes:
        if where == "tokens" and isinstance(data.get("tokens"), list) and data["tokens"]:
            data["tokens"][key % len(data["tokens"]) if key < 400 else len(data["tokens"]) - 1:] = [value]
        elif where == "grow" and isinstance(data.get("tokens"), list):
            n = len(data["tokens"])          # each new token the previous one twice: 2**key times as long
            data["tokens"] += [[n + k - 1, n + k - 1] for k in range(key)]
        elif where == "special_tokens" and isinstance(data.get("special_tokens"), dict):
            data["special_tokens"][key] = value
        elif where == "top":
            data[key] = value
    tokenizer_refused(tokenizer_files, tmp_path, "tok.json", json.dumps(data).encode())


TOKEN_BYTES = st.one_of(st.binary(min_size=1, max_size=6), st.sampled_from([b"a", b"th", b"the", b" t"]))


@FUZZ
@given(st.lists(st.tuples(st.integers(0, 300), st.sampled_from(["replace", "insert", "drop"]),
                          st.one_of(st.tuples(TOKEN_BYTES.map(lambda b: base64.b64encode(b).decode()),
                                              st.one_of(st.one_of(st.integers(0, 300), HUGE).map(str), st.just("9" * 5000))),
                                    st.tuples(st.text(max_size=8), st.text(max_size=8)))),
                min_size=1, max_size=4))
def test_hostile_lines_in_a_real_tiktoken_file(tokenizer_files, tmp_path, edits):
    """Tokens and ranks replaced, inserted or dropped: duplicates, gaps, huge ranks, bad base64."""
    lines = (tokenizer_files / "tok.tiktoken").read_text().splitlines()
    for at, how, (token, rank) in edits:
        at %= len(lines) + 1
        if how == "drop":
            del lines[at:at + 1]
        else:
            lines[at:at + (how == "replace")] = [f"{token} {rank}"]
    data = ("\n".join(lines) + "\n").encode("utf-8")
    tokenizer_refused(tokenizer_files, tmp_path, "tok.tiktoken", data)


@FUZZ
@given(st.lists(st.one_of(st.tuples(st.just("vocab"), st.one_of(st.sampled_from(["!", "Ġ", "th", "Ġt", "<x>", "€", "€€", "t€"]),
                                                                st.text(max_size=4)), IDS),
                          st.tuples(st.just("merge"), st.integers(0, 60),
                                    st.tuples(st.sampled_from(["t", "h", "Ġ", "th", "€", "<|endoftext|>", ""]),
                                              st.one_of(st.text(max_size=3), st.sampled_from(["e", "Ġt", "€"]))))),
                min_size=1, max_size=4))
def test_hostile_entries_in_real_hf_files(tokenizer_files, tmp_path, changes):
    """vocab.json ids anything (huge, negative, booleans, lists, repeated), merges of unknown tokens,
    of characters GPT-2's alphabet does not spell, of special tokens, merges moved or repeated."""
    vocab = json.loads((tokenizer_files / "vocab.json").read_text(encoding="utf-8"))
    merges = (tokenizer_files / "merges.txt").read_text(encoding="utf-8").splitlines()
    for where, key, value in changes:
        if where == "vocab":
            vocab[key] = value
        else:
            merges[1 + key % (len(merges) - 1):1 + key % (len(merges) - 1)] = [" ".join(value)]
    folder = tmp_path / "tok"
    folder.mkdir(exist_ok=True)
    (folder / "merges.txt").write_text("\n".join(merges) + "\n", encoding="utf-8")
    (folder / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
    only_refused(read_hf, folder, named=str(folder))


@FUZZ
@given(st.lists(st.tuples(st.sampled_from(["format", "version", "chars", "unknown", "x"]),
                          st.one_of(JSON, st.lists(st.text(max_size=2), max_size=6))), min_size=1, max_size=3))
def test_hostile_values_in_a_real_char_tokenizer_file(tokenizer_files, tmp_path, changes):
    data = json.loads((tokenizer_files / "chars.json").read_text(encoding="utf-8"))
    data.update(dict(changes))
    tokenizer_refused(tokenizer_files, tmp_path, "chars.json", json.dumps(data).encode())
