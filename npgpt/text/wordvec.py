r"""Word vectors: word2vec (skip-gram with negative sampling) and GloVe (document 3.1).

Section 3, step 1 of the document names word vectors (Word2Vec, GloVe) as one way to turn text into
vectors. Both methods learn one vector per *word* from which words appear near which; neither looks
inside a word, and a word outside the vocabulary has no vector (the gap byte-level BPE closes).

**word2vec, skip-gram with negative sampling** (Mikolov et al., 2013). Each word $w$ has an input
vector $v_w$ (the word vector) and an output vector $u_w$. For a centre word $c$, a context word $o$
seen within the window, and $K$ noise words $k_1..k_K$ drawn from $P_n(w) \propto
\mathrm{count}(w)^{3/4}$, the loss of the pair is

$$L = -\log\sigma(u_o^\top v_c) - \sum_{k=1}^{K}\log\sigma(-u_k^\top v_c)$$

i.e. logistic regression telling the true context from noise. Frequent words are subsampled first.

**GloVe** (Pennington et al., 2014). With $X_{ij}$ the co-occurrence count of words $i$ and $j$
(each co-occurrence at distance $d$ in the window adds $1/d$), fit

$$J = \sum_{X_{ij}>0} f(X_{ij})\,\big(w_i^\top \tilde w_j + b_i + \tilde b_j - \log X_{ij}\big)^2,
  \qquad f(x) = \min\big(1, (x/x_{\max})^{\alpha}\big)$$

by AdaGrad; the word vector is $w_i + \tilde w_i$.

Every gradient is written by hand (formula in the docstring) and checked against finite differences
in ``tests/test_wordvec.py``. The trainers are NumPy, vectorised over a minibatch of pairs (or of
co-occurrence entries); rows that repeat in a batch add their updates up (:func:`scatter_add`, which
is ``np.add.at`` with its loop in numba).
"""
import logging
import re
import time
from collections import Counter
from collections.abc import Iterable
from typing import Any

import numpy as np
from numba import njit
from numpy.typing import ArrayLike, DTypeLike, NDArray

from ..checks import UsageError, check_int, check_real
from ..runtime.logs import shown
from .corpus import resolve_corpus

log = logging.getLogger(__name__)

# A word: a run of letters (any script), with apostrophes allowed inside ("o'er", "father's").
# Digits, punctuation and a leading or trailing apostrophe are not part of a word ("'tis" -> "tis").
WORD_PATTERN = re.compile(r"[^\W\d_]+(?:'[^\W\d_]+)*")


# ====================================================================== words and vocabulary
def tokenize_words(text: str) -> list[str]:
    """Lowercase ``text`` and return its words (:data:`WORD_PATTERN`) in order."""
    if not isinstance(text, str):
        raise UsageError(f"text must be a str, got {type(text).__name__}")
    return WORD_PATTERN.findall(text.lower())


def corpus_words(text: str | None = None) -> tuple[list[str], str]:
    """``(words, description)``: the words of ``text``, or of Tiny Shakespeare when ``text`` is None
    (:func:`npgpt.resolve_corpus`, which falls back to the built-in corpus offline)."""
    description = "the given text"
    if text is None:
        text, description = resolve_corpus("shakespeare")
    words = tokenize_words(text)
    if not words:
        raise UsageError(f"the corpus has no words (text of {len(text)} characters): nothing to learn from")
    return words, description


class Vocab:
    """Words seen at least ``min_count`` times, most frequent first (ties alphabetical).

    ``words[i]`` is the word with id ``i``, ``counts[i]`` how often it occurs; ``index`` maps back.
    """

    def __init__(self, words: Iterable[str], min_count: int = 1) -> None:
        min_count = check_int("min_count", min_count)
        counted = Counter(words)
        if not counted:
            raise UsageError("the corpus is empty: a vocabulary needs at least one word")
        kept = sorted((w for w, n in counted.items() if n >= min_count), key=lambda w: (-counted[w], w))
        if not kept:
            raise UsageError(f"no word occurs min_count={min_count} times (the most frequent, "
                             f"{counted.most_common(1)[0][0]!r}, occurs {counted.most_common(1)[0][1]})")
        self.min_count = int(min_count)
        self.words = kept
        self.counts = np.array([counted[w] for w in kept], dtype=np.int64)
        self.index = {w: i for i, w in enumerate(kept)}

    def __len__(self) -> int:
        return len(self.words)

    def __contains__(self, word: object) -> bool:
        return word in self.index

    def __repr__(self) -> str:
        return f"Vocab({len(self)} words, min_count={self.min_count}, {int(self.counts.sum())} tokens)"

    def id(self, word: str) -> int:
        """The id of ``word``; ValueError naming it when it is not in the vocabulary."""
        try:
            return self.index[word]
        except (KeyError, TypeError):
            raise UsageError(f"word {word!r} is not in the vocabulary ({len(self)} words seen at least "
                             f"min_count={self.min_count} times)") from None

    def encode(self, words: Iterable[str]) -> NDArray[np.int64]:
        """Words -> int64 ids, dropping words outside the vocabulary (as word2vec and GloVe do,
        so the words on either side of a dropped word become neighbours)."""
        index = self.index
        return np.array([index[w] for w in words if w in index], dtype=np.int64)


def scatter_add(target: NDArray[np.floating], rows: ArrayLike, values: ArrayLike) -> None:
    """``target[rows[n]] += values[n]`` for every n, repeated rows adding up, in place.

    This is ``np.add.at(target, rows, values)``: a minibatch can touch one word many times (a
    frequent word is drawn as noise again and again) and every update must count. ``np.add.at`` is
    slow (about 10 ns per element), so the loop runs in numba (:func:`_scatter_add_rows`, about 20x
    faster); ``tests/test_wordvec.py`` checks the two agree. ``target`` is (V,) or (V, D).
    """
    rows = np.asarray(rows, dtype=np.int64).reshape(-1)
    if rows.size and (rows.min() < 0 or rows.max() >= target.shape[0]):   # numba does not bounds-check
        bad = rows[(rows < 0) | (rows >= target.shape[0])][0]
        raise UsageError(f"row {bad} is out of range for a target with {target.shape[0]} rows")
    table = target.reshape(target.shape[0], -1)            # a view: (V,) -> (V, 1)
    if not table.flags.c_contiguous or not np.shares_memory(table, target):
        np.add.at(target, rows, values)                    # no contiguous view to write through
        return
    values = np.ascontiguousarray(values, dtype=target.dtype).reshape(rows.size, table.shape[1])
    _scatter_add_rows(table, rows, values)


@njit(cache=True, nogil=True)
def _scatter_add_rows(table: NDArray[np.floating], rows: NDArray[np.int64], values: NDArray[np.floating]
                      ) -> None:
    for n in range(rows.shape[0]):
        r = rows[n]
        for d in range(table.shape[1]):
            table[r, d] += values[n, d]


# ====================================================================== word2vec
def noise_distribution(counts: ArrayLike, power: float = 0.75) -> NDArray[np.float64]:
    r"""The negative-sampling distribution $P_n(w) = \mathrm{count}(w)^{p} / \sum_{w'} \mathrm{count}(w')^{p}$.

    $p = 3/4$ (Mikolov et al.) flattens the unigram distribution: rare words are drawn more often
    than their frequency, frequent ones less.
    """
    weights = np.asarray(counts, dtype=np.float64) ** power
    return weights / weights.sum()


def keep_probabilities(counts: ArrayLike, sample: float = 1e-3) -> NDArray[np.float64]:
    r"""Probability of keeping each occurrence of a word when subsampling frequent words.

    With $f(w)$ the word's share of the corpus and threshold $t$ = ``sample``, we use the formula of
    the paper (Mikolov et al. 2013b, eq. 5), which discards an occurrence with probability
    $1 - \sqrt{t / f(w)}$, i.e.

    $$P_{\mathrm{keep}}(w) = \min\Big(1,\ \sqrt{t / f(w)}\Big)$$

    Words rarer than $t$ are always kept. (The released C code uses the variant
    $\sqrt{t/f} + t/f$, which keeps a little more.) ``sample=0`` keeps everything.
    """
    counts = np.asarray(counts, dtype=np.float64)
    if sample <= 0:
        return np.ones_like(counts)
    f = counts / counts.sum()
    return np.minimum(1.0, np.sqrt(sample / f))


def subsample(ids: NDArray[np.int64], keep_prob: NDArray[np.float64], rng: np.random.Generator
              ) -> NDArray[np.int64]:
    """Keep each occurrence ``ids[i]`` with probability ``keep_prob[ids[i]]`` (independently)."""
    return ids[rng.random(ids.shape[0]) < keep_prob[ids]]


def skipgram_pairs(ids: NDArray[np.int64], window: int, rng: np.random.Generator | None = None
                   ) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """All (centre, context) pairs of the id sequence, as two int64 arrays.

    As in word2vec, each centre position draws its own window size $b$ uniformly from 1..``window``
    and pairs with the words at distance $1..b$ on both sides, so near words are paired more often
    than far ones (distance $d$ with probability $(W-d+1)/W$). ``rng=None`` uses the full window
    everywhere.
    """
    window = check_int("window", window)
    n: int = ids.shape[0]
    b = np.full(n, window) if rng is None else rng.integers(1, window + 1, size=n)
    centres, contexts = [], []
    for d in range(1, min(window, n - 1) + 1):
        left = np.arange(n - d)                    # centre i, context i + d
        keep = b[left] >= d
        centres.append(ids[left[keep]])
        contexts.append(ids[left[keep] + d])
        right = np.arange(d, n)                    # centre i, context i - d
        keep = b[right] >= d
        centres.append(ids[right[keep]])
        contexts.append(ids[right[keep] - d])
    if not centres:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    return np.concatenate(centres), np.concatenate(contexts)


def _log_sigmoid(x: NDArray[np.floating]) -> NDArray[np.floating]:
    r"""$\log\sigma(x) = -\log(1 + e^{-x})$, without overflow for large $|x|$."""
    return -np.logaddexp(0.0, -x)


def _sigmoid(x: NDArray[np.floating]) -> NDArray[np.floating]:
    return 0.5 * (1.0 + np.tanh(0.5 * x))       # = 1 / (1 + e^{-x}), without overflow


def sgns_loss_and_grads(v_c: NDArray[np.floating], u_o: NDArray[np.floating], u_neg: NDArray[np.floating]
                        ) -> tuple[float, tuple[NDArray[np.floating], NDArray[np.floating],
                                                NDArray[np.floating]]]:
    r"""Skip-gram negative-sampling loss of a batch of pairs, and its gradients.

    ``v_c`` (B, D): centre words' input vectors; ``u_o`` (B, D): context words' output vectors;
    ``u_neg`` (B, K, D): output vectors of K noise words per pair. With $s_o = u_o^\top v_c$ and
    $s_k = u_k^\top v_c$,

    $$L = \sum_{\text{pairs}} \Big[-\log\sigma(s_o) - \sum_k \log\sigma(-s_k)\Big]$$

    Since $\frac{d}{ds}[-\log\sigma(s)] = \sigma(s) - 1$ and $\frac{d}{ds}[-\log\sigma(-s)] = \sigma(s)$:

    $$\frac{\partial L}{\partial v_c} = (\sigma(s_o)-1)\,u_o + \sum_k \sigma(s_k)\,u_k,\qquad
      \frac{\partial L}{\partial u_o} = (\sigma(s_o)-1)\,v_c,\qquad
      \frac{\partial L}{\partial u_k} = \sigma(s_k)\,v_c$$

    The loss is summed (not averaged) over the batch, so each pair's rows get exactly that pair's
    gradient, as in per-pair SGD. Returns ``(L, (dv_c, du_o, du_neg))``.
    """
    s_o = np.einsum("bd,bd->b", u_o, v_c)             # (B,)
    s_k = np.einsum("bkd,bd->bk", u_neg, v_c)         # (B, K)
    loss = -_log_sigmoid(s_o).sum() - _log_sigmoid(-s_k).sum()
    g_o = _sigmoid(s_o) - 1.0                         # dL/ds_o (B,)
    g_k = _sigmoid(s_k)                               # dL/ds_k (B, K)
    dv_c = g_o[:, None] * u_o + np.einsum("bk,bkd->bd", g_k, u_neg)
    du_o = g_o[:, None] * v_c
    du_neg = g_k[:, :, None] * v_c[:, None, :]
    return float(loss), (dv_c, du_o, du_neg)


def train_word2vec(text: str | None = None, *, dim: int = 100, window: int = 5, negative: int = 5,
                   min_count: int = 5, sample: float = 1e-3, epochs: int = 5, lr: float = 0.025,
                   min_lr: float = 1e-4, batch_size: int = 512, seed: int = 0, dtype: DTypeLike = np.float32,
                   verbose: bool = False) -> "WordVectors":
    r"""Train skip-gram with negative sampling on ``text`` (Tiny Shakespeare when None).

    Per epoch: subsample frequent words (:func:`keep_probabilities`), list every (centre, context)
    pair with a random window (:func:`skipgram_pairs`), shuffle, and for each minibatch of
    ``batch_size`` pairs draw ``negative`` noise words per pair from :func:`noise_distribution` and
    take one SGD step $\theta \leftarrow \theta - \eta\,\partial L/\partial\theta$ on the rows involved
    (:func:`sgns_loss_and_grads`). The learning rate falls linearly from ``lr`` to ``min_lr`` over the
    whole run. Initialisation as in word2vec: $v$ uniform in $\pm 0.5/D$, $u = 0$.

    Returns :class:`WordVectors` of the input vectors $v$; its ``history`` holds the mean loss per
    pair of each epoch, the pair counts and the training time (wall clock and CPU).
    """
    dim, window = check_int("dim", dim), check_int("window", window)
    negative, epochs = check_int("negative", negative), check_int("epochs", epochs)
    batch_size, lr = check_int("batch_size", batch_size), check_real("lr", lr, low=0.0, low_open=True)
    words, description = corpus_words(text)
    vocab = Vocab(words, min_count)
    ids = vocab.encode(words)
    rng = np.random.default_rng(seed)
    V = len(vocab)
    v = ((rng.random((V, dim)) - 0.5) / dim).astype(dtype)    # input vectors: the word vectors
    u = np.zeros((V, dim), dtype=dtype)                        # output vectors
    noise_cdf = np.cumsum(noise_distribution(vocab.counts))
    keep = keep_probabilities(vocab.counts, sample)

    history: dict[str, Any] = {"epoch_loss": [], "pairs": [], "seconds": 0.0, "cpu_seconds": 0.0,
                               "corpus": description, "tokens": int(ids.size)}
    start, cpu_start = time.perf_counter(), time.process_time()
    for epoch in range(epochs):
        centres, contexts = skipgram_pairs(subsample(ids, keep, rng), window, rng)
        order = rng.permutation(centres.size)
        centres, contexts = centres[order], contexts[order]
        n_batches = max(1, -(-centres.size // batch_size))
        total = 0.0
        for i in range(n_batches):
            c = centres[i * batch_size:(i + 1) * batch_size]
            o = contexts[i * batch_size:(i + 1) * batch_size]
            if c.size == 0:
                continue
            neg = np.minimum(np.searchsorted(noise_cdf, rng.random((c.size, negative))), V - 1)
            eta = max(min_lr, lr * (1.0 - (epoch + i / n_batches) / epochs))   # linear decay
            loss, (dv_c, du_o, du_neg) = sgns_loss_and_grads(v[c], u[o], u[neg])
            scatter_add(v, c, -eta * dv_c)             # SGD step; repeated words add up
            scatter_add(u, o, -eta * du_o)
            scatter_add(u, neg, -eta * du_neg)
            total += loss
        history["epoch_loss"].append(total / max(1, centres.size))
        history["pairs"].append(int(centres.size))
        with shown(verbose) as level:
            log.log(level, f"epoch {epoch + 1}/{epochs}: {centres.size:,} pairs, "
                           f"loss {history['epoch_loss'][-1]:.4f} per pair")
    history["seconds"] = time.perf_counter() - start
    history["cpu_seconds"] = time.process_time() - cpu_start
    return WordVectors(vocab, v, method="word2vec (SGNS)", history=history, context_vectors=u)


# ====================================================================== GloVe
def cooccurrence(ids: ArrayLike, vocab_size: int, window: int = 10
                 ) -> tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.float64]]:
    r"""Co-occurrence counts of an id sequence, weighted by distance, as sparse ``(i, j, X_ij)``.

    Every pair of positions at distance $1 \le d \le$ ``window`` adds $1/d$ to both $X_{ij}$ and
    $X_{ji}$ (GloVe's symmetric window), so $X$ is symmetric. Returns int64 ``rows``, ``cols`` and
    float64 ``counts`` of the nonzero entries, sorted by (row, col).
    """
    window = check_int("window", window)
    vocab_size = check_int("vocab_size", vocab_size)
    ids = np.asarray(ids, dtype=np.int64)
    keys, weights = [], []
    for d in range(1, min(window, ids.size - 1) + 1):
        a, b = ids[:-d], ids[d:]
        keys += [a * vocab_size + b, b * vocab_size + a]    # both directions
        weights += [np.full(2 * a.size, 1.0 / d)]
    if not keys:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0)
    unique, inverse = np.unique(np.concatenate(keys), return_inverse=True)
    counts = np.bincount(inverse, weights=np.concatenate(weights))
    # numpy's stubs say bincount returns integers; with weights it returns float64
    return unique // vocab_size, unique % vocab_size, counts    # type: ignore[return-value]


def glove_weight(x: ArrayLike, x_max: float = 100.0, alpha: float = 0.75) -> NDArray[np.float64]:
    r"""GloVe's weighting $f(x) = (x/x_{\max})^{\alpha}$ for $x < x_{\max}$, else 1: rare pairs
    (noisy counts) count less, and very frequent pairs do not dominate."""
    return np.minimum(1.0, (np.asarray(x, dtype=np.float64) / x_max) ** alpha)


def glove_loss_and_grads(w_i: NDArray[np.floating], w_j: NDArray[np.floating], b_i: NDArray[np.floating],
                         b_j: NDArray[np.floating], log_x: NDArray[np.floating], f: NDArray[np.floating]
                         ) -> tuple[float, tuple[NDArray[np.floating], NDArray[np.floating],
                                                 NDArray[np.floating], NDArray[np.floating]]]:
    r"""GloVe's weighted least-squares loss on a batch of co-occurrence entries, and its gradients.

    ``w_i`` (B, D): word vectors $w_i$; ``w_j`` (B, D): context vectors $\tilde w_j$; ``b_i``, ``b_j``
    (B,): biases; ``log_x`` (B,): $\log X_{ij}$; ``f`` (B,): the weights $f(X_{ij})$. With the residual
    $e = w_i^\top \tilde w_j + b_i + \tilde b_j - \log X_{ij}$,

    $$J = \sum f\,e^2,\qquad \frac{\partial J}{\partial w_i} = 2 f e\,\tilde w_j,\quad
      \frac{\partial J}{\partial \tilde w_j} = 2 f e\, w_i,\quad
      \frac{\partial J}{\partial b_i} = \frac{\partial J}{\partial \tilde b_j} = 2 f e$$

    Returns ``(J, (dw_i, dw_j, db_i, db_j))``.
    """
    e = np.einsum("bd,bd->b", w_i, w_j) + b_i + b_j - log_x    # (B,)
    loss = np.sum(f * e * e)
    g = 2.0 * f * e                                            # dJ/de (B,)
    return float(loss), (g[:, None] * w_j, g[:, None] * w_i, g, g)


def _adagrad(param: NDArray[np.floating], sq_sum: NDArray[np.floating], rows: NDArray[np.int64],
             grad: NDArray[np.floating], lr: float) -> None:
    r"""AdaGrad on the rows of ``param`` touched by a batch, entry by entry as in GloVe's code:
    each entry's gradient $g$ adds $g^2$ to its row's running sum $G$, then moves the row by
    $-\eta\, g / \sqrt{G}$ (elementwise; $G$ already holds the whole batch's squares)."""
    scatter_add(sq_sum, rows, grad * grad)
    scatter_add(param, rows, -lr * grad / np.sqrt(sq_sum[rows]))


def train_glove(text: str | None = None, *, dim: int = 50, window: int = 10, min_count: int = 5,
                x_max: float = 100.0, alpha: float = 0.75, epochs: int = 25, lr: float = 0.05,
                batch_size: int = 1024, seed: int = 0, dtype: DTypeLike = np.float32,
                verbose: bool = False) -> "WordVectors":
    r"""Train GloVe on ``text`` (Tiny Shakespeare when None).

    Counts $X$ once (:func:`cooccurrence`), then each epoch visits its nonzero entries in a new
    random order, ``batch_size`` at a time, and takes one AdaGrad step per batch on the rows
    involved (:func:`glove_loss_and_grads`, :func:`_adagrad`). As in the GloVe code: vectors and
    biases start uniform in $\pm 0.5/D$, the squared-gradient sums $G$ start at 1, $\eta = 0.05$.

    Returns :class:`WordVectors` of $w + \tilde w$; ``history`` holds each epoch's $J$ divided by the
    number of entries, the entry count and the time (wall clock and CPU, counting included).
    """
    dim, window = check_int("dim", dim), check_int("window", window)
    epochs, batch_size = check_int("epochs", epochs), check_int("batch_size", batch_size)
    lr, x_max, alpha = check_real("lr", lr, low=0.0, low_open=True), check_real("x_max", x_max, low=0.0, low_open=True), check_real("alpha", alpha, low=0.0, low_open=True)
    words, description = corpus_words(text)
    vocab = Vocab(words, min_count)
    V = len(vocab)
    start, cpu_start = time.perf_counter(), time.process_time()
    rows, cols, counts = cooccurrence(vocab.encode(words), V, window)
    if rows.size == 0:
        raise UsageError("no two words co-occur: the corpus needs at least two words in the vocabulary")
    log_x, f = np.log(counts).astype(dtype), glove_weight(counts, x_max, alpha).astype(dtype)
    rng = np.random.default_rng(seed)
    W = ((rng.random((V, dim)) - 0.5) / dim).astype(dtype)         # word vectors w
    W_ctx = ((rng.random((V, dim)) - 0.5) / dim).astype(dtype)     # context vectors w~
    b = ((rng.random(V) - 0.5) / dim).astype(dtype)
    b_ctx = ((rng.random(V) - 0.5) / dim).astype(dtype)
    G_W, G_ctx, G_b, G_bctx = (np.ones_like(p) for p in (W, W_ctx, b, b_ctx))   # AdaGrad sums

    history: dict[str, Any] = {"epoch_loss": [], "entries": int(rows.size), "seconds": 0.0,
                               "cpu_seconds": 0.0, "corpus": description, "tokens": int(sum(vocab.counts))}
    for epoch in range(epochs):
        order = rng.permutation(rows.size)
        total = 0.0
        for s in range(0, rows.size, batch_size):
            k = order[s:s + batch_size]
            i, j = rows[k], cols[k]
            loss, (dw_i, dw_j, db_i, db_j) = glove_loss_and_grads(W[i], W_ctx[j], b[i], b_ctx[j],
                                                                  log_x[k], f[k])
            _adagrad(W, G_W, i, dw_i, lr)
            _adagrad(W_ctx, G_ctx, j, dw_j, lr)
            _adagrad(b, G_b, i, db_i, lr)
            _adagrad(b_ctx, G_bctx, j, db_j, lr)
            total += loss
        history["epoch_loss"].append(total / rows.size)
        with shown(verbose) as level:
            log.log(level, f"epoch {epoch + 1}/{epochs}: J / entries = {history['epoch_loss'][-1]:.4f}")
    history["seconds"] = time.perf_counter() - start
    history["cpu_seconds"] = time.process_time() - cpu_start
    return WordVectors(vocab, W + W_ctx, method="GloVe", history=history, context_vectors=W_ctx)


# ====================================================================== queries
def pca_2d(X: ArrayLike) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    r"""Project the rows of ``X`` (n, D) on their first two principal components.

    Centre, $X_c = X - \bar x$; SVD, $X_c = U S V^\top$; the coordinates are $X_c V_{:, :2} = U_{:, :2}
    S_{:2}$. Returns ``(coords (n, 2), explained)`` where ``explained`` is the share of the variance
    each of the two components carries, $S_k^2 / \sum S^2$.
    """
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2 or X.shape[0] < 2:
        raise UsageError(f"need at least two row vectors to project, got shape {X.shape}")
    Xc = X - X.mean(axis=0)
    _, S, Vt = np.linalg.svd(Xc, full_matrices=False)
    coords = Xc @ Vt[:2].T
    if coords.shape[1] < 2:                       # D = 1: the second axis is all zero
        coords = np.pad(coords, ((0, 0), (0, 2 - coords.shape[1])))
    total = float(np.sum(S ** 2)) or 1.0
    explained = np.pad(S[:2] ** 2 / total, (0, max(0, 2 - S[:2].size)))
    return coords, explained


class WordVectors:
    """Trained word vectors, one row per vocabulary word, with cosine-similarity queries.

    ``vectors[vocab.id(word)]`` is the vector of ``word``; ``wv[word]`` is the same.
    ``context_vectors`` keeps the model's second table (word2vec's output vectors $u$, GloVe's
    $\tilde w$) for inspection; the queries use ``vectors`` only.
    """

    def __init__(self, vocab: Vocab, vectors: ArrayLike, method: str = "",
                 history: dict[str, Any] | None = None, context_vectors: NDArray[np.floating] | None = None
                 ) -> None:
        vectors = np.asarray(vectors)
        if vectors.ndim != 2 or vectors.shape[0] != len(vocab):
            raise UsageError(f"vectors must be ({len(vocab)}, D), one row per word; got {vectors.shape}")
        self.vocab, self.vectors, self.method = vocab, vectors, method
        self.context_vectors = context_vectors    # word2vec's u, GloVe's w~ (None when not given)
        self.history = history or {}
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        self.unit = vectors / np.maximum(norms, 1e-12)            # rows of length 1: dot = cosine

    def __repr__(self) -> str:
        return f"WordVectors({self.method or 'vectors'}: {len(self.vocab)} words x {self.vectors.shape[1]} dims)"

    def __getitem__(self, word: str) -> NDArray[np.floating]:
        return self.vectors[self.vocab.id(word)]

    def __contains__(self, word: object) -> bool:
        return word in self.vocab

    def centered(self) -> "WordVectors":
        r"""The same words with the mean vector $\bar x$ subtracted from every vector.

        Vectors trained on a small corpus can share one large common direction that makes every
        cosine close to 1 and hides the differences that matter. Skip-gram's optimum asks for
        $u_o^\top v_c \approx \mathrm{PMI}(c, o) - \log K$ (Levy & Goldberg, 2014), a negative shift
        common to all pairs; having no bias term, the model expresses it with a direction shared
        by all input vectors and pointing away from the average output (noise) vector. Removing
        the mean (the first step of Mu & Viswanath's "all-but-the-top", 2018) spreads the cosines
        out again.
        """
        return WordVectors(self.vocab, self.vectors - self.vectors.mean(axis=0),
                           method=f"{self.method}, centred" if self.method else "centred",
                           history=self.history, context_vectors=self.context_vectors)

    def similarity(self, a: str, b: str) -> float:
        r"""Cosine similarity $\cos(x, y) = x^\top y / (\lVert x\rVert\,\lVert y\rVert)$ of two words."""
        return float(self.unit[self.vocab.id(a)] @ self.unit[self.vocab.id(b)])

    def _top(self, query: NDArray[np.floating], k: int, exclude: set[int]) -> list[tuple[str, float]]:
        # numpy's stubs lose max()'s type for a NumPy scalar against a float: it is one of the two
        scores = self.unit @ (query / max(np.linalg.norm(query), 1e-12))   # type: ignore[operator]
        scores[list(exclude)] = -np.inf
        k = min(k, len(self.vocab) - len(exclude))
        best = np.argsort(-scores, kind="stable")[:k]
        return [(self.vocab.words[i], float(scores[i])) for i in best]

    def nearest(self, word: str, k: int = 10) -> list[tuple[str, float]]:
        """The ``k`` words most cosine-similar to ``word`` (itself excluded): ``[(word, cos), ...]``."""
        k = check_int("k", k)
        i = self.vocab.id(word)
        return self._top(self.unit[i], k, {i})

    def analogy(self, a: str, b: str, c: str, k: int = 1) -> list[tuple[str, float]]:
        r"""``a`` is to ``b`` as ``c`` is to ...? The words nearest $\hat b - \hat a + \hat c$ (unit
        vectors; "3CosAdd", Mikolov et al.), the three inputs excluded: ``[(word, cos), ...]``."""
        k = check_int("k", k)
        ia, ib, ic = (self.vocab.id(w) for w in (a, b, c))
        return self._top(self.unit[ib] - self.unit[ia] + self.unit[ic], k, {ia, ib, ic})

    def project(self, words: Iterable[str]) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """2-D PCA coordinates of the given words' vectors: ``(coords (n, 2), explained)``, see
        :func:`pca_2d`. Unknown words raise ValueError naming them."""
        ids = [self.vocab.id(w) for w in words]
        return pca_2d(self.vectors[ids])
