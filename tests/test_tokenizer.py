"""CharTokenizer: vocabulary, round trips, unknown characters, storage, and bad inputs."""
import json

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from npgpt.text.chars import CharTokenizer

TEXT = "hello world\nto be, or not to be!"


def test_vocabulary_is_the_sorted_set_of_characters():
    tok = CharTokenizer.from_text("banana")
    assert tok.chars == ("a", "b", "n")
    assert tok.vocab_size == 3
    assert tok.stoi == {"a": 0, "b": 1, "n": 2}
    assert tok.itos == {0: "a", 1: "b", 2: "n"}
    assert tok.unknown_id is None


def test_encode_gives_int64_ids_in_order():
    tok = CharTokenizer.from_text("banana")
    ids = tok.encode("nab")
    assert ids.dtype == np.int64 and ids.ndim == 1
    assert ids.tolist() == [2, 0, 1]
    assert tok.encode("").tolist() == []


def test_round_trip_on_the_training_text():
    tok = CharTokenizer.from_text(TEXT)
    assert tok.decode(tok.encode(TEXT)) == TEXT


@given(vocab=st.text(min_size=1, max_size=30), data=st.data())
def test_round_trip_random_strings_over_the_vocabulary(vocab, data):
    tok = CharTokenizer.from_text(vocab)
    text = data.draw(st.text(alphabet=sorted(set(vocab)), max_size=200))
    ids = tok.encode(text)
    assert len(ids) == len(text)
    assert ids.min(initial=0) >= 0 and ids.max(initial=0) < tok.vocab_size
    assert tok.decode(ids) == text
    assert tok.decode(ids.tolist()) == text


def test_unknown_character_error_names_it_and_its_position():
    tok = CharTokenizer.from_text("abc")
    with pytest.raises(ValueError, match=r"'z' at position 2"):
        tok.encode("abzc")


def test_unknown_token_gets_its_own_id_and_absorbs_unknown_characters():
    tok = CharTokenizer.from_text("abc", unknown="<unk>")
    assert tok.vocab_size == 4 and tok.unknown_id == 3
    assert tok.chars == ("a", "b", "c")
    assert tok.encode("axbé").tolist() == [0, 3, 1, 3]
    assert tok.decode([0, 3, 1]) == "a<unk>b"


def test_unknown_token_that_is_a_character_shares_its_id():
    tok = CharTokenizer.from_text("a?b", unknown="?")
    assert tok.vocab_size == 3 and tok.unknown_id == tok.stoi["?"]
    assert tok.decode(tok.encode("a!b")) == "a?b"


def test_replacement_character_as_unknown():
    tok = CharTokenizer.from_text("ab", unknown="\ufffd")
    assert tok.decode(tok.encode("abc")) == "ab\ufffd"


@pytest.mark.parametrize("bad", [-1, 3, 100])
def test_decode_out_of_range_names_the_id_and_vocab_size(bad):
    tok = CharTokenizer.from_text("abc")
    with pytest.raises(ValueError, match=rf"id {bad} .*vocabulary of 3 ids"):
        tok.decode([0, bad])


@pytest.mark.parametrize("bad", [np.array([0.0, 1.0]), np.array([[0, 1]]), np.array([True]), 1])
def test_decode_rejects_non_integer_or_non_1d_ids(bad):
    with pytest.raises(ValueError, match="1-D sequence of integers"):
        CharTokenizer.from_text("abc").decode(bad)


def test_decode_of_nothing_is_empty():
    assert CharTokenizer.from_text("abc").decode([]) == ""


@pytest.mark.parametrize("bad", [b"bytes", 42, None, ["a", "b"]])
def test_non_string_input_names_the_type(bad):
    with pytest.raises(ValueError, match=type(bad).__name__):
        CharTokenizer.from_text(bad)
    with pytest.raises(ValueError, match=type(bad).__name__):
        CharTokenizer.from_text("abc").encode(bad)


def test_empty_text_and_bad_unknown_are_rejected():
    with pytest.raises(ValueError, match="empty"):
        CharTokenizer.from_text("")
    with pytest.raises(ValueError, match="unknown"):
        CharTokenizer.from_text("abc", unknown="")
    with pytest.raises(ValueError, match="unknown"):
        CharTokenizer.from_text("abc", unknown=0)


@pytest.mark.parametrize("chars, match", [(["a", "a"], "twice"), (["ab"], r"chars\[0\]"),
                                           ([], "empty"), (5, "int")])
def test_constructor_rejects_malformed_vocabularies(chars, match):
    with pytest.raises(ValueError, match=match):
        CharTokenizer(chars)


@pytest.mark.parametrize("unknown", [None, "<unk>"])
def test_dict_and_json_round_trip(unknown):
    tok = CharTokenizer.from_text(TEXT, unknown=unknown)
    d = tok.to_dict()
    assert json.loads(json.dumps(d)) == d  # JSON-able as it is
    assert CharTokenizer.from_dict(d) == tok
    assert CharTokenizer.from_json(tok.to_json()) == tok


@pytest.mark.parametrize("unknown", [None, "<unk>"])
def test_save_load_round_trip(tmp_path, unknown):
    tok = CharTokenizer.from_text("héllo\tworld ✓", unknown=unknown)
    path = tmp_path / "sub" / "tok.json"
    tok.save(path)
    loaded = CharTokenizer.load(path)
    assert loaded == tok
    assert loaded.decode(loaded.encode("world ✓")) == "world ✓"
    assert [p.name for p in path.parent.iterdir()] == ["tok.json"]  # no temporary file left


def test_save_replaces_an_existing_file(tmp_path):
    path = tmp_path / "tok.json"
    CharTokenizer.from_text("abc").save(path)
    CharTokenizer.from_text("xyz").save(path)
    assert CharTokenizer.load(path).chars == ("x", "y", "z")


@pytest.mark.parametrize("content", [b"{not json", b"\xff\xfe\x00garbage", b"[1, 2]",
                                     b'{"format": "something else", "version": 1, "chars": ["a"]}',
                                     b'{"format": "npgpt.CharTokenizer", "version": 1}',
                                     b'{"format": "npgpt.CharTokenizer", "version": 1, "chars": ["ab"]}'])
def test_corrupt_file_error_names_the_file(tmp_path, content):
    path = tmp_path / "broken.json"
    path.write_bytes(content)
    with pytest.raises(ValueError, match="broken.json"):
        CharTokenizer.load(path)


def test_npz_round_trip_without_pickle(tmp_path):
    tok = CharTokenizer.from_text(TEXT, unknown="\ufffd")
    path = tmp_path / "ckpt.npz"
    np.savez(path, tokenizer=tok.to_array(), weights=np.zeros(3))
    with np.load(path, allow_pickle=False) as f:
        loaded = CharTokenizer.from_array(f["tokenizer"])
    assert loaded == tok
    assert loaded.decode(loaded.encode(TEXT + "§")) == TEXT + "\ufffd"


def test_from_array_rejects_other_arrays():
    with pytest.raises(ValueError, match="0-d unicode array"):
        CharTokenizer.from_array(np.zeros(3))
    with pytest.raises(ValueError, match="malformed"):
        CharTokenizer.from_array(np.array("not json"))
