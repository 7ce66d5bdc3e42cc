"""Every op: its backward against central finite differences (float64, relative error <= 1e-6),
and its forward against the formula it states."""
import numpy as np
import pytest

from npgpt import check_op, ops

TOL = 1e-6


def assert_grads_ok(report):
    assert report.ok, f"\n{report}"


def test_embedding_gradcheck_with_repeated_ids(rng):
    idx = np.array([[1, 3, 1], [3, 3, 0]])
    W = rng.standard_normal((5, 4))
    assert_grads_ok(check_op(lambda W: ops.embedding_forward(idx, W), ops.embedding_backward,
                             {"W": W}, ["W"]))


def test_embedding_backward_accumulates_repeated_ids():
    idx = np.array([[2, 2, 0]])
    dout = np.array([[[1.0, 2.0], [10.0, 20.0], [5.0, 5.0]]])
    _, cache = ops.embedding_forward(idx, np.zeros((3, 2)))
    dW = ops.embedding_backward(dout, cache)
    np.testing.assert_array_equal(dW, [[5.0, 5.0], [0.0, 0.0], [11.0, 22.0]])


def test_learned_positions_gradcheck(rng):
    x, wpe = rng.standard_normal((2, 3, 4)), rng.standard_normal((5, 4))
    assert_grads_ok(check_op(ops.learned_positions_forward, ops.learned_positions_backward,
                             {"x": x, "wpe": wpe, "start": 1}, ["x", "wpe"]))


@pytest.mark.parametrize("C", [6, 7])
def test_sinusoidal_table_is_the_documents_formula(C):
    pe = ops.sinusoidal_table(9, C)
    for p in range(9):
        for i in range(C):
            angle = p / 10000 ** ((i - i % 2) / C)
            expected = np.sin(angle) if i % 2 == 0 else np.cos(angle)
            assert pe[p, i] == pytest.approx(expected, abs=1e-12)


def test_sinusoidal_backward_is_identity(rng):
    x = rng.standard_normal((2, 3, 4))
    assert_grads_ok(check_op(lambda x: ops.sinusoidal_forward(x, ops.sinusoidal_table(8, 4), 2),
                             ops.sinusoidal_backward, {"x": x}, ["x"]))


@pytest.mark.parametrize("bias", [True, False])
def test_linear_gradcheck(rng, bias):
    inputs = {"x": rng.standard_normal((2, 3, 4)), "W": rng.standard_normal((4, 5)),
              "b": rng.standard_normal(5) if bias else None}
    wrt = ["x", "W", "b"] if bias else ["x", "W"]
    backward = ops.linear_backward if bias else (lambda d, c: ops.linear_backward(d, c)[:2])
    assert_grads_ok(check_op(ops.linear_forward, backward, inputs, wrt))


def test_layernorm_gradcheck(rng):
    inputs = {"x": 3 * rng.standard_normal((2, 3, 6)) + 1, "w": rng.standard_normal(6),
              "b": rng.standard_normal(6)}
    assert_grads_ok(check_op(ops.layernorm_forward, ops.layernorm_backward, inputs, ["x", "w", "b"]))


def test_layernorm_normalises(rng):
    x = 5 * rng.standard_normal((4, 16)) + 3
    y, _ = ops.layernorm_forward(x, np.ones(16), np.zeros(16))
    np.testing.assert_allclose(y.mean(-1), 0, atol=1e-12)
    np.testing.assert_allclose(y.var(-1), 1, rtol=1e-4)   # eps = 1e-5 shrinks the variance slightly


def test_gelu_gradcheck_and_values(rng):
    assert_grads_ok(check_op(ops.gelu_forward, ops.gelu_backward,
                             {"x": 3 * rng.standard_normal((3, 7))}, ["x"]))
    y, _ = ops.gelu_forward(np.array([-3.0, 0.0, 1.0, 3.0]))
    # tanh-approximate GELU, as GPT-2 and torch.nn.functional.gelu(approximate="tanh") compute it
    np.testing.assert_allclose(y, [-0.0036373920817, 0.0, 0.8411919906082768, 2.9963626079182],
                               rtol=1e-9)


def test_dropout_gradcheck_with_fixed_mask(rng):
    x = rng.standard_normal((4, 5))
    forward = lambda x: ops.dropout_forward(x, 0.3, np.random.default_rng(7))   # same mask each call
    assert_grads_ok(check_op(forward, ops.dropout_backward, {"x": x}, ["x"]))


def test_dropout_scaling_and_eval(rng):
    x = np.ones((200, 500))
    y, _ = ops.dropout_forward(x, 0.25, np.random.default_rng(0))
    assert set(np.unique(y)) == {0.0, 1.0 / 0.75}
    assert abs(y.mean() - 1.0) < 0.01           # inverted scaling keeps the expectation
    assert abs((y == 0).mean() - 0.25) < 0.01
    y_eval, _ = ops.dropout_forward(x, 0.25, None)
    assert y_eval is x


def test_dropout_is_seeded():
    x = np.ones((3, 8))
    a, _ = ops.dropout_forward(x, 0.5, np.random.default_rng(3))
    b, _ = ops.dropout_forward(x, 0.5, np.random.default_rng(3))
    np.testing.assert_array_equal(a, b)


def test_softmax_and_log_softmax_gradcheck(rng):
    z = 2 * rng.standard_normal((3, 6))
    assert_grads_ok(check_op(ops.softmax_forward, ops.softmax_backward, {"z": z}, ["z"]))
    assert_grads_ok(check_op(ops.log_softmax_forward, ops.log_softmax_backward, {"z": z}, ["z"]))


def test_softmax_is_stable_for_huge_logits():
    z = np.array([[1e4, -1e4, 0.0], [-1e4, -1e4, -1e4]])
    s, _ = ops.softmax_forward(z)
    logp, _ = ops.log_softmax_forward(z)
    assert np.all(np.isfinite(s)) and np.all(np.isfinite(logp))
    np.testing.assert_allclose(s, [[1, 0, 0], [1 / 3, 1 / 3, 1 / 3]])
    np.testing.assert_allclose(logp[0], [0, -2e4, -1e4])


def test_causal_mask_shapes():
    m = ops.causal_mask(3, 3)
    assert np.array_equal(np.isinf(m), np.triu(np.ones((3, 3), bool), 1))
    m_cached = ops.causal_mask(2, 5)     # two new queries after three cached keys
    assert np.array_equal(np.isinf(m_cached), [[0, 0, 0, 0, 1], [0, 0, 0, 0, 0]])


def test_attention_gradcheck(rng):
    inputs = {"q": rng.standard_normal((2, 2, 4, 3)), "k": rng.standard_normal((2, 2, 4, 3)),
              "v": rng.standard_normal((2, 2, 4, 5)), "mask": ops.causal_mask(4, 4)}
    assert_grads_ok(check_op(ops.attention_forward, ops.attention_backward, inputs, ["q", "k", "v"]))


def test_attention_gradcheck_with_dropout(rng):
    inputs = {"q": rng.standard_normal((1, 2, 4, 3)), "k": rng.standard_normal((1, 2, 4, 3)),
              "v": rng.standard_normal((1, 2, 4, 3))}
    forward = lambda q, k, v: ops.attention_forward(q, k, v, ops.causal_mask(4, 4), 0.3,
                                                    np.random.default_rng(5))
    assert_grads_ok(check_op(forward, ops.attention_backward, inputs, ["q", "k", "v"]))


def test_attention_is_causal(rng):
    q, k, v = (rng.standard_normal((1, 1, 5, 4)) for _ in range(3))
    y, _ = ops.attention_forward(q, k, v, ops.causal_mask(5, 5))
    v_future_changed = v.copy()
    v_future_changed[..., 3:, :] += 100.0
    y2, _ = ops.attention_forward(q, k, v_future_changed, ops.causal_mask(5, 5))
    np.testing.assert_allclose(y2[..., :3, :], y[..., :3, :])   # positions 0..2 never see 3, 4
    assert not np.allclose(y2[..., 3:, :], y[..., 3:, :])


def self_attention_inputs(rng, C=6, bias=True):
    return {"x": rng.standard_normal((2, 4, C)), "w_attn": rng.standard_normal((C, 3 * C)) / 2,
            "b_attn": rng.standard_normal(3 * C) if bias else None,
            "w_proj": rng.standard_normal((C, C)) / 2, "b_proj": rng.standard_normal(C) if bias else None,
            "n_head": 2}


def test_self_attention_gradcheck(rng):
    forward = lambda **kw: ops.self_attention_forward(**kw)[:2]
    assert_grads_ok(check_op(forward, ops.self_attention_backward, self_attention_inputs(rng),
                             ["x", "w_attn", "b_attn", "w_proj", "b_proj"]))


def test_self_attention_column_layout_matches_per_head_formula(rng):
    """Q, K, V are the three C-wide column blocks of c_attn; head h uses columns h*hs..(h+1)*hs."""
    kw = self_attention_inputs(rng)
    out, _, _ = ops.self_attention_forward(**kw)
    x, W, b, C, nh = kw["x"], kw["w_attn"], kw["b_attn"], 6, 2
    hs = C // nh
    heads = []
    for h in range(nh):
        cols = slice(h * hs, (h + 1) * hs)
        q = x @ W[:, :C][:, cols] + b[:C][cols]
        k = x @ W[:, C:2 * C][:, cols] + b[C:2 * C][cols]
        v = x @ W[:, 2 * C:][:, cols] + b[2 * C:][cols]
        s = q @ k.transpose(0, 2, 1) / np.sqrt(hs) + np.triu(np.full((4, 4), -np.inf), 1)
        a = np.exp(s - s.max(-1, keepdims=True))
        heads.append((a / a.sum(-1, keepdims=True)) @ v)
    expected = np.concatenate(heads, axis=-1) @ kw["w_proj"] + kw["b_proj"]
    np.testing.assert_allclose(out, expected, rtol=1e-12, atol=1e-12)


def test_self_attention_with_past_kv_equals_full(rng):
    kw = self_attention_inputs(rng)
    full, _, _ = ops.self_attention_forward(**kw)
    x = kw.pop("x")
    first, _, past = ops.self_attention_forward(x[:, :3], **kw)
    last, _, kv = ops.self_attention_forward(x[:, 3:], **kw, past_kv=past)
    np.testing.assert_allclose(np.concatenate([first, last], 1), full, rtol=1e-12, atol=1e-12)
    assert kv[0].shape == (2, 2, 4, 3)


def test_mlp_gradcheck(rng):
    C = 4
    inputs = {"x": rng.standard_normal((2, 3, C)), "w_fc": rng.standard_normal((C, 4 * C)),
              "b_fc": rng.standard_normal(4 * C), "w_proj": rng.standard_normal((4 * C, C)),
              "b_proj": rng.standard_normal(C)}
    assert_grads_ok(check_op(ops.mlp_forward, ops.mlp_backward, inputs,
                             ["x", "w_fc", "b_fc", "w_proj", "b_proj"]))


def block_params(rng, C, bias=True):
    shapes = {"ln_1.weight": (C,), "ln_1.bias": (C,), "attn.c_attn.weight": (C, 3 * C),
              "attn.c_attn.bias": (3 * C,), "attn.c_proj.weight": (C, C), "attn.c_proj.bias": (C,),
              "ln_2.weight": (C,), "ln_2.bias": (C,), "mlp.c_fc.weight": (C, 4 * C),
              "mlp.c_fc.bias": (4 * C,), "mlp.c_proj.weight": (4 * C, C), "mlp.c_proj.bias": (C,)}
    return {k: rng.standard_normal(s) / 2 for k, s in shapes.items() if bias or not k.endswith("bias")}


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("dropout", [0.0, 0.2])
def test_block_gradcheck(rng, bias, dropout):
    from npgpt.verify.gradcheck import gradcheck
    p = block_params(rng, 6, bias)
    x = rng.standard_normal((2, 4, 6))
    G = rng.standard_normal((2, 4, 6))

    def run():
        return ops.block_forward(x, p, 2, dropout, np.random.default_rng(9) if dropout else None)

    y, cache, _ = run()
    dx, grads = ops.block_backward(G, cache)
    assert sorted(grads) == sorted(p)
    params = dict(p, x=x)
    report = gradcheck(lambda: float(np.sum(run()[0] * G)), params, dict(grads, x=dx))
    assert_grads_ok(report)


def test_cross_entropy_gradcheck_with_ignore_index(rng):
    targets = np.array([0, 3, -100, 2, -100])
    inputs = {"logits": rng.standard_normal((5, 4)), "targets": targets, "ignore_index": -100}
    report = check_op(lambda **kw: ops.cross_entropy_forward(**kw), ops.cross_entropy_backward,
                      inputs, ["logits"])
    assert_grads_ok(report)


def test_cross_entropy_value_is_mean_nll(rng):
    logits = rng.standard_normal((4, 5))
    targets = np.array([1, 0, 4, 2])
    loss, _ = ops.cross_entropy_forward(logits, targets)
    p = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    assert loss == pytest.approx(-np.mean(np.log(p[np.arange(4), targets])), rel=1e-12)
    loss_ignoring, _ = ops.cross_entropy_forward(logits, np.array([1, -1, 4, -1]), ignore_index=-1)
    assert loss_ignoring == pytest.approx(-np.mean(np.log(p[[0, 2], [1, 4]])), rel=1e-12)


def test_cross_entropy_finite_for_huge_logits():
    logits = np.array([[1e4, -1e4, 0.0], [-1e4, 1e4, -1e4]])
    loss, cache = ops.cross_entropy_forward(logits, np.array([1, 1]))
    assert loss == pytest.approx(2e4 / 2)      # first row pays 2e4 nats, second 0
    assert np.all(np.isfinite(ops.cross_entropy_backward(1.0, cache)))


def test_cross_entropy_all_ignored_is_an_error():
    with pytest.raises(ValueError, match="ignore_index=-1"):
        ops.cross_entropy_forward(np.zeros((2, 3)), np.array([-1, -1]), ignore_index=-1)
