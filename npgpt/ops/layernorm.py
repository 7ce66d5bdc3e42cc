r"""Layer normalisation over the last axis (eps $10^{-5}$, as GPT-2 and PyTorch).

$$\mu = \tfrac1C\sum_c x_c,\quad \sigma^2 = \tfrac1C\sum_c (x_c-\mu)^2,\quad
  \hat x = \frac{x-\mu}{\sqrt{\sigma^2+\epsilon}},\quad y = w\odot\hat x + b$$

Backward, with $g = w \odot \partial L/\partial y$ and $r = 1/\sqrt{\sigma^2+\epsilon}$: the mean and the
variance both depend on every $x_c$, which gives the two subtracted averages

$$\frac{\partial L}{\partial x} = r\left(g - \overline{g} - \hat x\,\overline{g\odot\hat x}\right),\qquad
  \frac{\partial L}{\partial w} = \sum_{\text{rows}} \frac{\partial L}{\partial y}\odot\hat x,\qquad
  \frac{\partial L}{\partial b} = \sum_{\text{rows}} \frac{\partial L}{\partial y}$$

where the bar is the mean over the last axis.
"""
import numpy as np
from numpy.typing import NDArray

# (x hat, 1 / sqrt(variance + eps), w, whether there is a bias)
LayerNormCache = tuple[NDArray[np.floating], NDArray[np.floating], NDArray[np.floating], bool]


def layernorm_forward(x: NDArray[np.floating], w: NDArray[np.floating], b: NDArray[np.floating] | None = None,
                      eps: float = 1e-5) -> tuple[NDArray[np.floating], LayerNormCache]:
    """Normalise ``x`` (..., C) to zero mean and unit variance, then scale by ``w`` and shift by ``b``."""
    mu = x.mean(-1, keepdims=True)
    xc = x - mu
    rstd = 1.0 / np.sqrt((xc * xc).mean(-1, keepdims=True) + eps)
    xhat = xc * rstd
    y = xhat * w
    if b is not None:
        y += b
    return y, (xhat, rstd, w, b is not None)


def layernorm_backward(dout: NDArray[np.floating], cache: LayerNormCache
                       ) -> tuple[NDArray[np.floating], NDArray[np.floating], NDArray[np.floating] | None]:
    """Return (dx, dw, db); ``db`` is None when there is no bias."""
    xhat, rstd, w, has_bias = cache
    C = w.shape[0]
    g = dout * w
    dx = rstd * (g - g.mean(-1, keepdims=True) - xhat * (g * xhat).mean(-1, keepdims=True))
    dw = (dout * xhat).reshape(-1, C).sum(axis=0)
    db = dout.reshape(-1, C).sum(axis=0) if has_bias else None
    return dx, dw, db
