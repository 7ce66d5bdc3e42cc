"""Summarization (document section 5): a short report in, one sentence out, which must aggregate
(who won and by how much, the hottest day, the total sold) rather than copy a sentence.

Model: a decoder-only GPT that reads ``report TL;DR:`` and writes the summary, trained with the loss
on the summary alone (:mod:`npgpt.apps.prompted`). Data: :mod:`npgpt.apps.passages`. Metric: ROUGE-1,
ROUGE-2 and ROUGE-L F (:func:`npgpt.rouge`) and the exact-fact accuracy (the whole summary right),
against the lead-sentence baseline.
"""
from ..evaluation import rouge
from .common import app_training, exact_match, steps
from .passages import lead_sentence, make_reports
from .prompted import answer_all, answer_one, load_prompted, mean, train_prompted

APP = "summarization"
SEPARATOR = " TL;DR:"


def data(seed=0):
    return make_reports(seed)


def prompt(text):
    return text.strip() + SEPARATOR


def train(ckpt=None, max_iters=None, batch_size=32, lr=2e-3, seed=0, progress=True, log=print):
    with app_training(APP, ckpt) as run:
        splits = data(seed)
        pairs = {s: [(prompt(r["text"]), r["summary"]) for r in splits[s]] for s in ("train", "val")}
        return train_prompted(run, pairs, steps(1200, 60, max_iters), batch_size, lr, seed, progress, log)


def load(ckpt=None):
    return load_prompted(APP, ckpt)


def scores(hyps, refs):
    r = [rouge(ref, hyp, ("rouge1", "rouge2", "rougeL")) for hyp, ref in zip(hyps, refs)]
    return {"rouge1": mean([s["rouge1"].fmeasure for s in r]), "rouge2": mean([s["rouge2"].fmeasure for s in r]),
            "rougeL": mean([s["rougeL"].fmeasure for s in r]),
            "exact_fact": mean([exact_match(h, t) for h, t in zip(hyps, refs)])}


def evaluate(ckpt=None, split="test", model=None, tokenizer=None, seed=0):
    if model is None:
        model, tokenizer = load(ckpt)
    reports = data(seed)[split]
    refs = [r["summary"] for r in reports]
    hyps = answer_all(model, tokenizer, [prompt(r["text"]) for r in reports])
    mine, lead = scores(hyps, refs), scores([lead_sentence(r["text"]) for r in reports], refs)
    by_kind = {k: scores([h for h, r in zip(hyps, reports) if r["kind"] == k],
                         [r["summary"] for r in reports if r["kind"] == k])["exact_fact"]
               for k in ("match", "weather", "shop")}
    return {"metric": "ROUGE-L F", "model": mine["rougeL"], "baselines": {"lead sentence": lead["rougeL"]},
            "all_scores": {"model": mine, "lead sentence": lead}, "exact_fact_by_kind": by_kind,
            "params": model.num_params(),
            "examples": [{"input": r["text"], "target": r["summary"], "output": h} for r, h in zip(reports, hyps)]}


def run(text, ckpt=None, model=None, tokenizer=None):
    if model is None:
        model, tokenizer = load(ckpt)
    return answer_one(model, tokenizer, prompt(text), "the report")
