"""Recurrent layers and the recurrent language model: gradient checks of every cell, layer and model
(float64), PyTorch equivalence (when torch is installed), layout, dtypes, state dicts, bad input."""
import numpy as np
import pytest
from references import optional_reference

from npgpt import Dataset, TrainConfig, Trainer, check_model, gradcheck, jitter
from npgpt.models.recurrent import (
    GRU,
    LSTM,
    RNN,
    RecurrentConfig,
    RecurrentLM,
    gru_cell_backward,
    gru_cell_forward,
    lstm_cell_backward,
    lstm_cell_forward,
    rnn_cell_backward,
    rnn_cell_forward,
)

LAYERS = {"rnn": RNN, "lstm": LSTM, "gru": GRU}
GATES = {"rnn": 1, "lstm": 4, "gru": 3}
TINY_LM = dict(vocab_size=11, block_size=8, n_embd=5, n_hidden=6, n_layer=2)
TOL = 1e-6


# =============================================================================== cells
CELLS = {   # name: (forward, backward, state inputs, gates, extra keyword arguments)
    "rnn": (rnn_cell_forward, rnn_cell_backward, ("h",), 1, {}),
    "rnn-relu": (rnn_cell_forward, rnn_cell_backward, ("h",), 1, {"nonlinearity": "relu"}),
    "lstm": (lstm_cell_forward, lstm_cell_backward, ("h", "c"), 4, {}),
    "gru": (gru_cell_forward, gru_cell_backward, ("h",), 3, {}),
}


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("cell", list(CELLS))
def test_cell_gradcheck(rng, cell, bias):
    forward, backward, states, G, kwargs = CELLS[cell]
    B, n_in, H = 3, 4, 5
    inputs = {"x": rng.standard_normal((B, n_in))}
    inputs.update({s: rng.standard_normal((B, H)) for s in states})
    inputs["w_ih"] = 0.5 * rng.standard_normal((G * H, n_in))
    inputs["w_hh"] = 0.5 * rng.standard_normal((G * H, H))
    if bias:
        inputs["b_ih"], inputs["b_hh"] = rng.standard_normal((2, G * H))

    def outputs():
        out, cache = forward(**inputs, **kwargs)
        return (out if isinstance(out, tuple) else (out,)), cache

    outs, cache = outputs()
    douts = [rng.standard_normal(o.shape) for o in outs]
    analytic = backward(*douts, cache)
    names = ("x", *states, "w_ih", "w_hh", "b_ih", "b_hh")
    grads = {n: g for n, g in zip(names, analytic) if g is not None}
    assert sorted(grads) == sorted(inputs)
    report = gradcheck(lambda: sum(float(np.sum(o * d)) for o, d in zip(outputs()[0], douts)), inputs, grads)
    assert report.max_rel_error <= TOL, f"\n{report}"


# =============================================================================== layers
def make_layer(cell, rng, bias=True, batch_first=False, num_layers=2, **kwargs):
    layer = LAYERS[cell](3, 4, num_layers, bias=bias, batch_first=batch_first, dtype=np.float64, seed=1,
                         **kwargs)
    jitter(layer.params, scale=0.2, seed=2)   # a generic point
    T, B = 5, 2
    x = rng.standard_normal((B, T, 3) if batch_first else (T, B, 3))
    states = {"h0": rng.standard_normal((num_layers, B, 4))}
    if cell == "lstm":
        states["c0"] = rng.standard_normal((num_layers, B, 4))
    return layer, x, states


def layer_gradcheck(layer, x, states, rng, before_forward=lambda: None):
    """Check d/d(params, x, h0[, c0]) of L = sum(out * G) + sum(h_n * G_h) [+ sum(c_n * G_c)]."""
    lstm = isinstance(layer, LSTM)

    def run():
        before_forward()
        out, h_n = layer.forward(x, (states["h0"], states["c0"]) if lstm else states["h0"])
        return out, (h_n if lstm else (h_n,))

    out, finals = run()
    d_out = rng.standard_normal(out.shape)
    d_finals = [rng.standard_normal(f.shape) for f in finals]
    dx, d_state0 = layer.backward(d_out, tuple(d_finals) if lstm else d_finals[0])
    grads = {**layer.grads, "x": dx}
    grads.update(zip(states, d_state0 if lstm else (d_state0,)))

    def loss():
        out, finals = run()
        return float(np.sum(out * d_out) + sum(np.sum(f * d) for f, d in zip(finals, d_finals)))

    return gradcheck(loss, {**layer.params, "x": x, **states}, grads)


@pytest.mark.parametrize("batch_first", [False, True])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("cell", list(LAYERS))
@pytest.mark.slow
def test_layer_gradcheck_two_layers(rng, cell, bias, batch_first):
    layer, x, states = make_layer(cell, rng, bias, batch_first)
    report = layer_gradcheck(layer, x, states, rng)
    assert len(report.rows) == len(layer.params) + 1 + len(states)
    assert report.max_rel_error <= TOL, f"\n{report}"


def test_relu_rnn_gradcheck(rng):
    layer, x, states = make_layer("rnn", rng, nonlinearity="relu")
    report = layer_gradcheck(layer, x, states, rng)
    assert report.max_rel_error <= TOL, f"\n{report}"


@pytest.mark.slow
def test_layer_gradcheck_with_dropout_between_layers(rng):
    """With the dropout masks held fixed (the generator rewound before each forward), the
    gradient still matches: dropout between layers is differentiated correctly."""
    layer, x, states = make_layer("lstm", rng, num_layers=3, dropout=0.4)
    start = layer.dropout_rng.bit_generator.state

    def rewind():
        layer.dropout_rng.bit_generator.state = start

    report = layer_gradcheck(layer, x, states, rng, before_forward=rewind)
    assert report.max_rel_error <= TOL, f"\n{report}"
    layer.eval()
    assert np.array_equal(layer.forward(x)[0], layer.forward(x)[0])


@pytest.mark.parametrize("cell", list(LAYERS))
def test_defaults_zero_state_and_no_final_gradient(rng, cell):
    """h0=None is a zero state; backward(dout) alone equals backward(dout, zeros)."""
    layer, x, states = make_layer(cell, rng)
    zeros = np.zeros_like(states["h0"])
    out_none, _ = layer.forward(x)
    out_zero, _ = layer.forward(x, (zeros, zeros) if cell == "lstm" else zeros)
    np.testing.assert_array_equal(out_none, out_zero)
    d_out = rng.standard_normal(out_none.shape)
    dx_a, _ = layer.backward(d_out)
    dx_b, _ = layer.backward(d_out, (zeros, zeros) if cell == "lstm" else zeros)
    np.testing.assert_array_equal(dx_a, dx_b)
    if cell == "lstm":                       # dh_n alone (no dc_n) is accepted
        layer.backward(d_out, zeros)


def test_out_is_the_top_layers_states_and_h_n_the_last_step(rng):
    layer, x, _ = make_layer("gru", rng, batch_first=True)
    out, h_n = layer.forward(x)
    assert out.shape == (2, 5, 4) and h_n.shape == (2, 2, 4)
    np.testing.assert_array_equal(out[:, -1], h_n[-1])
    lstm, x, _ = make_layer("lstm", rng)
    out, (h_n, c_n) = lstm.forward(x)
    np.testing.assert_array_equal(out[-1], h_n[-1])
    assert c_n.shape == h_n.shape and not np.array_equal(c_n, h_n)


@pytest.mark.parametrize("cell", list(LAYERS))
def test_parameter_names_shapes_and_initialisation(cell):
    G, H = GATES[cell], 64
    layer = LAYERS[cell](10, H, num_layers=3)
    assert list(layer.params) == [f"{kind}_l{k}" for k in range(3)
                                  for kind in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]
    assert layer.params["weight_ih_l0"].shape == (G * H, 10)
    assert layer.params["weight_ih_l2"].shape == (G * H, H)
    assert layer.params["weight_hh_l1"].shape == (G * H, H)
    assert layer.params["bias_hh_l2"].shape == (G * H,)
    bound = 1 / np.sqrt(H)
    values = np.concatenate([p.ravel() for p in layer.params.values()])
    assert np.abs(values).max() <= bound and values.std() == pytest.approx(bound / np.sqrt(3), rel=0.02)
    assert all(p.dtype == np.float32 for p in layer.params.values())
    assert list(LAYERS[cell](10, H, bias=False).params) == ["weight_ih_l0", "weight_hh_l0"]
    again, f64 = LAYERS[cell](10, H, num_layers=3), LAYERS[cell](10, H, num_layers=3, dtype=np.float64)
    other = LAYERS[cell](10, H, num_layers=3, seed=1)
    for k, p in layer.params.items():
        np.testing.assert_array_equal(p, again.params[k])
        np.testing.assert_array_equal(p, f64.params[k].astype(np.float32))
    assert not np.array_equal(layer.params["weight_hh_l0"], other.params["weight_hh_l0"])


@pytest.mark.parametrize("cell", list(LAYERS))
def test_float32_stays_float32(rng, cell):
    layer = LAYERS[cell](3, 4, 2, dropout=0.2)
    out, h_n = layer.forward(rng.standard_normal((5, 2, 3)))        # a float64 x is cast
    dx, dh0 = layer.backward(rng.standard_normal(out.shape))
    finals = h_n + dh0 if cell == "lstm" else (h_n, dh0)
    assert all(a.dtype == np.float32 for a in (out, dx, *finals, *layer.grads.values()))


def test_layer_state_dict_round_trip_and_strictness(rng):
    a, b = LSTM(3, 4, 2, seed=0), LSTM(3, 4, 2, seed=1)
    b.load_state_dict(a.state_dict())
    x = rng.standard_normal((5, 2, 3))
    np.testing.assert_array_equal(a.forward(x)[0], b.forward(x)[0])
    sd = a.state_dict()
    sd["bias_hh_l1"][:] = 9.0
    assert not np.any(a.params["bias_hh_l1"] == 9.0)                # state_dict() is a copy
    del sd["bias_hh_l1"]
    sd["weight_ih_l2"] = np.zeros((16, 4))
    sd["weight_hh_l0"] = np.zeros((12, 4))
    with pytest.raises(ValueError) as err:
        a.load_state_dict(sd)
    message = str(err.value)
    assert "missing keys: bias_hh_l1" in message
    assert "unexpected keys: weight_ih_l2" in message
    assert "weight_hh_l0: expected (16, 4), got (12, 4)" in message


def test_repr_reads_like_the_constructor():
    assert repr(LSTM(3, 4)) == "LSTM(3, 4)"
    assert repr(GRU(3, 4, 2, batch_first=True)) == "GRU(3, 4, num_layers=2, batch_first=True)"
    assert repr(RNN(3, 4, nonlinearity="relu")) == "RNN(3, 4, nonlinearity='relu')"


# ----------------------------------------------------------------------------- bad input
@pytest.mark.parametrize("cell, x_shape, h0, message", [
    ("gru", (5, 2, 7), None, r"x has shape \(5, 2, 7\): its last axis must be input_size=3"),
    ("rnn", (5, 3), None, r"x has shape \(5, 3\), expected 3 axes \(time, batch, input_size\)"),
    ("rnn", (5, 0, 3), None, r"x has shape \(5, 0, 3\): it needs at least one time step"),
    ("gru", (5, 2, 3), np.zeros((1, 2, 4)),
     r"h0 must have shape \(num_layers, batch, hidden_size\) = \(2, 2, 4\), got \(1, 2, 4\)"),
    ("rnn", (5, 2, 3), np.zeros((2, 5, 4)), r"= \(2, 2, 4\), got \(2, 5, 4\)"),
    ("lstm", (5, 2, 3), np.zeros((2, 2, 4)), r"an LSTM's h0 is a pair \(h0, c0\).*shape \(2, 2, 4\)"),
    ("lstm", (5, 2, 3), (np.zeros((2, 2, 4)), np.zeros((2, 2, 3))),
     r"c0 must have shape \(num_layers, batch, hidden_size\) = \(2, 2, 4\), got \(2, 2, 3\)"),
    ("rnn", (5, 2, 3), np.zeros((2, 2, 4), dtype=int), "h0 must be a floating-point array, got dtype int"),
])
def test_bad_forward_input_raises_naming_the_shapes(cell, x_shape, h0, message):
    with pytest.raises(ValueError, match=message):
        LAYERS[cell](3, 4, 2).forward(np.zeros(x_shape), h0)


def test_non_float_x_and_batch_first_layout_named():
    with pytest.raises(ValueError, match="x must be a floating-point array, got dtype int64"):
        LSTM(3, 4).forward(np.zeros((5, 2, 3), dtype=np.int64))
    with pytest.raises(ValueError, match=r"input_size=3 \(batch, time, input_size\), got 2"):
        GRU(3, 4, batch_first=True).forward(np.zeros((2, 5, 2)))
    with pytest.raises(ValueError, match=r"= \(1, 2, 4\), got \(1, 5, 4\)"):   # batch is x's axis 0
        GRU(3, 4, batch_first=True).forward(np.zeros((2, 5, 3)), np.zeros((1, 5, 4)))


def test_bad_backward_input_raises():
    layer = LSTM(3, 4, 2, batch_first=True)
    with pytest.raises(ValueError, match="preceding forward"):
        layer.backward(np.zeros((2, 5, 4)))
    layer.forward(np.zeros((2, 5, 3)))
    with pytest.raises(ValueError, match=r"dout must have the shape of out, \(2, 5, 4\), got \(5, 2, 4\)"):
        layer.backward(np.zeros((5, 2, 4)))
    with pytest.raises(ValueError, match=r"dc_n must have shape .* = \(2, 2, 4\), got \(2, 4\)"):
        layer.backward(np.zeros((2, 5, 4)), (None, np.zeros((2, 4))))
    gru = GRU(3, 4)
    gru.forward(np.zeros((5, 2, 3)))
    with pytest.raises(ValueError, match=r"dh_n must have shape .* = \(1, 2, 4\), got \(2, 2, 4\)"):
        gru.backward(None, np.zeros((2, 2, 4)))


@pytest.mark.parametrize("make, message", [
    (lambda: LSTM(3, 0), "LSTM.hidden_size must be a positive integer, got 0"),
    (lambda: GRU(3.0, 4), "GRU.input_size must be a positive integer, got 3.0"),
    (lambda: RNN(3, 4, num_layers=0), "RNN.num_layers must be a positive integer, got 0"),
    (lambda: RNN(3, 4, nonlinearity="sigmoid"), "nonlinearity must be 'tanh' or 'relu'"),
    (lambda: LSTM(3, 4, dtype=np.int32), "dtype must be float32 or float64, got int32"),
    (lambda: LSTM(3, 4, dropout=1.0), r"dropout must be in \[0, 1\)"),
    (lambda: GRU(3, 4, 1, "yes"), "bias and batch_first must be True or False"),
])
def test_bad_constructor_arguments(make, message):
    with pytest.raises(ValueError, match=message):
        make()


# =============================================================================== the language model
def tiny_batch(rng, B=2, T=6, V=11):
    return rng.integers(0, V, (B, T)), rng.integers(0, V, (B, T))


@pytest.mark.parametrize("cell", list(LAYERS))
@pytest.mark.slow
def test_whole_model_gradcheck(rng, cell):
    model = RecurrentLM(RecurrentConfig(**TINY_LM, cell=cell), dtype=np.float64)
    jitter(model.params, scale=0.2, seed=1)
    report = check_model(model, *tiny_batch(rng))
    assert len(report.rows) == len(model.params)
    assert report.max_rel_error <= TOL, f"\n{report}"


def test_whole_model_gradcheck_with_dropout_and_ignore_index(rng):
    model = RecurrentLM(RecurrentConfig(**TINY_LM, cell="lstm", dropout=0.3), dtype=np.float64)
    jitter(model.params, scale=0.2, seed=2)
    idx, targets = tiny_batch(rng)
    targets[0, :2] = -1
    start = model.dropout_rng.bit_generator.state

    def loss():
        model.dropout_rng.bit_generator.state = start      # the same masks every time
        return model.forward(idx, targets, ignore_index=-1)[1]

    loss()
    report = gradcheck(loss, model.params, model.backward())
    assert report.max_rel_error <= TOL, f"\n{report}"


def test_parameter_names_follow_a_pytorch_module():
    model = RecurrentLM(RecurrentConfig(**TINY_LM, cell="gru"))
    assert list(model.params) == ["embedding.weight",
                                  "rnn.weight_ih_l0", "rnn.weight_hh_l0", "rnn.bias_ih_l0", "rnn.bias_hh_l0",
                                  "rnn.weight_ih_l1", "rnn.weight_hh_l1", "rnn.bias_ih_l1", "rnn.bias_hh_l1",
                                  "lm_head.weight", "lm_head.bias"]
    p = model.params
    assert p["embedding.weight"].shape == (11, 5)
    assert p["rnn.weight_ih_l0"].shape == (18, 5) and p["rnn.weight_ih_l1"].shape == (18, 6)
    assert p["lm_head.weight"].shape == (11, 6) and p["lm_head.bias"].shape == (11,)
    V, E, H, G = 11, 5, 6, 3
    expected = V * E + G * H * (E + H + 2) + G * H * (H + H + 2) + V * H + V
    assert model.num_params() == expected == sum(a.size for a in p.values())


def test_the_model_and_its_layer_share_parameter_arrays(rng):
    """An optimizer updates model.params in place; the recurrent layer must see it."""
    model = RecurrentLM(RecurrentConfig(**TINY_LM), dtype=np.float64)
    idx, _ = tiny_batch(rng)
    before = model.forward(idx)[0]
    model.params["rnn.weight_hh_l1"] += 0.5
    assert not np.allclose(model.forward(idx)[0], before)


def test_float32_stays_float32_and_agrees_with_float64(rng):
    idx, targets = tiny_batch(rng)
    m32 = RecurrentLM(RecurrentConfig(**TINY_LM, dropout=0.1))
    logits, loss32 = m32.forward(idx, targets)
    assert logits.dtype == np.float32
    assert all(g.dtype == np.float32 for g in m32.backward().values())
    m32.eval()
    _, loss32 = m32.forward(idx, targets)
    _, loss64 = RecurrentLM(RecurrentConfig(**TINY_LM, dropout=0.1), dtype=np.float64).eval().forward(idx, targets)
    assert loss32 == pytest.approx(loss64, rel=1e-5)


def test_dropout_on_in_training_off_in_eval(rng):
    idx, targets = tiny_batch(rng)
    model = RecurrentLM(RecurrentConfig(**TINY_LM, dropout=0.5))
    assert model.rnn.dropout_rng is model.dropout_rng           # one generator for checkpoints
    train_a, train_b = model.forward(idx, targets)[1], model.forward(idx, targets)[1]
    model.eval()
    eval_a, eval_b = model.forward(idx, targets)[1], model.forward(idx, targets)[1]
    assert train_a != train_b and eval_a == eval_b
    assert not model.training and model.train().training


def test_state_continues_a_sequence(rng):
    """Reading a sequence in pieces with a RecurrentState gives the logits of reading it whole."""
    model = RecurrentLM(RecurrentConfig(**TINY_LM, cell="lstm"), dtype=np.float64)
    idx = rng.integers(0, 11, (3, 7))
    whole, _ = model.forward(idx)
    state = model.new_cache(batch_size=3)
    first, _ = model.forward(idx[:, :4], cache=state)
    second, _ = model.forward(idx[:, 4:], cache=state)
    assert state.length == 7
    np.testing.assert_allclose(np.concatenate([first, second], axis=1), whole, rtol=1e-12, atol=1e-14)
    with pytest.raises(ValueError, match="sequence length 9 exceeds block_size=8"):
        model.forward(idx[:, :2], cache=state)
    state.reorder([2, 2])                                         # beam search keeps row 2 twice
    assert state.state[0].shape == (2, 2, 6)
    state.reset()
    assert state.length == 0 and state.state is None


def test_kv_cache_is_refused_with_a_pointer_to_new_cache(rng):
    from npgpt import KVCache
    model = RecurrentLM(RecurrentConfig(**TINY_LM))
    with pytest.raises(ValueError, match=r"carries its state, not a KVCache: pass cache=model.new_cache\(\)"):
        model.forward(tiny_batch(rng)[0], cache=KVCache(2))


def test_lm_state_dict_round_trip_and_strictness(rng):
    a = RecurrentLM(RecurrentConfig(**TINY_LM), seed=1)
    b = RecurrentLM(RecurrentConfig(**TINY_LM), seed=2)
    b.load_state_dict(a.state_dict())
    idx, targets = tiny_batch(rng)
    assert a.forward(idx, targets)[1] == b.forward(idx, targets)[1]
    sd = a.state_dict()
    del sd["lm_head.bias"]
    sd["rnn.weight_ih_l0"] = np.zeros((24, 4))
    with pytest.raises(ValueError, match=r"missing keys: lm_head.bias.*rnn.weight_ih_l0: expected \(24, 5\)"):
        a.load_state_dict(sd)


def test_config_round_trip_preset_and_checks():
    cfg = RecurrentConfig(**TINY_LM, cell="gru", dropout=0.1)
    assert RecurrentConfig.from_dict(cfg.to_dict()) == cfg
    assert list(cfg.to_dict()) == ["vocab_size", "block_size", "cell", "n_embd", "n_hidden", "n_layer", "dropout"]
    assert RecurrentConfig.preset("baby", cell="gru").cell == "gru"
    with pytest.raises(ValueError, match="unknown preset 'huge'"):
        RecurrentConfig.preset("huge")
    for kwargs, message in [(dict(cell="transformer"), "cell must be one of \\('rnn', 'lstm', 'gru'\\)"),
                            (dict(n_hidden=0), "n_hidden must be a positive integer, got 0"),
                            (dict(dropout=1.0), "dropout must be in \\[0, 1\\)")]:
        with pytest.raises(ValueError, match=message):
            RecurrentConfig(**{**TINY_LM, **kwargs})
    with pytest.raises(ValueError, match="config must be a RecurrentConfig, got dict"):
        RecurrentLM(TINY_LM)


@pytest.mark.parametrize("idx, message", [
    (np.array([[1, 11]]), "token id 11, outside \\[0, vocab_size=11\\)"),
    (np.zeros((1, 9), dtype=int), "sequence length 9 exceeds block_size=8"),
    (np.zeros(4, dtype=int), "must be 2-D"),
    (np.zeros((1, 4)), "integer token ids, got dtype float64"),
    (np.zeros((1, 0), dtype=int), "no time steps"),
])
def test_bad_ids_raise_the_gpts_errors(idx, message):
    with pytest.raises(ValueError, match=message):
        RecurrentLM(RecurrentConfig(**TINY_LM)).forward(idx)


def test_bad_targets_and_backward_without_loss():
    model = RecurrentLM(RecurrentConfig(**TINY_LM))
    idx = np.zeros((1, 3), dtype=int)
    with pytest.raises(ValueError, match="targets shape \\(1, 2\\) does not match idx shape \\(1, 3\\)"):
        model.forward(idx, np.zeros((1, 2), dtype=int))
    with pytest.raises(ValueError, match="preceding forward"):
        model.backward()
    model.forward(idx)
    with pytest.raises(ValueError, match="with targets"):
        model.backward()


def test_trains_with_the_gpts_trainer(tmp_path):
    """The unchanged Trainer drives a RecurrentLM: the loss falls and a checkpoint is written."""
    text = "the quick brown fox jumps over the lazy dog. " * 40
    data = Dataset(text, cache_dir=tmp_path / "cache")
    model = RecurrentLM(RecurrentConfig(vocab_size=data.vocab_size, block_size=16, cell="gru",
                                        n_embd=16, n_hidden=32, n_layer=1))
    trainer = Trainer(model, data, TrainConfig(max_iters=60, batch_size=8, lr=1e-2, warmup_iters=5,
                                               eval_interval=60, eval_iters=2), data.tokenizer)
    before = trainer.evaluate()["val"]
    trainer.train(checkpoint_path=tmp_path / "ckpt.npz", progress=False, log=lambda *_: None)
    assert trainer.evaluate()["val"] < before - 0.5
    assert (tmp_path / "ckpt.npz").exists()


# =============================================================================== PyTorch
def _torch():
    return optional_reference("torch", reason="the reference RNN, LSTM and GRU")


@pytest.mark.parametrize("batch_first", [False, True])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("cell", [*LAYERS, "rnn-relu"])
def test_layer_matches_pytorch(rng, cell, bias, batch_first):
    torch = _torch()
    kwargs = {"nonlinearity": "relu"} if cell == "rnn-relu" else {}
    layer, x, states = make_layer(cell.split("-")[0], rng, bias, batch_first, **kwargs)
    twin = getattr(torch.nn, type(layer).__name__)(3, 4, 2, bias=bias, batch_first=batch_first,
                                                   dtype=torch.float64, **kwargs)
    twin.load_state_dict({k: torch.from_numpy(v) for k, v in layer.params.items()}, strict=True)
    lstm = isinstance(layer, LSTM)

    out, finals = layer.forward(x, (states["h0"], states["c0"]) if lstm else states["h0"])
    finals = finals if lstm else (finals,)
    d_out = rng.standard_normal(out.shape)
    d_finals = [rng.standard_normal(f.shape) for f in finals]
    dx, d_state0 = layer.backward(d_out, tuple(d_finals) if lstm else d_finals[0])
    d_state0 = d_state0 if lstm else (d_state0,)

    tx = torch.tensor(x, requires_grad=True)
    t_states = [torch.tensor(s, requires_grad=True) for s in states.values()]
    t_out, t_finals = twin(tx, tuple(t_states) if lstm else t_states[0])
    t_finals = t_finals if lstm else (t_finals,)
    loss = (t_out * torch.from_numpy(d_out)).sum()
    loss = loss + sum((f * torch.from_numpy(d)).sum() for f, d in zip(t_finals, d_finals))
    loss.backward()

    def close(a, b, what):
        np.testing.assert_allclose(a, b.detach().numpy(), rtol=1e-10, atol=1e-12, err_msg=what)

    close(out, t_out, "out")
    for f, tf, name in zip(finals, t_finals, ("h_n", "c_n")):
        close(f, tf, name)
    close(dx, tx.grad, "dx")
    for d, ts, name in zip(d_state0, t_states, ("dh0", "dc0")):
        close(d, ts.grad, name)
    t_grads = dict(twin.named_parameters())
    assert list(t_grads) == list(layer.grads)
    for name, g in layer.grads.items():
        close(g, t_grads[name].grad, name)


@pytest.mark.parametrize("cell", list(LAYERS))
def test_language_model_matches_pytorch(rng, cell):
    torch = _torch()
    from npgpt.verify.torch_rnn import from_npgpt
    model = RecurrentLM(RecurrentConfig(**TINY_LM, cell=cell), dtype=np.float64)
    jitter(model.params, scale=0.2, seed=3)
    twin = from_npgpt(model)
    idx, targets = tiny_batch(rng, B=3)
    logits, loss = model.forward(idx, targets)
    grads = model.backward()
    t_logits, t_loss = twin(torch.from_numpy(idx), torch.from_numpy(targets))
    t_loss.backward()
    np.testing.assert_allclose(logits, t_logits.detach().numpy(), rtol=1e-10, atol=1e-12)
    assert loss == pytest.approx(t_loss.item(), rel=1e-12)
    t_grads = {name: p.grad.numpy() for name, p in twin.named_parameters()}
    assert list(t_grads) == list(grads)
    for name, g in grads.items():
        np.testing.assert_allclose(g, t_grads[name], rtol=1e-10, atol=1e-12, err_msg=name)
