"""What summarization and question answering share: a decoder-only GPT reads ``prompt`` and writes
the answer after a separator (``TL;DR:`` or ``A:``), trained by the Trainer with the loss on the
answer alone (:mod:`npgpt.apps.common`), decoded greedily up to ``<eos>``
(:func:`npgpt.decoding.greedy_continuations`)."""
import numpy as np

from ..checks import UsageError
from ..decoding import greedy_continuations
from ..models import GPT
from ..training import TrainConfig, Trainer
from .common import (
    GPT_MODEL,
    AppTraining,
    PromptAnswerData,
    WordTokenizer,
    default_checkpoint,
    encode_prompt,
    load_app,
    save_app,
    small_gpt_config,
)

BLOCK = 96
ANSWER_ROOM = 20          # positions kept free for the answer


def train_prompted(run: AppTraining, pairs, n_steps, batch_size=32, lr=2e-3, seed=0, progress=True, log=print):
    """Train the app of ``run`` (:func:`~npgpt.apps.common.app_training`) on ``pairs``: split -> list
    of (prompt text, answer text). Returns dict(model, tokenizer, and what :meth:`AppTraining.fit` says)."""
    tok = WordTokenizer.from_texts([p for p, _ in pairs["train"]] + [a for _, a in pairs["train"]])
    ids = {s: [(tok.encode(p), tok.encode(a)) for p, a in pairs[s]] for s in ("train", "val")}
    model = GPT(small_gpt_config(tok.vocab_size, BLOCK, n_layer=3, n_head=4, n_embd=96), seed=seed)
    config = TrainConfig(max_iters=n_steps, batch_size=batch_size, lr=lr, min_lr=lr / 20,
                         warmup_iters=min(100, n_steps // 5), weight_decay=0.01, eval_interval=n_steps,
                         eval_iters=4, seed=seed)
    data = PromptAnswerData(ids, tok.pad_id, tok.eos_id)
    if data.longest() > BLOCK:
        raise UsageError(f"an example of {data.longest()} tokens does not fit the context of {BLOCK}")
    result = run.fit(Trainer(model, data, config),
                     lambda path: save_app(path, run.app, "gpt", model.config.to_dict(), model.params, tok,
                                           {"seed": seed}), progress, log)
    return {**result, "model": model, "tokenizer": tok}


def load_prompted(app, ckpt=None):
    """(model, tokenizer) of the app's checkpoint, checked before the model is built (common.load_app)."""
    saved = load_app(ckpt or default_checkpoint(app), app, GPT_MODEL, WordTokenizer.from_json)
    model = GPT(saved.config)
    model.load_state_dict(saved.params)
    return model.eval(), saved.tokenizer


def answer_all(model, tok, prompts):
    """Greedy answers (text) to a list of prompt texts."""
    ids = [encode_prompt(tok, p, model.config.block_size, ANSWER_ROOM, "the prompt") for p in prompts]
    return [tok.decode(a) for a in greedy_continuations(model, ids, ANSWER_ROOM, tok.eos_id)]


def answer_one(model, tok, prompt, what):
    ids = encode_prompt(tok, prompt, model.config.block_size, ANSWER_ROOM, what)
    return tok.decode(greedy_continuations(model, [ids], ANSWER_ROOM, tok.eos_id)[0])


def mean(xs):
    return float(np.mean(xs)) if len(xs) else float("nan")
