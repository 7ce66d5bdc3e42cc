r"""Output decoding (document section 3, step 3): turning next-token logits into text.

A language model gives, for a context $x_{<t}$, logits $z \in \mathbb{R}^V$ and the distribution
$p(x_t = i \mid x_{<t}) = \mathrm{softmax}(z)_i$. Decoding chooses $x_t$ from it, appends it and
repeats. The choices, each a pure function of one logits vector so they can be plotted:

- greedy: $x_t = \arg\max_i z_i$;
- temperature $T$: sample from $\mathrm{softmax}(z / T)$ ($T<1$ sharpens, $T>1$ flattens);
- top-k: keep the $k$ largest logits, renormalise, sample;
- top-p (nucleus): keep the smallest set of most likely tokens whose probability reaches $p$,
  renormalise, sample;
- beam search: keep the $B$ most likely partial sequences by total log-probability.

**KV cache.** Attention at a new position needs the keys and values of every earlier position;
those do not change when tokens are appended, so :class:`KVCache` stores them and each step feeds
only the new token (one row through the network instead of the whole context).

**Contexts longer than block_size.** The model sees at most ``block_size`` positions. When a
window slides, every token's position changes, and with it its keys and values (they depend on the
position embedding), so a cache cannot be shifted: it must be refilled. Sliding by one token per
step would refill at every step and the cache would save nothing. So the window grows to
``block_size``, then restarts from its last ``block_size // 2`` tokens and grows again
(:func:`context_window_start`): each token sees at least half a block of context, and the cache is
refilled once every half block. Cached and uncached decoding use the same windows and give
identical tokens.

**Recurrent models.** A :class:`npgpt.RecurrentLM` has no keys and values; what it carries from one
token to the next is its state $h_t$ (and $c_t$ for an LSTM), held in a
:class:`npgpt.RecurrentState` (``model.new_state()``). It plays the cache's part here, with the same
``length``, ``reset`` and ``reorder``, so the functions below run either kind of model. The window
rule is the same too: the model reads the window from a zero state, so cached and uncached
generation give identical tokens, and a restarted window is read again from its start.
"""
import math
import numbers

import numpy as np

from . import backend
from .rnn import RecurrentState

STRATEGIES = ("greedy", "temperature", "top-k", "top-p")


class KVCache:
    """Cached keys and values of every layer, in buffers that grow by doubling:
    ``keys`` and ``values`` are (n_layer, B, n_head, capacity, head_size), of which the first
    ``length`` positions are filled. ``layers[i]`` is layer i's (k, v), each (B, n_head, length,
    head_size), or None while the cache is empty.

    ``model.forward(idx, kv_cache=cache)`` reads ``length`` as the position of ``idx``'s first token,
    stores the new positions' keys and values with :meth:`store` and then advances ``length``.
    Writing into a buffer, rather than concatenating a longer array at every token, keeps a
    generation step's cost independent of how much is cached.

    ``decoder`` is None, or a :class:`npgpt.kernels.decode.FusedDecoder` (set by :func:`new_cache`
    on the numba backend) with which the model runs one-token steps in a single compiled call.
    """

    def __init__(self, n_layer):
        if isinstance(n_layer, bool) or not isinstance(n_layer, numbers.Integral) or n_layer < 1:
            raise ValueError(f"n_layer must be a positive integer, got {n_layer!r}")
        self.n_layer = int(n_layer)
        self.keys = self.values = None
        self.length = 0
        self.decoder = None

    @classmethod
    def for_model(cls, model):
        return cls(model.config.n_layer)

    @property
    def layers(self):
        if self.length == 0:
            return [None] * self.n_layer
        return [self.layer(i) for i in range(self.n_layer)]

    def layer(self, i):
        """Layer i's cached (k, v), views (B, n_head, length, head_size); None when empty."""
        if self.length == 0:
            return None
        return self.keys[i, :, :, :self.length], self.values[i, :, :, :self.length]

    def store(self, i, k, v):
        """Store layer i's keys and values (B, n_head, n, head_size) of positions 0..n-1, of which
        those from ``length`` on are new (the cached ones are already in the buffer). The room was
        made by :meth:`reserve` (``model.forward`` calls it once for all layers)."""
        self.keys[i, :, :, self.length:k.shape[2]] = k[:, :, self.length:]
        self.values[i, :, :, self.length:v.shape[2]] = v[:, :, self.length:]

    def reserve(self, n_positions, batch, n_head, head_size, dtype):
        """Make room for ``n_positions`` positions of keys (batch, n_head, *, head_size), keeping
        what is cached. A cache that holds keys of another shape or dtype must be reset first."""
        fits = (self.keys is not None and self.keys.dtype == dtype
                and self.keys.shape[1:3] + self.keys.shape[4:] == (batch, n_head, head_size))
        if self.length and not fits:
            held = self.keys.shape
            raise ValueError(f"the cache holds keys of batch {held[1]}, {held[2]} heads of size {held[4]} "
                             f"({self.keys.dtype}); the new ones are batch {batch}, {n_head} heads of "
                             f"size {head_size} ({np.dtype(dtype)}): reset() it first")
        if fits and self.keys.shape[3] >= n_positions:
            return
        capacity = max(n_positions, 2 * (self.keys.shape[3] if fits else 0), 16)
        shape = (self.n_layer, batch, n_head, capacity, head_size)
        keys, values = np.empty(shape, dtype=dtype), np.empty(shape, dtype=dtype)
        if self.length:
            keys[..., :self.length, :] = self.keys[..., :self.length, :]
            values[..., :self.length, :] = self.values[..., :self.length, :]
        self.keys, self.values = keys, values

    def reset(self):
        """Forget every cached position; the next forward starts at position 0."""
        self.length = 0

    def reorder(self, rows):
        """Keep batch rows ``rows`` (with repeats): beam search's "beam j continues beam rows[j]"."""
        if self.keys is not None:
            self.keys, self.values = self.keys[:, rows], self.values[:, rows]


# --------------------------------------------------------------------------- distributions
def softmax(z):
    r"""$\mathrm{softmax}(z)_i = e^{z_i - \max z} / \sum_j e^{z_j - \max z}$ over the last axis,
    in float64 (subtracting the max changes nothing but keeps $e^{\cdot}$ from overflowing)."""
    z = np.asarray(z, dtype=np.float64)
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def log_softmax(z):
    r"""$\log\mathrm{softmax}(z)_i = z_i - \max z - \log\sum_j e^{z_j - \max z}$, in float64."""
    z = np.asarray(z, dtype=np.float64)
    shifted = z - z.max(-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))


def greedy_token(logits):
    r"""$\arg\max_i z_i$ (the lowest id among ties)."""
    return int(np.argmax(_check_logits(logits)))


def top_k_filter(logits, k):
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


def top_p_filter(probs, p):
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


def next_token_distribution(logits, temperature=1.0, top_k=None, top_p=None):
    r"""The distribution a sampler draws the next token from, for a logits vector $z$ (V,):

    $$p = \mathrm{nucleus}_{p}\Big(\mathrm{softmax}\big(\mathrm{topk}_k(z / T)\big)\Big)$$

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


def select_next_token(logits, strategy="greedy", temperature=1.0, top_k=None, top_p=None, rng=None):
    """One decoding step: the next token id for a logits vector (V,).

    ``greedy`` is the argmax (it ignores ``temperature``, which does not move an argmax); the other
    strategies draw one sample from :func:`next_token_distribution` with ``rng`` (a
    ``numpy.random.Generator``, or a seed / None passed to ``numpy.random.default_rng``). ``top_k`` is used only by "top-k" (which requires it), ``top_p``
    only by "top-p" (likewise); other strategies ignore them, after checking their values.
    """
    _check_strategy(strategy, temperature, top_k, top_p)
    if strategy == "greedy":
        return greedy_token(logits)
    probs = next_token_distribution(logits, temperature,
                                    top_k if strategy == "top-k" else None,
                                    top_p if strategy == "top-p" else None)
    return int(np.random.default_rng(rng).choice(probs.size, p=probs))


# --------------------------------------------------------------------------- model steps
def new_cache(model):
    """What ``model`` carries between decoding steps: ``model.new_state()`` (a
    :class:`npgpt.RecurrentState`) for a model that has one, else a :class:`KVCache`, which on the
    numba backend carries a :class:`~npgpt.kernels.decode.FusedDecoder` of the model's weights as
    they are now (so make a new cache after changing them)."""
    if hasattr(model, "new_state"):
        return model.new_state()
    cache = KVCache.for_model(model)
    if backend.get_backend() == "numba":
        from .kernels.decode import FusedDecoder
        cache.decoder = FusedDecoder(model)
    return cache


def context_window_start(n_tokens, block_size):
    """Index of the first token the model sees when predicting token ``n_tokens``.

    0 while everything fits; past that the start jumps forward by ``ceil(block_size / 2)`` at a
    time, so the window holds between ``block_size // 2 + 1`` and ``block_size`` tokens.
    """
    if n_tokens <= block_size:
        return 0
    hop = block_size - block_size // 2
    return hop * -(-(n_tokens - block_size) // hop)


def next_token_logits(model, tokens, kv_cache=None):
    """Logits (B, V), float64, for the token after each row of ``tokens`` (B, n).

    The model sees the window ``tokens[:, start:]`` (:func:`context_window_start`). Without a cache
    the whole window runs.
    With one (a :class:`KVCache`, or a :class:`npgpt.RecurrentState` for a recurrent model: see
    :func:`new_cache`), the caller passes the same growing ``tokens`` at every step (one token longer
    each time). If the cache holds all of the window but its last token, only that token runs;
    otherwise (first call, or the window restarted) the cache is reset and refilled with the whole
    window. Both give the same logits up to rounding.
    """
    tokens = np.asarray(tokens)
    window = tokens[:, context_window_start(tokens.shape[1], model.config.block_size):]
    if kv_cache is None:
        logits, _ = model.forward(window)
    else:
        if kv_cache.length != window.shape[1] - 1:
            kv_cache.reset()
        new_tokens = window[:, kv_cache.length:]
        if isinstance(kv_cache, RecurrentState):
            logits, _ = model.forward(new_tokens, state=kv_cache)
        else:
            logits, _ = model.forward(new_tokens, kv_cache=kv_cache)
    return logits[:, -1].astype(np.float64)


class _EvalMode:
    """``with _EvalMode(model):`` runs in eval mode (no dropout) and restores the previous mode."""

    def __init__(self, model):
        self.model = model

    def __enter__(self):
        self.was_training = self.model.training
        self.model.eval()

    def __exit__(self, *exc):
        self.model.train(self.was_training)


def generate(model, idx, max_new_tokens, strategy="greedy", temperature=1.0, top_k=None, top_p=None,
             seed=None, eos_id=None, use_cache=True):
    """Extend the prompt ``idx`` by up to ``max_new_tokens`` tokens, one :func:`select_next_token`
    step at a time.

    ``idx`` is a 1-D sequence of ids or a (1, T) array; the result is an int64 array of the same
    layout holding the whole prompt followed by the new tokens. Generation stops early right after
    ``eos_id`` is produced (the eos token is included). ``seed`` is an int, None or a
    ``numpy.random.Generator``; the same seed gives the same tokens, with or without the cache.
    The model runs in eval mode and its previous mode is restored. Prompts and outputs longer than
    ``block_size`` are fine: the model sees the last ``block_size`` tokens (module docstring).
    ``model`` is a :class:`npgpt.GPT` or a :class:`npgpt.RecurrentLM`.
    """
    _check_strategy(strategy, temperature, top_k, top_p)
    tokens, two_d = _check_prompt(model, idx)
    max_new_tokens = _check_count("max_new_tokens", max_new_tokens, low=0)
    eos_id = _check_eos(model, eos_id)
    rng = np.random.default_rng(seed)
    kv_cache = new_cache(model) if use_cache else None
    with _EvalMode(model):
        for _ in range(max_new_tokens):
            logits = next_token_logits(model, tokens, kv_cache)[0]
            token = select_next_token(logits, strategy, temperature, top_k, top_p, rng)
            tokens = np.concatenate([tokens, [[token]]], axis=1)
            if token == eos_id:
                break
    return tokens if two_d else tokens[0]


def beam_search(model, idx, max_new_tokens, beam_width=4, length_penalty=1.0, eos_id=None,
                use_cache=True):
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
    prompt, two_d = _check_prompt(model, idx)
    max_new_tokens = _check_count("max_new_tokens", max_new_tokens, low=0)
    beam_width = _check_count("beam_width", beam_width, low=1)
    if isinstance(length_penalty, bool) or not isinstance(length_penalty, numbers.Real) \
            or not math.isfinite(length_penalty):
        raise ValueError(f"length_penalty must be a finite real number, got {length_penalty!r}")
    eos_id = _check_eos(model, eos_id)

    def score(log_prob, n_new):
        return log_prob / n_new ** length_penalty if n_new else 0.0

    beams, log_probs = prompt, np.zeros(1)               # live hypotheses (b, n) and their log P
    finished = []                                        # (score, tokens) of hypotheses ended by eos
    kv_cache = new_cache(model) if use_cache else None
    with _EvalMode(model):
        for step in range(max_new_tokens):
            # log P of every (live beam, next token) pair: (b, V)
            candidates = log_probs[:, None] + log_softmax(next_token_logits(model, beams, kv_cache))
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
            if kv_cache is not None:
                kv_cache.reorder(parents[~ended])         # row j now holds its parent's keys
    n_new = beams.shape[1] - prompt.shape[1]
    hypotheses = finished + [(score(lp, n_new), seq) for lp, seq in zip(log_probs, beams)]
    best_score, best_tokens = max(hypotheses, key=lambda h: h[0])   # first among equal scores
    return (best_tokens[None] if two_d else best_tokens), float(best_score)


# --------------------------------------------------------------------------- input checks
def _check_logits(logits):
    z = np.asarray(logits, dtype=np.float64)
    if z.ndim != 1 or z.size == 0:
        raise ValueError(f"logits must be a non-empty 1-D vector (V,), got shape {z.shape}")
    return z


def _check_temperature(temperature):
    if isinstance(temperature, bool) or not isinstance(temperature, numbers.Real) \
            or not math.isfinite(temperature) or temperature <= 0:
        raise ValueError(f"temperature must be a finite number > 0, got {temperature!r}")
    return float(temperature)


def _check_top_k(top_k):
    _check_count("top_k", top_k, low=1)


def _check_top_p(top_p):
    if isinstance(top_p, bool) or not isinstance(top_p, numbers.Real) or not 0.0 < top_p <= 1.0:
        raise ValueError(f"top_p must be in (0, 1], got {top_p!r}")


def _check_count(name, value, low):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
        raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
    return int(value)


def _check_strategy(strategy, temperature, top_k, top_p):
    """Values are checked whatever the strategy (a CLI may pass them all); "top-k" needs top_k and
    "top-p" needs top_p, while the other strategies ignore them."""
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown strategy {strategy!r}; choose one of {STRATEGIES}")
    _check_temperature(temperature)
    if top_k is not None:
        _check_top_k(top_k)
    if top_p is not None:
        _check_top_p(top_p)
    if strategy == "top-k" and top_k is None:
        raise ValueError("strategy 'top-k' needs top_k (the number of tokens kept), got top_k=None")
    if strategy == "top-p" and top_p is None:
        raise ValueError("strategy 'top-p' needs top_p (the nucleus mass), got top_p=None")


def _check_prompt(model, idx):
    """Return (ids as an int64 (1, T) array, whether idx was 2-D)."""
    ids = np.asarray(idx)
    if ids.ndim == 2 and ids.shape[0] != 1:
        raise ValueError(f"idx must be 1-D or (1, T): generation decodes one sequence, got shape "
                         f"{ids.shape}")
    if ids.ndim not in (1, 2):
        raise ValueError(f"idx must be 1-D or (1, T), got shape {ids.shape}")
    if ids.size == 0:
        raise ValueError(f"the prompt idx is empty (shape {ids.shape}): there is nothing to continue")
    if not np.issubdtype(ids.dtype, np.integer):
        raise ValueError(f"idx must hold integer token ids, got dtype {ids.dtype}")
    V = model.config.vocab_size
    if ids.min() < 0 or ids.max() >= V:
        bad = ids.min() if ids.min() < 0 else ids.max()
        raise ValueError(f"idx contains token id {bad}, outside [0, vocab_size={V})")
    return ids.reshape(1, -1).astype(np.int64), ids.ndim == 2


def _check_eos(model, eos_id):
    if eos_id is None:
        return None
    V = model.config.vocab_size
    if isinstance(eos_id, bool) or not isinstance(eos_id, numbers.Integral) or not 0 <= eos_id < V:
        raise ValueError(f"eos_id must be a token id in [0, vocab_size={V}), got {eos_id!r}")
    return int(eos_id)
