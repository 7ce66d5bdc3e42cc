r"""The AdamW update in one pass per tensor: the twin of :func:`npgpt.ops.adamw_update`.

NumPy's version allocates a temporary for each of its dozen element-wise operations; this loop
reads $\theta, g, m, v$ once and writes $\theta, m, v$ once, in parallel.
"""
import numpy as np
from numba import prange

from ._compile import kernel


@kernel()
def _adamw(p, g, m, v, lr, beta1, beta2, eps, decay, bias_correction1, bias_correction2):
    one = lr - lr + 1
    step = lr / bias_correction1
    inv_sqrt_bc2 = one / np.sqrt(bias_correction2)
    shrink = one - lr * decay
    for i in prange(p.size):
        m[i] = beta1 * m[i] + (one - beta1) * g[i]
        v[i] = beta2 * v[i] + (one - beta2) * g[i] * g[i]
        p[i] = p[i] * shrink - step * m[i] / (np.sqrt(v[i]) * inv_sqrt_bc2 + eps)


def adamw_update(p, g, m, v, lr, beta1, beta2, eps, decay, step):
    """Same signature and effect as :func:`npgpt.ops.adamw_update` (in place on p, m, v)."""
    f = p.dtype.type          # the scalars in the parameters' type, as NumPy's own arithmetic would use
    _adamw(p.size)(p.reshape(-1), np.ascontiguousarray(g).reshape(-1), m.reshape(-1), v.reshape(-1),
           f(lr), f(beta1), f(beta2), f(eps), f(decay), f(1.0 - beta1 ** step), f(1.0 - beta2 ** step))
