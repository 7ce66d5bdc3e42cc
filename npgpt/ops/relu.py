r"""The rectifier, the feed-forward activation of ``nn.Transformer`` (and of the document's code).

$$\mathrm{ReLU}(x) = \max(0, x),\qquad \frac{\partial L}{\partial x} = \delta \odot [x > 0]$$

(0 at $x = 0$, as PyTorch).
"""
import numpy as np
from numpy.typing import NDArray


def relu_forward(x: NDArray[np.floating]) -> tuple[NDArray[np.floating], NDArray[np.bool_]]:
    r"""$\mathrm{ReLU}(x) = \max(0, x)$; backward passes the gradient where $x > 0$ (0 at $x = 0$, as PyTorch)."""
    return np.maximum(x, 0), x > 0


def relu_backward(dout: NDArray[np.floating], cache: NDArray[np.bool_]) -> NDArray[np.floating]:
    """dx = dout where the input was positive, else 0."""
    return dout * cache
