r"""Token embedding lookup (document section 3, step 1: text becomes vectors).

Forward is a row gather, backward a scatter-add:

$$x_{b,t} = W_{\,\mathrm{idx}_{b,t}}, \qquad
  \frac{\partial L}{\partial W_v} = \sum_{(b,t)\,:\,\mathrm{idx}_{b,t}=v} \frac{\partial L}{\partial x_{b,t}}$$

A token id that appears several times in the batch receives the sum of all its gradients.
"""
import numpy as np
from numpy.typing import NDArray

EmbeddingCache = tuple[NDArray[np.integer], tuple[int, ...]]      # (idx, W's shape)


def embedding_forward(idx: NDArray[np.integer], W: NDArray[np.floating]
                      ) -> tuple[NDArray[np.floating], EmbeddingCache]:
    """Look up rows of ``W`` (V, C) for integer ids ``idx`` (...) -> (..., C)."""
    return W[idx], (idx, W.shape)


def embedding_backward(dout: NDArray[np.floating], cache: EmbeddingCache) -> NDArray[np.floating]:
    """Scatter-add ``dout`` (..., C) into a zero (V, C) gradient; repeated ids accumulate."""
    idx, w_shape = cache
    dW = np.zeros(w_shape, dtype=dout.dtype)
    np.add.at(dW, idx.reshape(-1), dout.reshape(-1, w_shape[1]))
    return dW
