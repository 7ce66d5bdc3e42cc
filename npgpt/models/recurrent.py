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
converted to NumPy loads without renaming or reshaping. The cells themselves, one step each, are
ops: :mod:`npgpt.ops.recurrent_cells`.
"""
from typing import Any, Literal, NamedTuple

import numpy as np
from numpy.typing import ArrayLike, DTypeLike

from ..checks import UsageError, check_ids, check_int, check_real, check_targets
from ..ops import (
    cross_entropy_backward,
    cross_entropy_forward,
    dropout_backward,
    dropout_forward,
    embedding_backward,
    embedding_forward,
    gru_cell_backward,
    gru_cell_forward,
    linear_backward,
    linear_forward,
    lstm_cell_backward,
    lstm_cell_forward,
    rnn_cell_backward,
    rnn_cell_forward,
)
from .base import ConfiguredModel, Model, check_sequences
from .cache import RecurrentState
from .config import RecurrentConfig, require_model_memory


# =============================================================================== the layers
class LayerCache(NamedTuple):
    """What a recurrent layer's forward keeps for backpropagation through time."""
    steps: list[list[Any]]  # steps[k][t]: the cell cache of layer k at step t
    dropouts: list[Any]     # the dropout caches between layers
    input_shape: tuple[int, ...]  # (T, B, input_size)


State = tuple[np.ndarray, ...]     # a layer's state components at one step: (h,) or (h, c)
CellParams = tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray | None]   # W_ih, W_hh, b_ih, b_hh


class _RecurrentLayer(Model):
    """What RNN, LSTM and GRU share: parameters, input checks, and the loop over layers and time.

    A subclass names its gate count ``n_gates`` and its state components ``state_names`` (("h",) or
    ("h", "c")), and wraps its cell in ``_cell_forward(x, state, p)`` / ``_cell_backward(dstate,
    cache)``, where ``state`` is a tuple of (B, H) arrays and ``p`` = (W_ih, W_hh, b_ih, b_hh).
    """

    n_gates: int = 1
    state_names: tuple[str, ...] = ("h",)

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, bias: bool = True,
                 batch_first: bool = False, dropout: float = 0.0, *, dtype: DTypeLike = np.float32,
                 seed: int = 0) -> None:
        name = type(self).__name__
        super().__init__(dtype)
        self.input_size = check_int(f"{name}.input_size", input_size)
        self.hidden_size = check_int(f"{name}.hidden_size", hidden_size)
        self.num_layers = check_int(f"{name}.num_layers", num_layers)
        if not isinstance(bias, bool) or not isinstance(batch_first, bool):
            raise UsageError(f"bias and batch_first must be True or False, got {bias!r}, {batch_first!r}")
        dropout = check_real("dropout", dropout, 0.0, 1.0, high_open=True)
        seed = check_int("seed", seed, low=-2**63)
        self.bias, self.batch_first, self.dropout = bias, batch_first, dropout
        self.dropout_rng = np.random.default_rng([seed, 1])   # between layers, while training
        largest = self.n_gates * self.hidden_size * max(self.input_size, self.hidden_size)
        require_model_memory(f"{name}(input_size={self.input_size}, hidden_size={self.hidden_size}, "
                             f"num_layers={self.num_layers})",
                             self.count_params(self.input_size, self.hidden_size, self.num_layers, bias),
                             self.dtype, 8 * largest)     # each weight is drawn in float64, then cast
        self.params = self._init_params(np.random.default_rng(seed))
        self._cache: LayerCache | None = None

    def __repr__(self) -> str:
        defaults = (("num_layers", 1), ("nonlinearity", "tanh"), ("bias", True), ("batch_first", False),
                    ("dropout", 0.0))
        extra = "".join(f", {k}={getattr(self, k)!r}" for k, default in defaults
                        if getattr(self, k, default) != default)
        return f"{type(self).__name__}({self.input_size}, {self.hidden_size}{extra})"

    # ----------------------------------------------------------------- parameters
    @classmethod
    def param_shapes(cls, input_size: int, hidden_size: int, num_layers: int = 1,
                     bias: bool = True) -> dict[str, tuple[int, ...]]:
        """Name -> shape, in PyTorch's order (weight_ih, weight_hh, bias_ih, bias_hh per layer).
        Nothing is allocated."""
        GH, H = cls.n_gates * hidden_size, hidden_size
        shapes: dict[str, tuple[int, ...]] = {}
        for k in range(num_layers):
            shapes[f"weight_ih_l{k}"] = (GH, input_size if k == 0 else H)
            shapes[f"weight_hh_l{k}"] = (GH, H)
            if bias:
                shapes[f"bias_ih_l{k}"] = (GH,)
                shapes[f"bias_hh_l{k}"] = (GH,)
        return shapes

    @classmethod
    def count_params(cls, input_size: int, hidden_size: int, num_layers: int = 1, bias: bool = True) -> int:
        """The number of parameters :meth:`param_shapes` lists, counted without listing them."""
        GH, H = cls.n_gates * hidden_size, hidden_size
        per_layer = GH * H + (2 * GH if bias else 0)                        # weight_hh and the biases
        return num_layers * per_layer + GH * input_size + (num_layers - 1) * GH * H   # weight_ih

    def _init_params(self, rng: np.random.Generator) -> dict[str, np.ndarray]:
        """PyTorch's initialisation: every parameter U(-1/sqrt(H), 1/sqrt(H)). Drawn in float64, so
        float32 and float64 layers with the same seed agree."""
        bound = 1.0 / np.sqrt(self.hidden_size)
        return {name: rng.uniform(-bound, bound, size=shape).astype(self.dtype)
                for name, shape in self.param_shapes(self.input_size, self.hidden_size, self.num_layers,
                                                     self.bias).items()}

    def _layer_params(self, k: int) -> CellParams:
        p = self.params
        return (p[f"weight_ih_l{k}"], p[f"weight_hh_l{k}"], p.get(f"bias_ih_l{k}"), p.get(f"bias_hh_l{k}"))

    def _cell_forward(self, x: np.ndarray, state: State, p: CellParams) -> tuple[State, Any]:
        """One step of the cell: the new state and what its backward needs (each subclass's own)."""
        raise NotImplementedError

    def _cell_backward(self, dstate: State, cache: Any) -> tuple[np.ndarray, State, Any]:
        """The gradients of one step's input, previous state and parameters (each subclass's own)."""
        raise NotImplementedError

    # ----------------------------------------------------------------- forward / backward
    def forward(self, x: ArrayLike, h0: Any = None) -> tuple[np.ndarray, Any]:
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
        step_caches: list[list[Any]] = []
        drop_caches: list[Any] = []
        finals: list[State] = []
        layer_in = x
        for k in range(L):
            p = self._layer_params(k)
            state = tuple(s[k] for s in state0)
            out = np.empty((T, B, H), dtype=self.dtype)
            caches: list[Any] = []
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
        self._cache = LayerCache(step_caches, drop_caches, x.shape)
        out = layer_in.transpose(1, 0, 2) if self.batch_first else layer_in
        return out, self._pack_state(state_n)

    def backward(self, dout: ArrayLike | None = None, dh_n: Any = None) -> tuple[np.ndarray, Any]:
        """Backpropagation through time for the last forward.

        ``dout`` is the gradient of ``out`` (None: zeros), ``dh_n`` that of the final state (None:
        zeros). Returns ``(dx, dh0)``, laid out like ``x`` and ``h0``, and leaves the parameter
        gradients in ``self.grads``, keyed like ``self.params``.
        """
        if self._cache is None:
            raise UsageError("backward() needs a preceding forward()")
        step_caches, drop_caches, (T, B, _) = self._cache     # a LayerCache
        L, H = self.num_layers, self.hidden_size
        d_above = self._check_dout(dout, T, B)                           # (T, B, H)
        dstate_n = self._check_state(dh_n, B, grad=True)
        grads = {name: np.zeros_like(p) for name, p in self.params.items()}
        dstates: list[State] = []
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
            dstates.insert(0, dstate)
            d_above = dropout_backward(d_in, drop_caches[k - 1]) if k > 0 else d_in
        self.grads = grads
        dstate0 = tuple(np.stack([d[j] for d in dstates]) for j in range(len(self.state_names)))
        dx = d_above.transpose(1, 0, 2) if self.batch_first else d_above
        return dx, self._pack_state(dstate0)

    # ----------------------------------------------------------------- states and checks
    def _pack_state(self, state: State) -> Any:
        """The tuple of state components as the user sees it: h (RNN, GRU) or (h, c) (LSTM)."""
        return state[0]

    def _unpack_state(self, h0: Any, name: str) -> tuple[Any, ...]:
        """The user's h0 (or its gradient) as a tuple of components, each possibly None."""
        return (h0,)

    def _layout(self) -> str:
        return "(batch, time, input_size)" if self.batch_first else "(time, batch, input_size)"

    def _check_input(self, x: ArrayLike) -> np.ndarray:
        """``x`` as a time-first (T, B, input_size) array of the layer's dtype."""
        x = check_sequences(x, "x", self.input_size, "input_size", self._layout(), self.dtype)
        return x.transpose(1, 0, 2) if self.batch_first else x

    def _check_state(self, h0: Any, B: int, grad: bool = False) -> State:
        """A tuple of (L, B, H) arrays for each state component (zeros where None)."""
        L, H = self.num_layers, self.hidden_size
        label = "dh_n" if grad else "h0"
        parts = self._unpack_state(h0, label)
        checked: list[np.ndarray] = []
        for part, component in zip(parts, self.state_names):
            name = f"d{component}_n" if grad else f"{component}0"            # h0, c0, dh_n, dc_n
            if part is None:
                checked.append(np.zeros((L, B, H), dtype=self.dtype))
                continue
            part = np.asarray(part)
            if not np.issubdtype(part.dtype, np.floating):
                raise UsageError(f"{name} must be a floating-point array, got dtype {part.dtype}")
            if part.shape != (L, B, H):
                raise UsageError(f"{name} must have shape (num_layers, batch, hidden_size) = {(L, B, H)}, "
                                 f"got {part.shape}")
            checked.append(part.astype(self.dtype, copy=False))
        return tuple(checked)

    def _check_dout(self, dout: ArrayLike | None, T: int, B: int) -> np.ndarray:
        H = self.hidden_size
        expected = (B, T, H) if self.batch_first else (T, B, H)
        if dout is None:
            return np.zeros((T, B, H), dtype=self.dtype)
        dout = np.asarray(dout)
        if dout.shape != expected:
            raise UsageError(f"dout must have the shape of out, {expected}, got {dout.shape}")
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

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1,
                 nonlinearity: Literal["tanh", "relu"] = "tanh", bias: bool = True, batch_first: bool = False,
                 dropout: float = 0.0, *, dtype: DTypeLike = np.float32, seed: int = 0) -> None:
        if nonlinearity not in ("tanh", "relu"):
            raise UsageError(f"nonlinearity must be 'tanh' or 'relu', got {nonlinearity!r}")
        self.nonlinearity = nonlinearity
        super().__init__(input_size, hidden_size, num_layers, bias, batch_first, dropout, dtype=dtype, seed=seed)

    def _cell_forward(self, x: np.ndarray, state: State, p: CellParams) -> tuple[State, Any]:
        h, cache = rnn_cell_forward(x, state[0], *p, nonlinearity=self.nonlinearity)
        return (h,), cache

    def _cell_backward(self, dstate: State, cache: Any) -> tuple[np.ndarray, State, Any]:
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

    def _cell_forward(self, x: np.ndarray, state: State, p: CellParams) -> tuple[State, Any]:
        return lstm_cell_forward(x, state[0], state[1], *p)

    def _cell_backward(self, dstate: State, cache: Any) -> tuple[np.ndarray, State, Any]:
        dx, dh, dc, *dparams = lstm_cell_backward(dstate[0], dstate[1], cache)
        return dx, (dh, dc), dparams

    def _pack_state(self, state: State) -> Any:
        return state

    def _unpack_state(self, h0: Any, name: str) -> tuple[Any, ...]:
        if h0 is None:
            return (None, None)
        if isinstance(h0, (tuple, list)) and len(h0) == 2:
            return tuple(h0)
        if name == "dh_n" and isinstance(h0, np.ndarray):
            return (h0, None)                                            # the gradient of h_n only
        pair = "(h0, c0)" if name == "h0" else "(dh_n, dc_n)"
        raise UsageError(f"an LSTM's {name} is a pair {pair} of (num_layers, batch, hidden_size) "
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

    def _cell_forward(self, x: np.ndarray, state: State, p: CellParams) -> tuple[State, Any]:
        h, cache = gru_cell_forward(x, state[0], *p)
        return (h,), cache

    def _cell_backward(self, dstate: State, cache: Any) -> tuple[np.ndarray, State, Any]:
        dx, dh, *dparams = gru_cell_backward(dstate[0], cache)
        return dx, (dh,), dparams


CELLS: dict[str, type[_RecurrentLayer]] = {"rnn": RNN, "lstm": LSTM, "gru": GRU}      # the RECURRENT_CELLS of npgpt.models.config


# =============================================================================== the language model
class LMCache(NamedTuple):
    """What :meth:`RecurrentLM.forward` keeps for :meth:`RecurrentLM.backward`."""
    embedding: object
    drop_in: object
    drop_out: object
    head: object
    loss: object            # None when the forward had no targets
    logits_shape: tuple[int, ...]


class RecurrentLM(ConfiguredModel):
    r"""A recurrent language model with the interface of :class:`npgpt.GPT` (trainer, checkpoints,
    sampling):

    $$x_t = E[\mathrm{idx}_t],\qquad h^{(L)}_{1..T} = \mathrm{RNN}(x_{1..T}),\qquad
      \mathrm{logits}_t = h^{(L)}_t W_{out}^\top + b_{out}$$

    and the mean next-token NLL. Parameters are named as a PyTorch module with submodules
    ``embedding`` (``nn.Embedding``), ``rnn`` (``nn.LSTM``/``GRU``/``RNN``, batch first) and
    ``lm_head`` (``nn.Linear``) would name them, and initialised as PyTorch does (embedding N(0, 1),
    everything else U(-1/sqrt(fan_in), 1/sqrt(fan_in))).
    """

    config: RecurrentConfig

    def __init__(self, config: RecurrentConfig, seed: int = 0, dtype: DTypeLike = np.float32) -> None:
        if not isinstance(config, RecurrentConfig):
            raise UsageError(f"config must be a RecurrentConfig, got {type(config).__name__}")
        super().__init__(dtype)
        c = config
        self._require_memory(c)
        self.config = c
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
        self._caches: LMCache | None = None

    def _require_memory(self, c: RecurrentConfig) -> None:
        """Refuse, before allocating, a model whose parameters do not fit in memory. The embedding
        and the output layer are drawn in float64 and held until every parameter is cast."""
        outer = c.vocab_size * (c.n_embd + c.n_hidden + 1)
        drawn = 8 * outer if self.dtype != np.float64 else 0
        sizes = ", ".join(f"{name}={getattr(c, name)}" for name in ("n_layer", "n_embd", "n_hidden", "vocab_size"))
        require_model_memory(f"RecurrentLM({c.cell}, {sizes})", self.count_params(c), self.dtype, drawn)

    @staticmethod
    def count_params(config: RecurrentConfig) -> int:
        """The number of parameters of a recurrent LM with ``config``, counted without listing them."""
        c = config
        return c.vocab_size * (c.n_embd + c.n_hidden + 1) + CELLS[c.cell].count_params(c.n_embd, c.n_hidden, c.n_layer)

    @staticmethod
    def param_shapes(config: RecurrentConfig) -> dict[str, tuple[int, ...]]:
        """Name -> shape of every parameter of a recurrent LM with ``config``. Nothing is allocated."""
        c = config
        shapes: dict[str, tuple[int, ...]] = {"embedding.weight": (c.vocab_size, c.n_embd)}
        rnn = CELLS[c.cell].param_shapes(c.n_embd, c.n_hidden, c.n_layer)
        shapes.update({"rnn." + name: shape for name, shape in rnn.items()})
        shapes.update({"lm_head.weight": (c.vocab_size, c.n_hidden), "lm_head.bias": (c.vocab_size,)})
        return shapes

    def _rnn_params(self) -> dict[str, np.ndarray]:
        """The recurrent layer's view of ``params`` (the same arrays, without the ``rnn.`` prefix)."""
        return {name[4:]: p for name, p in self.params.items() if name.startswith("rnn.")}

    def new_cache(self, batch_size: int = 1) -> RecurrentState:
        """An empty :class:`~npgpt.models.cache.RecurrentState` to pass as ``forward(..., cache=)``."""
        check_int("batch_size", batch_size)
        return RecurrentState()

    # ----------------------------------------------------------------- forward / backward
    def forward(self, idx: ArrayLike, targets: ArrayLike | None = None, ignore_index: int | None = None,
                cache: RecurrentState | None = None) -> tuple[np.ndarray, Any]:
        """Logits (B, T, V) for integer token ids ``idx`` (B, T), and the mean NLL of ``targets``
        (B, T) when given (else None). Targets equal to ``ignore_index`` are not scored.

        To continue a sequence, pass ``cache`` (from :meth:`new_cache`, a
        :class:`~npgpt.models.cache.RecurrentState`): the call starts from its state and leaves the
        final one in it. Gradients do not flow into a given state, and dropout is off while one is used.
        """
        if cache is not None and not isinstance(cache, RecurrentState):
            raise UsageError(f"a recurrent model carries its state, not a {type(cache).__name__}: pass "
                             "cache=model.new_cache() to continue a sequence")
        c = self.config
        self._caches, self.grads = None, {}     # free the last step's activations and gradients first
        start = 0 if cache is None else cache.length
        idx = check_ids(idx, "idx", c.vocab_size)
        if start + idx.shape[1] > c.block_size:
            raise UsageError(f"sequence length {start + idx.shape[1]} exceeds block_size={c.block_size}")
        if targets is not None:
            targets = check_targets(targets, idx.shape, c.vocab_size, ignore_index)
        rng = self.dropout_rng if (self.training and c.dropout > 0.0 and cache is None) else None

        x, emb_cache = embedding_forward(idx, self.params["embedding.weight"])     # (B, T, E)
        x, drop_in_cache = dropout_forward(x, c.dropout, rng)
        self.rnn.params = self._rnn_params()
        self.rnn.train(rng is not None)
        h, h_n = self.rnn.forward(x, None if cache is None else cache.state)        # (B, T, H)
        if cache is not None:
            cache.state, cache.length = h_n, start + idx.shape[1]
        h, drop_out_cache = dropout_forward(h, c.dropout, rng)
        logits, head_cache = linear_forward(h, self.params["lm_head.weight"].T, self.params["lm_head.bias"])

        loss = loss_cache = None
        if targets is not None:
            B, T, V = logits.shape
            loss, loss_cache = cross_entropy_forward(logits.reshape(B * T, V),
                                                     targets.reshape(B * T), ignore_index)
        self._caches = LMCache(emb_cache, drop_in_cache, drop_out_cache, head_cache, loss_cache, logits.shape)
        return logits, loss

    def backward(self) -> dict[str, np.ndarray]:
        """Gradient of the last forward's loss, a dict with the keys and shapes of ``params``
        (also left in ``self.grads``)."""
        cache = self._cache_with_loss()
        grads: dict[str, Any] = {}
        dlogits = cross_entropy_backward(1.0, cache.loss).reshape(cache.logits_shape)
        dh, dhead_T, grads["lm_head.bias"] = linear_backward(dlogits, cache.head)
        grads["lm_head.weight"] = dhead_T.T
        dh = dropout_backward(dh, cache.drop_out)
        dx, _ = self.rnn.backward(dh)
        grads.update({"rnn." + k: g for k, g in self.rnn.grads.items()})
        dx = dropout_backward(dx, cache.drop_in)
        grads["embedding.weight"] = embedding_backward(dx, cache.embedding)
        self.grads = {name: grads[name] for name in self.params}
        return self.grads
