"""Perplexity (npgpt.evaluation.perplexity): the formulas; the sliding window scores every token
once and equals the brute-force, one-token-at-a-time computation for the GPT and the recurrent
models; bad input is named; ``python -m npgpt eval`` on a checkpoint of a tiny training run."""
import math
import re

import numpy as np
import pytest

import npgpt
from npgpt.checks import UsageError
from npgpt.cli import main
from npgpt.evaluation import bits_per_byte, bits_per_character, bits_per_token, evaluate_text, perplexity
from npgpt.evaluation.perplexity import token_nlls, window_nlls, windows


def test_the_formulas():
    assert perplexity(0.0) == 1.0 and perplexity(math.log(5)) == pytest.approx(5.0)
    assert bits_per_token(math.log(2)) == pytest.approx(1.0)
    assert bits_per_character(8 * math.log(2), 4) == pytest.approx(2.0)
    assert bits_per_byte(8 * math.log(2), 8) == pytest.approx(1.0)


def test_a_uniform_model_has_the_vocabulary_size_as_perplexity():
    V = 7
    logits = np.zeros((1, 5, V))
    nll = window_nlls(logits, np.arange(5)[None] % V)
    assert perplexity(nll.mean()) == pytest.approx(V)


@pytest.mark.parametrize("n_tokens", [2, 3, 9, 10, 11, 40])
@pytest.mark.parametrize("window, stride", [(1, 1), (4, 1), (4, 3), (4, 4), (9, 2), (9, 9), (16, 5)])
def test_every_token_is_scored_exactly_once(n_tokens, window, stride):
    scored = np.zeros(n_tokens, dtype=int)
    for begin, end, first in windows(n_tokens, window, stride):
        assert 0 <= first < end - begin <= window and begin % stride == 0
        scored[begin + 1 + first:end + 1] += 1
    assert scored[0] == 0 and np.all(scored[1:] == 1)


# ----------------------------------------------------------------------------- against brute force
def small_models():
    gpt = npgpt.GPT(npgpt.GPTConfig(vocab_size=11, block_size=8, n_layer=2, n_head=2, n_embd=8), dtype=np.float64)
    models = {"gpt": gpt}
    for cell in ("lstm", "gru", "rnn"):
        models[cell] = npgpt.RecurrentLM(npgpt.RecurrentConfig(vocab_size=11, block_size=8, cell=cell, n_embd=4,
                                                               n_hidden=6, n_layer=2), dtype=np.float64)
    for model in models.values():
        npgpt.jitter(model.params)
    return models


def brute_force_nlls(model, ids, window, stride):
    """Token by token: -log p(u_t | u_b(t) .. u_{t-1}), one forward pass per token, with the context
    start b(t) = stride * max(0, ceil((t - window) / stride)) written out."""
    out = []
    for t in range(1, len(ids)):
        b = stride * max(0, -((window - t) // stride))          # ceil((t - window) / stride), at least 0
        logits, _ = model.eval().forward(ids[b:t][None])
        z = logits[0, -1]
        out.append(np.log(np.exp(z - z.max()).sum()) + z.max() - z[ids[t]])
    return np.array(out)


@pytest.mark.parametrize("name", ["gpt", "lstm", "gru", "rnn"])
@pytest.mark.parametrize("n_tokens", [2, 7, 9, 30])
@pytest.mark.parametrize("window, stride", [(8, 1), (8, 3), (8, 8), (5, 2), (8, None)])
@pytest.mark.slow
def test_strided_equals_brute_force(name, n_tokens, window, stride):
    model = small_models()[name]
    ids = np.random.default_rng(n_tokens).integers(0, 11, n_tokens)
    got = token_nlls(model, ids, stride=stride, window=window, batch_size=3)
    want = brute_force_nlls(model, ids, window, window // 2 if stride is None else stride)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


def test_stride_one_gives_every_token_the_longest_context():
    model = small_models()["gpt"]
    ids = np.random.default_rng(0).integers(0, 11, 20)
    got = token_nlls(model, ids, stride=1)
    for t in (1, 5, 8, 19):
        logits, _ = model.forward(ids[max(0, t - 8):t][None])
        np.testing.assert_allclose(got[t - 1], window_nlls(logits[:, -1:], ids[t:t + 1][None])[0, 0], rtol=1e-12)


def test_disjoint_windows_equal_the_models_own_loss():
    """With stride = window the score is the mean cross-entropy of forward(x, y) over the chunks."""
    model = small_models()["lstm"]
    ids = np.random.default_rng(1).integers(0, 11, 33)                 # 32 targets: 4 windows of 8
    x, y = ids[:-1].reshape(4, 8), ids[1:].reshape(4, 8)
    _, loss = model.eval().forward(x, y)
    assert token_nlls(model, ids, stride=8).mean() == pytest.approx(loss, rel=1e-12)


def test_the_model_mode_is_restored():
    model = small_models()["gpt"].train()
    token_nlls(model, np.arange(10) % 11)
    assert model.training


class OnlyForwardAndEvaluating:
    """A model offering only what scoring a text asks of it: ``forward``, ``config`` and
    ``evaluating()`` (no ``training``, ``train()`` or ``eval()`` to switch by hand)."""

    __slots__ = ("_model", "config")

    def __init__(self, model):
        self._model, self.config = model, model.config

    def forward(self, idx):
        return self._model.forward(idx)

    def evaluating(self):
        return self._model.evaluating()


def test_scoring_asks_the_model_for_its_evaluation_mode_through_evaluating():
    model = small_models()["gpt"].train()
    ids = np.arange(20) % 11
    np.testing.assert_array_equal(token_nlls(OnlyForwardAndEvaluating(model), ids), token_nlls(model, ids))
    assert model.training


def test_characters_and_bytes_come_from_the_tokenizer():
    text = "héllo wörld, 你好!"
    tokenizer = npgpt.CharTokenizer.from_text(text)
    model = npgpt.GPT(npgpt.GPTConfig(vocab_size=tokenizer.vocab_size, block_size=8, n_layer=1, n_head=2,
                                      n_embd=8), dtype=np.float64)
    score = evaluate_text(model, tokenizer.encode(text), tokenizer, stride=4)
    assert score.tokens == score.characters == len(text) - 1
    assert score.bytes == len(text[1:].encode("utf-8"))
    assert score.bits_per_character == pytest.approx(score.nll / (score.characters * math.log(2)))
    assert score.bits_per_byte < score.bits_per_character
    assert "perplexity" in score.summary() and evaluate_text(model, tokenizer.encode(text)).bits_per_character is None


@pytest.mark.parametrize("kwargs, ids, match", [
    ({"stride": 9}, np.arange(20) % 11, r"stride must be at most the window of 8 tokens, got 9"),
    ({"window": 4, "stride": 5}, np.arange(20) % 11, r"stride must be at most the window of 4 tokens, got 5"),
    ({"window": 9}, np.arange(20) % 11, r"window must be at most the model's block size 8, got 9"),
    ({"stride": 0}, np.arange(20) % 11, r"stride must be a positive integer, got 0"),
    ({"batch_size": 0}, np.arange(20) % 11, r"batch_size must be a positive integer, got 0"),
    ({}, np.array([3]), r"ids must hold at least 2 tokens .* got 1"),
    ({}, np.zeros((2, 5), dtype=int), r"ids must be a 1-D array of integer token ids, got shape \(2, 5\)"),
    ({}, np.zeros(5), r"ids must be a 1-D array of integer token ids, got shape \(5,\), dtype float64"),
])
def test_bad_input_is_named(kwargs, ids, match):
    with pytest.raises(ValueError, match=match):
        token_nlls(small_models()["gpt"], ids, **kwargs)


# ----------------------------------------------------------------------------- the command
TINY = ["--n-layer", "1", "--n-embd", "16", "--block-size", "16", "--batch-size", "4", "--eval-interval", "3",
        "--eval-iters", "2", "--final-eval-iters", "2", "--no-progress", "--warmup-iters", "2", "--max-iters", "3",
        "--sample-tokens", "0"]


@pytest.mark.slow
@pytest.mark.parametrize("model", ["gpt", "gru"])
def test_eval_scores_a_checkpoint(corpus, tmp_path, capsys, model):
    head = ["--n-head", "2"] if model == "gpt" else ["--model", model, "--n-hidden", "8"]
    assert main(["train", "--data", str(corpus), "--out-dir", str(tmp_path / "run"), *TINY, *head]) == 0
    capsys.readouterr()
    ckpt = str(tmp_path / "run" / "ckpt.npz")
    assert main(["eval", "--ckpt", ckpt, "--data", str(corpus), "--stride", "4", "--no-progress"]) == 0
    out = capsys.readouterr().out
    line = re.search(r"^val: loss=(\S+) perplexity=(\S+) bits_per_char=(\S+) bits_per_byte=(\S+) tokens=(\d+) corpus=file$",
                     out, re.M)
    assert line and "window 16, stride 4" in out
    loss, ppl, bpc, bpb, tokens = (float(v) for v in line.groups())
    assert ppl == pytest.approx(math.exp(loss), rel=1e-3) and bpc == pytest.approx(loss / math.log(2), rel=1e-3)
    assert bpb == bpc and tokens == round(len(corpus.read_text()) * 0.1) - 1
    # the same number from the library, by brute force, on the first 40 tokens
    assert main(["eval", "--ckpt", ckpt, "--data", str(corpus), "--stride", "3", "--max-tokens", "40",
                 "--no-progress", "--split", "train"]) == 0
    loss = float(re.search(r"^train: loss=(\S+)", capsys.readouterr().out, re.M).group(1))
    from npgpt.io.checkpoint import model_from_checkpoint, read_checkpoint, tokenizer_from_checkpoint
    meta, arrays = read_checkpoint(ckpt)
    ids = tokenizer_from_checkpoint(ckpt, meta).encode(corpus.read_text())[:40]
    assert loss == pytest.approx(brute_force_nlls(model_from_checkpoint(ckpt, meta, arrays), ids, 16, 3).mean(),
                                 abs=1e-4)


@pytest.mark.slow
def test_eval_errors_are_one_line(corpus, tmp_path, capsys):
    assert main(["train", "--data", str(corpus), "--out-dir", str(tmp_path / "run"), *TINY, "--n-head", "2"]) == 0
    ckpt = str(tmp_path / "run" / "ckpt.npz")
    other = tmp_path / "other.txt"
    other.write_text("Zebras quickly jump!\n" * 20, encoding="utf-8")
    cases = [(["--stride", "17"], "--stride must be at most the window of 16 tokens, got 17"),
             (["--window", "32"], "--window must be at most the model's block size 16, got 32"),
             (["--data", str(other)], "is not the corpus"),
             (["--stride", "0"], "argument --stride: expected an integer >= 1, got '0'")]
    for extra, message in cases:
        capsys.readouterr()
        with_exit = pytest.raises(SystemExit) if extra[1] == "0" else None
        if with_exit:
            with with_exit as e:
                main(["eval", "--ckpt", ckpt, "--data", str(corpus), *extra])
            assert e.value.code == 2
        else:
            assert main(["eval", "--ckpt", ckpt, "--data", str(corpus), *extra]) == 2
        err = capsys.readouterr().err.strip()
        assert message in err and "Traceback" not in err, err
        assert with_exit or "\n" not in err
    assert main(["eval", "--ckpt", str(tmp_path / "none.npz"), "--data", str(corpus)]) == 2


# ----------------------------------------------------------------------------- losses that went wrong
@pytest.mark.parametrize("loss", [float("nan"), float("inf"), -float("inf"), -0.5, np.float32("nan"), "2.0", None])
@pytest.mark.parametrize("metric, name", [(perplexity, "mean_nll"), (bits_per_token, "mean_nll"),
                                          (lambda loss: bits_per_character(loss, 10), "total_nll"),
                                          (lambda loss: bits_per_byte(loss, 10), "total_nll")],
                         ids=["perplexity", "bits_per_token", "bits_per_character", "bits_per_byte"])
def test_a_loss_that_is_no_negative_log_likelihood_is_refused_by_name(metric, name, loss):
    with pytest.raises(UsageError, match=rf"^{name} must be a finite number >= 0, got {re.escape(repr(loss))}$"):
        metric(loss)


def test_the_counts_of_characters_and_bytes_must_be_positive():
    with pytest.raises(UsageError, match="n_characters must be a positive integer, got 0"):
        bits_per_character(1.0, 0)
    with pytest.raises(UsageError, match="n_bytes must be a positive integer, got -3"):
        bits_per_byte(1.0, -3)


def test_a_loss_beyond_a_floats_exponent_has_infinite_perplexity():
    assert perplexity(0.0) == 1.0 and perplexity(np.float32(2.0)) == math.exp(2.0)
    assert perplexity(709.0) == math.exp(709.0) and perplexity(800.0) == math.inf
