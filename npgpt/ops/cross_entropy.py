r"""Cross-entropy, i.e. the negative log-likelihood of the next token (document section 4.3).

The document sums $-\log p(y_i \mid y_{<i})$ over the sequence; npgpt averages over the $N$ scored
tokens instead (the same minimiser, a learning rate that does not depend on the batch size), and
skips targets equal to ``ignore_index`` (padding):

$$L = -\frac{1}{N}\sum_{n:\,y_n \ne \text{ignore}} \log \mathrm{softmax}(z_n)_{y_n},\qquad
  \frac{\partial L}{\partial z_n} = \frac{1}{N}\big(\mathrm{softmax}(z_n) - \mathbf 1_{y_n}\big)$$

The softmax and the log are fused: the gradient is "probabilities minus one-hot", and with the
log-sum-exp shift the loss stays finite even for logits of $\pm 10^4$.
"""
import numpy as np
from numpy.typing import NDArray

from .softmax import log_softmax_forward

# (probabilities, the scored rows, targets, how many rows were scored)
CrossEntropyCache = tuple[NDArray[np.floating], NDArray[np.intp], NDArray[np.integer], int]


def cross_entropy_forward(logits: NDArray[np.floating], targets: NDArray[np.integer],
                          ignore_index: int | None = None) -> tuple[float, CrossEntropyCache]:
    """Mean NLL of integer ``targets`` (N,) under ``logits`` (N, V); rows whose target is
    ``ignore_index`` are skipped. Returns (loss, cache)."""
    keep = np.ones(targets.shape, dtype=bool) if ignore_index is None else targets != ignore_index
    n_scored = int(keep.sum())
    if n_scored == 0:
        raise ValueError(f"every target equals ignore_index={ignore_index}: there is no token to score")
    logp, probs = log_softmax_forward(logits)
    rows = np.flatnonzero(keep)
    loss = 0.0 - logp[rows, targets[rows]].sum() / n_scored   # 0.0 - : a perfect fit prints 0, not -0
    return float(loss), (probs, rows, targets, n_scored)


def cross_entropy_backward(dloss: float, cache: CrossEntropyCache) -> NDArray[np.floating]:
    """Gradient of the logits, (probs - onehot) / N on scored rows and 0 on ignored ones."""
    probs, rows, targets, n_scored = cache
    dlogits = np.zeros_like(probs)
    dlogits[rows] = probs[rows]
    dlogits[rows, targets[rows]] -= 1.0
    dlogits *= dloss / n_scored
    return dlogits
