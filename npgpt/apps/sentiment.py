"""Sentiment analysis (document section 5): a GPT with a classification head reads a review, English
or Chinese, and says positive or negative.

Model: :class:`~npgpt.apps.classifier.GPTClassifier` (a small GPT, mean-pooled last hidden states ->
linear -> softmax cross-entropy; the head's backward is written by hand and gradient-checked), trained
by the :class:`~npgpt.training.Trainer`. Data: :mod:`npgpt.apps.reviews`. Metric: accuracy and the
confusion matrix on the test split, against the majority class and a bag-of-words logistic regression.
"""
from dataclasses import replace

import numpy as np

from ..checks import UsageError
from ..models import GPT
from ..models.config import GPTConfig
from ..training import TrainConfig, Trainer
from .classifier import BagOfWordsLogReg, ClassBatches, GPTClassifier, pad_rows
from .common import (
    GPT_MODEL,
    WordTokenizer,
    app_training,
    default_checkpoint,
    load_app,
    save_app,
    small_gpt_config,
    steps,
)
from .reviews import LABELS, make_reviews

APP = "sentiment"
BLOCK = 32


def data(seed=0):
    return make_reviews(seed)


def _rows(splits, tok):
    return {s: ([tok.encode(t) for t, _ in rows], np.array([y for _, y in rows])) for s, rows in splits.items()}


def train(ckpt=None, max_iters=None, batch_size=32, lr=2e-3, seed=0, progress=True, log=print):
    """Train on the train split; save to ``ckpt`` if the run finishes (:class:`~npgpt.apps.common.AppTraining`).
    Returns dict(model, tokenizer, seconds, steps, planned, ckpt, saved, stopped_by)."""
    with app_training(APP, ckpt) as run:
        splits = data(seed)
        tok = WordTokenizer.from_texts(t for t, _ in splits["train"])
        n = steps(600, 40, max_iters)
        model = GPTClassifier(small_gpt_config(tok.vocab_size, BLOCK, n_layer=2, n_head=4, n_embd=64),
                              n_classes=2, pad_id=tok.pad_id, seed=seed)
        config = TrainConfig(max_iters=n, batch_size=batch_size, lr=lr, min_lr=lr / 10, warmup_iters=min(50, n // 5),
                             weight_decay=0.01, eval_interval=n, eval_iters=4, seed=seed)
        trainer = Trainer(model, ClassBatches(_rows({k: splits[k] for k in ("train", "val")}, tok), tok.pad_id),
                          config)
        result = run.fit(trainer, lambda path: save_app(path, APP, "gpt_classifier", model.config.to_dict(),
                                                        model.params, tok, {"seed": seed}), progress, log)
    return {**result, "model": model, "tokenizer": tok}


def classifier_shapes(config: GPTConfig) -> dict[str, tuple[int, ...]]:
    """Name -> shape of every parameter of the app's GPTClassifier: the GPT's and its two-class head."""
    return {**GPT.param_shapes(config), "score.weight": (config.n_embd, len(LABELS)), "score.bias": (len(LABELS),)}


CLASSIFIER = replace(GPT_MODEL, kind="gpt_classifier", shapes=classifier_shapes)


def load(ckpt=None):
    """(model, tokenizer) of the checkpoint, checked before the model is built (common.load_app)."""
    saved = load_app(ckpt or default_checkpoint(APP), APP, CLASSIFIER, WordTokenizer.from_json)
    model = GPTClassifier(saved.config, n_classes=len(LABELS), pad_id=saved.tokenizer.pad_id)
    model.load_state_dict(saved.params)
    return model.eval(), saved.tokenizer


def evaluate(ckpt=None, split="test", model=None, tokenizer=None, seed=0):
    """Accuracy, confusion matrix and examples on ``split``, beside the two baselines."""
    if model is None:
        model, tokenizer = load(ckpt)
    splits = data(seed)
    texts = [t for t, _ in splits[split]]
    y = np.array([label for _, label in splits[split]])
    pred = model.predict(pad_rows([tokenizer.encode(t) for t in texts], tokenizer.pad_id))
    train_y = np.array([label for _, label in splits["train"]])
    majority = int(np.bincount(train_y).argmax())
    bow = BagOfWordsLogReg().fit([WordTokenizer.split(t) for t, _ in splits["train"]], train_y)
    bow_pred = bow.predict([WordTokenizer.split(t) for t in texts])
    confusion = np.zeros((2, 2), dtype=int)
    np.add.at(confusion, (y, pred), 1)
    contrast = np.array(["but" in t or "虽然" in t for t in texts])
    examples = [{"input": t, "target": LABELS[a], "output": LABELS[b]} for t, a, b in zip(texts, y, pred)]
    return {"metric": "accuracy", "model": float((pred == y).mean()),
            "baselines": {"majority class": float((y == majority).mean()),
                          "bag-of-words logistic regression": float((bow_pred == y).mean())},
            "confusion_matrix": confusion.tolist(), "confusion_labels": list(LABELS),
            "contrast_accuracy": {"model": float((pred == y)[contrast].mean()),
                                  "bag-of-words logistic regression": float((bow_pred == y)[contrast].mean()),
                                  "share_of_test": float(contrast.mean())},
            "params": model.num_params(), "examples": examples}


def run(text, ckpt=None, model=None, tokenizer=None):
    """The label and its probability for one review."""
    if model is None:
        model, tokenizer = load(ckpt)
    ids = tokenizer.encode(text.strip(), "the review")
    if len(ids) > model.config.block_size:
        raise UsageError(f"the review is {len(ids)} tokens long; the model reads at most "
                         f"{model.config.block_size}: it is refused, not truncated (the end of a review "
                         f"often decides it)")
    scores, _ = model.eval().forward(ids[None])
    p = np.exp(scores[0] - scores[0].max())
    p /= p.sum()
    k = int(p.argmax())
    return f"{LABELS[k]} (p={p[k]:.2f})"
