r"""The AdamW update of one tensor, in place (Loshchilov & Hutter, 2019; ``torch.optim.AdamW``):

$$\theta \leftarrow (1 - \eta\lambda)\,\theta,\qquad m \leftarrow \beta_1 m + (1-\beta_1) g,\qquad
  v \leftarrow \beta_2 v + (1-\beta_2) g^2,\qquad
  \theta \leftarrow \theta - \eta\,\frac{m / (1-\beta_1^t)}{\sqrt{v / (1-\beta_2^t)} + \epsilon}$$

$t$ counts steps from 1; ``decay`` is $\lambda$ for this tensor (0 for biases and LayerNorm weights).
:class:`npgpt.training.optim.AdamW` calls this for every parameter.
"""
import numpy as np
from numpy.typing import NDArray


def adamw_update(p: NDArray[np.floating], g: NDArray[np.floating], m: NDArray[np.floating],
                 v: NDArray[np.floating], lr: float, beta1: float, beta2: float, eps: float, decay: float,
                 step: int) -> None:
    """Update parameter ``p`` and its moments ``m``, ``v`` in place from gradient ``g``."""
    if decay:
        p -= lr * decay * p
    m *= beta1
    m += (1.0 - beta1) * g
    v *= beta2
    v += (1.0 - beta2) * g * g
    m_hat = m / (1.0 - beta1 ** step)
    v_hat = v / (1.0 - beta2 ** step)
    p -= lr * m_hat / (np.sqrt(v_hat) + eps)
