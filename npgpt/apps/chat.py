r"""A chat model (document sections 1 and 5: 智能对话, dialogue): a GPT pre-trained on plain text of a
shop, then fine-tuned on conversations with a chat template, the loss on the assistant's turns only
(supervised fine-tuning, SFT).

**The template.** A conversation becomes one token sequence, each turn between a role marker and
the end-of-turn marker (each marker is one token):

    <bos> <|system|> cups cost 7 yuan, 5 left; ... <|end|>
          <|user|> how much are the cups? <|end|> <|assistant|> the cups cost 7 yuan. <|end|>
          <|user|> how many are left? <|end|> <|assistant|> we have 5 cups left. <|end|> ...

To answer, the model is given the conversation up to and including ``<|assistant|>`` and writes
until it writes ``<|end|>``.

**The mask.** Fine-tuning predicts every next token but scores only the assistant's: a target is
kept when the token it predicts is an assistant reply's word or the ``<|end|>`` that closes it;
the system turn, the user's turns and every marker the model is given are ``IGNORE`` (the same
``ignore_index`` as the other apps, :mod:`npgpt.apps.common`), so their positions send no gradient:

$$L = -\frac{1}{|A|}\sum_{t \in A} \log p(x_{t+1} \mid x_{\le t}),\qquad
A = \{t : x_{t+1} \text{ is in an assistant turn}\}$$

**Training.** :func:`train` pre-trains a small GPT on the shop's plain text (next-token loss on
every token, no template; saved beside the checkpoint as ``<name>.pretrained.npz``), then
fine-tunes that same model on the training dialogues. Data and data card:
:mod:`npgpt.apps.dialogues`. Metric: exact match of each assistant reply (and token F1) on the test
split, against the same model before fine-tuning, prompted with the same template, and a retrieval
baseline, the reply to the most similar user turn of the training split.
"""
import os
import re
from collections import Counter
from collections.abc import Callable
from functools import cache
from typing import Any

import numpy as np

from ..checks import UsageError
from ..decoding import greedy_continuations
from ..models import GPT
from ..training import TrainConfig, Trainer
from .common import (
    GPT_MODEL,
    IGNORE,
    TOKEN,
    AppTraining,
    NotTrained,
    PromptAnswerData,
    WordTokenizer,
    app_training,
    default_checkpoint,
    exact_match,
    fast_mode,
    load_app,
    save_app,
    small_gpt_config,
    steps,
    token_f1,
)
from .dialogues import FOLLOW_UPS, KINDS, make_dialogues, make_documents

APP = "chat"
SYSTEM, USER, ASSISTANT, END = "<|system|>", "<|user|>", "<|assistant|>", "<|end|>"
MARKERS = (SYSTEM, USER, ASSISTANT, END)
BLOCK = 96                    # the longest dialogue is 81 tokens
REPLY_ROOM = 16               # the most tokens a reply may take (the data's longest is 8, with <|end|>)
FAST_DIALOGUES = 40           # test dialogues scored in fast mode (the tests' and notebooks' short runs)
CHAT_TOKEN = re.compile("|".join(re.escape(m) for m in MARKERS) + "|" + TOKEN.pattern)
ROLE_LABEL = re.compile(r"\b(User|Assistant):")
BEFORE, RETRIEVAL = "before fine-tuning", "retrieval (nearest user turn)"   # see Retrieval


class ChatTokenizer(WordTokenizer):
    """:class:`~npgpt.apps.common.WordTokenizer` that reads each role marker as one token."""

    @staticmethod
    def split(text: str) -> list[str]:
        return CHAT_TOKEN.findall(text)


@cache
def data(seed: int = 0) -> dict[str, list[dict]]:
    """split -> list of dialogues (:func:`npgpt.apps.dialogues.make_dialogues`), made once per
    process (train and evaluate both read them; callers do not change them)."""
    return make_dialogues(seed)


def render(system: str, turns: list[tuple[str, str | None]]) -> str:
    """The template as text (module docstring); a last turn whose reply is None ends at ``<|assistant|>``."""
    parts = [f"{SYSTEM} {system} {END}"]
    for user, reply in turns:
        parts.append(f"{USER} {user} {END} {ASSISTANT}")
        if reply is not None:
            parts.append(f"{reply} {END}")
    return " ".join(parts)


def encode_dialogue(tok: ChatTokenizer, system: str, turns: list[tuple[str, str | None]],
                    what: str = "the conversation") -> tuple[np.ndarray, np.ndarray]:
    """(ids, mask) of the template: ``<bos>`` then the turns; ``mask[t]`` is True where ``ids[t]`` is
    a word of an assistant reply or the ``<|end|>`` that closes one (what fine-tuning scores). A
    last turn whose reply is None ends at ``<|assistant|>``: the prompt the model answers."""
    pieces: list[tuple[list[int], bool]] = [([tok.bos_id, tok.stoi[SYSTEM]], False),
                                            (list(tok.encode(system, f"{what}'s shop list")), False),
                                            ([tok.stoi[END]], False)]
    for user, reply in turns:
        pieces += [([tok.stoi[USER]], False), (list(tok.encode(user, f"{what}'s user turn")), False),
                   ([tok.stoi[END], tok.stoi[ASSISTANT]], False)]
        if reply is not None:
            pieces.append(([*list(tok.encode(reply, f"{what}'s assistant turn")), tok.stoi[END]], True))
    ids = np.array([i for p, _ in pieces for i in p], dtype=np.int64)
    mask = np.array([m for p, m in pieces for _ in p], dtype=bool)
    return ids, mask


class ChatData:
    """Padded batches of whole dialogues for the Trainer, scoring only the assistant's tokens: the
    target of position t is ``ids[t+1]`` where ``mask[t+1]``, else ``ignore_index``.
    ``dialogues``: split -> list of (ids, mask) from :func:`encode_dialogue`."""

    ignore_index = IGNORE

    def __init__(self, dialogues: dict[str, list[tuple[np.ndarray, np.ndarray]]], pad_id: int) -> None:
        self.dialogues, self.pad_id = dialogues, pad_id

    def longest(self) -> int:
        return max(len(ids) for rows in self.dialogues.values() for ids, _ in rows)

    def get_batch(self, split: str, batch_size: int, block_size: int,
                  rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        rows = self.dialogues[split]
        chosen = [rows[i] for i in rng.integers(0, len(rows), batch_size)]
        T = max(len(ids) for ids, _ in chosen) - 1
        if block_size < T:
            raise UsageError(f"a dialogue of {T + 1} tokens does not fit block_size={block_size}")
        x = np.full((batch_size, T), self.pad_id, dtype=np.int64)
        y = np.full((batch_size, T), IGNORE, dtype=np.int64)
        for row, (ids, mask) in enumerate(chosen):
            n = len(ids) - 1
            x[row, :n] = ids[:-1]
            y[row, :n] = np.where(mask[1:], ids[1:], IGNORE)
        return x, y


def base_checkpoint(ckpt: str) -> str:
    """Where the pre-trained model (before fine-tuning) is saved beside the chat checkpoint."""
    root, _ = os.path.splitext(ckpt)
    return root + ".pretrained.npz"


def _train_config(n: int, batch_size: int, lr: float, seed: int) -> TrainConfig:
    return TrainConfig(max_iters=n, batch_size=batch_size, lr=lr, min_lr=lr / 20,
                       warmup_iters=min(100, n // 5), weight_decay=0.01, eval_interval=n, eval_iters=4, seed=seed)


def _saver(app: str, model: GPT, tok: ChatTokenizer, extra: dict) -> Callable[[str], None]:
    return lambda path: save_app(path, app, "gpt", model.config.to_dict(), model.params, tok, extra)


def train(ckpt: str | None = None, max_iters: int | None = None, batch_size: int = 32, lr: float = 2e-3,
          seed: int = 0, progress: bool = True, log: Callable[[str], object] = print) -> dict[str, Any]:
    """Pre-train on the shop's plain text, save that model (:func:`base_checkpoint`), then fine-tune
    it on the training dialogues and save it to ``ckpt`` (each only when its run finishes:
    :class:`~npgpt.apps.common.AppTraining`). ``max_iters`` sets both runs' steps. Returns
    dict(model, tokenizer, base_model, pretrain_steps, pretrain_seconds, and what the
    fine-tuning's :meth:`AppTraining.fit` says)."""
    with app_training(APP, ckpt) as run:
        splits, documents = data(seed), make_documents(seed)
        tok = ChatTokenizer.from_texts(documents["train"] + [render(d["system"], d["turns"]) for d in splits["train"]])
        model = GPT(small_gpt_config(tok.vocab_size, BLOCK, n_layer=3, n_head=4, n_embd=96), seed=seed)
        plain = PromptAnswerData({s: [(np.array([tok.bos_id]), tok.encode(d)) for d in documents[s]]
                                  for s in ("train", "val")}, tok.pad_id, tok.eos_id)
        first = _fit(run, Trainer(model, plain, _train_config(steps(400, 20, max_iters), batch_size, lr, seed)),
                     base_checkpoint(run.path), model, tok, {"seed": seed, "stage": "pretrained"}, progress, log)
        if not first["saved"]:
            return {**first, "model": model, "tokenizer": tok, "base_model": None}
        base = GPT(model.config)
        base.load_state_dict({k: v.copy() for k, v in model.params.items()})
        chats = ChatData({s: [encode_dialogue(tok, d["system"], d["turns"]) for d in splits[s]]
                          for s in ("train", "val")}, tok.pad_id)
        if chats.longest() > BLOCK:
            raise UsageError(f"a dialogue of {chats.longest()} tokens does not fit the context of {BLOCK}")
        sft = Trainer(model, chats, _train_config(steps(1000, 30, max_iters), batch_size, lr, seed))
        result = run.fit(sft, _saver(APP, model, tok, {"seed": seed, "stage": "fine-tuned",
                                                       "pretrain_steps": first["steps"]}), progress, log)
    return {**result, "model": model, "tokenizer": tok, "base_model": base.eval(),
            "pretrain_steps": first["steps"], "pretrain_seconds": first["seconds"]}


def _fit(run: AppTraining, trainer: Trainer, path: str, model: GPT, tok: ChatTokenizer, extra: dict,
         progress: bool, log: Callable[[str], object]) -> dict[str, Any]:
    """``run.fit`` for the pre-training, which saves to ``path`` rather than to the chat checkpoint."""
    return run.fit(trainer, lambda _: _saver(APP, model, tok, extra)(path), progress, log)


def _load(path: str) -> tuple[GPT, ChatTokenizer]:
    saved = load_app(path, APP, GPT_MODEL, ChatTokenizer.from_json)
    model = GPT(saved.config)
    model.load_state_dict(saved.params)
    return model.eval(), saved.tokenizer


def load(ckpt: str | None = None) -> tuple[GPT, ChatTokenizer]:
    """(model, tokenizer) of the fine-tuned checkpoint, checked before the model is built (common.load_app)."""
    return _load(ckpt or default_checkpoint(APP))


def load_base(ckpt: str | None = None) -> tuple[GPT, ChatTokenizer]:
    """(model, tokenizer) of the model before fine-tuning, saved beside ``ckpt`` by :func:`train`."""
    ckpt = ckpt or default_checkpoint(APP)
    path = base_checkpoint(ckpt)
    if not os.path.exists(path):
        where = "" if ckpt == default_checkpoint(APP) else f" --ckpt {ckpt}"
        raise NotTrained(f"no pre-trained chat model at {path} (train writes it beside the chat model): "
                         f"train first with `python -m npgpt app chat train{where}`")
    return _load(path)


def replies(model: GPT, tok: ChatTokenizer, prompts: list[np.ndarray]) -> list[str]:
    """The greedy reply to each prompt (ids ending at ``<|assistant|>``), up to ``<|end|>``."""
    end = tok.stoi[END]
    out = greedy_continuations(model, prompts, REPLY_ROOM, end)
    return [tok.decode(ids[ids != end]) for ids in out]


class Retrieval:
    """The retrieval baseline: the reply that followed the training user turn most like the given
    one (Jaccard similarity of their word sets; the first such turn in the training split wins ties)."""

    def __init__(self, dialogues: list[dict]) -> None:
        first: dict[str, str] = {}
        for d in dialogues:
            for user, reply in d["turns"]:
                first.setdefault(user, reply)
        self.turns = [(set(ChatTokenizer.split(u.lower())), r) for u, r in first.items()]

    def reply(self, user: str) -> str:
        words = set(ChatTokenizer.split(user.lower()))
        scores = [len(words & w) / len(words | w) for w, _ in self.turns]
        return self.turns[int(np.argmax(scores))][1]


def history_text(system: str, turns: list[tuple[str, str | None]]) -> str:
    """The conversation as :func:`run` reads it: the shop list, then ``User: ... Assistant: ...``."""
    out = [system]
    for user, reply in turns:
        out.append(f"User: {user}")
        if reply is not None:
            out.append(f"Assistant: {reply}")
    return " ".join(out)


def until_reply(dialogue: dict, k: int) -> list[tuple[str, str | None]]:
    """The turns of ``dialogue`` up to its k-th user turn, whose reply is left to write (None)."""
    return [*dialogue["turns"][:k], (dialogue["turns"][k][0], None)]


def _mean(xs: list[float]) -> float:
    return float(np.mean(xs)) if len(xs) else float("nan")


def evaluate(ckpt: str | None = None, split: str = "test", model: GPT | None = None,
             tokenizer: ChatTokenizer | None = None, seed: int = 0, base_model: GPT | None = None,
             max_dialogues: int | None = None) -> dict[str, Any]:
    """Exact match and token F1 of every assistant reply of ``split`` (teacher forcing: the turns
    before it as the data has them), beside the model before fine-tuning and the retrieval baseline.
    ``base_model`` defaults to the one saved beside ``ckpt``; in fast mode only the first
    :data:`FAST_DIALOGUES` dialogues are scored unless ``max_dialogues`` says otherwise."""
    if model is None:
        model, tokenizer = load(ckpt)
    if base_model is None:
        base_model, base_tok = load_base(ckpt)
        if base_tok.itos != tokenizer.itos:
            raise UsageError(f"the pre-trained model beside {ckpt} has another vocabulary than the chat model: "
                             f"they come from different runs; train again")
    splits = data(seed)
    limit = max_dialogues if max_dialogues is not None else (FAST_DIALOGUES if fast_mode() else None)
    dialogues = splits[split][:limit]
    rows = [(d, k) for d in dialogues for k in range(len(d["turns"]))]
    prompts = [encode_dialogue(tokenizer, d["system"], until_reply(d, k))[0] for d, k in rows]
    truths = [d["turns"][k][1] for d, k in rows]
    kinds = [d["kinds"][k] for d, k in rows]
    retrieval = Retrieval(splits["train"])
    outputs = {"model": replies(model, tokenizer, prompts), BEFORE: replies(base_model, tokenizer, prompts),
               RETRIEVAL: [retrieval.reply(d["turns"][k][0]) for d, k in rows]}
    em = {name: [exact_match(h, t) for h, t in zip(hyps, truths)] for name, hyps in outputs.items()}
    f1 = {name: _mean([token_f1(h, t) for h, t in zip(hyps, truths)]) for name, hyps in outputs.items()}
    turns = len(dialogues[0]["turns"]) if dialogues else 0
    return {"metric": "exact match (assistant replies)", "model": _mean(em["model"]), "token_f1": f1["model"],
            "baselines": {BEFORE: _mean(em[BEFORE]), RETRIEVAL: _mean(em[RETRIEVAL])},
            "baseline_token_f1": {BEFORE: f1[BEFORE], RETRIEVAL: f1[RETRIEVAL]},
            "exact_match_by_kind": {name: {k: _mean([e for e, kind in zip(em[name], kinds) if kind == k])
                                           for k in KINDS if k in kinds} for name in outputs},
            "follow_up_exact_match": {name: _mean([e for e, kind in zip(em[name], kinds) if kind in FOLLOW_UPS])
                                      for name in outputs},
            "whole_dialogues_right": {name: _mean([all(em[name][i:i + turns]) for i in range(0, len(rows), turns)])
                                      for name in outputs},
            "kinds": dict(Counter(kinds)), "dialogues": len(dialogues), "params": model.num_params(),
            "examples": [{"input": history_text(d["system"], until_reply(d, k)),
                          "target": t, "output": h, BEFORE: b, RETRIEVAL: r}
                         for (d, k), t, h, b, r in zip(rows, truths, outputs["model"], outputs[BEFORE],
                                                       outputs[RETRIEVAL])]}


def parse_conversation(text: str) -> tuple[str, list[tuple[str, str | None]]]:
    """(shop list, turns) of ``"LIST User: ... Assistant: ... User: ..."``; the last turn has no reply."""
    if not isinstance(text, str):
        raise UsageError(f"the conversation must be a string, got {type(text).__name__}")
    marker = next((m for m in MARKERS if m in text), None)
    if marker is not None:
        raise UsageError(f"the conversation contains the role marker {marker}: write turns as 'User: ...' and "
                         f"'Assistant: ...'; the markers are the template's, not the user's")
    pieces = ROLE_LABEL.split(text)
    system, labelled = pieces[0].strip(), list(zip(pieces[1::2], (p.strip() for p in pieces[2::2])))
    example = ('e.g. "cups cost 7 yuan, 5 left; lamps cost 12 yuan, none left; hats cost 3 yuan, 2 left. '
               'User: how much are the cups?"')
    if not system or not labelled:
        raise UsageError(f"give the shop's list, then the conversation, each turn after 'User:' or 'Assistant:' "
                         f"and ending with a user turn ({example})")
    roles = [role for role, _ in labelled]
    expected = ["User" if i % 2 == 0 else "Assistant" for i in range(len(roles))]
    if roles != expected or roles[-1] != "User":
        raise UsageError(f"the turns go {' -> '.join(roles)}; they must alternate User, Assistant, ... and end "
                         f"with User ({example})")
    empty = next((i for i, (_, t) in enumerate(labelled) if not t), None)
    if empty is not None:
        raise UsageError(f"turn {empty + 1} ({roles[empty]}:) is empty")
    said = [t for _, t in labelled]
    return system, list(zip(said[0::2], [*said[1::2], None]))


def run(text: str, ckpt: str | None = None, model: GPT | None = None, tokenizer: ChatTokenizer | None = None) -> str:
    """The assistant's reply to the last user turn of ``text`` (:func:`parse_conversation`)."""
    if model is None:
        model, tokenizer = load(ckpt)
    system, turns = parse_conversation(text)
    ids, _ = encode_dialogue(tokenizer, system, turns)
    if len(ids) + REPLY_ROOM > model.config.block_size:
        raise UsageError(f"the conversation is {len(ids)} tokens long; the model reads at most "
                         f"{model.config.block_size - REPLY_ROOM} (its context is {model.config.block_size} "
                         f"tokens and a reply needs {REPLY_ROOM}): it is refused, not truncated, because the "
                         f"shop's list is at its start")
    return replies(model, tokenizer, [ids])[0]
