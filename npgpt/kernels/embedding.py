r"""Embedding backward as a plain loop: the twin of :func:`npgpt.ops.embedding_backward`.

$\partial L/\partial W_v = \sum_{n:\,\mathrm{idx}_n = v} \delta_n$: one row-add per token. NumPy's
``np.add.at`` does the same but through a slow generic path; a serial loop has no write races.
"""
import numpy as np
from numba import njit

from ..ops import embedding_forward  # noqa: F401  (the gather is already fast in NumPy)


@njit(cache=True)
def _scatter_add(idx, dout, dW):
    # Element by element: a whole-row ``dW[idx[n]] += dout[n]`` makes numba build its shape-mismatch
    # message (int-to-string and string code), 2.4 of the 2.6 s this kernel took to compile.
    for n in range(idx.shape[0]):
        for c in range(dW.shape[1]):
            dW[idx[n], c] += dout[n, c]


def embedding_backward(dout, cache):
    """Same results as :func:`npgpt.ops.embedding_backward`."""
    idx, w_shape = cache
    dW = np.zeros(w_shape, dtype=dout.dtype)
    _scatter_add(np.ascontiguousarray(idx).reshape(-1), np.ascontiguousarray(dout).reshape(-1, w_shape[1]), dW)
    return dW
