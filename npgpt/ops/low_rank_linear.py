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
from .linear import rows


def low_rank_linear_forward(x, U, V, b=None):
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


def low_rank_linear_backward(dout, cache):
    """Return (dx, dU, dV, db); ``db`` is None when the layer has no bias."""
    x, U, V, h, has_bias = cache
    delta = rows(dout)
    dV = h.T @ delta
    dh = delta @ V.T
    dU = rows(x).T @ dh
    dx = (dh @ U.T).reshape(x.shape)
    db = delta.sum(axis=0) if has_bias else None
    return dx, dU, dV, db
