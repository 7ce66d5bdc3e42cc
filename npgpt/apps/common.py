r"""What the five applications share (document section 5): a word tokenizer, fixed splits, padded
prompt/answer batches for the Trainer whose loss skips the prompt, app checkpoints, and the answer
metrics (exact match and SQuAD-style token F1).

**Loss only on the answer.** A decoder-only model reads ``prompt + answer + <eos>`` and is trained to
predict each next token, but only the answer's tokens (and the ``<eos>`` that ends it) are scored:
the other targets are set to ``IGNORE``, which the data names as its ``ignore_index``, so the
Trainer asks the model's cross-entropy to skip them (:mod:`npgpt.ops.cross_entropy`):

$$L = -\frac{1}{|A|}\sum_{t \in A} \log p(x_{t+1} \mid x_{\le t}),\qquad A = \text{the answer's positions}$$
"""
import json
import math
import os
import re
import signal
import string
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

from ..checks import MissingFile, UsageError, check_int
from ..io.checkpoint import ARRAYS_PER_LAYER, MAX_BLOCK_SIZE, config_from_dict, write_checkpoint
from ..io.npz import Entry, NpzFile, not_a_file
from ..locks import hold_lock
from ..models import GPT
from ..models.config import GPTConfig
from ..runtime import settings
from ..runtime.ranks import launched_size
from ..training.trainer import (
    CheckpointNotSaved,
    StopSignals,
    Trainer,
    checkpoint_lock,
    prepare_output_folder,
)

IGNORE = -1                     # a target the loss does not score
PAD, BOS, EOS = "<pad>", "<bos>", "<eos>"
SPECIALS = (PAD, BOS, EOS)
# English words, single digits (so numbers are spelled digit by digit), single CJK characters, and
# any other single non-space character (punctuation).
TOKEN = re.compile(r"[A-Za-z]+|\d|[\u3400-\u9fff]|[^\sA-Za-z\d\u3400-\u9fff]")
CJK = re.compile(r"[\u3400-\u9fff]")


class NotTrained(MissingFile):
    """``run`` or ``eval`` asked for a model that has not been trained; says which command trains it."""


def fast_mode():
    """NPGPT_FAST=1: the notebooks' and tests' short runs."""
    return settings.fast()


# ----------------------------------------------------------------------------- tokenizer
class WordTokenizer:
    """Words, digits, CJK characters and punctuation marks as tokens (``TOKEN``); ids 0, 1, 2 are
    ``<pad>``, ``<bos>``, ``<eos>``. Encoding text with a token outside the vocabulary raises a
    ValueError naming it: these apps have closed vocabularies, and a token the model never saw has no
    meaning for it."""

    def __init__(self, tokens):
        self.itos = list(SPECIALS) + sorted(set(tokens) - set(SPECIALS))
        self.stoi = {t: i for i, t in enumerate(self.itos)}
        self.pad_id, self.bos_id, self.eos_id = 0, 1, 2

    @classmethod
    def from_texts(cls, texts):
        return cls({t for text in texts for t in cls.split(text)})

    @property
    def vocab_size(self):
        return len(self.itos)

    @staticmethod
    def split(text):
        return TOKEN.findall(text)

    def unknown(self, text):
        """The tokens of ``text`` that are not in the vocabulary, in order of first appearance."""
        return list(dict.fromkeys(t for t in self.split(text) if t not in self.stoi))

    def encode(self, text, what="the input"):
        if not isinstance(text, str):
            raise UsageError(f"{what} must be a string, got {type(text).__name__}")
        tokens = self.split(text)
        if not tokens:
            raise UsageError(f"{what} is empty: there is nothing to read")
        missing = self.unknown(text)
        if missing:
            shown = ", ".join(repr(t) for t in missing[:8]) + (" ..." if len(missing) > 8 else "")
            raise UsageError(f"{what} has {len(missing)} token(s) the model has never seen: {shown} "
                             f"(its vocabulary has {self.vocab_size} tokens; see the app's data card)")
        return np.array([self.stoi[t] for t in tokens], dtype=np.int64)

    def tokens(self, ids):
        """The tokens of ``ids``, stopping at <eos> and skipping <pad>/<bos>."""
        out = []
        for i in np.asarray(ids).reshape(-1):
            if i == self.eos_id:
                break
            if i > self.eos_id:
                out.append(self.itos[i])
        return out

    def decode(self, ids):
        return join_tokens(self.tokens(ids))

    def to_json(self):
        return json.dumps(self.itos[len(SPECIALS):], ensure_ascii=False)

    @classmethod
    def from_json(cls, s: str) -> "WordTokenizer":
        """The tokenizer :meth:`to_json` wrote: a JSON list of its tokens (without the specials)."""
        try:
            tokens = json.loads(s)
        except (TypeError, json.JSONDecodeError) as e:
            raise UsageError(f"tokenizer JSON is malformed: {e}") from None
        if not isinstance(tokens, list):
            raise UsageError(f"the tokenizer JSON must be a list of token strings, got a JSON {type(tokens).__name__}")
        bad = next((i for i, t in enumerate(tokens) if not isinstance(t, str)), None)
        if bad is not None:
            raise UsageError(f"the tokenizer JSON must be a list of token strings; its item {bad} is {tokens[bad]!r}")
        return cls(tokens)


def join_tokens(tokens):
    """Text from tokens: a space between two words or a word and a number, none around punctuation
    (except after , . : ? !), between digits or around CJK characters."""
    out = ""
    for t in tokens:
        if out:
            a = out[-1]
            wordish = t[0].isalnum() and not CJK.match(t)
            if wordish and not CJK.match(a) and a not in "-'" and not (a.isdigit() and t.isdigit()):
                out += " "
        out += t
    return out


# ----------------------------------------------------------------------------- splits
def draw_distinct(make, rng, need, key, max_draws=None):
    """Call ``make(rng)`` until ``need`` examples with distinct ``key`` have been drawn (the first of
    each key is kept, in order)."""
    seen, draws = {}, 0
    max_draws = max_draws or 50 * need
    while len(seen) < need:
        example = make(rng)
        seen.setdefault(key(example), example)
        draws += 1
        if draws > max_draws:
            raise UsageError(f"the generator made only {len(seen)} distinct examples in {draws} draws; "
                             f"{need} are needed")
    return list(seen.values())


def fixed_splits(examples, key, sizes, seed):
    """Deduplicate ``examples`` by ``key(example)``, shuffle them with ``seed`` and cut them into
    ``sizes`` (a dict split -> count, in order). No key is in two splits. Raises if too few."""
    unique = list({key(e): e for e in examples}.values())
    need = sum(sizes.values())
    if len(unique) < need:
        raise UsageError(f"the generator made {len(unique)} distinct examples, the splits need {need}")
    order = np.random.default_rng(seed).permutation(len(unique))
    splits, start = {}, 0
    for name, n in sizes.items():
        splits[name] = [unique[i] for i in order[start:start + n]]
        start += n
    return splits


# ----------------------------------------------------------------------------- decoder-only data
class PromptAnswerData:
    """Padded batches of ``prompt + answer + <eos>`` for the Trainer (``get_batch``), scoring only
    the answer: the targets of the prompt and the padding are ``ignore_index`` (module docstring).
    ``pairs``: split -> list of (prompt ids, answer ids)."""

    ignore_index = IGNORE

    def __init__(self, pairs, pad_id, eos_id):
        self.pairs, self.pad_id, self.eos_id = pairs, pad_id, eos_id

    def longest(self):
        return max(len(p) + len(a) + 1 for pairs in self.pairs.values() for p, a in pairs)

    def get_batch(self, split, batch_size, block_size, rng):
        pairs = self.pairs[split]
        chosen = [pairs[i] for i in rng.integers(0, len(pairs), batch_size)]
        seqs = [np.concatenate([p, a, [self.eos_id]]) for p, a in chosen]
        T = max(len(s) for s in seqs) - 1
        if block_size < T:
            raise UsageError(f"an example of {T + 1} tokens does not fit block_size={block_size}")
        x = np.full((batch_size, T), self.pad_id, dtype=np.int64)
        y = np.full((batch_size, T), IGNORE, dtype=np.int64)
        for row, (s, (p, _)) in enumerate(zip(seqs, chosen)):
            x[row, :len(s) - 1] = s[:-1]
            y[row, len(p) - 1:len(s) - 1] = s[len(p):]        # the answer and <eos>
        return x, y


def small_gpt_config(vocab_size, block_size, n_layer=3, n_head=4, n_embd=96):
    return GPTConfig(vocab_size=vocab_size, block_size=block_size, n_layer=n_layer, n_head=n_head,
                     n_embd=n_embd, dropout=0.0)


def encode_prompt(tokenizer, text, block_size, room, what):
    """The ids of a prompt, refused (ValueError) if it leaves fewer than ``room`` positions to answer."""
    ids = tokenizer.encode(text, what)
    if len(ids) + room > block_size:
        raise UsageError(f"{what} is {len(ids)} tokens long; the model reads at most {block_size - room} "
                         f"(its context is {block_size} tokens and the answer needs {room}): it is refused, "
                         f"not truncated, because cutting a passage can cut away the answer")
    return ids


# ----------------------------------------------------------------------------- metrics
def normalize_answer(s):
    """SQuAD's normalisation: lower case, no punctuation, no articles, single spaces."""
    s = s.lower()
    s = "".join(ch for ch in s if ch not in set(string.punctuation))
    s = re.sub(r"\b(a|an|the)\b", " ", s)
    return " ".join(s.split())


def exact_match(prediction, truth):
    return float(normalize_answer(prediction) == normalize_answer(truth))


def token_f1(prediction, truth):
    """SQuAD's token F1 over normalised whitespace tokens."""
    p, t = normalize_answer(prediction).split(), normalize_answer(truth).split()
    if not p or not t:
        return float(p == t)
    common = sum((Counter(p) & Counter(t)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(p), common / len(t)
    return 2 * precision * recall / (precision + recall)


# ----------------------------------------------------------------------------- checkpoints
APP_FORMAT = 1


def default_checkpoint(app):
    return os.path.join("runs", "apps", app, "ckpt.npz")


def save_app(path, app, model_kind, model_config, params, tokenizer, extra=None):
    """One ``.npz``: the parameters and a JSON ``meta`` (app, model kind and config, tokenizer)."""
    meta = {"app_format": APP_FORMAT, "app": app, "model": model_kind, "model_config": model_config,
            "tokenizer": tokenizer.to_json(), "extra": extra or {}}
    write_checkpoint(path, meta, {f"param/{k}": v for k, v in params.items()})


@dataclass(frozen=True)
class AppModel:
    """What an app checkpoint holds of one kind of model, for :func:`load_app` to check before it
    builds anything the file describes.

    ``kind``: the metadata's ``model``; ``config``: the checked config of the metadata's
    ``model_config`` dict (a UsageError naming the key otherwise); ``sizes``: the config's sizes, for
    a message; ``entries``: the fewest parameter arrays the config implies, found without listing
    them (a config of 100,000 layers is refused before its shapes are listed); ``shapes``: name ->
    shape of every parameter; ``vocab_size``: the rows of its token embedding (the tokenizer must
    have as many ids)."""
    kind: str
    config: Callable[[dict], Any]
    sizes: Callable[[Any], str]
    entries: Callable[[Any], int]
    shapes: Callable[[Any], dict[str, tuple[int, ...]]]
    vocab_size: Callable[[Any], int]


class AppCheckpoint(NamedTuple):
    """What :func:`load_app` read: the metadata, the model's checked config, the tokenizer and the
    parameters (name -> float32 array, without the ``param/`` prefix)."""
    meta: dict
    config: Any
    tokenizer: Any
    params: dict[str, np.ndarray]


def gpt_config(d: dict) -> GPTConfig:
    """A GPT app's ``model_config``, checked as a training checkpoint's is (known keys, every required
    one, types and ranges), and its positions bounded: a sinusoidal table is built from them, not read."""
    config = config_from_dict(d)
    if not isinstance(config, GPTConfig):
        raise UsageError(f"model_config describes a recurrent model (cell {config.cell!r}), expected a GPT's")
    if config.block_size > MAX_BLOCK_SIZE:
        raise UsageError(f"model_config block_size={config.block_size} is more than the {MAX_BLOCK_SIZE} positions "
                         f"npgpt reads a GPT for")
    return config


GPT_MODEL = AppModel(kind="gpt", config=gpt_config, sizes=lambda c: f"n_layer={c.n_layer}, n_embd={c.n_embd}",
                     entries=lambda c: c.n_layer * ARRAYS_PER_LAYER[GPTConfig], shapes=GPT.param_shapes,
                     vocab_size=lambda c: c.vocab_size)
APP_META = {"app_format": int, "app": str, "model": str, "model_config": dict, "tokenizer": str}


def load_app(path: str, app: str, model: AppModel, tokenizer: Callable[[str], Any]) -> AppCheckpoint:
    """The checkpoint of ``app`` at ``path``, every part checked before anything it describes is
    built (through the checked container, :class:`npgpt.io.npz.NpzFile`): the metadata, the config
    (against the file's entries and bytes: a file holds at most bytes/4 float32 weights), the
    tokenizer (``tokenizer``: its ``from_json``) against the model's embedding, each parameter's
    shape and float32 dtype, its values finite. A clear NotTrained when there is no file; anything
    wrong is one line naming the file and the key or entry."""
    if not_a_file(path) == "missing":
        where = "" if path == default_checkpoint(app) else f" --ckpt {path}"
        raise NotTrained(f"no trained {app} model at {path}: train one first with "
                         f"`python -m npgpt app {app} train{where}`")
    with NpzFile(path, "app checkpoint", invalid="is not a readable app checkpoint") as npz:
        meta = _app_meta(npz.read_json("meta"), app, model.kind)
        config = model.config(meta["model_config"])
        tok = _tokenizer(tokenizer, meta["tokenizer"])
        rows = model.vocab_size(config)
        if tok.vocab_size != rows:
            raise UsageError(f"its tokenizer has {tok.vocab_size:,} tokens, but the model's embedding has {rows:,} "
                             f"rows: they do not belong together")
        params = _read_params(npz, model, config)
    return AppCheckpoint(meta, config, tok, params)


def _app_meta(meta: object, app: str, kind: str) -> dict:
    """The metadata ``save_app`` writes, checked: a JSON object with every key of APP_META, of its type."""
    if not isinstance(meta, dict):
        raise UsageError(f"its metadata is a JSON {type(meta).__name__}, expected an object")
    missing = [k for k in APP_META if k not in meta]
    if missing:
        raise UsageError(f"its metadata lacks {', '.join(missing)}")
    for key, kind_of in APP_META.items():
        if isinstance(meta[key], bool) or not isinstance(meta[key], kind_of):
            expected = "object" if kind_of is dict else kind_of.__name__
            raise UsageError(f"metadata {key!r} is {meta[key]!r}, expected a JSON {expected}")
    if meta["app_format"] != APP_FORMAT:
        raise UsageError(f"app_format {meta['app_format']}, expected {APP_FORMAT}")
    if meta["app"] != app:
        raise UsageError(f"it holds a {meta['app']!r} model, not a {app!r} one")
    if meta["model"] != kind:
        raise UsageError(f"its model is a {meta['model']!r}, expected a {kind!r}")
    return meta


def _tokenizer(read: Callable[[str], Any], text: str) -> Any:
    """``read(text)``; JSON too deep for the parser, or an integer of more than 4300 digits, is the
    file's fault too (what the tokenizers' own checks do not catch)."""
    try:
        return read(text)
    except RecursionError:
        raise UsageError("its tokenizer JSON nests too deeply to read") from None
    except ValueError as e:
        if isinstance(e, UsageError):
            raise
        raise UsageError(f"its tokenizer is not readable JSON ({e})") from None


def _read_params(npz: NpzFile, model: AppModel, config: Any) -> dict[str, np.ndarray]:
    """The float32 parameters ``config`` implies, read after the file has shown it can hold them."""
    why = f"model_config {model.sizes(config)}"
    npz.check_fits(why, n_entries=model.entries(config))
    shapes = model.shapes(config)
    npz.check_fits(why, n_bytes=4 * sum(math.prod(shape) for shape in shapes.values()))
    arrays = npz.read({f"param/{name}": Entry(shape, np.float32) for name, shape in shapes.items()})
    bad = next((key for key, a in arrays.items() if not np.isfinite(a).all()), None)
    if bad is not None:
        raise UsageError(f"entry {bad} holds NaN or infinite values: the run it came from had diverged")
    return {key[len("param/"):]: a for key, a in arrays.items()}


class Timer:
    def __enter__(self):
        self.t0 = time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.seconds = time.perf_counter() - self.t0


def steps(full, fast, max_iters=None):
    """Training steps: ``max_iters`` if given, else ``fast`` in fast mode, else ``full``."""
    if max_iters is not None:
        return check_int("max_iters", max_iters)
    return fast if fast_mode() else full


# ----------------------------------------------------------------------------- training an app
class AppTraining:
    """One ``train`` of an app into the checkpoint ``path``, made by :func:`app_training` (which
    holds the checkpoint's lock and turns SIGINT/SIGTERM into a request, ``stop``, for the set-up
    and the save). :meth:`fit` trains and saves."""

    def __init__(self, app: str, path: str, stop: StopSignals) -> None:
        self.app, self.path, self.stop = app, path, stop

    def fit(self, trainer: Trainer, save: Callable[[str], None], progress: bool = True,
            log: Callable[[str], object] = print) -> dict[str, Any]:
        """Check the checkpoint's folder and disk before step 1 (:meth:`Trainer.check_before_training`,
        which also removes a killed save's temporary files), train, and ``save(path)`` only a
        finished run. A signal stops the run at a step boundary and nothing is saved: an app
        checkpoint holds a finished model, without the optimizer state a run would resume from, so a
        half-trained one would only replace the finished model it finds there. Returns dict(steps
        (those that ran), planned, seconds, ckpt, saved, stopped_by (the signal, or None))."""
        planned, seconds = trainer.config.max_iters, 0.0
        if self.stop.signal is None:           # else a signal came during the set-up: no step runs
            trainer.check_before_training(self.path)
            with Timer() as t:
                trainer.train(progress=progress, log=log)
            seconds = t.seconds
        finished = trainer.step >= planned
        if finished:        # a signal after the last step still lets the finished model be saved
            self._save(save)
        stopped_by = trainer.stopped_by or self.stop.signal
        if not finished:
            kept = "is unchanged" if os.path.exists(self.path) else "was not written"
            log(f"{self.app}: stopped by {signal.Signals(stopped_by).name} at step {trainer.step} of {planned}; "
                f"nothing saved: {self.path} {kept} (an app checkpoint holds a finished model only)")
        return {"steps": trainer.step, "planned": planned, "seconds": seconds, "ckpt": self.path,
                "saved": finished, "stopped_by": stopped_by}

    def _save(self, save: Callable[[str], None]) -> None:
        """``save(path)``; a failed write (a disk filled during training) is one line, the old file intact."""
        existed = os.path.exists(self.path)
        try:
            save(self.path)
        except OSError as e:
            kept = "the previous one is intact" if existed else "nothing was written"
            raise CheckpointNotSaved(f"could not write the {self.app} checkpoint {self.path}: "
                                     f"{e.strerror or e}; {kept}") from None


@contextmanager
def app_training(app: str, ckpt: str | os.PathLike[str] | None) -> Iterator[AppTraining]:
    """The block that trains ``app`` into ``ckpt`` (default :func:`default_checkpoint`): one process
    only (under ``mpiexec`` every rank would train the same model into the same file); the folder
    checked and made (:func:`~npgpt.training.trainer.prepare_output_folder`), then the checkpoint's
    lock held (:func:`~npgpt.training.trainer.checkpoint_lock`, ``<ckpt>.lock``: a second run is
    refused in one line, and a temporary file is removed only when no live run can be writing it);
    SIGINT and SIGTERM turned into a request that :meth:`AppTraining.fit` honours (the training
    loop has its own, at each step boundary)."""
    ranks = launched_size()
    if ranks > 1:
        raise UsageError(f"app training runs on one process, but mpiexec started {ranks}: every rank would "
                         f"train the same model into one file; start it without mpiexec")
    path = os.fspath(ckpt) if ckpt is not None else default_checkpoint(app)
    prepare_output_folder(os.path.dirname(os.path.abspath(path)))     # named as a folder, not as a lock
    with hold_lock(checkpoint_lock(path), f"the {app} checkpoint {path}"), StopSignals() as stop:
        yield AppTraining(app, path, stop)
