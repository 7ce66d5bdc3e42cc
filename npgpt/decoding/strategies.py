r"""Decoding strategies (document section 3, step 3): from next-token logits to a token.

A language model gives, for a context $x_{<t}$, logits $z \in \mathbb{R}^V$ and the distribution
$p(x_t = i \mid x_{<t}) = \mathrm{softmax}(z)_i$. Decoding chooses $x_t$ from it, appends it and
repeats. The choices, each a pure function of one logits vector so they can be plotted:

- greedy: $x_t = \arg\max_i z_i$;
- temperature $\tau$: sample from $\mathrm{softmax}(z / \tau)$ ($\tau<1$ sharpens, $\tau>1$ flattens);
- top-k: keep the $k$ largest logits, renormalise, sample;
- top-p (nucleus): keep the smallest set of most likely tokens whose probability reaches $p$,
  renormalise, sample;
- beam search (:mod:`npgpt.decoding.beam`): keep the $B$ most likely partial sequences by total
  log-probability.
"""
from collections.abc import Sequence

import numpy as np
from numpy.typing import ArrayLike, NDArray

from ..checks import UsageError, check_int, check_real

STRATEGIES = ("greedy", "temperature", "top-k", "top-p")
# What a sampler draws with: a generator, or what numpy.random.default_rng makes one of.
Seed = np.random.Generator | int | Sequence[int] | None


def softmax(z: ArrayLike) -> NDArray[np.float64]:
    r"""$\mathrm{softmax}(z)_i = e^{z_i - \max z} / \sum_j e^{z_j - \max z}$ over the last axis,
    in float64 (subtracting the max changes nothing but keeps $e^{\cdot}$ from overflowing)."""
    z = np.asarray(z, dtype=np.float64)
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def log_softmax(z: ArrayLike) -> NDArray[np.float64]:
    r"""$\log\mathrm{softmax}(z)_i = z_i - \max z - \log\sum_j e^{z_j - \max z}$, in float64."""
    z = np.asarray(z, dtype=np.float64)
    shifted = z - z.max(-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))


def greedy_token(logits: ArrayLike) -> int:
    r"""$\arg\max_i z_i$ (the lowest id among ties)."""
    return int(np.argmax(_check_logits(logits)))


def top_k_filter(logits: ArrayLike, k: int) -> NDArray[np.float64]:
    r"""Logits with all but the $k$ largest set to $-\infty$, so softmax gives them probability 0
    and renormalises the rest: $p_i = e^{z_i} / \sum_{j \in \mathrm{top}_k} e^{z_j}$ for
    $i \in \mathrm{top}_k$. Exactly $k$ tokens are kept (ties at the boundary go to the lower id);
    $k \ge V$ keeps everything."""
    z = _check_logits(logits)
    _check_top_k(k)
    keep = np.argsort(-z, kind="stable")[:k]
    filtered = np.full_like(z, -np.inf)
    filtered[keep] = z[keep]
    return filtered


def top_p_filter(probs: ArrayLike, p: float) -> NDArray[np.float64]:
    r"""Nucleus of a distribution: sort tokens by probability $p_{(1)} \ge p_{(2)} \ge \dots$, keep
    the smallest prefix $\{(1), \dots, (n)\}$ with $\sum_{j\le n} p_{(j)} \ge p$, zero the rest and
    renormalise. The top token is always kept ($n \ge 1$); ties are ordered by lower id first.
    A prefix whose mass falls short of $p$ by less than $10^{-12}$ (rounding in a softmax that
    should sum to exactly $p$) counts as reaching it, so the result does not hinge on the last bit."""
    probs = np.asarray(probs, dtype=np.float64)
    _check_top_p(p)
    order = np.argsort(-probs, kind="stable")
    cumulative = np.cumsum(probs[order])
    # first index whose cumulative mass reaches p; clipped in case rounding leaves the total below p
    n_keep = min(int(np.searchsorted(cumulative, p - 1e-12, side="left")) + 1, probs.size)
    nucleus = np.zeros_like(probs)
    nucleus[order[:n_keep]] = probs[order[:n_keep]]
    return nucleus / nucleus.sum()


def next_token_distribution(logits: ArrayLike, temperature: float = 1.0, top_k: int | None = None,
                            top_p: float | None = None) -> NDArray[np.float64]:
    r"""The distribution a sampler draws the next token from, for a logits vector $z$ (V,):

    $$p = \mathrm{nucleus}_{p}\Big(\mathrm{softmax}\big(\mathrm{topk}_k(z / \tau)\big)\Big)$$

    temperature first, then top-k (:func:`top_k_filter`), then top-p (:func:`top_p_filter`), the
    order Hugging Face uses; ``top_k=None`` / ``top_p=None`` skip a filter. Returns float64 (V,)
    summing to 1.
    """
    z = _check_logits(logits) / _check_temperature(temperature)
    if top_k is not None:
        z = top_k_filter(z, top_k)
    probs = softmax(z)
    if top_p is not None:
        probs = top_p_filter(probs, top_p)
    return probs


def select_next_token(logits: ArrayLike, strategy: str = "greedy", temperature: float = 1.0,
                      top_k: int | None = None, top_p: float | None = None,
                      rng: Seed = None) -> int:
    """One decoding step: the next token id for a logits vector (V,).

    ``greedy`` is the argmax (it ignores ``temperature``, which does not move an argmax); the other
    strategies draw one sample from :func:`next_token_distribution` with ``rng`` (a
    ``numpy.random.Generator``, or a seed / None passed to ``numpy.random.default_rng``). ``top_k`` is used only by "top-k" (which requires it), ``top_p``
    only by "top-p" (likewise); other strategies ignore them, after checking their values.
    """
    check_strategy(strategy, temperature, top_k, top_p)
    if strategy == "greedy":
        return greedy_token(logits)
    probs = next_token_distribution(logits, temperature,
                                    top_k if strategy == "top-k" else None,
                                    top_p if strategy == "top-p" else None)
    return int(np.random.default_rng(rng).choice(probs.size, p=probs))


# --------------------------------------------------------------------------- input checks
def _check_logits(logits: ArrayLike) -> NDArray[np.float64]:
    z = np.asarray(logits, dtype=np.float64)
    if z.ndim != 1 or z.size == 0:
        raise UsageError(f"logits must be a non-empty 1-D vector (V,), got shape {z.shape}")
    return z


def _check_temperature(temperature: float) -> float:
    return check_real("temperature", temperature, low=0.0, low_open=True)


def _check_top_k(top_k: int) -> None:
    check_int("top_k", top_k)


def _check_top_p(top_p: float) -> None:
    check_real("top_p", top_p, 0.0, 1.0, low_open=True)


def check_strategy(strategy: str, temperature: float, top_k: int | None, top_p: float | None) -> None:
    """Values are checked whatever the strategy (a CLI may pass them all); "top-k" needs top_k and
    "top-p" needs top_p, while the other strategies ignore them."""
    if strategy not in STRATEGIES:
        raise UsageError(f"unknown strategy {strategy!r}; choose one of {STRATEGIES}")
    _check_temperature(temperature)
    if top_k is not None:
        _check_top_k(top_k)
    if top_p is not None:
        _check_top_p(top_p)
    if strategy == "top-k" and top_k is None:
        raise UsageError("strategy 'top-k' needs top_k (the number of tokens kept), got top_k=None")
    if strategy == "top-p" and top_p is None:
        raise UsageError("strategy 'top-p' needs top_p (the nucleus mass), got top_p=None")
