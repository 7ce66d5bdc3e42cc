r"""The position-wise feed-forward network of a GPT block: expand 4x, GELU, project back.

$$\mathrm{MLP}(x) = \mathrm{GELU}(x W_{fc} + b_{fc})\, W_{proj} + b_{proj},\qquad
  W_{fc}\in\mathbb R^{C\times 4C},\; W_{proj}\in\mathbb R^{4C\times C}$$

Backward runs the three ops in reverse.
"""
import numpy as np
from numpy.typing import NDArray

from .gelu import GeluCache, gelu_backward, gelu_forward
from .low_rank_linear import AffineCache, Weight, affine_backward, affine_forward

MLPCache = tuple[AffineCache, GeluCache, AffineCache]       # (fc, gelu, proj)


def mlp_forward(x: NDArray[np.floating], w_fc: Weight, b_fc: NDArray[np.floating] | None, w_proj: Weight,
                b_proj: NDArray[np.floating] | None) -> tuple[NDArray[np.floating], MLPCache]:
    """x (..., C) -> (..., C) through a hidden layer of width ``w_fc.shape[1]``."""
    h, fc_cache = affine_forward(x, w_fc, b_fc)
    a, gelu_cache = gelu_forward(h)
    out, proj_cache = affine_forward(a, w_proj, b_proj)
    return out, (fc_cache, gelu_cache, proj_cache)


def mlp_backward(dout: NDArray[np.floating], cache: MLPCache) -> tuple[
        NDArray[np.floating], Weight, NDArray[np.floating] | None, Weight, NDArray[np.floating] | None]:
    """Return (dx, dw_fc, db_fc, dw_proj, db_proj)."""
    fc_cache, gelu_cache, proj_cache = cache
    da, dw_proj, db_proj = affine_backward(dout, proj_cache)
    dh = gelu_backward(da, gelu_cache)
    dx, dw_fc, db_fc = affine_backward(dh, fc_cache)
    return dx, dw_fc, db_fc, dw_proj, db_proj
