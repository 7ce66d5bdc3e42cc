"""Quantized model files (npgpt/allocation/quantize.py's load_quantized, read through the checked
container npgpt/io/npz.py): every hostile file of issue 28 is refused in one line that names the file
and the key or entry, before anything it claims is allocated, and a file in the format every earlier
npgpt wrote still loads as the same weights. Every hostile read runs under a memory and time cap
(tests/zip_craft.py), so a reader that builds what a file claims fails here instead of swapping."""
import json
import os
import re
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from zip_craft import Raw, bomb, capped, contents, npy_bytes, npy_header, npz_of, spoiled, write

import npgpt
from npgpt import GPT, GPTConfig
from npgpt.allocation.quantize import QMAX, QuantizedGPT, load_quantized, quantize_model, save_quantized
from npgpt.checks import UsageError
from npgpt.io.npz import MAX_MESSAGE

TINY = GPTConfig(vocab_size=11, block_size=12, n_layer=2, n_head=2, n_embd=8)
CAP = 512 << 20          # bytes beyond the process's own: far below what every bomb here claims (1 GB and more)
SECONDS = 10             # a refusal takes milliseconds; building what a bomb claims takes far longer
WTE = "transformer.wte.weight"
C_ATTN = "transformer.h.0.attn.c_attn.weight"
FUZZ = settings(max_examples=int(os.environ.get("NPGPT_FUZZ_EXAMPLES", 80)), deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A quantized TINY model (int8, float32) as save_quantized writes it."""
    path = tmp_path_factory.mktemp("quantized") / "q.npz"
    save_quantized(quantize_model(GPT(TINY, seed=1), 8), path)
    return path


def refusal(path):
    """The message of the one-line UsageError load_quantized(path) raises under the cap (it must
    raise one: a MemoryError, a TimeoutError or any other exception fails the test)."""
    with pytest.raises(UsageError) as caught, capped(CAP, SECONDS):
        load_quantized(path)
    message = str(caught.value)
    assert "\n" not in message and str(path) in message, message
    assert len(message) <= len(repr(str(path))) + 100 + MAX_MESSAGE, len(message)
    return message


def model_entries(path):
    return contents(path)[1].keys()


def config_change(**changes):
    return lambda m: m["model_config"].update(changes)


def scale_of(name, value):
    """Every scale of ``name`` set to ``value`` (finite and positive)."""
    def change(a):
        a[name + ".scale"] = np.full_like(a[name + ".scale"], value)
    return change


# ----------------------------------------------------------------------------- memory and time bombs
BOMBS = {
    # the old reader built the model first: 32 s and 3 GB for n_layer 200000, MemoryError for the others
    # (under the cap, a MemoryError for all four)
    "n_layer 200000": (dict(meta=config_change(n_layer=200_000)),
                       r"model_config n_layer=200000 implies at least 1,200,000 entries, but the file holds 37"),
    "vocab_size 1e10": (dict(meta=config_change(vocab_size=10**10)),      # wte stays float32: 4 bytes a weight
                        r"model_config \(.*vocab_size=10000000000.*: 36 arrays\) implies 320\.0 GB of arrays, but the "
                        r"file's entries hold at most \d+\.\d kB"),
    "n_embd 65536": (dict(meta=config_change(n_embd=1 << 16)),           # 26 C**2 int8 weights a block, and floats
                     r"model_config \(n_layer=2, n_embd=65536.*\) implies 103\.1 GB of arrays"),
    "2**40 sinusoidal positions": (dict(meta=config_change(block_size=2**40, pos_encoding="sinusoidal"),
                                        arrays=lambda a: a.pop("transformer.wpe.weight")),
                                   r"model_config block_size=1099511627776 is more than the 1048576 positions"),
}


@pytest.mark.parametrize("case", BOMBS)
def test_a_config_the_file_cannot_hold_is_refused_before_the_model_is_built(saved, tmp_path, case):
    change, message = BOMBS[case]
    bad = spoiled(saved, tmp_path / "bad.npz", **change)
    assert bad.stat().st_size < 20_000
    message_given = refusal(bad)
    assert re.search("cannot be loaded: " + message, message_given), message_given


def test_a_metadata_string_of_300_million_characters_is_never_inflated(saved, tmp_path):
    """1.2 GB of UTF-32 deflated into a 1.2 MB file: the old reader inflated it (MemoryError under the cap)."""
    chars = 1144 << 18                                   # 1144 MiB of UTF-32: bomb() writes whole MiB
    header = npy_header(f"{{'descr': '<U{chars}', 'fortran_order': False, 'shape': (), }}")
    meta = bomb("meta.npy", header, chars * 4)
    bad = spoiled(saved, tmp_path / "bad.npz", extra=[meta])
    assert bad.stat().st_size < 2_000_000
    assert "entry meta declares 1.2 GB inflated from 1.2 MB" in refusal(bad)


def test_metadata_nested_too_deeply_is_refused(saved, tmp_path):
    """The old reader called it "truncated or corrupted": json.loads' RecursionError is a RuntimeError,
    which it took for zipfile's."""
    deep = "[" * 100_000 + "]" * 100_000
    bad = spoiled(saved, tmp_path / "bad.npz", extra=[Raw("meta.npy", npy_bytes(np.array(deep)))])
    assert "entry meta nests its JSON too deeply to read" in refusal(bad)


# ----------------------------------------------------------------------------- entries checked exactly, before building
def not_built(*args, **kwargs):
    raise AssertionError("the model was built before the file's entries were checked")


@pytest.mark.parametrize("change, message", [
    (dict(arrays=lambda a: a.update({WTE: np.zeros((12, 8), np.float32)})),
     rf"entry {WTE} has shape \(12, 8\), expected \(11, 8\)"),
    (dict(arrays=lambda a: a.update({C_ATTN + ".q": a[C_ATTN + ".q"].astype(np.int16)})),
     rf"entry {C_ATTN}.q holds dtype int16, expected int8 array"),
    (dict(arrays=lambda a: a.update(pad=np.zeros(3, np.float32))), r"unexpected 1 entry: pad"),
    (dict(arrays=lambda a: a.pop("transformer.ln_f.bias")), r"missing 1 entry: transformer.ln_f.bias"),
    (dict(extra=[Raw("transformer.ln_f.bias.npy", npy_bytes(np.zeros(8, np.float32)) + bytes(4096))]),
     r"entry transformer.ln_f.bias: its header says 160 bytes \(shape \(8,\), float32\) but the zip declares 4\.3 kB"),
])
def test_every_entry_is_checked_exactly_before_the_model_is_built(saved, tmp_path, monkeypatch, change, message):
    """The old reader built the model from the config, then compared the entries with it: a file
    could make it allocate a model its entries do not hold (names, shapes, dtypes or bytes)."""
    monkeypatch.setattr(QuantizedGPT, "__init__", not_built)
    message_given = refusal(spoiled(saved, tmp_path / "bad.npz", **change))
    assert re.search("(cannot be loaded|is truncated or corrupted).*" + message, message_given), message_given


def test_bytes_declared_for_other_entries_do_not_pay_for_a_larger_model(saved, tmp_path):
    """The old check asked only for half a byte a weight somewhere in the file: 48 MB of padding let a
    float64 model of 11 million tokens (a 704 MB table, 16 times the bound) be built before its entries
    were compared (MemoryError under the cap). The bytes of the config's own arrays are counted now."""
    vocab = 11_000_000

    def float64_and_large(m):
        m["dtype"] = "float64"
        m["model_config"]["vocab_size"] = vocab
    pad = Raw("pad.npy", npy_bytes(np.zeros(48 << 20, np.uint8)))
    bad = spoiled(saved, tmp_path / "bad.npz", meta=float64_and_large, extra=[pad])
    assert re.search(r"cannot be loaded: model_config \(.*vocab_size=11000000.*\) implies 704\.\d MB of arrays, but the "
                     r"file's entries hold at most 50\.\d MB", refusal(bad))


# ----------------------------------------------------------------------------- scales
@pytest.mark.parametrize("bits, group_size, dtype, value", [
    (8, None, np.float32, 1e38),                  # 127e38 overflows float32 (at most 3.4e38)
    (4, 4, np.float32, 5e37),                     # int4: 7 * 5e37 = 3.5e38, just past it
    (8, None, np.float64, 1e307),                 # float64 models overflow too, further out
])
def test_a_scale_whose_weights_overflow_is_refused_naming_the_entry(tmp_path, bits, group_size, dtype, value):
    """The old reader accepted them (finite and positive): the logits were not finite and generate
    silently returned [1 0 0 0 0 0]."""
    path = tmp_path / "q.npz"
    save_quantized(quantize_model(GPT(TINY, seed=1, dtype=dtype), bits, group_size), path)
    bad = spoiled(path, tmp_path / "bad.npz", arrays=scale_of(C_ATTN, value))
    message = refusal(bad)
    assert f"entry {C_ATTN}.scale holds a scale of {value:.3g}: its weights, up to {QMAX[bits]} times it, " \
           f"overflow {np.dtype(dtype)}" in message, message


def test_large_scales_whose_weights_stay_finite_load(tmp_path):
    """No false refusal: weights of 1e38 (scale 1e38 / 127; times 127 it is finite) load, and their
    largest dequantized weight is finite; a weight of float32's largest value does overflow and is refused."""
    model = GPT(TINY, seed=1)
    model.params[C_ATTN][0, 0] = 1e38
    path = tmp_path / "q.npz"
    save_quantized(quantize_model(model, 8), path)
    with capped(CAP, SECONDS):
        loaded = load_quantized(path)
    assert np.isfinite(loaded.weight(C_ATTN)).all() and loaded.weight(C_ATTN).max() > 9e37
    model.params[C_ATTN][0, 0] = np.finfo(np.float32).max
    save_quantized(quantize_model(model, 8), path)
    assert f"entry {C_ATTN}.scale holds a scale of 2.68e+36" in refusal(path)


# ----------------------------------------------------------------------------- entries
def test_thousands_of_unexpected_entries_with_long_names_make_one_short_line(saved, tmp_path):
    """The old reader listed every name: a line of 1 MB."""
    extra = [Raw(f"{'x' * 1000}{i}.npy", npy_bytes(np.zeros(1, np.float32))) for i in range(1000)]
    message = refusal(spoiled(saved, tmp_path / "bad.npz", extra=extra))
    assert "unexpected 1,000 entries: xxx" in message and "(and 995 more)" in message


def test_a_model_of_many_layers_missing_most_of_them_is_named_in_one_short_line(tmp_path):
    """The old reader listed all 112 missing names on its line (4.3 kB)."""
    config = GPTConfig(vocab_size=11, block_size=12, n_layer=16, n_head=2, n_embd=8)
    path = tmp_path / "q.npz"
    save_quantized(quantize_model(GPT(config, seed=1), 8), path)
    dropped = [k for k in model_entries(path) if k.startswith("transformer.h.1")]         # blocks 1, 10 to 15
    bad = spoiled(path, tmp_path / "bad.npz", arrays=lambda a: [a.pop(k) for k in dropped])
    assert f"missing {len(dropped)} entries: {sorted(dropped)[0]}" in refusal(bad)


def test_an_entry_stored_twice_is_refused(saved, tmp_path):
    """The old reader (np.load) read one of the two copies without a word."""
    m, a = contents(saved)
    entries = [*npz_of({"meta": np.array(json.dumps(m)), **a}), Raw(f"{WTE}.npy", npy_bytes(-a[WTE]))]
    bad = write(tmp_path / "bad.npz", entries)
    assert f"entry {WTE} appears twice" in refusal(bad)


@pytest.mark.parametrize("kind, says", [("folder", "is a directory, expected a quantized model file"),
                                        ("fifo", "is a FIFO, expected a quantized model file"),
                                        ("device", "is a character device, expected a quantized model file")])
def test_what_is_not_a_file_is_named_not_called_missing(tmp_path, kind, says):
    """The old reader said "does not exist" of all three."""
    path = {"folder": tmp_path, "fifo": tmp_path / "fifo.npz", "device": Path("/dev/zero")}[kind]
    if kind == "fifo":
        os.mkfifo(path)
    assert says in refusal(path)


# ----------------------------------------------------------------------------- fuzz
JSON_VALUES = st.one_of(
    st.sampled_from([0, 1, 2, 3, 4, 7, 8, 16, -1, 0.5, 1e308, True, False, None, "", "float16", "sinusoidal",
                     "learned", "lstm", [], {}, [8, 8], {"n_layer": 1}]),
    st.integers(-2**70, 2**70), st.floats(allow_nan=False), st.text(max_size=12),
    st.lists(st.integers(-10, 10**9), max_size=3))
META_KEYS = ["format", "kind", "dtype", "bits", "group_size", "quantize_embeddings"]
CONFIG_KEYS = ["vocab_size", "block_size", "n_layer", "n_head", "n_embd", "dropout", "bias", "tie_weights",
               "pos_encoding", "layer_norm_epsilon", "head_counts", "mlp_widths", "cell", "no_such_key"]
SIZES = st.tuples(st.sampled_from(["vocab_size", "block_size", "n_layer", "n_embd"]),       # the sizes a model
                  st.one_of(st.integers(1, 2**64), st.sampled_from([200_000, 10**10, 2**20 + 1, 2**40])))  # is built of
CHANGES = st.lists(st.one_of(st.tuples(st.sampled_from(META_KEYS + CONFIG_KEYS), JSON_VALUES), SIZES),
                   min_size=1, max_size=3)


def loads_or_refuses(path):
    """load_quantized(path) succeeds or raises one UsageError of one short line naming ``path``, within the caps."""
    try:
        with capped(CAP, SECONDS):
            load_quantized(path)
    except UsageError as e:
        assert "\n" not in str(e) and repr(str(path)) in str(e), str(e)
        assert len(str(e)) <= len(repr(str(path))) + 100 + MAX_MESSAGE, str(e)


@FUZZ
@given(CHANGES)
def test_hostile_metadata_values(saved, tmp_path, changes):
    """The old reader built whatever the config said (MemoryError, or minutes, for large sizes)."""
    def change(m):
        for key, value in changes:
            (m if key in META_KEYS else m["model_config"])[key] = value
    loads_or_refuses(spoiled(saved, tmp_path / "fuzzed.npz", meta=change))


@FUZZ
@given(st.lists(st.tuples(st.integers(0, 2**32), st.integers(1, 255)), min_size=1, max_size=8))
def test_bit_flips_of_a_real_quantized_file(saved, tmp_path, flips):
    data = bytearray(saved.read_bytes())
    for at, mask in flips:
        data[at % len(data)] ^= mask
    path = tmp_path / "flipped.npz"
    path.write_bytes(bytes(data))
    loads_or_refuses(path)


# ----------------------------------------------------------------------------- the format does not change
@pytest.mark.parametrize("bits, group_size, quantize_embeddings, dtype, pos_encoding", [
    (8, None, False, np.float32, "learned"), (4, 4, True, np.float32, "learned"), (4, 2, True, np.float64, "sinusoidal")])
def test_a_file_in_the_format_every_earlier_npgpt_wrote_loads_as_the_same_weights(
        tmp_path, bits, group_size, quantize_embeddings, dtype, pos_encoding):
    """Format 1 written by hand (np.savez: a JSON meta and the state_dict's arrays, as save_quantized
    has always written it) loads as the very same arrays and logits."""
    config = GPTConfig(vocab_size=11, block_size=12, n_layer=2, n_head=2, n_embd=8, pos_encoding=pos_encoding)
    model = quantize_model(GPT(config, seed=3, dtype=dtype), bits, group_size, quantize_embeddings)
    meta = {"format": 1, "kind": "QuantizedGPT", "model_config": config.to_dict(), "dtype": np.dtype(dtype).name,
            "bits": bits, "group_size": group_size, "quantize_embeddings": quantize_embeddings}
    path = tmp_path / "old.npz"
    np.savez(path, meta=np.array(json.dumps(meta)), **model.state_dict())
    loaded = load_quantized(path)
    state = loaded.state_dict()
    assert state.keys() == model.state_dict().keys()
    for name, a in model.state_dict().items():
        assert state[name].dtype == a.dtype and np.array_equal(state[name], a), name
    idx = np.arange(20).reshape(2, 10) % 11
    with model.evaluating(), loaded.evaluating():
        np.testing.assert_array_equal(loaded.forward(idx)[0], model.forward(idx)[0])
    np.testing.assert_array_equal(npgpt.generate(loaded, [1, 2], 6), npgpt.generate(model, [1, 2], 6))


def test_a_quantized_model_too_big_for_memory_is_refused_before_it_allocates():
    """Built directly (not from a file), a QuantizedGPT of 10**9 tokens allocated its float32
    embedding table (MemoryError under the cap); it is counted first now, as a GPT is."""
    config = GPTConfig(vocab_size=10**9, block_size=12, n_layer=2, n_head=2, n_embd=8)
    with pytest.raises(UsageError, match=r"QuantizedGPT\(n_layer=2, n_embd=8, vocab_size=1000000000, block_size=12, "
                                         r"bits=8\) needs about 29\.8 GiB of memory"), capped(CAP, SECONDS):
        QuantizedGPT(config, 8)
