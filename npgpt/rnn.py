r"""Recurrent networks (document sections 2 and 3, step 2): RNN, LSTM and GRU layers with
backpropagation through time written by hand, and a recurrent language model built on them.

A recurrent layer reads a sequence one step at a time and carries a state from step to step:

$$h_t = \mathrm{cell}(x_t,\, h_{t-1}),\qquad t = 1, \dots, T,\qquad h_0 \text{ given (zeros by default)}$$

A stack of ``num_layers`` feeds the outputs $h^{(k)}_{1..T}$ of layer $k$ to layer $k+1$ as its
inputs; the output of the stack is the top layer's $h^{(L)}_{1..T}$, and $h_n$ holds every layer's
last state.

**Backpropagation through time.** $h_t$ reaches the loss by two roads: up, through the layer's
output at step $t$, and along, through $h_{t+1}$. So, walking the steps backwards,

$$\frac{\partial L}{\partial h_t} = \delta^{\mathrm{out}}_t + \Big(\frac{\partial h_{t+1}}{\partial h_t}\Big)^{\!\top}
  \frac{\partial L}{\partial h_{t+1}},\qquad \frac{\partial L}{\partial h_T} = \delta^{\mathrm{out}}_T + \delta^{h_n}$$

and one cell backward turns $\partial L/\partial h_t$ into the gradients of $x_t$, of $h_{t-1}$
(carried to step $t-1$) and of the weights. The weights are shared by every step, so their
gradients add up over $t$. Layers are walked from the top down: the gradient of layer $k$'s inputs
is the $\delta^{\mathrm{out}}$ of layer $k-1$.

**PyTorch's layout.** ``weight_ih_l{k}`` $(GH, \text{in})$ and ``weight_hh_l{k}`` $(GH, H)$ hold the
$G$ gates' matrices stacked by rows (LSTM: $i, f, g, o$; GRU: $r, z, n$) and act as $xW^\top$;
each layer has two biases ``bias_ih_l{k}`` and ``bias_hh_l{k}``, $(GH,)$. A PyTorch state dict
converted to NumPy loads without renaming or reshaping. The sigmoid is computed as
$\sigma(a) = \tfrac12(1 + \tanh\tfrac a2)$, the same function written so it cannot overflow.
"""
import numbers
from dataclasses import asdict, dataclass, replace

import numpy as np

from .checks import check_dtype, load_strict
from .model import GPT
from .ops import (
    cross_entropy_backward,
    cross_entropy_forward,
    dropout_backward,
    dropout_forward,
    embedding_backward,
    embedding_forward,
    linear_backward,
    linear_forward,
)

__all__ = ["GRU", "LSTM", "RECURRENT_PRESETS", "RNN", "RecurrentConfig", "RecurrentLM", "RecurrentState",
           "gru_cell_backward", "gru_cell_forward", "lstm_cell_backward", "lstm_cell_forward",
           "rnn_cell_backward", "rnn_cell_forward", "sigmoid"]


# =============================================================================== the cells
def sigmoid(a):
    r"""$\sigma(a) = 1 / (1 + e^{-a}) = \tfrac12(1 + \tanh\tfrac a2)$, elementwise, keeping the dtype."""
    return 0.5 * (1.0 + np.tanh(0.5 * a))


def _project(x, w, b):
    """x W^T + b for a PyTorch-layout weight ``w`` (out, in); ``b`` may be None."""
    y = x @ w.T
    if b is not None:
        y += b
    return y


def _project_backward(da_x, da_h, x, h, w_ih, w_hh, has_bias):
    """Backward of a_x = x W_ih^T + b_ih and a_h = h W_hh^T + b_hh given their gradients
    ``da_x`` and ``da_h`` (B, GH): returns (dx, dh, dW_ih, dW_hh, db_ih, db_hh)."""
    dx = da_x @ w_ih
    dh = da_h @ w_hh
    dw_ih = da_x.T @ x
    dw_hh = da_h.T @ h
    db_ih = da_x.sum(axis=0) if has_bias else None
    db_hh = da_h.sum(axis=0) if has_bias else None
    return dx, dh, dw_ih, dw_hh, db_ih, db_hh


def rnn_cell_forward(x, h, w_ih, w_hh, b_ih=None, b_hh=None, nonlinearity="tanh"):
    r"""One step of the Elman RNN: $h' = \tanh(x W_{ih}^\top + b_{ih} + h W_{hh}^\top + b_{hh})$.

    ``x`` (B, in), ``h`` (B, H); ``nonlinearity="relu"`` uses $\max(a, 0)$ instead of tanh
    (PyTorch's option). Returns (h', cache).
    """
    a = _project(x, w_ih, b_ih) + _project(h, w_hh, b_hh)              # (B, H)
    h_new = np.tanh(a) if nonlinearity == "tanh" else np.maximum(a, 0.0)
    return h_new, (x, h, w_ih, w_hh, h_new, b_ih is not None, nonlinearity)


def rnn_cell_backward(dh_new, cache):
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


def lstm_cell_forward(x, h, c, w_ih, w_hh, b_ih=None, b_hh=None):
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


def lstm_cell_backward(dh_new, dc_new, cache):
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


def gru_cell_forward(x, h, w_ih, w_hh, b_ih=None, b_hh=None):
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


def gru_cell_backward(dh_new, cache):
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


# =============================================================================== the layers
def _check_positive_int(owner, name, value):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{owner}.{name} must be a positive integer, got {value!r}")
    return int(value)


class _RecurrentLayer:
    """What RNN, LSTM and GRU share: parameters, input checks, and the loop over layers and time.

    A subclass names its gate count ``n_gates`` and its state components ``state_names`` (("h",) or
    ("h", "c")), and wraps its cell in ``_cell_forward(x, state, p)`` / ``_cell_backward(dstate,
    cache)``, where ``state`` is a tuple of (B, H) arrays and ``p`` = (W_ih, W_hh, b_ih, b_hh).
    """

    n_gates = 1
    state_names = ("h",)

    def __init__(self, input_size, hidden_size, num_layers=1, bias=True, batch_first=False, dropout=0.0,
                 *, dtype=np.float32, seed=0):
        name = type(self).__name__
        self.input_size = _check_positive_int(name, "input_size", input_size)
        self.hidden_size = _check_positive_int(name, "hidden_size", hidden_size)
        self.num_layers = _check_positive_int(name, "num_layers", num_layers)
        if not isinstance(bias, bool) or not isinstance(batch_first, bool):
            raise ValueError(f"bias and batch_first must be True or False, got {bias!r}, {batch_first!r}")
        if isinstance(dropout, bool) or not isinstance(dropout, numbers.Real) or not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")
        if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
            raise ValueError(f"seed must be an integer, got {seed!r}")
        self.bias, self.batch_first, self.dropout = bias, batch_first, float(dropout)
        self.dtype = check_dtype(dtype)
        self.training = True
        self.dropout_rng = np.random.default_rng([seed, 1])   # between layers, while training
        self.params = self._init_params(np.random.default_rng(seed))
        self.grads = {}
        self._cache = None

    def __repr__(self):
        defaults = (("num_layers", 1), ("nonlinearity", "tanh"), ("bias", True), ("batch_first", False),
                    ("dropout", 0.0))
        extra = "".join(f", {k}={getattr(self, k)!r}" for k, default in defaults
                        if getattr(self, k, default) != default)
        return f"{type(self).__name__}({self.input_size}, {self.hidden_size}{extra})"

    # ----------------------------------------------------------------- parameters
    def _param_shapes(self):
        """Name -> shape, in PyTorch's order (weight_ih, weight_hh, bias_ih, bias_hh per layer)."""
        GH, H = self.n_gates * self.hidden_size, self.hidden_size
        shapes = {}
        for k in range(self.num_layers):
            shapes[f"weight_ih_l{k}"] = (GH, self.input_size if k == 0 else H)
            shapes[f"weight_hh_l{k}"] = (GH, H)
            if self.bias:
                shapes[f"bias_ih_l{k}"] = (GH,)
                shapes[f"bias_hh_l{k}"] = (GH,)
        return shapes

    def _init_params(self, rng):
        """PyTorch's initialisation: every parameter U(-1/sqrt(H), 1/sqrt(H)). Drawn in float64, so
        float32 and float64 layers with the same seed agree."""
        bound = 1.0 / np.sqrt(self.hidden_size)
        return {name: rng.uniform(-bound, bound, size=shape).astype(self.dtype)
                for name, shape in self._param_shapes().items()}

    def _layer_params(self, k):
        p = self.params
        return (p[f"weight_ih_l{k}"], p[f"weight_hh_l{k}"], p.get(f"bias_ih_l{k}"), p.get(f"bias_hh_l{k}"))

    def num_params(self):
        return sum(p.size for p in self.params.values())

    def state_dict(self):
        """A copy of every parameter, keyed like PyTorch's."""
        return {name: p.copy() for name, p in self.params.items()}

    def load_state_dict(self, state):
        """Copy ``state`` (e.g. a PyTorch state dict converted to NumPy) into the parameters.
        Strict: missing, unexpected or mis-shaped keys raise a ValueError naming them."""
        load_strict(self.params, dict(state), self.dtype)

    # ----------------------------------------------------------------- modes
    def train(self, mode=True):
        """Training mode: dropout between layers is on (when dropout > 0)."""
        self.training = mode
        return self

    def eval(self):
        return self.train(False)

    # ----------------------------------------------------------------- forward / backward
    def forward(self, x, h0=None):
        """Run the stack over ``x``: (T, B, input_size), or (B, T, input_size) with batch_first.

        ``h0`` is the initial state (num_layers, B, hidden_size), zeros when None. Returns
        ``(out, h_n)``: the top layer's states at every step, laid out like ``x``, and every
        layer's last state (num_layers, B, hidden_size).
        """
        x = self._check_input(x)                                         # (T, B, in)
        T, B, _ = x.shape
        state0 = self._check_state(h0, B)                                # tuple of (L, B, H)
        rng = self.dropout_rng if (self.training and self.dropout > 0.0) else None
        L, H = self.num_layers, self.hidden_size
        step_caches, drop_caches, finals = [], [], []
        layer_in = x
        for k in range(L):
            p = self._layer_params(k)
            state = tuple(s[k] for s in state0)
            out = np.empty((T, B, H), dtype=self.dtype)
            caches = []
            for t in range(T):
                state, cache = self._cell_forward(layer_in[t], state, p)
                out[t] = state[0]
                caches.append(cache)
            step_caches.append(caches)
            finals.append(state)
            if k < L - 1:                                                # dropout between layers only
                out, drop_cache = dropout_forward(out, self.dropout, rng)
                drop_caches.append(drop_cache)
            layer_in = out
        state_n = tuple(np.stack([f[j] for f in finals]) for j in range(len(self.state_names)))
        self._cache = (step_caches, drop_caches, x.shape)
        out = layer_in.transpose(1, 0, 2) if self.batch_first else layer_in
        return out, self._pack_state(state_n)

    def backward(self, dout=None, dh_n=None):
        """Backpropagation through time for the last forward.

        ``dout`` is the gradient of ``out`` (None: zeros), ``dh_n`` that of the final state (None:
        zeros). Returns ``(dx, dh0)``, laid out like ``x`` and ``h0``, and leaves the parameter
        gradients in ``self.grads``, keyed like ``self.params``.
        """
        if self._cache is None:
            raise ValueError("backward() needs a preceding forward()")
        step_caches, drop_caches, (T, B, _) = self._cache
        L, H = self.num_layers, self.hidden_size
        d_above = self._check_dout(dout, T, B)                           # (T, B, H)
        dstate_n = self._check_state(dh_n, B, grad=True)
        grads = {name: np.zeros_like(p) for name, p in self.params.items()}
        dstate0 = []
        for k in reversed(range(L)):
            names = (f"weight_ih_l{k}", f"weight_hh_l{k}", f"bias_ih_l{k}", f"bias_hh_l{k}")
            d_in = np.empty((T, B, self.input_size if k == 0 else H), dtype=self.dtype)
            dstate = tuple(ds[k] for ds in dstate_n)
            for t in reversed(range(T)):
                dstate = (dstate[0] + d_above[t], *dstate[1:])           # from above and from t + 1
                d_in[t], dstate, dparams = self._cell_backward(dstate, step_caches[k][t])
                for name, d in zip(names, dparams):
                    if d is not None:
                        grads[name] += d                                 # shared by every step
            dstate0.insert(0, dstate)
            d_above = dropout_backward(d_in, drop_caches[k - 1]) if k > 0 else d_in
        self.grads = grads
        dstate0 = tuple(np.stack([d[j] for d in dstate0]) for j in range(len(self.state_names)))
        dx = d_above.transpose(1, 0, 2) if self.batch_first else d_above
        return dx, self._pack_state(dstate0)

    # ----------------------------------------------------------------- states and checks
    def _pack_state(self, state):
        """The tuple of state components as the user sees it: h (RNN, GRU) or (h, c) (LSTM)."""
        return state[0]

    def _unpack_state(self, h0, name):
        """The user's h0 (or its gradient) as a tuple of components, each possibly None."""
        return (h0,)

    def _layout(self):
        return "(batch, time, input_size)" if self.batch_first else "(time, batch, input_size)"

    def _check_input(self, x):
        x = np.asarray(x)
        if not np.issubdtype(x.dtype, np.floating):
            raise ValueError(f"x must be a floating-point array, got dtype {x.dtype}")
        if x.ndim != 3:
            raise ValueError(f"x must be 3-D {self._layout()}, got shape {x.shape}")
        if x.shape[-1] != self.input_size:
            raise ValueError(f"x has shape {x.shape}: its last axis must be input_size={self.input_size} "
                             f"{self._layout()}, got {x.shape[-1]}")
        if 0 in x.shape:
            raise ValueError(f"x has shape {x.shape}: it needs at least one time step and one batch row")
        x = x.astype(self.dtype, copy=False)
        return x.transpose(1, 0, 2) if self.batch_first else x

    def _check_state(self, h0, B, grad=False):
        """A tuple of (L, B, H) arrays for each state component (zeros where None)."""
        L, H = self.num_layers, self.hidden_size
        label = "dh_n" if grad else "h0"
        parts = self._unpack_state(h0, label)
        checked = []
        for part, component in zip(parts, self.state_names):
            name = f"d{component}_n" if grad else f"{component}0"            # h0, c0, dh_n, dc_n
            if part is None:
                checked.append(np.zeros((L, B, H), dtype=self.dtype))
                continue
            part = np.asarray(part)
            if not np.issubdtype(part.dtype, np.floating):
                raise ValueError(f"{name} must be a floating-point array, got dtype {part.dtype}")
            if part.shape != (L, B, H):
                raise ValueError(f"{name} must have shape (num_layers, batch, hidden_size) = {(L, B, H)}, "
                                 f"got {part.shape}")
            checked.append(part.astype(self.dtype, copy=False))
        return tuple(checked)

    def _check_dout(self, dout, T, B):
        H = self.hidden_size
        expected = (B, T, H) if self.batch_first else (T, B, H)
        if dout is None:
            return np.zeros((T, B, H), dtype=self.dtype)
        dout = np.asarray(dout)
        if dout.shape != expected:
            raise ValueError(f"dout must have the shape of out, {expected}, got {dout.shape}")
        dout = dout.astype(self.dtype, copy=False)
        return dout.transpose(1, 0, 2) if self.batch_first else dout


class RNN(_RecurrentLayer):
    r"""Elman RNN, ``torch.nn.RNN``'s twin: for each layer and step

    $$h_t = \tanh\big(x_t W_{ih}^\top + b_{ih} + h_{t-1} W_{hh}^\top + b_{hh}\big)$$

    (``nonlinearity="relu"``: $\max(\cdot, 0)$). Its gradient through time is a product of
    $T$ Jacobians $W_{hh}^\top \mathrm{diag}(1 - h_t^2)$, which shrinks (or grows) geometrically:
    the vanishing-gradient problem the LSTM and GRU were built to ease.

    ``RNN(input_size, hidden_size, num_layers=1, nonlinearity="tanh", bias=True, batch_first=False,
    dropout=0.0, *, dtype=np.float32, seed=0)`` (PyTorch's positional order);
    ``out, h_n = rnn.forward(x, h0=None)``; ``dx, dh0 = rnn.backward(dout, dh_n=None)``.
    """

    n_gates = 1

    def __init__(self, input_size, hidden_size, num_layers=1, nonlinearity="tanh", bias=True,
                 batch_first=False, dropout=0.0, *, dtype=np.float32, seed=0):
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"nonlinearity must be 'tanh' or 'relu', got {nonlinearity!r}")
        self.nonlinearity = nonlinearity
        super().__init__(input_size, hidden_size, num_layers, bias, batch_first, dropout, dtype=dtype, seed=seed)

    def _cell_forward(self, x, state, p):
        h, cache = rnn_cell_forward(x, state[0], *p, nonlinearity=self.nonlinearity)
        return (h,), cache

    def _cell_backward(self, dstate, cache):
        dx, dh, *dparams = rnn_cell_backward(dstate[0], cache)
        return dx, (dh,), dparams


class LSTM(_RecurrentLayer):
    r"""Long short-term memory, ``torch.nn.LSTM``'s twin: for each layer and step

    $$\begin{aligned}
      i_t &= \sigma(x_t W_{ii}^\top + b_{ii} + h_{t-1} W_{hi}^\top + b_{hi}) \\
      f_t &= \sigma(x_t W_{if}^\top + b_{if} + h_{t-1} W_{hf}^\top + b_{hf}) \\
      g_t &= \tanh(x_t W_{ig}^\top + b_{ig} + h_{t-1} W_{hg}^\top + b_{hg}) \\
      o_t &= \sigma(x_t W_{io}^\top + b_{io} + h_{t-1} W_{ho}^\top + b_{ho}) \\
      c_t &= f_t \odot c_{t-1} + i_t \odot g_t,\qquad h_t = o_t \odot \tanh(c_t)
    \end{aligned}$$

    The cell state $c$ is updated additively, so $\partial c_t/\partial c_{t-1} = \mathrm{diag}(f_t)$:
    while the forget gate stays open the gradient crosses many steps without shrinking.

    ``LSTM(input_size, hidden_size, num_layers=1, bias=True, batch_first=False, dropout=0.0, *,
    dtype=np.float32, seed=0)``; ``out, (h_n, c_n) = lstm.forward(x, (h0, c0))`` (or None for
    zeros; either part may be None); ``dx, (dh0, dc0) = lstm.backward(dout, dh_n=None)`` where
    ``dh_n`` is None, the gradient of h_n alone, or a pair (dh_n, dc_n).
    """

    n_gates = 4
    state_names = ("h", "c")

    def _cell_forward(self, x, state, p):
        return lstm_cell_forward(x, state[0], state[1], *p)

    def _cell_backward(self, dstate, cache):
        dx, dh, dc, *dparams = lstm_cell_backward(dstate[0], dstate[1], cache)
        return dx, (dh, dc), dparams

    def _pack_state(self, state):
        return state

    def _unpack_state(self, h0, name):
        if h0 is None:
            return (None, None)
        if isinstance(h0, (tuple, list)) and len(h0) == 2:
            return tuple(h0)
        if name == "dh_n" and isinstance(h0, np.ndarray):
            return (h0, None)                                            # the gradient of h_n only
        pair = "(h0, c0)" if name == "h0" else "(dh_n, dc_n)"
        raise ValueError(f"an LSTM's {name} is a pair {pair} of (num_layers, batch, hidden_size) "
                         f"arrays, got {type(h0).__name__}"
                         + (f" of shape {h0.shape}" if isinstance(h0, np.ndarray) else ""))


class GRU(_RecurrentLayer):
    r"""Gated recurrent unit, ``torch.nn.GRU``'s twin: for each layer and step

    $$\begin{aligned}
      r_t &= \sigma(x_t W_{ir}^\top + b_{ir} + h_{t-1} W_{hr}^\top + b_{hr}) \\
      z_t &= \sigma(x_t W_{iz}^\top + b_{iz} + h_{t-1} W_{hz}^\top + b_{hz}) \\
      n_t &= \tanh\big(x_t W_{in}^\top + b_{in} + r_t \odot (h_{t-1} W_{hn}^\top + b_{hn})\big) \\
      h_t &= (1 - z_t) \odot n_t + z_t \odot h_{t-1}
    \end{aligned}$$

    The update gate interpolates between the old state and the candidate, so
    $\partial h_t/\partial h_{t-1}$ contains $\mathrm{diag}(z_t)$: a path along which the gradient
    passes undiminished while $z_t \approx 1$.

    ``GRU(input_size, hidden_size, num_layers=1, bias=True, batch_first=False, dropout=0.0, *,
    dtype=np.float32, seed=0)``; ``out, h_n = gru.forward(x, h0=None)``;
    ``dx, dh0 = gru.backward(dout, dh_n=None)``.
    """

    n_gates = 3

    def _cell_forward(self, x, state, p):
        h, cache = gru_cell_forward(x, state[0], *p)
        return (h,), cache

    def _cell_backward(self, dstate, cache):
        dx, dh, *dparams = gru_cell_backward(dstate[0], cache)
        return dx, (dh,), dparams


CELLS = {"rnn": RNN, "lstm": LSTM, "gru": GRU}


# =============================================================================== the language model
@dataclass(frozen=True, kw_only=True)
class RecurrentConfig:
    """Shape of a recurrent language model (keyword arguments only).

    vocab_size: number of token ids; block_size: longest training context (the trainer's window;
    the recurrence itself has no limit, but the model is held to it like the GPT); cell: "lstm",
    "gru" or "rnn" (tanh); n_embd: embedding width E; n_hidden: state width H; n_layer: stacked
    recurrent layers; dropout: probability used on the embeddings, between recurrent layers and
    before the output layer while training (Zaremba et al., 2014: never on the recurrent path).
    """

    vocab_size: int
    block_size: int
    cell: str = "lstm"
    n_embd: int
    n_hidden: int
    n_layer: int
    dropout: float = 0.0

    def __post_init__(self):
        for name in ("vocab_size", "block_size", "n_embd", "n_hidden", "n_layer"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"RecurrentConfig.{name} must be a positive integer, got {value!r}")
        if self.cell not in CELLS:
            raise ValueError(f"cell must be one of {tuple(CELLS)}, got {self.cell!r}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout!r}")

    def to_dict(self):
        return asdict(self)

    @classmethod
    def from_dict(cls, d):
        return cls(**d)

    @classmethod
    def preset(cls, name, **overrides):
        """A named configuration from :data:`RECURRENT_PRESETS`, with any field overridden."""
        if name not in RECURRENT_PRESETS:
            raise ValueError(f"unknown preset {name!r}; choose one of {sorted(RECURRENT_PRESETS)}")
        return replace(RECURRENT_PRESETS[name], **overrides)


RECURRENT_PRESETS = {
    # Character-level Tiny Shakespeare, beside the GPT's "baby" (0.81M parameters): a 2-layer LSTM
    # with E=64, H=256 has 0.88M (a GRU 0.66M, a tanh RNN 0.23M).
    "baby": RecurrentConfig(vocab_size=65, block_size=64, cell="lstm", n_embd=64, n_hidden=256, n_layer=2),
}


class RecurrentState:
    """The state a :class:`RecurrentLM` carries from one forward call to the next (what the KV cache
    is to the GPT): ``model.forward(idx, state=s)`` starts from ``s.state`` at position ``s.length``,
    then stores the final state and advances ``length`` by the number of tokens read.

    ``state`` is None (zeros) or the layer's h_n: an array (num_layers, B, H), or a pair for an LSTM.
    """

    def __init__(self):
        self.state = None
        self.length = 0

    def reset(self):
        """Forget everything read; the next forward starts from zeros at position 0."""
        self.state, self.length = None, 0

    def reorder(self, rows):
        """Keep batch rows ``rows`` (with repeats): beam search's "beam j continues beam rows[j]"."""
        if isinstance(self.state, tuple):
            self.state = tuple(s[:, rows] for s in self.state)
        elif self.state is not None:
            self.state = self.state[:, rows]


class RecurrentLM:
    r"""A recurrent language model with the interface of :class:`npgpt.GPT` (trainer, checkpoints,
    sampling):

    $$x_t = E[\mathrm{idx}_t],\qquad h^{(L)}_{1..T} = \mathrm{RNN}(x_{1..T}),\qquad
      \mathrm{logits}_t = h^{(L)}_t W_{out}^\top + b_{out}$$

    and the mean next-token NLL. Parameters are named as a PyTorch module with submodules
    ``embedding`` (``nn.Embedding``), ``rnn`` (``nn.LSTM``/``GRU``/``RNN``, batch first) and
    ``lm_head`` (``nn.Linear``) would name them, and initialised as PyTorch does (embedding N(0, 1),
    everything else U(-1/sqrt(fan_in), 1/sqrt(fan_in))).
    """

    def __init__(self, config, seed=0, dtype=np.float32):
        if not isinstance(config, RecurrentConfig):
            raise ValueError(f"config must be a RecurrentConfig, got {type(config).__name__}")
        c = config
        self.config = c
        self.dtype = check_dtype(dtype)
        self.training = True
        self.dropout_rng = np.random.default_rng([seed, 1])
        self.rnn = CELLS[c.cell](c.n_embd, c.n_hidden, c.n_layer, batch_first=True, dropout=c.dropout,
                                 dtype=self.dtype, seed=seed)
        self.rnn.dropout_rng = self.dropout_rng      # one generator: a checkpoint restores both
        rng = np.random.default_rng([seed, 2])
        bound = 1.0 / np.sqrt(c.n_hidden)
        params = {"embedding.weight": rng.standard_normal((c.vocab_size, c.n_embd))}
        params.update({"rnn." + k: v for k, v in self.rnn.params.items()})
        params["lm_head.weight"] = rng.uniform(-bound, bound, (c.vocab_size, c.n_hidden))
        params["lm_head.bias"] = rng.uniform(-bound, bound, (c.vocab_size,))
        self.params = {k: v.astype(self.dtype, copy=False) for k, v in params.items()}
        self._caches = None

    # The GPT's checks of token ids and targets (same rules, same messages).
    _check_ids = GPT._check_ids
    _check_targets = GPT._check_targets

    # ----------------------------------------------------------------- parameters
    def num_params(self):
        """Number of trainable scalars."""
        return sum(p.size for p in self.params.values())

    def state_dict(self):
        """A copy of every parameter, keyed like the PyTorch module's."""
        return {name: p.copy() for name, p in self.params.items()}

    def load_state_dict(self, state):
        """Copy ``state`` into the parameters. Strict: missing, unexpected or mis-shaped keys raise a
        ValueError naming them."""
        load_strict(self.params, dict(state), self.dtype)

    def _rnn_params(self):
        """The recurrent layer's view of ``params`` (the same arrays, without the ``rnn.`` prefix)."""
        return {name[4:]: p for name, p in self.params.items() if name.startswith("rnn.")}

    # ----------------------------------------------------------------- modes
    def train(self, mode=True):
        """Training mode: dropout is on (when config.dropout > 0)."""
        self.training = mode
        return self

    def eval(self):
        """Evaluation mode: dropout is off."""
        return self.train(False)

    # ----------------------------------------------------------------- forward / backward
    def new_state(self):
        """An empty :class:`RecurrentState` to pass as ``forward(..., state=)``."""
        return RecurrentState()

    def forward(self, idx, targets=None, ignore_index=None, kv_cache=None, state=None):
        """Logits (B, T, V) for integer token ids ``idx`` (B, T), and the mean NLL of ``targets``
        (B, T) when given (else None). Targets equal to ``ignore_index`` are not scored.

        A recurrent model has no KV cache: to continue a sequence, pass ``state`` (a
        :class:`RecurrentState`); the call starts from its state and leaves the final one in it.
        Gradients do not flow into a given state, and dropout is off while one is used.
        """
        if kv_cache is not None:
            raise ValueError("a recurrent model has no KV cache: it carries its state instead; pass "
                             "state=model.new_state() to continue a sequence")
        c = self.config
        start = 0 if state is None else state.length
        idx = self._check_ids(idx, "idx", start)
        if targets is not None:
            targets = self._check_targets(targets, idx.shape, ignore_index)
        rng = self.dropout_rng if (self.training and c.dropout > 0.0 and state is None) else None

        x, emb_cache = embedding_forward(idx, self.params["embedding.weight"])     # (B, T, E)
        x, drop_in_cache = dropout_forward(x, c.dropout, rng)
        self.rnn.params = self._rnn_params()
        self.rnn.train(rng is not None)
        h, h_n = self.rnn.forward(x, None if state is None else state.state)        # (B, T, H)
        if state is not None:
            state.state, state.length = h_n, start + idx.shape[1]
        h, drop_out_cache = dropout_forward(h, c.dropout, rng)
        logits, head_cache = linear_forward(h, self.params["lm_head.weight"].T, self.params["lm_head.bias"])

        loss = loss_cache = None
        if targets is not None:
            B, T, V = logits.shape
            loss, loss_cache = cross_entropy_forward(logits.reshape(B * T, V),
                                                     targets.reshape(B * T), ignore_index)
        self._caches = (emb_cache, drop_in_cache, drop_out_cache, head_cache, loss_cache, logits.shape)
        return logits, loss

    def backward(self):
        """Gradient of the last forward's loss, a dict with the keys and shapes of ``params``."""
        if self._caches is None or self._caches[4] is None:
            raise ValueError("backward() needs a preceding forward(idx, targets) with targets: "
                             "there is no loss to differentiate")
        emb_cache, drop_in_cache, drop_out_cache, head_cache, loss_cache, logits_shape = self._caches
        grads = {}
        dlogits = cross_entropy_backward(1.0, loss_cache).reshape(logits_shape)
        dh, dhead_T, grads["lm_head.bias"] = linear_backward(dlogits, head_cache)
        grads["lm_head.weight"] = dhead_T.T
        dh = dropout_backward(dh, drop_out_cache)
        dx, _ = self.rnn.backward(dh)
        grads.update({"rnn." + k: g for k, g in self.rnn.grads.items()})
        dx = dropout_backward(dx, drop_in_cache)
        grads["embedding.weight"] = embedding_backward(dx, emb_cache)
        return {name: grads[name] for name in self.params}
