r"""The rectifier, the feed-forward activation of ``nn.Transformer`` (and of the document's code).

$$\mathrm{ReLU}(x) = \max(0, x),\qquad \frac{\partial L}{\partial x} = \delta \odot [x > 0]$$

(0 at $x = 0$, as PyTorch).
"""
import numpy as np


def relu_forward(x):
    r"""$\mathrm{ReLU}(x) = \max(0, x)$; backward passes the gradient where $x > 0$ (0 at $x = 0$, as PyTorch)."""
    return np.maximum(x, 0), x > 0


def relu_backward(dout, cache):
    """dx = dout where the input was positive, else 0."""
    return dout * cache
