r"""Inverted dropout: keep each unit with probability $1-p$ and scale the survivors by $1/(1-p)$,
so the expected activation is unchanged and evaluation needs no rescaling.

$$y = \frac{m \odot x}{1-p},\quad m_i \sim \mathrm{Bernoulli}(1-p),\qquad
  \frac{\partial L}{\partial x} = \frac{m \odot \delta}{1-p}$$

With ``rng=None`` (evaluation) or $p = 0$ it is the identity.
"""
import numpy as np
from numpy.typing import NDArray

# The kept units' mask already divided by 1 - p, or None when dropout was the identity.
DropoutCache = NDArray[np.floating] | None


def dropout_forward(x: NDArray[np.floating], p: float, rng: np.random.Generator | None = None
                    ) -> tuple[NDArray[np.floating], DropoutCache]:
    """Apply dropout with probability ``p`` using the NumPy Generator ``rng``; ``rng=None`` is eval mode."""
    if rng is None or p == 0.0:
        return x, None
    scaled_mask = (rng.random(x.shape) >= p).astype(x.dtype) / x.dtype.type(1.0 - p)
    return x * scaled_mask, scaled_mask


def dropout_backward(dout: NDArray[np.floating], cache: DropoutCache) -> NDArray[np.floating]:
    """Route the gradient through the kept units, with the same 1/(1-p) scale."""
    scaled_mask = cache
    return dout if scaled_mask is None else dout * scaled_mask
