r"""Affine (linear) layer, in GPT-2's layout: the weight is (in, out), so $y = xW + b$.

$$y = xW + b,\qquad \frac{\partial L}{\partial x} = \delta W^\top,\qquad
  \frac{\partial L}{\partial W} = x^\top \delta,\qquad \frac{\partial L}{\partial b} = \sum_{\text{rows}} \delta$$

with $\delta = \partial L/\partial y$ and the rows running over every leading axis (batch, time).

Every product flattens the leading axes into rows first. NumPy's ``matmul`` treats a (B, T, C)
operand as a stack of B separate (T, C) products, each too small for BLAS to split over its
threads; one (B*T, C) product is the same arithmetic and ran 2x faster on the baby preset.

PyTorch's ``nn.Linear`` stores its weight the other way round, (out, in), and computes
$y = xW^\top + b$: :func:`torch_linear_forward` is the same op applied to the transposed view.
"""
import numpy as np
from numpy.typing import NDArray

# What the forward keeps for the backward: (x, W, whether there is a bias).
LinearCache = tuple[NDArray[np.floating], NDArray[np.floating], bool]


def rows(a: NDArray[np.floating]) -> NDArray[np.floating]:
    """``a`` (..., n) viewed as a 2-D (rows, n) matrix (a copy only if it is not contiguous)."""
    return a.reshape(-1, a.shape[-1])


def linear_forward(x: NDArray[np.floating], W: NDArray[np.floating], b: NDArray[np.floating] | None = None
                   ) -> tuple[NDArray[np.floating], LinearCache]:
    """``x`` (..., in) @ ``W`` (in, out) + ``b`` (out,) -> (..., out). ``b`` may be None."""
    y = rows(x) @ W
    if b is not None:
        y += b
    return y.reshape(*x.shape[:-1], W.shape[1]), (x, W, b is not None)


def head_forward(x: NDArray[np.floating], table: NDArray[np.floating]
                 ) -> tuple[NDArray[np.floating], LinearCache]:
    r"""The output layer: logits $z = x E^\top$ over a (V, C) table $E$ (the token embedding when the
    weights are tied), each logit $z_v = x \cdot E_v$. :func:`linear_forward` of the transposed view,
    so :func:`linear_backward` is its backward."""
    return linear_forward(x, table.T)


def linear_backward(dout: NDArray[np.floating], cache: LinearCache
                    ) -> tuple[NDArray[np.floating], NDArray[np.floating], NDArray[np.floating] | None]:
    """Return (dx, dW, db); ``db`` is None when the layer has no bias."""
    x, W, has_bias = cache
    dout2d = rows(dout)
    dx = (dout2d @ W.T).reshape(x.shape)
    dW = rows(x).T @ dout2d
    db = dout2d.sum(axis=0) if has_bias else None
    return dx, dW, db


def torch_linear_forward(x: NDArray[np.floating], W: NDArray[np.floating],
                         b: NDArray[np.floating] | None = None) -> tuple[NDArray[np.floating], LinearCache]:
    r"""``nn.Linear``: the weight is stored (out, in), so $y = xW^\top + b$ (npgpt's GPT stores (in, out)).

    The same op as :func:`npgpt.ops.linear_forward`, applied to the transposed view $W^\top$.
    """
    return linear_forward(x, W.T, b)


def torch_linear_backward(dout: NDArray[np.floating], cache: LinearCache
                          ) -> tuple[NDArray[np.floating], NDArray[np.floating], NDArray[np.floating] | None]:
    r"""Return (dx, dW, db) with dW (out, in): $\partial L/\partial W = \delta^\top x$, the transpose of
    what :func:`npgpt.ops.linear_backward` computes for $W^\top$."""
    dx, dWT, db = linear_backward(dout, cache)
    return dx, np.ascontiguousarray(dWT.T), db
