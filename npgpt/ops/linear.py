r"""Affine (linear) layer, in GPT-2's layout: the weight is (in, out), so $y = xW + b$.

$$y = xW + b,\qquad \frac{\partial L}{\partial x} = \delta W^\top,\qquad
  \frac{\partial L}{\partial W} = x^\top \delta,\qquad \frac{\partial L}{\partial b} = \sum_{\text{rows}} \delta$$

with $\delta = \partial L/\partial y$ and the rows running over every leading axis (batch, time).
"""


def linear_forward(x, W, b=None):
    """``x`` (..., in) @ ``W`` (in, out) + ``b`` (out,) -> (..., out). ``b`` may be None."""
    y = x @ W
    if b is not None:
        y += b
    return y, (x, W, b is not None)


def linear_backward(dout, cache):
    """Return (dx, dW, db); ``db`` is None when the layer has no bias."""
    x, W, has_bias = cache
    d_in, d_out = W.shape
    dout2d = dout.reshape(-1, d_out)
    dx = dout @ W.T
    dW = x.reshape(-1, d_in).T @ dout2d
    db = dout2d.sum(axis=0) if has_bias else None
    return dx, dW, db
