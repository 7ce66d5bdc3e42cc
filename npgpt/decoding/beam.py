r"""Beam search (document section 3, step 3): the most likely continuation, approximately."""
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from ..checks import UsageError, check_int, check_real
from ..runtime.memory import require_memory
from .generate import LanguageModel, check_eos, check_new_tokens, check_prompt, next_token_logits
from .strategies import log_softmax


def beam_search(model: LanguageModel[Any], idx: ArrayLike, max_new_tokens: int, beam_width: int = 4,
                length_penalty: float = 1.0, eos_id: int | None = None, use_cache: bool = True
                ) -> tuple[NDArray[np.int64], float]:
    r"""The most likely continuation found by beam search; returns ``(tokens, score)``.

    Each hypothesis $y$ carries $\log P(y) = \sum_t \log p(y_t \mid \text{prompt}, y_{<t})$. A step
    extends every live hypothesis by every token and keeps the ``beam_width`` best totals.
    A kept hypothesis ending in ``eos_id`` is finished and set aside, and the beam shrinks by one
    (the textbook version: Jurafsky & Martin, *Speech and Language Processing*, 3rd ed.,
    beam search in the machine translation chapter); the search ends when no hypothesis is live or
    after ``max_new_tokens`` steps. Among finished and live hypotheses the winner maximises

    $$\mathrm{score}(y) = \frac{\log P(y)}{|y|^{\alpha}}$$

    with $|y|$ the number of generated tokens (eos included) and $\alpha$ = ``length_penalty``:
    $\alpha=0$ ranks by total log-probability (favours short outputs), $\alpha=1$ by the mean
    log-probability per token. Live beams are the batch dimension: one forward per step for all of
    them, and the cache is reordered so each kept beam carries its parent's keys and values (a
    recurrent model's state is reordered the same way).
    ``beam_width=1`` is greedy decoding. ``tokens`` has the layout of ``idx`` (1-D or (1, T)).
    """
    prompt, two_d = check_prompt(model, idx)
    max_new_tokens = check_new_tokens(max_new_tokens)
    beam_width = check_beam_width(model, beam_width, use_cache)
    length_penalty = check_real("length_penalty", length_penalty)
    eos_id = check_eos(model, eos_id)

    def score(log_prob: float, n_new: int) -> float:
        return log_prob / n_new ** length_penalty if n_new else 0.0

    beams, log_probs = prompt, np.zeros(1)               # live hypotheses (b, n) and their log P
    finished = []                                        # (score, tokens) of hypotheses ended by eos
    cache = model.new_cache(batch_size=1) if use_cache else None
    with model.evaluating():
        for step in range(max_new_tokens):
            # log P of every (live beam, next token) pair: (b, V)
            candidates = log_probs[:, None] + log_softmax(next_token_logits(model, beams, cache))
            # the beam_width best pairs; stable sort: ties go to the lower beam, then the lower id
            best = np.argsort(-candidates, axis=None, kind="stable")[:beam_width]
            parents, next_tokens = np.unravel_index(best, candidates.shape)
            kept = np.concatenate([beams[parents], next_tokens[:, None]], axis=1)
            kept_log_probs = candidates.flat[best]
            ended = (next_tokens == eos_id) if eos_id is not None else np.zeros(len(best), bool)
            finished += [(score(lp, step + 1), seq)
                         for lp, seq in zip(kept_log_probs[ended], kept[ended])]
            beams, log_probs = kept[~ended], kept_log_probs[~ended]
            if not len(beams):
                break
            if cache is not None:
                cache.reorder(parents[~ended])         # row j now holds its parent's keys
    n_new = beams.shape[1] - prompt.shape[1]
    hypotheses = finished + [(score(lp, n_new), seq) for lp, seq in zip(log_probs, beams)]
    best_score, best_tokens = max(hypotheses, key=lambda h: h[0])   # first among equal scores
    return (best_tokens[None] if two_d else best_tokens), float(best_score)


def check_beam_width(model: LanguageModel[Any], beam_width: int, use_cache: bool = True) -> int:
    """``beam_width`` as an int in [1, vocab_size] whose beams fit in memory: every beam scores the
    whole vocabulary at each step and, with ``use_cache``, holds a row of the model's cache."""
    beam_width = check_int("beam_width", beam_width)
    V = model.config.vocab_size
    if beam_width > V:
        raise UsageError(f"beam_width must be at most vocab_size={V} (the first step has only {V} "
                         f"continuations to keep, and each beam costs a cache row and {V} scores a step), "
                         f"got {beam_width}")
    require_memory(beam_width * _beam_bytes(model, use_cache), f"beam search with beam_width={beam_width}")
    return beam_width


def _beam_bytes(model: LanguageModel[Any], use_cache: bool) -> int:
    """About the bytes one beam holds at once: its float64 logits, log-probabilities, totals and
    sort order over the vocabulary, and the keys and values of a GPT-like model's cache (k and v
    of every layer and position, in a buffer that may grow to twice the context, copied when the
    beams are reordered). A recurrent model's state is a few vectors, counted as nothing."""
    config: Any = model.config
    scores = 4 * 8 * config.vocab_size
    n_layer, n_embd = getattr(config, "n_layer", None), getattr(config, "n_embd", None)
    if not use_cache or hasattr(config, "n_hidden") or n_layer is None or n_embd is None:
        return scores
    itemsize = np.dtype(getattr(model, "dtype", np.float64)).itemsize
    return scores + 2 * n_layer * n_embd * 2 * config.block_size * 2 * itemsize
