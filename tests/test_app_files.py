"""Hostile app checkpoints (issue 28, "Applications"): every app reads its checkpoint through the
checked .npz container (npgpt/io/npz.py), so a file whose metadata, config, weights or tokenizer is
wrong is refused in one line naming the file and the key or entry, before anything the file claims
is allocated. Each hostile read runs under the memory and time cap of tests/zip_craft.py, so a reader
that built the model a tampered config describes (36 GB for n_embd 8192, n_layer 48) fails the test
instead of the machine. A checkpoint in the format every earlier npgpt wrote still loads, unchanged."""
import json
import re

import numpy as np
import pytest
from zip_craft import capped, npz_of, write

from npgpt import GPT, GPTConfig
from npgpt.apps import generation, resolve, sentiment, translation
from npgpt.apps.classifier import GPTClassifier
from npgpt.apps.common import NotTrained, WordTokenizer, save_app
from npgpt.checks import UsageError
from npgpt.cli import main
from npgpt.text import CharTokenizer

CAP = 512 << 20          # bytes beyond the process's own: the tiny models need < 10 MB, the bombs GBs
SECONDS = 10             # a refusal takes milliseconds; building what a bomb claims takes far longer
QA_TEXT = "Anna sold 3 cakes on Monday . Q: Who sold them ? A: Anna"
GEN_TEXT = "ROMEO: To be, or not to be.\n"
REVIEWS = ["the screen is good", "the battery is not bad at all", "the screen is bad"]
PAIRS = ["three thousand and five", "三 千 零 五"]


# ----------------------------------------------------------------------------- the files
def write_app_file(path, app, kind, config, params, tokenizer_json, extra=None):
    """An app checkpoint in the format npgpt has always written (np.savez of a JSON ``meta`` and
    ``param/<name>`` arrays), written here by hand so that the format, not today's save_app, is
    what the tests pin."""
    meta = {"app_format": 1, "app": app, "model": kind, "model_config": config, "tokenizer": tokenizer_json,
            "extra": extra or {}}
    np.savez(path, meta=np.array(json.dumps(meta)), **{f"param/{k}": v for k, v in params.items()})
    return path


def tiny_models():
    """app -> (model kind, model config dict, model, tokenizer): one small model of each kind."""
    word = WordTokenizer.from_texts([QA_TEXT])
    qa = GPT(GPTConfig(vocab_size=word.vocab_size, block_size=96, n_layer=2, n_head=2, n_embd=8), seed=1)
    chars = CharTokenizer.from_text(GEN_TEXT)
    gen = GPT(GPTConfig(vocab_size=chars.vocab_size, block_size=64, n_layer=1, n_head=2, n_embd=8), seed=2)
    reviews = WordTokenizer.from_texts(REVIEWS)
    classifier = GPTClassifier(GPTConfig(vocab_size=reviews.vocab_size, block_size=32, n_layer=1, n_head=2,
                                         n_embd=8), n_classes=2, pad_id=reviews.pad_id, seed=3)
    pairs = WordTokenizer.from_texts(PAIRS)
    net = translation.build(pairs.vocab_size, seed=4)
    return {"qa": ("gpt", qa.config.to_dict(), qa, word),
            "generation": ("gpt", gen.config.to_dict(), gen, chars),
            "sentiment": ("gpt_classifier", classifier.config.to_dict(), classifier, reviews),
            "translation": ("document_model", {"num_tokens": pairs.vocab_size, **translation.ARCH}, net, pairs)}


@pytest.fixture(scope="module")
def models():
    return tiny_models()


@pytest.fixture(scope="module")
def files(models, tmp_path_factory):
    """app -> a good checkpoint of its tiny model, in the format of every earlier npgpt."""
    folder = tmp_path_factory.mktemp("apps")
    return {app: write_app_file(folder / f"{app}.npz", app, kind, config, model.params, tok.to_json())
            for app, (kind, config, model, tok) in models.items()}


def contents(path):
    """(meta, arrays) of a file, read plainly (the tests' own trusted copy)."""
    with np.load(path, allow_pickle=False) as f:
        arrays = {k: f[k] for k in f.files}
    return json.loads(str(arrays.pop("meta"))), arrays


def spoiled(source, target, meta=None, arrays=None):
    """A copy of ``source`` whose metadata is ``meta(m)`` and whose arrays ``arrays(a)`` changed."""
    m, a = contents(source)
    m = meta(m) if meta else m
    if arrays:
        arrays(a)
    return write(target, npz_of({"meta": np.array(json.dumps(m)), **a}))


def changed(**top):
    """A metadata spoiler: top-level keys set (``model_config={...}`` replaces the dict)."""
    return lambda m: {**m, **top}


def config(**keys):
    """A metadata spoiler: model_config keys set."""
    return lambda m: {**m, "model_config": {**m["model_config"], **keys}}


def without(key, where=None):
    """A metadata spoiler: ``key`` removed from the metadata (or from its ``where`` dict)."""
    def spoil(m):
        m = json.loads(json.dumps(m))
        (m[where] if where else m).pop(key)
        return m
    return spoil


def refusal(app, path):
    """The one-line UsageError ``app.load(path)`` raises, under the memory and time cap."""
    module = resolve(app)
    with capped(CAP, SECONDS), pytest.raises(UsageError) as caught:
        module.load(str(path))
    message = str(caught.value)
    assert "\n" not in message and len(message) < 700, message
    return message


def named(path):
    """The start of every refusal of a bad app checkpoint: the kind of file and its path."""
    return f"app checkpoint {str(path)!r} "


# ----------------------------------------------------------------------------- hostile metadata and configs
def as_int32(name):
    return lambda a: a.update({name: a[name].astype(np.int32)})


GPT_CASES = {
    "metadata is a list": (dict(meta=lambda m: [m]), "its metadata is a JSON list, expected an object"),
    "no model_config": (dict(meta=without("model_config")), "its metadata lacks model_config"),
    "an unknown config key": (dict(meta=config(n_experts=4)), r"model_config has unknown keys \['n_experts'\]"),
    "model_config a list": (dict(meta=changed(model_config=[1, 2])),
                            r"metadata 'model_config' is \[1, 2\], expected a JSON object"),
    "a config key missing": (dict(meta=without("n_head", "model_config")), "model_config is incomplete"),
    "bias not a boolean": (dict(meta=config(bias="yes")), "model_config 'bias' is 'yes', expected true or false"),
    "a width that is a string": (dict(meta=config(n_embd="8")), "GPTConfig.n_embd must be a positive integer"),
    "36 GB of weights in a tiny file": (dict(meta=config(n_embd=8192, n_layer=48)),
                                        r"model_config n_layer=48, n_embd=8192 implies at least 288 entries, "
                                        r"but the file holds \d+"),
    "a width the file cannot hold": (dict(meta=config(n_embd=8192)),
                                     r"model_config n_layer=2, n_embd=8192 implies [\d.]+ GB of arrays, but the "
                                     r"file's entries hold at most [\d.]+ kB"),
    "100,000 layers": (dict(meta=config(n_layer=100_000)), "n_layer=100000, n_embd=8 implies at least 600,000 entries"),
    "a sinusoidal table of 2**40 positions": (dict(meta=config(pos_encoding="sinusoidal", block_size=2**40)),
                                              "block_size=1099511627776 is more than the 1048576 positions"),
    # the file's weights must be exactly those the config implies, no fewer and no more
    "fewer layers than the file holds": (dict(meta=config(n_layer=1)), "unexpected 12 entries: param/transformer.h.1."),
    "more layers than the file holds": (dict(meta=config(n_layer=3)), "missing 12 entries: param/transformer.h.2."),
    "a narrower width than the weights": (dict(meta=config(n_embd=4)),
                                          r"entry param/transformer.wte.weight has shape \(16, 8\), expected \(16, 4\)"),
    "an entry beside the parameters": (dict(arrays=lambda a: a.update({"junk": np.zeros(10**5, np.float32)})),
                                       "unexpected 1 entry: junk"),
    "int32 weights": (dict(arrays=as_int32("param/transformer.wte.weight")),
                      "entry param/transformer.wte.weight holds dtype int32, expected float32 array"),
    "float64 weights": (dict(arrays=lambda a: a.update({"param/transformer.h.1.mlp.c_fc.weight":
                                                        a["param/transformer.h.1.mlp.c_fc.weight"].astype(np.float64)})),
                        "entry param/transformer.h.1.mlp.c_fc.weight holds dtype float64, expected float32 array"),
    "a NaN weight": (dict(arrays=lambda a: a["param/transformer.ln_f.bias"].__setitem__(0, np.nan)),
                     "entry param/transformer.ln_f.bias holds NaN or infinite values"),
    "a weight missing": (dict(arrays=lambda a: a.pop("param/transformer.ln_f.weight")),
                         "missing 1 entry: param/transformer.ln_f.weight"),
    "an unexpected array": (dict(arrays=lambda a: a.update({"param/lm_head.weight": np.zeros((2, 2), np.float32)})),
                            "unexpected 1 entry: param/lm_head.weight"),
    "a broken tokenizer JSON": (dict(meta=changed(tokenizer='["Anna", ')), "tokenizer JSON is malformed"),
    "a tokenizer that is not a list": (dict(meta=changed(tokenizer='{"Anna": 4}')),
                                       "the tokenizer JSON must be a list of token strings, got a JSON dict"),
    "a tokenizer of numbers": (dict(meta=changed(tokenizer="[1, 2]")),
                               "the tokenizer JSON must be a list of token strings; its item 0 is 1"),
    "a tokenizer JSON nested too deeply": (dict(meta=changed(tokenizer="[" * 100_000)),
                                           "its tokenizer JSON nests too deeply to read"),
    "a tokenizer stored as a number": (dict(meta=changed(tokenizer=5)), "metadata 'tokenizer' is 5, expected a JSON str"),
    "a 4-token tokenizer for a 16-row model": (dict(meta=changed(tokenizer='["Anna"]')),
                                               "its tokenizer has 4 tokens, but the model's embedding has 16 rows"),
    "another app's model": (dict(meta=changed(app="sentiment")), "it holds a 'sentiment' model, not a 'qa' one"),
    "another kind of model": (dict(meta=changed(model="gpt_classifier")),
                              "its model is a 'gpt_classifier', expected a 'gpt'"),
    "a later format": (dict(meta=changed(app_format=2)), "app_format 2, expected 1"),
}


@pytest.mark.parametrize("case", sorted(GPT_CASES))
def test_a_tampered_gpt_app_checkpoint_is_refused_in_one_line(files, tmp_path, case):
    spoil, message = GPT_CASES[case]
    path = spoiled(files["qa"], tmp_path / "qa.npz", **spoil)
    said = refusal("qa", path)
    assert said.startswith(named(path) + "is not a readable app checkpoint: "), said
    assert re.search(message, said), said


def test_the_issues_4_token_tokenizer_with_a_125_row_model_is_refused_at_load(tmp_path):
    """The issue's own case: the tokenizer, not the user's input, is named."""
    big = GPT(GPTConfig(vocab_size=125, block_size=96, n_layer=1, n_head=2, n_embd=8))
    path = write_app_file(tmp_path / "qa.npz", "qa", "gpt", big.config.to_dict(), big.params, '["Anna"]')
    assert refusal("qa", path).endswith("its tokenizer has 4 tokens, but the model's embedding has 125 rows: "
                                        "they do not belong together")


CLASSIFIER_CASES = {
    "int32 class scores": (dict(arrays=as_int32("param/score.weight")),
                           "entry param/score.weight holds dtype int32, expected float32 array"),
    "no score bias": (dict(arrays=lambda a: a.pop("param/score.bias")), "missing 1 entry: param/score.bias"),
    "three classes": (dict(arrays=lambda a: a.update({"param/score.bias": np.zeros(3, np.float32)})),
                      r"entry param/score.bias has shape \(3,\), expected \(2,\)"),
    "a plain gpt": (dict(meta=changed(model="gpt")), "its model is a 'gpt', expected a 'gpt_classifier'"),
    "a width the file cannot hold": (dict(meta=config(n_embd=8192)), "n_embd=8192 implies .* of arrays"),
}


@pytest.mark.parametrize("case", sorted(CLASSIFIER_CASES))
def test_a_tampered_sentiment_checkpoint_is_refused_in_one_line(files, tmp_path, case):
    spoil, message = CLASSIFIER_CASES[case]
    path = spoiled(files["sentiment"], tmp_path / "sentiment.npz", **spoil)
    said = refusal("sentiment", path)
    assert said.startswith(named(path)) and re.search(message, said), said


TRANSLATION_CASES = {
    "an unknown config key": (dict(meta=config(dropout=0.1)), r"model_config has unknown keys \['dropout'\]"),
    "a config key missing": (dict(meta=without("num_heads", "model_config")), r"model_config lacks \['num_heads'\]"),
    "another architecture": (dict(meta=config(embed_dim=8192)),
                             "model_config embed_dim is 8192, but the translation model's is 64"),
    "a billion tokens": (dict(meta=config(num_tokens=10**9)),
                         r"its tokenizer has \d+ tokens, but the model's embedding has 1,000,000,000 rows"),
    "tokens as a string": (dict(meta=config(num_tokens="12")), "num_tokens must be a positive integer, got '12'"),
    "int32 embedding": (dict(arrays=as_int32("param/embedding.weight")),
                        "entry param/embedding.weight holds dtype int32, expected float32 array"),
    "a broken tokenizer JSON": (dict(meta=changed(tokenizer="not json")), "tokenizer JSON is malformed"),
    "metadata is a number": (dict(meta=lambda m: 3), "its metadata is a JSON int, expected an object"),
}


@pytest.mark.parametrize("case", sorted(TRANSLATION_CASES))
def test_a_tampered_translation_checkpoint_is_refused_in_one_line(files, tmp_path, case):
    spoil, message = TRANSLATION_CASES[case]
    path = spoiled(files["translation"], tmp_path / "translation.npz", **spoil)
    said = refusal("translation", path)
    assert said.startswith(named(path)) and re.search(message, said), said


GENERATION_CASES = {
    "a broken tokenizer JSON": (dict(meta=changed(tokenizer="{")), "tokenizer JSON is malformed"),
    "a tokenizer of another format": (dict(meta=changed(tokenizer='{"format": "x"}')),
                                      "not a npgpt.CharTokenizer version 1 description"),
    # the reader's own words, or CharTokenizer.from_json's once it checks the depth itself
    "a tokenizer JSON nested too deeply": (dict(meta=changed(tokenizer='{"a": ' * 100_000)),
                                           "tokenizer JSON (is malformed: it )?nests too deeply to read"),
    "a tokenizer with fewer characters": (dict(meta=changed(tokenizer=CharTokenizer.from_text("ab").to_json())),
                                          r"its tokenizer has 2 tokens, but the model's embedding has \d+ rows"),
}


@pytest.mark.parametrize("case", sorted(GENERATION_CASES))
def test_a_tampered_generation_checkpoint_is_refused_in_one_line(files, tmp_path, case):
    spoil, message = GENERATION_CASES[case]
    path = spoiled(files["generation"], tmp_path / "generation.npz", **spoil)
    said = refusal("generation", path)
    assert said.startswith(named(path)) and re.search(message, said), said


# ----------------------------------------------------------------------------- not an app checkpoint at all
def test_a_file_that_is_not_a_checkpoint_is_named(tmp_path):
    garbage = tmp_path / "garbage.npz"
    garbage.write_bytes(b"not a zip file at all" * 10)
    assert refusal("sentiment", garbage).startswith(named(garbage) + "is truncated or corrupted")
    folder = tmp_path / "folder.npz"
    folder.mkdir()
    assert refusal("qa", folder).startswith(named(folder) + "is a directory, expected an app checkpoint file")


@pytest.mark.parametrize("app", ["generation", "translation", "sentiment", "qa", "summarization"])
def test_a_missing_checkpoint_still_says_how_to_train(app, tmp_path):
    with pytest.raises(NotTrained, match=f"no trained {app} model at .*none.npz: train one first"):
        resolve(app).load(str(tmp_path / "none.npz"))


@pytest.mark.parametrize("case", ["metadata is a list", "int32 weights", "a broken tokenizer JSON"])
def test_the_command_line_says_one_line_and_exits_2(files, tmp_path, capsys, case):
    spoil, message = GPT_CASES[case]
    path = spoiled(files["qa"], tmp_path / "qa.npz", **spoil)
    with capped(CAP, SECONDS):
        assert main(["app", "qa", "run", "Anna sold 3 cakes . Q: Who sold them ?", "--ckpt", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and named(path) in err and re.search(message, err), err


# ----------------------------------------------------------------------------- good files
@pytest.mark.parametrize("app", ["qa", "generation", "sentiment", "translation"])
def test_a_checkpoint_in_the_old_format_loads_the_same_model(models, files, app):
    """The files above are written the way every earlier npgpt wrote them: they load, every weight
    the same array, and the model answers as the one that was saved (exactly: the same float32
    weights through the same code)."""
    kind, _, saved, tok = models[app]
    loaded, tokenizer = resolve(app).load(str(files[app]))
    if app == "generation":
        assert tokenizer == tok
    else:
        assert tokenizer.itos == tok.itos
    assert loaded.params.keys() == saved.params.keys()
    for name, value in saved.params.items():
        assert loaded.params[name].dtype == np.float32
        np.testing.assert_array_equal(loaded.params[name], value, err_msg=name)
    if app == "sentiment":
        ids = tok.encode("the screen is good")[None]
        np.testing.assert_array_equal(loaded.forward(ids)[0], saved.eval().forward(ids)[0])
        assert sentiment.run("the screen is good", model=loaded, tokenizer=tokenizer) == \
            sentiment.run("the screen is good", model=saved, tokenizer=tok)
    if app == "generation":
        assert generation.run("ROMEO:", model=loaded, tokenizer=tokenizer, max_new_tokens=5) == \
            generation.run("ROMEO:", model=saved.eval(), tokenizer=tok, max_new_tokens=5)
    if app == "translation":
        assert translation.run("three thousand and five", model=loaded, tokenizer=tokenizer) == \
            translation.run("three thousand and five", model=saved.eval(), tokenizer=tok)


def test_save_app_writes_what_load_reads(models, tmp_path):
    kind, config, model, tok = models["sentiment"]
    path = tmp_path / "sentiment.npz"
    save_app(str(path), "sentiment", kind, config, model.params, tok, {"seed": 3})
    loaded, _ = sentiment.load(str(path))
    for name, value in model.params.items():
        np.testing.assert_array_equal(loaded.params[name], value, err_msg=name)
