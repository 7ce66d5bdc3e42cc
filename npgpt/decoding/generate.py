r"""Generation (document section 3, step 3): a prompt extended one token at a time.

Each step asks the model for the next token's logits given what has been written so far, chooses a
token with a strategy (:mod:`npgpt.decoding.strategies`), appends it and repeats. The model's cache
(``model.new_cache``: keys and values for a GPT, the state for a recurrent model) makes each step
feed only the new token; decoding only uses the cache's ``length``, ``reset`` and ``reorder``, so
it runs any language model the same way.

**Contexts longer than block_size.** The model sees at most ``block_size`` positions. When a
window slides, every token's position changes, and with it its keys and values (they depend on the
position embedding), so a cache cannot be shifted: it must be refilled. Sliding by one token per
step would refill at every step and the cache would save nothing. So the window grows to
``block_size``, then restarts from its last ``block_size // 2`` tokens and grows again
(:func:`context_window_start`): each token sees at least half a block of context, and the cache is
refilled once every half block. Cached and uncached decoding use the same windows and give
identical tokens. A recurrent model reads the window from a zero state the same way, so for it too
cached and uncached generation give identical tokens.

**How many tokens.** Because the window slides, positions do not bound a generation; the
continuation is one array in memory. So :func:`generate` and :func:`npgpt.decoding.beam_search`
write at most :data:`MAX_NEW_TOKENS` (2**20, about a million) tokens a call, nearly the length of
Tiny Shakespeare: a count like 10**12 is refused at once instead of running until memory runs out.
A longer text is several calls, each continuing the last.
"""
from collections.abc import Iterable
from contextlib import AbstractContextManager
from typing import Any, Protocol, TypeVar

import numpy as np
from numpy.typing import ArrayLike, NDArray

from ..checks import UsageError, check_ids, check_int
from ..models.cache import DecodingCache
from .strategies import Seed, check_strategy, select_next_token

MAX_NEW_TOKENS = 1 << 20          # the most tokens one generate or beam_search call writes (module docstring)


class ContextConfig(Protocol):
    """What decoding reads of a model's config: the context length and the vocabulary."""

    @property
    def block_size(self) -> int: ...
    @property
    def vocab_size(self) -> int: ...


Cache = TypeVar("Cache", bound=DecodingCache)


class LanguageModel(Protocol[Cache]):
    """What decoding asks of a model, and nothing else: a GPT, a quantized GPT and a recurrent LM
    all have it, and a wrapper needs only these four members.

    - ``config.block_size`` (the context it sees) and ``config.vocab_size`` (to check ids);
    - ``forward(idx)`` -> (logits (B, n, V), anything), and ``forward(idx, cache=cache)`` that
      continues from ``cache.length`` and extends the cache;
    - ``new_cache(batch_size)``: a cache of the model's own kind (``Cache``; decoding only uses
      :class:`npgpt.models.cache.DecodingCache`'s ``length``, ``reset`` and ``reorder``);
    - ``evaluating()``: evaluation mode for a block, then the mode the model had.
    """

    @property
    def config(self) -> ContextConfig: ...
    def forward(self, idx: NDArray[np.integer], /, *, cache: Cache | None = None) -> tuple[np.ndarray, Any]: ...
    def new_cache(self, batch_size: int = 1) -> Cache: ...
    def evaluating(self) -> AbstractContextManager[object]: ...


def context_window_start(n_tokens: int, block_size: int) -> int:
    """Index of the first token the model sees when predicting token ``n_tokens``.

    0 while everything fits; past that the start jumps forward by ``ceil(block_size / 2)`` at a
    time, so the window holds between ``block_size // 2 + 1`` and ``block_size`` tokens.
    """
    if n_tokens <= block_size:
        return 0
    hop = block_size - block_size // 2
    return hop * -(-(n_tokens - block_size) // hop)


def next_token_logits(model: LanguageModel[Cache], tokens: ArrayLike, cache: Cache | None = None
                      ) -> NDArray[np.float64]:
    """Logits (B, V), float64, for the token after each row of ``tokens`` (B, n).

    The model sees the window ``tokens[:, start:]`` (:func:`context_window_start`). Without a cache
    the whole window runs.
    With one (``model.new_cache()``), the caller passes the same growing ``tokens`` at every step (one token longer
    each time). If the cache holds all of the window but its last token, only that token runs;
    otherwise (first call, or the window restarted) the cache is reset and refilled with the whole
    window. Both give the same logits up to rounding.
    """
    tokens = np.asarray(tokens)
    window = tokens[:, context_window_start(tokens.shape[1], model.config.block_size):]
    if cache is None:
        logits, _ = model.forward(window)
    else:
        if cache.length != window.shape[1] - 1:
            cache.reset()
        logits, _ = model.forward(window[:, cache.length:], cache=cache)
    return logits[:, -1].astype(np.float64)


def generate(model: LanguageModel[Any], idx: ArrayLike, max_new_tokens: int, strategy: str = "greedy",
             temperature: float = 1.0, top_k: int | None = None, top_p: float | None = None,
             seed: Seed = None, eos_id: int | None = None,
             use_cache: bool = True) -> NDArray[np.int64]:
    """Extend the prompt ``idx`` by up to ``max_new_tokens`` tokens, one :func:`select_next_token`
    step at a time.

    ``idx`` is a 1-D sequence of ids or a (1, T) array; the result is an int64 array of the same
    layout holding the whole prompt followed by the new tokens. Generation stops early right after
    ``eos_id`` is produced (the eos token is included). ``seed`` is an int, a sequence of ints, None
    or a ``numpy.random.Generator``; the same seed gives the same tokens, with or without the cache.
    The model runs in eval mode and its previous mode is restored. Prompts and outputs longer than
    ``block_size`` are fine: the model sees the last ``block_size`` tokens (module docstring).
    ``model`` is a :class:`npgpt.GPT` or a :class:`npgpt.RecurrentLM`.
    """
    check_strategy(strategy, temperature, top_k, top_p)
    prompt, two_d = check_prompt(model, idx)
    max_new_tokens = check_new_tokens(max_new_tokens)
    eos_id = check_eos(model, eos_id)
    rng = np.random.default_rng(seed)
    cache = model.new_cache(batch_size=1) if use_cache else None
    n = prompt.shape[1]
    tokens = np.empty((1, n + max_new_tokens), np.int64)   # written in place: no copy of the text per token
    tokens[:, :n] = prompt
    with model.evaluating():
        for _ in range(max_new_tokens):
            logits = next_token_logits(model, tokens[:, :n], cache)[0]
            token = select_next_token(logits, strategy, temperature, top_k, top_p, rng)
            tokens[0, n] = token
            n += 1
            if token == eos_id:
                break
    return tokens[:, :n] if two_d else tokens[0, :n]


def greedy_continuations(model: LanguageModel[Any], prompts: Iterable[ArrayLike], max_new_tokens: int,
                         eos_id: int | None = None) -> list[np.ndarray]:
    """The greedy continuation of each prompt of ``prompts`` (1-D id sequences of any lengths): one
    int64 array of new tokens per prompt, ending at the first ``eos_id`` (included), at most
    ``max_new_tokens`` long and never running past the model's context (``block_size``).

    The prompts of one length decode as one batch: a forward per step for all of them, each step
    feeding only the new tokens through the model's cache (``model.new_cache``); a row that has
    written ``eos_id`` waits for the others. Each continuation is :func:`generate`'s greedy one for
    its prompt. A prompt that leaves no room for a new token in the context is refused (generate
    slides the window instead). The model runs in evaluation mode and its mode is restored.
    """
    max_new_tokens = check_int("max_new_tokens", max_new_tokens)
    eos_id = check_eos(model, eos_id)
    ids = [check_prompt(model, p)[0][0] for p in prompts]
    block = model.config.block_size
    by_length: dict[int, list[int]] = {}
    for i, prompt in enumerate(ids):
        by_length.setdefault(len(prompt), []).append(i)
    out: list[np.ndarray] = [np.zeros(0, np.int64)] * len(ids)
    with model.evaluating():
        for n, rows in by_length.items():
            if n >= block:
                raise UsageError(f"a prompt of {n} tokens leaves no room for a new token in the model's "
                                 f"context of block_size={block}")
            written = _greedy_rows(model, np.stack([ids[i] for i in rows]), min(max_new_tokens, block - n), eos_id)
            for row, i in zip(written, rows):
                ends = np.flatnonzero(row == eos_id) if eos_id is not None else np.zeros(0, np.int64)
                out[i] = row[:ends[0] + 1] if len(ends) else row
    return out


def _greedy_rows(model: LanguageModel[Any], tokens: NDArray[np.int64], steps: int, eos_id: int | None) -> np.ndarray:
    """``steps`` greedy tokens after each row of ``tokens`` (B, n), fed through one cache; a row
    that has written ``eos_id`` writes it again until every row has (or the steps run out)."""
    cache = model.new_cache(batch_size=len(tokens))
    logits, _ = model.forward(tokens, cache=cache)
    written, done = [], np.zeros(len(tokens), bool)
    for step in range(steps):
        token = logits[:, -1].argmax(-1)                 # greedy_token for each row: the lowest id of ties
        if eos_id is not None:
            token[done] = eos_id
            done |= token == eos_id
        written.append(token)
        if done.all() or step == steps - 1:
            break
        logits, _ = model.forward(token[:, None], cache=cache)
    return np.stack(written, axis=1).astype(np.int64)


# --------------------------------------------------------------------------- input checks
def check_new_tokens(max_new_tokens: int) -> int:
    """``max_new_tokens`` as an int in [0, MAX_NEW_TOKENS] (module docstring: why a cap)."""
    n = check_int("max_new_tokens", max_new_tokens, low=0)
    if n > MAX_NEW_TOKENS:
        raise UsageError(f"max_new_tokens must be at most {MAX_NEW_TOKENS:,} (one call's continuation is held "
                         f"in memory; continue a longer text in several calls), got {n:,}")
    return n


def check_prompt(model: LanguageModel[Any], idx: ArrayLike) -> tuple[NDArray[np.int64], bool]:
    """Return (ids as an int64 (1, T) array, whether idx was 2-D)."""
    ids = np.asarray(idx)
    if ids.ndim == 2 and ids.shape[0] != 1:
        raise UsageError(f"idx must be 1-D or (1, T): generation decodes one sequence, got shape "
                         f"{ids.shape}")
    if ids.ndim not in (1, 2):
        raise UsageError(f"idx must be 1-D or (1, T), got shape {ids.shape}")
    if ids.size == 0:
        raise UsageError(f"the prompt idx is empty (shape {ids.shape}): there is nothing to continue")
    ids = check_ids(ids.reshape(1, -1), "idx", model.config.vocab_size)
    return ids.astype(np.int64), np.ndim(idx) == 2


def check_eos(model: LanguageModel[Any], eos_id: int | None) -> int | None:
    """``eos_id`` checked as a token id of the model's vocabulary; None (no end token) stays None."""
    if eos_id is None:
        return None
    V = model.config.vocab_size
    eos_id = check_int("eos_id", eos_id, low=0)
    if eos_id >= V:
        raise UsageError(f"eos_id must be a token id in [0, vocab_size={V}), got {eos_id!r}")
    return eos_id
