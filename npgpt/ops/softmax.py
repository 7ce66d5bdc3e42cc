r"""Numerically stable softmax and log-softmax over the last axis.

Subtracting the row maximum changes nothing mathematically and keeps $e^{z}$ from overflowing:

$$\mathrm{softmax}(z)_i = \frac{e^{z_i - m}}{\sum_j e^{z_j - m}},\qquad
  \log\mathrm{softmax}(z)_i = z_i - m - \log\sum_j e^{z_j - m},\qquad m = \max_j z_j$$

Backward, with $s = \mathrm{softmax}(z)$ and $\delta$ the upstream gradient:

$$\frac{\partial L}{\partial z} = s \odot \left(\delta - \textstyle\sum_j \delta_j s_j\right)\quad\text{(softmax)},\qquad
  \frac{\partial L}{\partial z} = \delta - s \textstyle\sum_j \delta_j\quad\text{(log-softmax)}$$

Entries of $z$ equal to $-\infty$ (masked positions) get probability exactly 0, as long as each row
has at least one finite entry.
"""
import numpy as np
from numpy.typing import NDArray


def softmax_forward(z: NDArray[np.floating]) -> tuple[NDArray[np.floating], NDArray[np.floating]]:
    """Softmax over the last axis; returns (s, s)."""
    e = np.exp(z - z.max(-1, keepdims=True))
    s = e / e.sum(-1, keepdims=True)
    return s, s


def softmax_backward(dout: NDArray[np.floating], cache: NDArray[np.floating]) -> NDArray[np.floating]:
    """dz = s * (dout - sum(dout * s))."""
    s = cache
    return s * (dout - (dout * s).sum(-1, keepdims=True))


def log_softmax_forward(z: NDArray[np.floating]) -> tuple[NDArray[np.floating], NDArray[np.floating]]:
    """Log-softmax over the last axis; the cache holds the probabilities."""
    shifted = z - z.max(-1, keepdims=True)
    logsumexp = np.log(np.exp(shifted).sum(-1, keepdims=True))
    out = shifted - logsumexp
    return out, np.exp(out)


def log_softmax_backward(dout: NDArray[np.floating], cache: NDArray[np.floating]) -> NDArray[np.floating]:
    """dz = dout - s * sum(dout)."""
    s = cache
    return dout - s * dout.sum(-1, keepdims=True)
