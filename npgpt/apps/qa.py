"""Question answering (document section 5): a report and a question in, a short answer out, written
by the model (generative QA), not picked from a list.

Model: a decoder-only GPT that reads ``report Q: question A:`` and writes the answer, trained with
the loss on the answer alone (:mod:`npgpt.apps.prompted`). Data: the reports of
:mod:`npgpt.apps.passages`, two questions each. Metric: exact match and SQuAD-style token F1, against
the most frequent training answer, overall and for the question asked.
"""
from collections import Counter

from ..checks import UsageError
from .common import app_training, exact_match, steps, token_f1
from .passages import DAYS, ITEMS, TEAMS, make_reports
from .prompted import answer_all, answer_one, load_prompted, mean, train_prompted

APP = "qa"


def data(seed=0):
    """split -> list of (report text, question, answer), every question of a report in its split."""
    return {s: [(r["text"], q, a) for r in reports for q, a in r["qa"]] for s, reports in make_reports(seed).items()}


def question_type(question):
    """The question's template: its team, day and item words replaced by X."""
    names = set(TEAMS) | set(DAYS) | set(ITEMS)
    return " ".join("X" if w.strip("?") in names else w for w in question.split())


def prompt(text, question):
    return f"{text.strip()} Q: {question.strip()} A:"


def train(ckpt=None, max_iters=None, batch_size=32, lr=2e-3, seed=0, progress=True, log=print):
    with app_training(APP, ckpt) as run:
        splits = data(seed)
        pairs = {s: [(prompt(t, q), a) for t, q, a in splits[s]] for s in ("train", "val")}
        return train_prompted(run, pairs, steps(1200, 60, max_iters), batch_size, lr, seed, progress, log)


def load(ckpt=None):
    return load_prompted(APP, ckpt)


def evaluate(ckpt=None, split="test", model=None, tokenizer=None, seed=0):
    if model is None:
        model, tokenizer = load(ckpt)
    splits = data(seed)
    rows = splits[split]
    hyps = answer_all(model, tokenizer, [prompt(t, q) for t, q, _ in rows])
    truths = [a for _, _, a in rows]
    train_answers = Counter(a for _, _, a in splits["train"])
    top = train_answers.most_common(1)[0][0]
    per_question = {}
    for _, q, a in splits["train"]:
        per_question.setdefault(q, Counter())[a] += 1
    by_q = [per_question[q].most_common(1)[0][0] if q in per_question else top for _, q, _ in rows]

    def em(h):
        return mean([exact_match(x, t) for x, t in zip(h, truths)])

    def f1(h):
        return mean([token_f1(x, t) for x, t in zip(h, truths)])

    return {"metric": "exact match", "model": em(hyps), "token_f1": f1(hyps),
            "baselines": {"most frequent answer": em([top] * len(rows)),
                          "most frequent answer to the same question": em(by_q)},
            "baseline_token_f1": {"most frequent answer": f1([top] * len(rows)),
                                  "most frequent answer to the same question": f1(by_q)},
            "exact_match_by_question": {k: mean([exact_match(h, a) for h, (_, q, a) in zip(hyps, rows)
                                                 if question_type(q) == k])
                                        for k in sorted({question_type(q) for _, q, _ in rows})},
            "params": model.num_params(),
            "examples": [{"input": f"{t} Q: {q}", "target": a, "output": h} for (t, q, a), h in zip(rows, hyps)]}


def run(text, question=None, ckpt=None, model=None, tokenizer=None):
    """``text`` is the report; the question is ``question`` or, if None, what follows " Q: " in ``text``."""
    if model is None:
        model, tokenizer = load(ckpt)
    if question is None:
        text, sep, question = text.partition(" Q: ")
        if not sep:
            raise UsageError('give the report, then the question after " Q: " '
                             '(e.g. "The Lions played the Bears on Monday. ... Q: Who won?")')
    if not question.strip():
        raise UsageError("the question is empty")
    return answer_one(model, tokenizer, prompt(text, question), "the report and question")
