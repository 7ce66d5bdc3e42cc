r"""Text generation (document section 5): the Tiny Shakespeare GPT continues a prompt.

Model: the baby GPT (4 layers, width 128, block 64; the quality bar's recipe) trained by the
:class:`~npgpt.training.Trainer` on characters. Splits: the first 90% of the corpus trains, the next
5% is the validation split the Trainer reports, the last 5% is the test split, scored only here.
Metric: the test split's perplexity (:func:`npgpt.evaluate_text`), against a uniform, a unigram and an
add-one bigram character model fitted on the training split; and, across decoding strategies, the
repetition of their samples, measured by distinct-n (the share of n-grams that are distinct):

$$\mathrm{distinct}_n = \frac{|\{\text{distinct } n\text{-grams}\}|}{|\{n\text{-grams}\}|}$$
"""
import warnings
from dataclasses import replace

import numpy as np

from ..checks import UsageError, check_int
from ..decoding import generate
from ..evaluation import evaluate_text
from ..models import GPT
from ..models.config import PRESETS
from ..text import CharTokenizer, resolve_corpus
from ..training import Dataset, TrainConfig, Trainer
from .common import GPT_MODEL, app_training, default_checkpoint, load_app, save_app, steps

APP = "generation"
TRAIN_END, VAL_END = 0.90, 0.95
# The most characters one call writes: pages of text, under a minute at the baby model's few
# milliseconds a character; a typo of a count (10**12) is refused instead of running for weeks.
MAX_NEW_TOKENS = 10_000
STRATEGIES = {"greedy": dict(strategy="greedy"), "temperature 0.8": dict(strategy="temperature", temperature=0.8),
              "top-k 10": dict(strategy="top-k", top_k=10), "top-p 0.9": dict(strategy="top-p", top_p=0.9)}


def data(corpus="shakespeare"):
    """(train+val text, test text, description): the last 5% is the test split."""
    text, description = resolve_corpus(corpus)
    cut = int(len(text) * VAL_END)
    return text[:cut], text[cut:], description


def train(ckpt=None, max_iters=None, batch_size=12, lr=1e-3, seed=0, progress=True, log=print, corpus="shakespeare"):
    """Train on the corpus's first 95%; save to ``ckpt`` if the run finishes (:class:`~npgpt.apps.common.AppTraining`)."""
    with app_training(APP, ckpt) as run:
        trainval, _, description = data(corpus)
        log(f"corpus: {description}")
        tok = CharTokenizer.from_text(resolve_corpus(corpus)[0])
        dataset = Dataset(trainval, tok, val_fraction=(VAL_END - TRAIN_END) / VAL_END, cache=False)
        n = steps(2000, 60, max_iters)
        model = GPT(replace(PRESETS["baby"], vocab_size=tok.vocab_size), seed=seed)
        config = TrainConfig(max_iters=n, batch_size=batch_size, lr=lr, min_lr=lr / 10, warmup_iters=min(100, n // 5),
                             eval_interval=n, eval_iters=20, seed=seed)
        result = run.fit(Trainer(model, dataset, config, tokenizer=tok),
                         lambda path: save_app(path, APP, "gpt", model.config.to_dict(), model.params, tok,
                                               {"seed": seed, "corpus": corpus}), progress, log)
    return {**result, "model": model, "tokenizer": tok}


def load(ckpt=None):
    """(model, tokenizer) of the checkpoint, checked before the model is built (common.load_app)."""
    saved = load_app(ckpt or default_checkpoint(APP), APP, GPT_MODEL, CharTokenizer.from_json)
    model = GPT(saved.config)
    model.load_state_dict(saved.params)
    return model.eval(), saved.tokenizer


def ngram_perplexity(train_ids, test_ids, vocab_size, order):
    """Perplexity of an add-one smoothed character n-gram model (order 0 uniform, 1 unigram, 2 bigram)."""
    V = vocab_size
    if order == 0:
        return float(V)
    if order == 1:
        p = (np.bincount(train_ids, minlength=V) + 1.0) / (len(train_ids) + V)
        return float(np.exp(-np.log(p[test_ids[1:]]).mean()))
    counts = np.ones((V, V))
    np.add.at(counts, (train_ids[:-1], train_ids[1:]), 1.0)
    p = counts / counts.sum(1, keepdims=True)
    return float(np.exp(-np.log(p[test_ids[:-1], test_ids[1:]]).mean()))


def distinct_n(text, n):
    grams = [text[i:i + n] for i in range(len(text) - n + 1)]
    return len(set(grams)) / max(len(grams), 1)


def check_new_tokens(name: str, count: int) -> int:
    """``count`` characters to write, at least 0 and at most :data:`MAX_NEW_TOKENS`; ``name`` names it."""
    count = check_int(name, count, low=0)
    if count > MAX_NEW_TOKENS:
        raise UsageError(f"{name} must be at most {MAX_NEW_TOKENS:,} (characters the app writes in one call), "
                         f"got {count:,}")
    return count


def evaluate(ckpt=None, split="test", model=None, tokenizer=None, seed=0, corpus="shakespeare",
             max_test_tokens=None, sample_tokens=300):
    sample_tokens = check_new_tokens("sample_tokens", sample_tokens)
    if model is None:
        model, tokenizer = load(ckpt)
    if split != "test":
        raise UsageError("generation scores the test split only (the Trainer reports the val loss)")
    trainval, test, _ = data(corpus)
    train_ids = tokenizer.encode(trainval[:int(len(trainval) * TRAIN_END / VAL_END)])
    test_ids = tokenizer.encode(test)[:max_test_tokens]
    score = evaluate_text(model, test_ids, tokenizer, stride=model.config.block_size // 2)
    V = tokenizer.vocab_size
    result = {"metric": "perplexity (test split, per character; lower is better)", "lower_is_better": True,
              "model": score.perplexity, "loss": score.loss, "tokens": score.tokens,
              "baselines": {"uniform": ngram_perplexity(train_ids, test_ids, V, 0),
                            "unigram (add-one)": ngram_perplexity(train_ids, test_ids, V, 1),
                            "bigram (add-one)": ngram_perplexity(train_ids, test_ids, V, 2)},
              "params": model.num_params()}
    prompts = ["ROMEO:", "First Citizen:\n", "KING RICHARD III:\n"]
    result["distinct"] = {}
    result["samples"] = {}
    for name, kwargs in STRATEGIES.items():
        texts = [tokenizer.decode(generate(model, tokenizer.encode(p), sample_tokens, seed=[seed, i], **kwargs))[len(p):]
                 for i, p in enumerate(prompts)]
        result["distinct"][name] = {f"distinct-{n}": float(np.mean([distinct_n(t, n) for t in texts])) for n in (2, 4)}
        result["samples"][name] = texts[0]
    return result


def run(text, ckpt=None, model=None, tokenizer=None, max_new_tokens=200, strategy="top-p", top_p=0.9, seed=0):
    """The prompt ``text`` continued. A prompt longer than the context is truncated to its last
    block_size characters, with a warning. ``max_new_tokens`` is at most :data:`MAX_NEW_TOKENS`."""
    max_new_tokens = check_new_tokens("max_new_tokens", max_new_tokens)
    if model is None:
        model, tokenizer = load(ckpt)
    if not text:
        raise UsageError("the prompt is empty: give the text to continue")
    unknown = sorted(set(text) - set(tokenizer.chars))
    if unknown:
        raise UsageError(f"the prompt has characters the model has never seen: {', '.join(map(repr, unknown[:8]))} "
                         f"(it knows the {tokenizer.vocab_size} characters of Tiny Shakespeare)")
    block = model.config.block_size
    if len(text) > block:
        warnings.warn(f"the prompt is {len(text)} characters long; the model sees the last {block} of them",
                      stacklevel=2)
        text = text[-block:]
    kwargs = {"strategy": strategy}
    if strategy == "top-p":
        kwargs["top_p"] = top_p
    out = generate(model, tokenizer.encode(text), max_new_tokens, seed=seed, **kwargs)
    return tokenizer.decode(out)
