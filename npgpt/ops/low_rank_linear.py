r"""Factorised (low-rank) linear layer: the weight $W \approx UV$ is kept as its two factors.

$$h = xU,\qquad y = hV + b,\qquad U \in \mathbb R^{\text{in}\times k},\ V \in \mathbb R^{k\times\text{out}}$$

With $\delta = \partial L/\partial y$ and the rows running over every leading axis (batch, time),
the chain rule through the two products gives

$$\frac{\partial L}{\partial V} = h^\top\delta,\qquad \frac{\partial L}{\partial h} = \delta V^\top,\qquad
  \frac{\partial L}{\partial U} = x^\top \frac{\partial L}{\partial h},\qquad
  \frac{\partial L}{\partial x} = \frac{\partial L}{\partial h}\,U^\top,\qquad
  \frac{\partial L}{\partial b} = \sum_{\text{rows}}\delta$$

The order of the products is the point: $x$ times $U$ first costs $(\text{in} + \text{out})\,k$
multiply-adds per row, against $\text{in}\cdot\text{out}$ for $x(UV)$, which would rebuild the
full weight and save nothing. The layout is npgpt's (weights (in, out), $y = xW + b$), and the
products flatten the leading axes into rows as :mod:`npgpt.ops.linear` does.
"""
from typing import NamedTuple

import numpy as np
from numpy.typing import NDArray

from .linear import LinearCache, linear_backward, linear_forward, rows

# What the forward keeps for the backward: (x, U, V, h = xU, whether there is a bias).
LowRankCache = tuple[NDArray[np.floating], NDArray[np.floating], NDArray[np.floating], NDArray[np.floating],
                     bool]


def low_rank_linear_forward(x: NDArray[np.floating], U: NDArray[np.floating], V: NDArray[np.floating],
                            b: NDArray[np.floating] | None = None
                            ) -> tuple[NDArray[np.floating], LowRankCache]:
    """``x`` (..., in) @ ``U`` (in, k) @ ``V`` (k, out) + ``b`` (out,) -> (..., out); ``b`` may be None."""
    if U.ndim != 2 or V.ndim != 2 or x.shape[-1] != U.shape[0] or U.shape[1] != V.shape[0]:
        raise ValueError(f"expected x (..., in), U (in, k), V (k, out); got x {x.shape}, "
                         f"U {U.shape}, V {V.shape}")
    if b is not None and b.shape != (V.shape[1],):
        raise ValueError(f"b must have shape ({V.shape[1]},) to match V {V.shape}, got {b.shape}")
    h = rows(x) @ U
    y = h @ V
    if b is not None:
        y += b
    return y.reshape(*x.shape[:-1], V.shape[1]), (x, U, V, h, b is not None)


def low_rank_linear_backward(dout: NDArray[np.floating], cache: LowRankCache) -> tuple[
        NDArray[np.floating], NDArray[np.floating], NDArray[np.floating], NDArray[np.floating] | None]:
    """Return (dx, dU, dV, db); ``db`` is None when the layer has no bias."""
    x, U, V, h, has_bias = cache
    delta = rows(dout)
    dV = h.T @ delta
    dh = delta @ V.T
    dU = rows(x).T @ dh
    dx = (dh @ U.T).reshape(x.shape)
    db = delta.sum(axis=0) if has_bias else None
    return dx, dU, dV, db


# --------------------------------------------------------------------------- a weight or its factors
class Factors(NamedTuple):
    """A weight W (in, out) kept as its low-rank factors, W = U @ V with U (in, k), V (k, out)."""
    U: NDArray[np.floating]
    V: NDArray[np.floating]


class FactoredCache(NamedTuple):
    """The cache of an :func:`affine_forward` that ran on factors."""
    inner: LowRankCache


# A model layer's weight (in, out), or its factors; and the cache of the affine op that ran on it.
Weight = NDArray[np.floating] | Factors
AffineCache = LinearCache | FactoredCache


def affine_forward(x: NDArray[np.floating], W: Weight, b: NDArray[np.floating] | None = None
                   ) -> tuple[NDArray[np.floating], AffineCache]:
    """``linear_forward``, or ``low_rank_linear_forward`` when ``W`` is :class:`Factors`: a model
    layer whose weight was factorised (npgpt.allocation.low_rank) runs the same code."""
    if isinstance(W, Factors):
        y, cache = low_rank_linear_forward(x, W.U, W.V, b)
        return y, FactoredCache(cache)
    return linear_forward(x, W, b)


def affine_backward(dout: NDArray[np.floating], cache: AffineCache
                    ) -> tuple[NDArray[np.floating], Weight, NDArray[np.floating] | None]:
    """Return (dx, dW, db); ``dW`` is :class:`Factors` (dU, dV) when the forward ran on factors."""
    if isinstance(cache, FactoredCache):
        dx, dU, dV, db = low_rank_linear_backward(dout, cache.inner)
        return dx, Factors(dU, dV), db
    return linear_backward(dout, cache)
