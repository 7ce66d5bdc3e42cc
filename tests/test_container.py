"""The checked .npz reader (npgpt/io/npz.py) and the training checkpoint read through it: every
hostile file of issue 28 is refused in one line that names the file and the entry, before anything
it claims is allocated. The tests that hand the reader a bomb run under a memory and time cap
(tests/zip_craft.py), so a reader that inflated or allocated what the file claims fails them."""
import json
import os
import time
from pathlib import Path

import numpy as np
import pytest
from zip_craft import Raw, bomb, capped, contents, deflated, npy_bytes, npy_header, npz_of, spoiled, write

from npgpt import GPT, Dataset, GPTConfig, RecurrentConfig, TrainConfig, Trainer
from npgpt.checks import MissingFile, UsageError
from npgpt.io.checkpoint import ARRAYS_PER_LAYER, model_from_checkpoint, param_shapes, read_checkpoint
from npgpt.io.npz import MAX_MESSAGE, ContainerError, Entry, NpzFile, entries_like

TEXT = "To be, or not to be, that is the question.\n" * 30
CAP = 512 << 20          # bytes beyond the process's own: far below every bomb here (2 GB and more)
SECONDS = 10             # a refusal takes milliseconds; reading what a bomb claims takes far longer


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A real checkpoint of a tiny GPT after two steps (the unchanged writer's format)."""
    folder = tmp_path_factory.mktemp("ckpt")
    data = Dataset(TEXT, cache_dir=folder / "cache")
    config = GPTConfig(vocab_size=data.vocab_size, block_size=16, n_layer=1, n_head=2, n_embd=16)
    trainer = Trainer(GPT(config), data, TrainConfig(max_iters=2, batch_size=4, warmup_iters=1, eval_interval=1,
                                                     eval_iters=1), data.tokenizer)
    trainer.train(checkpoint_path=folder / "ckpt.npz", progress=False, log=lambda *_: None)
    return folder / "ckpt.npz"


def refusal(read, path):
    """The message of the one-line UsageError ``read(path)`` raises (it must raise one)."""
    with pytest.raises(UsageError) as caught:
        read(path)
    message = str(caught.value)
    assert "\n" not in message and str(path) in message, message
    assert len(message) <= len(repr(str(path))) + 100 + MAX_MESSAGE, len(message)
    return message


def open_and_read_meta(path):
    with NpzFile(path, "checkpoint") as npz:
        return npz.read_json("meta")


# ----------------------------------------------------------------------------- what the path is
@pytest.mark.parametrize("kind, says", [
    ("missing", "does not exist"),
    ("folder", "is a directory, expected a checkpoint file"),
    ("fifo", "is a FIFO, expected a checkpoint file"),
    ("device", "is a character device, expected a checkpoint file"),
    ("empty", "is truncated or corrupted (the file is empty)"),
    ("text", "is truncated or corrupted (not an .npz, which is a zip archive"),
    ("truncated", "is truncated or corrupted (BadZipFile: no end of central directory record"),
])
def test_a_path_that_is_no_npz_gets_one_line_naming_it(checkpoint, tmp_path, kind, says):
    """A FIFO and /dev/zero were reported as "does not exist"; opening a FIFO must not block."""
    path = {"missing": tmp_path / "nothing.npz", "folder": tmp_path, "device": Path("/dev/zero")}.get(
        kind, tmp_path / f"{kind}.npz")
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "text":
        path.write_text("step,loss\n1,4.2\n")
    elif kind == "truncated":
        path.write_bytes(checkpoint.read_bytes()[:1000])
    for read in (read_checkpoint, open_and_read_meta):
        message = refusal(read, path)
        assert message.startswith(f"checkpoint {str(path)!r} {says}"), message
    if kind == "missing":
        with pytest.raises(MissingFile):
            read_checkpoint(path)


# ----------------------------------------------------------------------------- the config against the file
def test_a_million_layers_are_refused_at_once_naming_the_bound(checkpoint, tmp_path):
    """Issue 28: a 76 KB checkpoint claiming n_layer 1000000 ran 280 s at 16.5 GB, then printed a 1.59 GB
    line listing every missing entry."""
    path = spoiled(checkpoint, tmp_path / "deep.npz", meta=lambda m: m["model_config"].update(n_layer=1_000_000))
    held = len(contents(checkpoint)[1]) + 1
    with capped(CAP, SECONDS):
        start = time.perf_counter()
        message = refusal(read_checkpoint, path)
        assert time.perf_counter() - start < 1.0
    assert message.endswith(f"model_config n_layer=1000000 implies at least 18,000,000 entries, but the file "
                            f"holds {held}"), message


def test_missing_and_unexpected_entries_are_named_and_the_list_is_capped(tmp_path):
    path = write(tmp_path / "few.npz", npz_of({"a": np.zeros(2), "b": np.zeros(2), "stray": np.zeros(2)}))
    expected = {f"param/{i:07d}": Entry((2,), "f") for i in range(100_000)} | {"a": Entry((2,), "f")}
    with NpzFile(path, "checkpoint") as npz, pytest.raises(ContainerError) as caught:
        npz.read(expected)
    message = str(caught.value)
    assert ("missing 100,000 entries: param/0000000, param/0000001, param/0000002, param/0000003, param/0000004 "
            "... (and 99,995 more); unexpected 2 entries: b, stray") in message
    assert len(message) < 300


def test_the_bytes_a_config_implies_are_checked_against_the_file(tmp_path):
    path = write(tmp_path / "small.npz", npz_of({"w": np.zeros((4, 4), np.float32)}))
    with NpzFile(path, "quantized model", invalid="cannot be loaded") as npz:
        npz.check_fits("model_config n_embd=8192, n_layer=48", n_entries=1, n_bytes=64)
        with pytest.raises(ContainerError, match=r"^quantized model '.*small.npz' cannot be loaded: model_config "
                                                 r"n_embd=8192, n_layer=48 implies 36.0 GB of arrays, but the "
                                                 r"file's entries hold at most 192 bytes"):
            npz.check_fits("model_config n_embd=8192, n_layer=48", n_bytes=36 * 10**9)


def test_every_layer_stores_at_least_the_arrays_the_bound_counts():
    """The n_layer bound is a lower bound: one more layer adds at least ARRAYS_PER_LAYER entries."""
    for config in (GPTConfig(vocab_size=5, block_size=4, n_layer=1, n_head=1, n_embd=4, bias=False),
                   RecurrentConfig(vocab_size=5, block_size=4, cell="rnn", n_embd=4, n_hidden=4, n_layer=1)):
        two = type(config)(**{**config.to_dict(), "n_layer": 2})
        assert len(param_shapes(two)) - len(param_shapes(config)) >= ARRAYS_PER_LAYER[type(config)]


def test_a_block_size_no_entry_bounds_is_refused_before_a_model_is_built(checkpoint, tmp_path):
    """A sinusoidal GPT derives a (block_size, n_embd) table that no entry of the file bounds."""
    def sinusoidal(m):
        m["model_config"].update(pos_encoding="sinusoidal", block_size=2**31)

    def without_wpe(a):
        for key in [k for k in a if "wpe" in k]:
            del a[key]

    path = spoiled(checkpoint, tmp_path / "long.npz", meta=sinusoidal, arrays=without_wpe)
    with capped(CAP, SECONDS):
        message = refusal(model_from_checkpoint, path)
    assert "model_config block_size=2147483648 is more than the 1048576 positions" in message


# ----------------------------------------------------------------------------- headers and sizes
def test_a_header_claiming_a_trillion_values_is_refused_before_allocating(checkpoint, tmp_path):
    """Issue 28: headers claiming (10**12,) ended in _ArrayMemoryError tracebacks."""
    huge = Raw("history/lr.npy", npy_header("{'descr': '<f8', 'fortran_order': False, 'shape': (1000000000000,), }")
               + bytes(16))
    path = spoiled(checkpoint, tmp_path / "huge.npz", extra=[huge])
    with capped(CAP, SECONDS):
        message = refusal(read_checkpoint, path)
    assert "entry history/lr holds 1,000,000,000,000 values, more than the 2 its metadata allows" in message


def test_a_header_that_disagrees_with_the_zip_is_refused(checkpoint, tmp_path):
    """The zip declares the entry's size; the header implies one: they must agree (a stored entry
    with extra bytes after its data was read as if they were not there)."""
    m, a = contents(checkpoint)
    padded = Raw("history/lr.npy", npy_bytes(a["history/lr"]) + bytes(8))
    path = spoiled(checkpoint, tmp_path / "padded.npz", extra=[padded])
    message = refusal(read_checkpoint, path)
    assert "entry history/lr: its header says 144 bytes (shape (2,), float64) but the zip declares 152 bytes" \
        in message


def test_a_deflated_2gb_column_in_a_2mb_file_is_refused_before_inflating(checkpoint, tmp_path):
    """Issue 28: such a file peaked at 2.06 GB before it was refused."""
    head = npy_header("{'descr': '<f8', 'fortran_order': False, 'shape': (268435456,), }")
    path = spoiled(checkpoint, tmp_path / "bomb.npz", meta=lambda m: m.update(step=2**28),
                   extra=[bomb("history/eval_val.npy", head, 2 << 30)])
    assert path.stat().st_size < 2.5e6
    with capped(CAP, SECONDS):
        message = refusal(read_checkpoint, path)
    assert "entry history/eval_val declares 2.1 GB inflated from 2.1 MB, more than 100 times: a zip bomb?" in message


def test_the_metadata_size_is_checked_before_it_is_read(checkpoint, tmp_path):
    """Issue 28: a 1.2 MB checkpoint carrying a 300-million-character metadata string loaded (3.0 GB)."""
    head = npy_header("{'descr': '<U300000000', 'fortran_order': False, 'shape': (), }")
    path = spoiled(checkpoint, tmp_path / "chatty.npz", extra=[bomb("meta.npy", head, 1144 << 20)])
    with capped(CAP, SECONDS):
        assert "entry meta declares 1.2 GB inflated from" in refusal(read_checkpoint, path)
    m, _ = contents(checkpoint)
    stored = spoiled(checkpoint, tmp_path / "stored.npz", meta=lambda m: m.update(notes=" " * (5 << 20)))
    assert "entry meta declares 21.0 MB, more than the 16.8 MB allowed for it" in refusal(read_checkpoint, stored)


def test_object_arrays_are_never_unpickled(checkpoint, tmp_path):
    """A pickle runs code when it is loaded; an entry holding objects is refused from its header."""
    pickled = Raw("param/transformer.ln_f.bias.npy", npy_bytes(np.array([os.getcwd] * 16, dtype=object)))
    path = spoiled(checkpoint, tmp_path / "pickle.npz", extra=[pickled])
    assert "entry param/transformer.ln_f.bias holds dtype object, expected float32 array" in \
        refusal(read_checkpoint, path)


def test_a_history_longer_than_the_steps_taken_is_refused(checkpoint, tmp_path):
    path = spoiled(checkpoint, tmp_path / "long.npz", arrays=lambda a: a.update({"history/step": np.arange(3.0)}))
    assert "entry history/step holds 3 values, more than the 2 its metadata allows" in refusal(read_checkpoint, path)


@pytest.mark.parametrize("text, says", [
    ("[" * 100_000 + "]" * 100_000, "entry meta nests its JSON too deeply to read"),
    ("1" * 5000, "its metadata is not JSON (Exceeds the limit (4300 digits)"),
])
def test_json_that_python_cannot_parse_is_a_usage_error(tmp_path, text, says):
    path = write(tmp_path / "json.npz", npz_of({"meta": np.array(text)}))
    assert says in refusal(read_checkpoint, path)


# ----------------------------------------------------------------------------- the zip's own records
@pytest.mark.parametrize("change, says", [
    (lambda e: [Raw(e[0].name, e[0].data, flags=1), *e[1:]], "entry meta is encrypted"),
    (lambda e: [Raw(e[0].name, e[0].data, method=12), *e[1:]], "entry meta is compressed with zip method 12"),
    (lambda e: [*e, Raw("meta.npy", e[0].data)], "entry meta appears twice"),
    (lambda e: [Raw(e[0].name, e[0].data, size=len(e[0].data) + 1), *e[1:]], "entry meta is stored as"),
    (lambda e: [Raw(e[0].name, e[0].data, crc=0), *e[1:]], "truncated or corrupted (entry meta: BadZipFile: Bad CRC-32"),
    (lambda e: [e[0], Raw("x\n" * 5000, e[0].data)], "unexpected 1 entry: " + "x\\n" * 28 + "x..."),
])
def test_damaged_or_hostile_zip_records_are_named(tmp_path, change, says):
    entries = change(npz_of({"meta": np.array(json.dumps({"format": 1}))}))
    path = write(tmp_path / "odd.npz", entries)

    def read(p):
        with NpzFile(p, "checkpoint") as npz:
            npz.read_json("meta")
            npz.read({})

    assert says in refusal(read, path)


def test_entries_past_the_end_or_over_each_other_are_refused(tmp_path):
    data = npy_bytes(np.zeros(100))
    past = write(tmp_path / "past.npz", [Raw("w.npy", data, size=10**6, compressed=10**6)])
    assert "is truncated or corrupted (entry w runs past the end of the file)" in refusal(open_and_read_meta, past)
    # two records that each stay inside the 2,050-byte file but claim 3,000 bytes together: they
    # overlap, so one stretch of bytes would be read (and allocated) twice
    over = write(tmp_path / "over.npz", [Raw("a.npy", data, size=2000, compressed=2000),
                                         Raw("b.npy", data, size=1000, compressed=1000)])
    assert over.stat().st_size == 2050
    assert "its entries claim 3.0 kB of compressed data, more than the file's 2.0 kB" in \
        refusal(open_and_read_meta, over)


def test_an_end_record_declaring_too_many_entries_is_refused_before_they_are_listed(tmp_path):
    path = write(tmp_path / "many.npz", npz_of({"meta": np.array("{}")}), declared_count=10**9)
    assert "its zip directory declares 1,000,000,000 entries, more than the 65,535 allowed" in \
        refusal(open_and_read_meta, path)


# ----------------------------------------------------------------------------- the API other readers use
def test_a_callers_refusal_inside_the_block_names_the_file(tmp_path):
    path = write(tmp_path / "app.npz", npz_of({"meta": np.array(json.dumps({"app": "sentiment"}))}))
    says = r"^app checkpoint '.*app.npz' is not a readable app checkpoint: it holds a 'sentiment' model, not a " \
           r"'translation' one$"
    with pytest.raises(ContainerError, match=says), \
            NpzFile(path, "app checkpoint", invalid="is not a readable app checkpoint") as npz:
        meta = npz.read_json("meta")
        if meta["app"] != "translation":
            raise UsageError(f"it holds a {meta['app']!r} model, not a 'translation' one")


def test_entries_like_reads_exactly_the_arrays_a_model_has(tmp_path):
    params = {"w": np.ones((3, 2), np.float32), "b": np.zeros(2, np.float32)}
    path = write(tmp_path / "p.npz", npz_of({"param/w": params["w"], "param/b": params["b"].astype(np.int32)}))
    with NpzFile(path, "app checkpoint") as npz, \
            pytest.raises(ContainerError, match="entry param/b holds dtype int32, expected float32 array"):
        npz.read(entries_like(params, "param/"))


def test_a_good_checkpoint_and_a_deflated_copy_read_the_same(checkpoint, tmp_path):
    """Old checkpoints still read; so does one recompressed by a tool (deflate at ordinary ratios)."""
    meta, arrays = read_checkpoint(checkpoint)
    m, a = contents(checkpoint)
    entries = []
    for raw in npz_of({"meta": np.array(json.dumps(m)), **a}):
        packed = deflated(raw.data)
        entries.append(Raw(raw.name, packed.data, packed.method, packed.size, packed.crc))
    again, arrays_again = read_checkpoint(write(tmp_path / "deflated.npz", entries))
    assert again == meta and arrays.keys() == arrays_again.keys()
    for key in arrays:
        np.testing.assert_array_equal(arrays[key], arrays_again[key], err_msg=key)
