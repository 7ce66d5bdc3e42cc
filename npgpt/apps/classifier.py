r"""A classification head on the GPT, and the bag-of-words baseline it must beat (document section 5).

**The head.** The GPT's last hidden states $h$ (B, T, C) (after the final LayerNorm) are averaged
over each review's real tokens (mask $m_{bt} = 1$, padding 0), then a linear layer gives the class
scores and softmax cross-entropy the loss:

$$\bar h_b = \frac{\sum_t m_{bt} h_{bt}}{n_b},\quad n_b = \sum_t m_{bt},\qquad
  z = \bar h W + b,\qquad L = -\frac1B \sum_b \log \mathrm{softmax}(z_b)_{y_b}$$

Backward, by the chain rule: $\partial L/\partial z = (\mathrm{softmax}(z) - \mathbf 1_y)/B$ (the
cross-entropy op), $\partial L/\partial W = \bar h^\top\, \partial L/\partial z$,
$\partial L/\partial b = \sum_b \partial L/\partial z_b$, $\partial L/\partial \bar h = (\partial
L/\partial z) W^\top$, and the mean spreads it back evenly: $\partial L/\partial h_{bt} = m_{bt}\,
(\partial L/\partial \bar h_b) / n_b$. The GPT is causal, so with right padding no real token ever
reads a pad. The whole model is gradient-checked in float64 (tests/test_apps.py).

**The baseline.** Multinomial logistic regression on bag-of-words counts, in NumPy: the same
softmax cross-entropy on $z = xW + b$ with $x$ the count of each vocabulary word, plus an L2 penalty,
fitted by full-batch gradient descent with Adam's step sizes.
"""
import numpy as np

from ..checks import UsageError
from ..kernels import backend
from ..models import GPT
from ..ops import cross_entropy_backward, cross_entropy_forward


def pooled_head_forward(h, mask, W, b):
    """Mean of ``h`` (B, T, C) over the positions where ``mask`` (B, T) is 1, then ``@ W + b``.
    Returns (scores (B, K), cache)."""
    m = mask.astype(h.dtype)
    n = m.sum(1, keepdims=True)                           # (B, 1)
    hbar = (h * m[..., None]).sum(1) / n                  # (B, C)
    return hbar @ W + b, (m, n, hbar, W)


def pooled_head_backward(dz, cache):
    """(dh, dW, db) from the scores' gradient dz (B, K)."""
    m, n, hbar, W = cache
    dW = hbar.T @ dz
    db = dz.sum(0)
    dhbar = dz @ W.T                                      # (B, C)
    dh = m[..., None] * (dhbar / n)[:, None, :]           # (B, T, C)
    return dh, dW, db


class GPTClassifier(GPT):
    """A GPT body (no language-model head used) + :func:`pooled_head_forward`.

    ``scores, loss = model.forward(idx, labels)`` with ``idx`` (B, T) right-padded with ``pad_id`` and
    ``labels`` (B,); ``grads = model.backward()``. Adds ``score.weight`` (C, K) and ``score.bias`` (K,)
    to the GPT's parameters."""

    def __init__(self, config, n_classes, pad_id=0, seed=0, dtype=np.float32):
        super().__init__(config, seed=seed, dtype=dtype)
        rng = np.random.default_rng([seed, 7])
        self.n_classes, self.pad_id = int(n_classes), int(pad_id)
        self.params["score.weight"] = rng.normal(0.0, 0.02, (config.n_embd, self.n_classes)).astype(self.dtype)
        self.params["score.bias"] = np.zeros(self.n_classes, dtype=self.dtype)

    def forward(self, idx, labels=None):
        c = self.config
        self._caches, self.grads = None, {}
        idx = self._check_ids(idx, "idx")
        mask = idx != self.pad_id
        if not mask.any(1).all():
            raise UsageError("a row of idx holds only padding: there is nothing to classify")
        rng = self.dropout_rng if (self.training and c.dropout > 0.0) else None
        F = backend.ops()
        x, wte_cache = F.embedding_forward(idx, self.params["transformer.wte.weight"])
        x, pos_cache = F.learned_positions_forward(x, self.params["transformer.wpe.weight"], 0)
        x, drop_cache = F.dropout_forward(x, c.dropout, rng)
        block_caches = []
        for i, block_params in enumerate(self.block_params()):
            x, block_cache, _ = F.block_forward(x, block_params, c.heads(i), c.dropout, rng, None)
            block_caches.append(block_cache)
        h, lnf_cache = F.layernorm_forward(x, self.params["transformer.ln_f.weight"],
                                           self.params.get("transformer.ln_f.bias"))
        scores, head_cache = pooled_head_forward(h, mask, self.params["score.weight"], self.params["score.bias"])
        loss = loss_cache = None
        if labels is not None:
            labels = np.asarray(labels)
            if labels.shape != (idx.shape[0],) or not np.issubdtype(labels.dtype, np.integer) \
                    or labels.min() < 0 or labels.max() >= self.n_classes:
                raise UsageError(f"labels must be {idx.shape[0]} integers in [0, {self.n_classes}), "
                                 f"got {labels!r}")
            loss, loss_cache = cross_entropy_forward(scores, labels)
        self._caches = (F, wte_cache, pos_cache, drop_cache, block_caches, lnf_cache, head_cache, loss_cache)
        return scores, loss

    def backward(self):
        if self._caches is None or self._caches[-1] is None:
            raise UsageError("backward() needs a preceding forward(idx, labels) with labels")
        F, wte_cache, pos_cache, drop_cache, block_caches, lnf_cache, head_cache, loss_cache = self._caches
        g = {}
        dz = cross_entropy_backward(1.0, loss_cache)
        dh, g["score.weight"], g["score.bias"] = pooled_head_backward(dz, head_cache)
        dx, g["transformer.ln_f.weight"], db = F.layernorm_backward(dh.astype(self.dtype), lnf_cache)
        if db is not None:
            g["transformer.ln_f.bias"] = db
        for i in reversed(range(self.config.n_layer)):
            dx, block_grads = F.block_backward(dx, block_caches[i])
            g.update({f"transformer.h.{i}.{k}": v for k, v in block_grads.items()})
        dx = F.dropout_backward(dx, drop_cache)
        dx, g["transformer.wpe.weight"] = F.learned_positions_backward(dx, pos_cache)
        g["transformer.wte.weight"] = F.embedding_backward(dx, wte_cache)
        self.grads = {name: g[name] for name in self.params}
        return self.grads

    def predict(self, idx, batch_size=256):
        self.eval()
        return np.concatenate([self.forward(idx[i:i + batch_size])[0].argmax(-1)
                               for i in range(0, len(idx), batch_size)])


class ClassBatches:
    """Batches (padded ids, labels) for the Trainer; ``rows``: split -> (ids list, labels array)."""

    def __init__(self, rows, pad_id=0):
        self.rows, self.pad_id = rows, pad_id

    def get_batch(self, split, batch_size, block_size, rng):
        ids, labels = self.rows[split]
        pick = rng.integers(0, len(ids), batch_size)
        return pad_rows([ids[i] for i in pick], self.pad_id), labels[pick]


def pad_rows(seqs, pad_id=0):
    x = np.full((len(seqs), max(len(s) for s in seqs)), pad_id, dtype=np.int64)
    for i, s in enumerate(seqs):
        x[i, :len(s)] = s
    return x


# ----------------------------------------------------------------------------- the baseline
class BagOfWordsLogReg:
    """Logistic regression on word counts (module docstring). ``fit(docs, labels)``, ``predict(docs)``;
    a doc is a list of tokens."""

    def __init__(self, n_classes=2, l2=1e-3, lr=0.1, steps=500):
        self.n_classes, self.l2, self.lr, self.steps = n_classes, l2, lr, steps

    def _features(self, docs):
        x = np.zeros((len(docs), len(self.vocab)))
        for i, doc in enumerate(docs):
            for t in doc:
                j = self.vocab.get(t)
                if j is not None:
                    x[i, j] += 1.0
        return x

    def fit(self, docs, labels):
        self.vocab = {t: j for j, t in enumerate(sorted({t for d in docs for t in d}))}
        x, y = self._features(docs), np.asarray(labels)
        self.W = np.zeros((x.shape[1], self.n_classes))
        self.b = np.zeros(self.n_classes)
        m = [np.zeros_like(self.W), np.zeros_like(self.b)]
        v = [np.zeros_like(self.W), np.zeros_like(self.b)]
        for t in range(1, self.steps + 1):
            loss, cache = cross_entropy_forward(x @ self.W + self.b, y)
            dz = cross_entropy_backward(1.0, cache)
            grads = [x.T @ dz + self.l2 * self.W, dz.sum(0)]
            for k, (p, g) in enumerate(zip((self.W, self.b), grads)):
                m[k] = 0.9 * m[k] + 0.1 * g
                v[k] = 0.999 * v[k] + 0.001 * g * g
                p -= self.lr * (m[k] / (1 - 0.9 ** t)) / (np.sqrt(v[k] / (1 - 0.999 ** t)) + 1e-8)
        self.loss = loss
        return self

    def predict(self, docs):
        return (self._features(docs) @ self.W + self.b).argmax(-1)
