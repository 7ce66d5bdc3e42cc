r"""The recurrent cells (document sections 2 and 3, step 2): one step of an RNN, an LSTM and a GRU.

Each cell maps an input $x_t$ and the state carried from the previous step to the new state;
a layer (:mod:`npgpt.models.recurrent`) runs the cell over time. PyTorch's layout: ``w_ih``
$(GH, \text{in})$ and ``w_hh`` $(GH, H)$ hold the $G$ gates' matrices stacked by rows (LSTM:
$i, f, g, o$; GRU: $r, z, n$) and act as $xW^\top$; each has its bias ``b_ih``, ``b_hh`` $(GH,)$.
The sigmoid is computed as $\sigma(a) = \tfrac12(1 + \tanh\tfrac a2)$, the same function written so
it cannot overflow.
"""
from typing import Literal

import numpy as np
from numpy.typing import NDArray

# (dx, dh, dW_ih, dW_hh, db_ih, db_hh): the biases' gradients are None when the cell has no biases.
CellGrads = tuple[NDArray[np.floating], NDArray[np.floating], NDArray[np.floating], NDArray[np.floating],
                  NDArray[np.floating] | None, NDArray[np.floating] | None]
# (x, h, w_ih, w_hh, h', whether there are biases, the nonlinearity)
RNNCellCache = tuple[NDArray[np.floating], NDArray[np.floating], NDArray[np.floating], NDArray[np.floating],
                     NDArray[np.floating], bool, str]
# (x, h, c, w_ih, w_hh, i, f, g, o, tanh c', whether there are biases)
LSTMCellCache = tuple[NDArray[np.floating], NDArray[np.floating], NDArray[np.floating], NDArray[np.floating],
                      NDArray[np.floating], NDArray[np.floating], NDArray[np.floating], NDArray[np.floating],
                      NDArray[np.floating], NDArray[np.floating], bool]
# (x, h, w_ih, w_hh, r, z, n, W_hn h + b_hn, whether there are biases)
GRUCellCache = tuple[NDArray[np.floating], NDArray[np.floating], NDArray[np.floating], NDArray[np.floating],
                     NDArray[np.floating], NDArray[np.floating], NDArray[np.floating], NDArray[np.floating],
                     bool]


def sigmoid(a: NDArray[np.floating]) -> NDArray[np.floating]:
    r"""$\sigma(a) = 1 / (1 + e^{-a}) = \tfrac12(1 + \tanh\tfrac a2)$, elementwise, keeping the dtype."""
    return 0.5 * (1.0 + np.tanh(0.5 * a))


def _project(x: NDArray[np.floating], w: NDArray[np.floating], b: NDArray[np.floating] | None
             ) -> NDArray[np.floating]:
    """x W^T + b for a PyTorch-layout weight ``w`` (out, in); ``b`` may be None."""
    y = x @ w.T
    if b is not None:
        y += b
    return y


def _project_backward(da_x: NDArray[np.floating], da_h: NDArray[np.floating], x: NDArray[np.floating],
                      h: NDArray[np.floating], w_ih: NDArray[np.floating], w_hh: NDArray[np.floating],
                      has_bias: bool) -> CellGrads:
    """Backward of a_x = x W_ih^T + b_ih and a_h = h W_hh^T + b_hh given their gradients
    ``da_x`` and ``da_h`` (B, GH): returns (dx, dh, dW_ih, dW_hh, db_ih, db_hh)."""
    dx = da_x @ w_ih
    dh = da_h @ w_hh
    dw_ih = da_x.T @ x
    dw_hh = da_h.T @ h
    db_ih = da_x.sum(axis=0) if has_bias else None
    db_hh = da_h.sum(axis=0) if has_bias else None
    return dx, dh, dw_ih, dw_hh, db_ih, db_hh


def rnn_cell_forward(x: NDArray[np.floating], h: NDArray[np.floating], w_ih: NDArray[np.floating],
                     w_hh: NDArray[np.floating], b_ih: NDArray[np.floating] | None = None,
                     b_hh: NDArray[np.floating] | None = None, nonlinearity: Literal["tanh", "relu"] = "tanh"
                     ) -> tuple[NDArray[np.floating], RNNCellCache]:
    r"""One step of the Elman RNN: $h' = \tanh(x W_{ih}^\top + b_{ih} + h W_{hh}^\top + b_{hh})$.

    ``x`` (B, in), ``h`` (B, H); ``nonlinearity="relu"`` uses $\max(a, 0)$ instead of tanh
    (PyTorch's option). Returns (h', cache).
    """
    a = _project(x, w_ih, b_ih) + _project(h, w_hh, b_hh)              # (B, H)
    h_new = np.tanh(a) if nonlinearity == "tanh" else np.maximum(a, 0.0)
    return h_new, (x, h, w_ih, w_hh, h_new, b_ih is not None, nonlinearity)


def rnn_cell_backward(dh_new: NDArray[np.floating], cache: RNNCellCache) -> CellGrads:
    r"""Return (dx, dh, dW_ih, dW_hh, db_ih, db_hh) for $\delta = \partial L/\partial h'$:

    $$\frac{\partial L}{\partial a} = \delta \odot (1 - h'^2)\ \ (\text{relu: } \delta \odot [a > 0]),\qquad
      \frac{\partial L}{\partial x} = \frac{\partial L}{\partial a} W_{ih},\quad
      \frac{\partial L}{\partial h} = \frac{\partial L}{\partial a} W_{hh},\quad
      \frac{\partial L}{\partial W_{ih}} = \Big(\frac{\partial L}{\partial a}\Big)^{\!\top} x$$

    and $\partial L/\partial W_{hh} = (\partial L/\partial a)^\top h$, both biases $\sum_{\text{rows}} \partial L/\partial a$.
    """
    x, h, w_ih, w_hh, h_new, has_bias, nonlinearity = cache
    da = dh_new * (1.0 - h_new * h_new) if nonlinearity == "tanh" else dh_new * (h_new > 0)
    return _project_backward(da, da, x, h, w_ih, w_hh, has_bias)


def lstm_cell_forward(x: NDArray[np.floating], h: NDArray[np.floating], c: NDArray[np.floating],
                      w_ih: NDArray[np.floating], w_hh: NDArray[np.floating],
                      b_ih: NDArray[np.floating] | None = None, b_hh: NDArray[np.floating] | None = None
                      ) -> tuple[tuple[NDArray[np.floating], NDArray[np.floating]], LSTMCellCache]:
    r"""One LSTM step (gates in PyTorch's order $i, f, g, o$):

    $$[a_i, a_f, a_g, a_o] = x W_{ih}^\top + b_{ih} + h W_{hh}^\top + b_{hh},\qquad
      i, f, o = \sigma(a_{i,f,o}),\quad g = \tanh(a_g)$$
    $$c' = f \odot c + i \odot g,\qquad h' = o \odot \tanh(c')$$

    ``x`` (B, in), ``h`` and ``c`` (B, H). Returns ((h', c'), cache).
    """
    H = h.shape[-1]
    a = _project(x, w_ih, b_ih) + _project(h, w_hh, b_hh)              # (B, 4H)
    i = sigmoid(a[:, :H])
    f = sigmoid(a[:, H:2 * H])
    g = np.tanh(a[:, 2 * H:3 * H])
    o = sigmoid(a[:, 3 * H:])
    c_new = f * c + i * g
    tc = np.tanh(c_new)
    h_new = o * tc
    return (h_new, c_new), (x, h, c, w_ih, w_hh, i, f, g, o, tc, b_ih is not None)


def lstm_cell_backward(dh_new: NDArray[np.floating], dc_new: NDArray[np.floating], cache: LSTMCellCache
                       ) -> tuple[NDArray[np.floating], NDArray[np.floating], NDArray[np.floating],
                                  NDArray[np.floating], NDArray[np.floating],
                                  NDArray[np.floating] | None, NDArray[np.floating] | None]:
    r"""Return (dx, dh, dc, dW_ih, dW_hh, db_ih, db_hh) given $\partial L/\partial h'$ and $\partial L/\partial c'$.

    $c'$ reaches the loss directly and through $h'$, so first
    $\overline{c'} = \partial L/\partial c' + \partial L/\partial h' \odot o \odot (1 - \tanh^2 c')$; then
    $$\bar o = \overline{h'} \odot \tanh c',\quad \bar i = \overline{c'} \odot g,\quad
      \bar f = \overline{c'} \odot c,\quad \bar g = \overline{c'} \odot i,\quad \bar c = \overline{c'} \odot f$$
    and through the activations $\bar a_{i,f,o} = \bar\cdot\,\sigma(1-\sigma)$, $\bar a_g = \bar g\,(1 - g^2)$,
    which go back through the two projections as in the RNN.
    """
    x, h, c, w_ih, w_hh, i, f, g, o, tc, has_bias = cache
    dc_total = dc_new + dh_new * o * (1.0 - tc * tc)
    do = dh_new * tc
    di = dc_total * g
    df = dc_total * c
    dg = dc_total * i
    dc = dc_total * f
    da = np.concatenate([di * i * (1.0 - i), df * f * (1.0 - f), dg * (1.0 - g * g),
                         do * o * (1.0 - o)], axis=-1)                   # (B, 4H)
    dx, dh, dw_ih, dw_hh, db_ih, db_hh = _project_backward(da, da, x, h, w_ih, w_hh, has_bias)
    return dx, dh, dc, dw_ih, dw_hh, db_ih, db_hh


def gru_cell_forward(x: NDArray[np.floating], h: NDArray[np.floating], w_ih: NDArray[np.floating],
                     w_hh: NDArray[np.floating], b_ih: NDArray[np.floating] | None = None,
                     b_hh: NDArray[np.floating] | None = None) -> tuple[NDArray[np.floating], GRUCellCache]:
    r"""One GRU step (gates in PyTorch's order $r, z, n$):

    $$r = \sigma(W_{ir}x + b_{ir} + W_{hr}h + b_{hr}),\qquad z = \sigma(W_{iz}x + b_{iz} + W_{hz}h + b_{hz})$$
    $$n = \tanh\big(W_{in}x + b_{in} + r \odot (W_{hn}h + b_{hn})\big),\qquad h' = (1 - z) \odot n + z \odot h$$

    The reset gate multiplies $W_{hn}h + b_{hn}$, bias included, so the input and hidden
    projections are kept apart. ``x`` (B, in), ``h`` (B, H). Returns (h', cache).
    """
    H = h.shape[-1]
    gx = _project(x, w_ih, b_ih)                                         # (B, 3H): r | z | n
    gh = _project(h, w_hh, b_hh)                                         # (B, 3H): r | z | n
    r = sigmoid(gx[:, :H] + gh[:, :H])
    z = sigmoid(gx[:, H:2 * H] + gh[:, H:2 * H])
    hn = gh[:, 2 * H:]                                                   # W_hn h + b_hn
    n = np.tanh(gx[:, 2 * H:] + r * hn)
    h_new = (1.0 - z) * n + z * h
    return h_new, (x, h, w_ih, w_hh, r, z, n, hn, b_ih is not None)


def gru_cell_backward(dh_new: NDArray[np.floating], cache: GRUCellCache) -> CellGrads:
    r"""Return (dx, dh, dW_ih, dW_hh, db_ih, db_hh) for $\delta = \partial L/\partial h'$:

    $$\bar n = \delta \odot (1 - z),\quad \bar z = \delta \odot (h - n),\quad
      \bar a_n = \bar n \odot (1 - n^2),\quad \bar r = \bar a_n \odot (W_{hn}h + b_{hn})$$
    The input projection receives $[\bar a_r, \bar a_z, \bar a_n]$ with $\bar a_{r,z} = \bar\cdot\,\sigma(1-\sigma)$;
    the hidden one $[\bar a_r, \bar a_z, r \odot \bar a_n]$; and $h$ also gets $\delta \odot z$ directly.
    """
    x, h, w_ih, w_hh, r, z, n, hn, has_bias = cache
    dn = dh_new * (1.0 - z)
    dz = dh_new * (h - n)
    dan = dn * (1.0 - n * n)
    dr = dan * hn
    dar = dr * r * (1.0 - r)
    daz = dz * z * (1.0 - z)
    da_x = np.concatenate([dar, daz, dan], axis=-1)                     # (B, 3H)
    da_h = np.concatenate([dar, daz, dan * r], axis=-1)                 # (B, 3H)
    dx, dh, dw_ih, dw_hh, db_ih, db_hh = _project_backward(da_x, da_h, x, h, w_ih, w_hh, has_bias)
    return dx, dh + dh_new * z, dw_ih, dw_hh, db_ih, db_hh
