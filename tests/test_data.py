"""Text loading, corpus resolution (never touching the network), datasets, batches and the id cache."""
import hashlib
import urllib.error

import numpy as np
import pytest

import npgpt.training.data
from npgpt.atomic import atomic_writer
from npgpt.text import corpus
from npgpt.text.chars import CharTokenizer
from npgpt.text.corpus import (
    CorpusUnavailableError,
    fallback_text,
    load_text,
    resolve_corpus,
    tinyshakespeare_path,
)
from npgpt.training.data import Dataset

# A stand-in for Tiny Shakespeare: the tests swap the expected size and checksum for its own.
REAL_FETCH_URL = corpus._fetch_url  # kept before the autouse fixture replaces it
FAKE_CORPUS = ("First Citizen:\nBefore we proceed any further, hear me speak.\n\n" * 40).encode()


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    """Every test gets its own cache and no data dir, and fails if it reaches for the network."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))
    monkeypatch.delenv("NPGPT_DATA_DIR", raising=False)

    def no_network(url, timeout):
        raise AssertionError(f"test tried to download {url}")

    monkeypatch.setattr(corpus, "_fetch_url", no_network)


@pytest.fixture
def fake_shakespeare(monkeypatch):
    """Make FAKE_CORPUS the file tinyshakespeare_path looks for."""
    monkeypatch.setattr(corpus, "TINYSHAKESPEARE_SIZE", len(FAKE_CORPUS))
    monkeypatch.setattr(corpus, "TINYSHAKESPEARE_SHA256", hashlib.sha256(FAKE_CORPUS).hexdigest())
    return FAKE_CORPUS


class FakeDownloader:
    """Stands in for corpus._fetch_url: returns ``body`` (or raises ``error``) and counts calls."""

    def __init__(self, body=b"", error=None):
        self.body, self.error, self.calls = body, error, []

    def __call__(self, url, timeout):
        self.calls.append((url, timeout))
        if self.error is not None:
            raise self.error
        return self.body


def write(path, content):
    path.parent.mkdir(parents=True, exist_ok=True)
    (path.write_bytes if isinstance(content, bytes) else path.write_text)(content)
    return path


# ----------------------------------------------------------------- load_text
def test_load_text_reads_utf8_exactly(tmp_path):
    text = "héllo ✓\r\nsecond line\n"
    path = write(tmp_path / "t.txt", text.encode("utf-8"))
    assert load_text(path) == text
    assert load_text(str(path)) == text


def test_load_text_drops_a_byte_order_mark(tmp_path):
    path = write(tmp_path / "bom.txt", "\ufeffabc".encode())
    assert load_text(path) == "abc"


@pytest.mark.parametrize("content", [b"", "\ufeff".encode()])
def test_empty_file_error_names_the_path(tmp_path, content):
    path = write(tmp_path / "empty.txt", content)
    with pytest.raises(ValueError, match=r"empty\.txt is empty"):
        load_text(path)


def test_undecodable_bytes_error_names_path_and_offset(tmp_path):
    path = write(tmp_path / "latin1.txt", b"caf\xe9 au lait")
    with pytest.raises(ValueError, match=r"latin1\.txt is not valid UTF-8: byte 0xe9 at offset 3"):
        load_text(path)


def test_a_text_file_larger_than_the_memory_available_is_refused_before_it_is_read(tmp_path, monkeypatch):
    # A 1 MB file on a machine with 4 MB available: its bytes and its text (up to 5 MB) cannot be
    # held, so it is refused in one line naming it, instead of a MemoryError while reading.
    import npgpt.runtime.memory as memory_module
    path = write(tmp_path / "big.txt", b"a" * 1_000_000)
    monkeypatch.setattr(memory_module, "available_memory", lambda: 4_000_000)
    with pytest.raises(ValueError, match=r"reading the 1,000,000-byte text file .*big\.txt needs about"):
        load_text(path)
    monkeypatch.setattr(memory_module, "available_memory", lambda: 6_000_000)
    assert len(load_text(path)) == 1_000_000


def test_missing_file_error_names_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nowhere\.txt"):
        load_text(tmp_path / "nowhere.txt")


def test_directory_and_non_path_are_rejected(tmp_path):
    with pytest.raises(ValueError, match="is a directory"):
        load_text(tmp_path)
    with pytest.raises(ValueError, match="int"):
        load_text(3)


# ----------------------------------------------------------------- the built-in corpus
def test_fallback_corpus_is_long_enough_to_train_on():
    text = fallback_text()
    assert len(text) >= 30_000
    assert "Shall I compare thee to a summer's day?" in text
    x, y = Dataset(text, cache=False).get_batch("val", 4, 64, np.random.default_rng(0))
    assert x.shape == y.shape == (4, 64)


# ----------------------------------------------------------------- Tiny Shakespeare
def test_default_cache_dir_follows_xdg_then_home(tmp_path, monkeypatch):
    assert corpus.default_cache_dir() == tmp_path / "xdg-cache" / "npgpt"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert corpus.default_cache_dir() == tmp_path / "home" / ".cache" / "npgpt"


def test_found_in_data_dir_without_downloading(tmp_path, monkeypatch, fake_shakespeare):
    path = write(tmp_path / "data" / "tinyshakespeare.txt", fake_shakespeare)
    monkeypatch.setenv("NPGPT_DATA_DIR", str(path.parent))
    assert tinyshakespeare_path() == path  # the autouse fixture fails any download


def test_found_in_cache_without_downloading(fake_shakespeare):
    path = write(corpus.default_cache_dir() / "tinyshakespeare.txt", fake_shakespeare)
    assert tinyshakespeare_path() == path


def test_download_is_verified_and_cached_once(monkeypatch, fake_shakespeare):
    fetch = FakeDownloader(fake_shakespeare)
    monkeypatch.setattr(corpus, "_fetch_url", fetch)
    path = tinyshakespeare_path()
    assert path == corpus.default_cache_dir() / "tinyshakespeare.txt"
    assert path.read_bytes() == fake_shakespeare
    assert fetch.calls == [(corpus.TINYSHAKESPEARE_URL, corpus.DOWNLOAD_TIMEOUT)]
    assert tinyshakespeare_path() == path
    assert len(fetch.calls) == 1  # the second call found the cached copy


@pytest.mark.parametrize("body, reason", [(b"x" * len(FAKE_CORPUS), "SHA-256"),
                                          (FAKE_CORPUS[:-1], "bytes, expected")])
def test_bad_download_is_rejected_and_not_cached(monkeypatch, fake_shakespeare, body, reason):
    monkeypatch.setattr(corpus, "_fetch_url", FakeDownloader(body))
    with pytest.raises(CorpusUnavailableError, match=reason):
        tinyshakespeare_path()
    assert not (corpus.default_cache_dir() / "tinyshakespeare.txt").exists()


def test_network_failure_says_what_was_tried(monkeypatch, fake_shakespeare):
    fetch = FakeDownloader(error=urllib.error.URLError("no route to host"))
    monkeypatch.setattr(corpus, "_fetch_url", fetch)
    with pytest.raises(CorpusUnavailableError, match="does not exist.*no route to host"):
        tinyshakespeare_path()


def test_no_download_when_download_is_off(fake_shakespeare):
    with pytest.raises(CorpusUnavailableError, match="downloading is off"):
        tinyshakespeare_path(download=False)  # the autouse fixture fails any download


def test_wrong_checksum_copy_warns_and_is_skipped(tmp_path, monkeypatch, fake_shakespeare):
    bad = write(tmp_path / "data" / "tinyshakespeare.txt", fake_shakespeare[::-1])
    monkeypatch.setenv("NPGPT_DATA_DIR", str(bad.parent))
    fetch = FakeDownloader(fake_shakespeare)
    monkeypatch.setattr(corpus, "_fetch_url", fetch)
    with pytest.warns(UserWarning, match=r"ignoring .*tinyshakespeare\.txt: its SHA-256"):
        path = tinyshakespeare_path()
    assert path != bad and path.read_bytes() == fake_shakespeare and len(fetch.calls) == 1
    assert bad.read_bytes() == fake_shakespeare[::-1]  # the user's file is left alone


def test_fetch_url_reads_at_most_one_byte_past_the_expected_size(tmp_path, monkeypatch):
    monkeypatch.setattr(corpus, "TINYSHAKESPEARE_SIZE", 10)
    path = write(tmp_path / "big.txt", b"0123456789abcdef")
    assert REAL_FETCH_URL(path.as_uri(), timeout=5) == b"0123456789a"  # a file: URL, no network


# ----------------------------------------------------------------- resolve_corpus
@pytest.mark.parametrize("name", ["shakespeare", "tinyshakespeare", "TinyShakespeare"])
def test_resolve_shakespeare(monkeypatch, fake_shakespeare, name):
    monkeypatch.setattr(corpus, "_fetch_url", FakeDownloader(fake_shakespeare))
    text, description = resolve_corpus(name)
    assert text == fake_shakespeare.decode()
    assert description.startswith("Tiny Shakespeare")


def test_unavailable_shakespeare_falls_back_with_a_message(monkeypatch):
    monkeypatch.setattr(corpus, "_fetch_url", FakeDownloader(error=TimeoutError("timed out")))
    text, description = resolve_corpus("shakespeare")
    assert text == fallback_text()
    assert "timed out" in description and "using the built-in corpus" in description


@pytest.mark.parametrize("name", ["fallback", "builtin"])
def test_resolve_builtin_never_downloads(name):
    text, description = resolve_corpus(name)
    assert text == fallback_text() and "built-in" in description


def test_resolve_a_path(tmp_path):
    path = write(tmp_path / "mine.txt", "my own corpus\n")
    assert resolve_corpus(str(path)) == ("my own corpus\n", f"text file {path}")
    assert resolve_corpus(path)[0] == "my own corpus\n"
    with pytest.raises(FileNotFoundError, match=r"missing\.txt"):
        resolve_corpus(str(tmp_path / "missing.txt"))


@pytest.mark.parametrize("bad, match", [("", "empty string"), (42, "int"), (None, "NoneType")])
def test_resolve_rejects_bad_names(bad, match):
    with pytest.raises(ValueError, match=match):
        resolve_corpus(bad)


# ----------------------------------------------------------------- Dataset: splits and batches
def counting_text(n):
    """n distinct characters in code-point order, so the id of position i is i."""
    return "".join(chr(0x4E00 + i) for i in range(n))


def test_split_sizes_are_first_90_percent_train():
    ds = Dataset(counting_text(1000), cache=False)
    assert len(ds.train_ids) == 900 and len(ds.val_ids) == 100
    assert ds.train_ids[-1] == 899 and ds.val_ids[0] == 900
    assert ds.ids.dtype == np.uint16
    ds = Dataset(counting_text(1000), val_fraction=0.25, cache=False)
    assert (len(ds.train_ids), len(ds.val_ids)) == (750, 250)


def test_batch_shapes_dtype_and_shift():
    ds = Dataset(counting_text(500), cache=False)
    x, y = ds.get_batch("train", batch_size=8, block_size=16, rng=np.random.default_rng(0))
    assert x.shape == y.shape == (8, 16) and x.dtype == y.dtype == np.int64
    # Ids equal positions, so each row must be a run of consecutive positions, y one ahead of x.
    np.testing.assert_array_equal(x, x[:, :1] + np.arange(16))
    np.testing.assert_array_equal(y, x + 1)
    assert y.max() < 450  # inside the training split


def test_val_batches_come_from_the_val_split():
    ds = Dataset(counting_text(500), cache=False)
    x, y = ds.get_batch("val", 32, 10, np.random.default_rng(1))
    assert x.min() >= 450 and y.max() <= 499


def test_every_start_offset_is_reachable_and_none_beyond():
    ds = Dataset(counting_text(20), val_fraction=0.4, cache=False)  # train has 12 tokens
    x, _ = ds.get_batch("train", 2000, 4, np.random.default_rng(0))
    assert set(x[:, 0].tolist()) == set(range(12 - 4))  # the last window ends at token 11


def test_same_seed_same_batches_other_seed_other_batches():
    ds = Dataset(counting_text(500), cache=False)
    a = ds.get_batch("train", 4, 8, np.random.default_rng(7))
    b = ds.get_batch("train", 4, 8, np.random.default_rng(7))
    c = ds.get_batch("train", 4, 8, np.random.default_rng(8))
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert not np.array_equal(a[0], c[0])


def test_too_short_split_names_its_length_and_the_block_size():
    ds = Dataset(counting_text(100), cache=False)  # val has 10 tokens
    with pytest.raises(ValueError, match=r"val split has 10 tokens, too few for block_size=10"):
        ds.get_batch("val", 1, 10, np.random.default_rng(0))
    x, _ = ds.get_batch("val", 1, 9, np.random.default_rng(0))  # exactly block_size + 1 is enough
    assert x.shape == (1, 9)
    no_val = Dataset(counting_text(100), val_fraction=0.0, cache=False)
    with pytest.raises(ValueError, match="val split has 0 tokens"):
        no_val.get_batch("val", 1, 1, np.random.default_rng(0))


@pytest.mark.parametrize("kwargs, match", [
    ({"split": "test"}, "split must be one of"),
    ({"batch_size": 0}, "batch_size must be a positive integer"),
    ({"block_size": True}, "block_size must be a positive integer"),
    ({"block_size": 2.0}, "block_size must be a positive integer"),
    ({"rng": 0}, "rng must be a np.random.Generator.*int"),
    ({"rng": np.random.RandomState(0)}, "RandomState"),
])
def test_get_batch_rejects_bad_arguments(kwargs, match):
    args = {"split": "train", "batch_size": 2, "block_size": 4, "rng": np.random.default_rng(0)}
    with pytest.raises(ValueError, match=match):
        Dataset(counting_text(100), cache=False).get_batch(**{**args, **kwargs})


@pytest.mark.parametrize("kwargs, match", [({"text": ""}, "empty"), ({"text": b"abc"}, "bytes"),
                                           ({"val_fraction": 1.0}, "val_fraction"),
                                           ({"val_fraction": -0.1}, "val_fraction"),
                                           ({"val_fraction": "0.1"}, "val_fraction")])
def test_dataset_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Dataset(**{"text": "abc", "cache": False, **kwargs})


def test_given_tokenizer_is_used():
    tok = CharTokenizer.from_text("abcdefghij", unknown="?")
    ds = Dataset("hello world " * 10, tokenizer=tok, cache=False)
    assert ds.tokenizer is tok and ds.vocab_size == 11
    text = "hello world " * 10
    assert tok.decode(ds.ids) == "".join(c if c in "abcdefghij" else "?" for c in text)


def test_large_vocabulary_is_stored_as_uint32(tmp_path):
    text = "".join(chr(0x20000 + i) for i in range(70_000))
    ds = Dataset(text, cache_dir=tmp_path)
    assert ds.ids.dtype == np.uint32 and ds.ids[-1] == 69_999
    assert Dataset(text, cache_dir=tmp_path).loaded_from_cache


# ----------------------------------------------------------------- Dataset: the id cache
def test_second_load_uses_the_cache_instead_of_tokenizing(tmp_path, monkeypatch):
    text = "to be or not to be " * 20
    first = Dataset(text, cache_dir=tmp_path)
    assert not first.loaded_from_cache and first.cache_path.parent == tmp_path
    assert first.cache_path.is_file()
    np.testing.assert_array_equal(np.load(first.cache_path, allow_pickle=False), first.ids)

    def must_not_tokenize(self, text):
        raise AssertionError("tokenized although the cache holds the ids")

    monkeypatch.setattr(CharTokenizer, "encode", must_not_tokenize)
    second = Dataset(text, cache_dir=tmp_path)
    assert second.loaded_from_cache and second.cache_path == first.cache_path
    np.testing.assert_array_equal(second.ids, first.ids)


def test_cache_key_depends_on_text_and_tokenizer(tmp_path):
    a = Dataset("abcabc", cache_dir=tmp_path)
    b = Dataset("abcabd", cache_dir=tmp_path)
    c = Dataset("abcabc", tokenizer=CharTokenizer.from_text("abc", unknown="?"), cache_dir=tmp_path)
    assert len({a.cache_path, b.cache_path, c.cache_path}) == 3
    assert not (b.loaded_from_cache or c.loaded_from_cache)


def test_default_cache_lives_under_the_user_cache(tmp_path):
    ds = Dataset("abcabc")
    assert ds.cache_path.parent == tmp_path / "xdg-cache" / "npgpt" / "ids"
    assert ds.cache_path.is_file()


class ListTokenizer:
    """A minimal third-party tokenizer: encode and vocab_size, optionally to_dict."""

    vocab_size = 3

    def encode(self, text):
        return ["abc".index(ch) for ch in text]


class DictTokenizer(ListTokenizer):
    def to_dict(self):
        return {"chars": "abc"}


def test_tokenizer_without_a_description_is_not_cached(tmp_path):
    ds = Dataset("abcabc", tokenizer=ListTokenizer(), cache_dir=tmp_path)
    assert ds.cache_path is None and list(tmp_path.iterdir()) == []
    assert ds.ids.dtype == np.uint16 and ds.ids.tolist() == [0, 1, 2, 0, 1, 2]


def test_tokenizer_with_to_dict_is_cached(tmp_path):
    Dataset("abcabc", tokenizer=DictTokenizer(), cache_dir=tmp_path)
    assert Dataset("abcabc", tokenizer=DictTokenizer(), cache_dir=tmp_path).loaded_from_cache


def test_cache_off_writes_nothing(tmp_path):
    ds = Dataset("abcabc", cache_dir=tmp_path / "c", cache=False)
    assert ds.cache_path is None and not (tmp_path / "c").exists()


@pytest.mark.parametrize("make_bad", [
    lambda path: path.write_bytes(b"this is not a .npy file"),
    lambda path: np.save(path, np.array([{"a": 1}], dtype=object), allow_pickle=True),
    lambda path: np.save(path, np.array([0, 1, 99], dtype=np.uint16)),  # ids beyond the vocabulary
    lambda path: np.save(path, np.zeros((2, 2), dtype=np.uint16)),
])
def test_bad_cache_file_warns_and_is_rebuilt(tmp_path, make_bad):
    text = "abcabc"
    path = Dataset(text, cache_dir=tmp_path).cache_path
    make_bad(path)
    with pytest.warns(UserWarning, match="token cache"):
        ds = Dataset(text, cache_dir=tmp_path)
    assert not ds.loaded_from_cache and ds.ids.tolist() == [0, 1, 2, 0, 1, 2]
    assert Dataset(text, cache_dir=tmp_path).loaded_from_cache  # the rebuilt file is good


def test_unwritable_cache_is_a_warning(tmp_path, monkeypatch):
    def refuse(path):
        raise PermissionError(f"read-only: {path}")

    monkeypatch.setattr(npgpt.training.data, "atomic_writer", refuse)
    with pytest.warns(UserWarning, match="could not write token cache"):
        ds = Dataset("abcabc", cache_dir=tmp_path)
    assert ds.ids.tolist() == [0, 1, 2, 0, 1, 2]


# ----------------------------------------------------------------- atomic writes
def test_atomic_writer_keeps_the_old_file_when_interrupted(tmp_path):
    path = write(tmp_path / "f.bin", b"old")
    with pytest.raises(RuntimeError, match="crash"), atomic_writer(path) as f:
        f.write(b"half of the new")
        raise RuntimeError("crash")
    assert path.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["f.bin"]  # the temporary file is gone
