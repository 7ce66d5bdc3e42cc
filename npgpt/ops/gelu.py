r"""GELU, with the tanh approximation GPT-2 uses.

$$\mathrm{GELU}(x) \approx \tfrac12 x\,(1+\tanh u),\qquad u = \sqrt{2/\pi}\,(x + 0.044715\,x^3)$$

$$\frac{d}{dx}\mathrm{GELU}(x) = \tfrac12(1+\tanh u) + \tfrac12 x\,(1-\tanh^2 u)\,\sqrt{2/\pi}\,(1 + 3\cdot0.044715\,x^2)$$

The cube is written ``x * x * x``: NumPy's ``x**3`` on negative floats goes through ``pow`` and is
hundreds of times slower.
"""
import math

import numpy as np
from numpy.typing import NDArray

SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)   # a Python float: keeps float32 arrays float32
GELU_COEF = 0.044715

GeluCache = tuple[NDArray[np.floating], NDArray[np.floating]]     # (x, tanh u)


def gelu_forward(x: NDArray[np.floating]) -> tuple[NDArray[np.floating], GeluCache]:
    """Elementwise tanh-approximate GELU."""
    t = np.tanh(SQRT_2_OVER_PI * (x + GELU_COEF * (x * x * x)))
    return 0.5 * x * (1.0 + t), (x, t)


def gelu_backward(dout: NDArray[np.floating], cache: GeluCache) -> NDArray[np.floating]:
    """Return dx = dout * GELU'(x), reusing tanh(u) from the forward pass."""
    x, t = cache
    du_dx = SQRT_2_OVER_PI * (1.0 + 3.0 * GELU_COEF * (x * x))
    return dout * (0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * du_dx)
