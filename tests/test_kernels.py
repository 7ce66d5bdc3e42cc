"""Every numba twin equals its readable reference (float64: relative error <= 1e-10, float32:
<= 1e-5) on random shapes, odd sizes and T = 1 included; the whole model agrees on both backends."""
import numpy as np
import pytest

import npgpt
from npgpt import GPT, GPTConfig, check_model, jitter, kernels, ops
from npgpt.kernels.backend import use_backend

TOL = {np.float64: 1e-10, np.float32: 1e-5}
SHAPES = [(1, 1, 4, 1), (2, 5, 6, 2), (3, 7, 9, 3), (2, 64, 32, 4), (1, 13, 10, 5)]   # (B, T, C, n_head)
DTYPES = [np.float64, np.float32]


def rel_error(a, b):
    """max |a - b| / max |a|: the tensor-wise relative error used throughout."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(a)), 1e-30))


def assert_twins_equal(reference, fast, dtype):
    reference = reference if isinstance(reference, tuple) else (reference,)
    fast = fast if isinstance(fast, tuple) else (fast,)
    assert len(reference) == len(fast)
    for r, f in zip(reference, fast):
        if r is None:
            assert f is None
            continue
        assert np.asarray(f).dtype == np.asarray(r).dtype
        assert rel_error(r, f) <= TOL[dtype], rel_error(r, f)


def randn(rng, shape, dtype, scale=1.0):
    return (scale * rng.standard_normal(shape)).astype(dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("B, T, C, nh", SHAPES)
@pytest.mark.parametrize("bias", [True, False])
def test_self_attention_twin(rng, dtype, B, T, C, nh, bias):
    args = (randn(rng, (B, T, C), dtype), randn(rng, (C, 3 * C), dtype, C ** -0.5),
            randn(rng, 3 * C, dtype) if bias else None, randn(rng, (C, C), dtype, C ** -0.5),
            randn(rng, C, dtype) if bias else None, nh)
    out_r, cache_r, kv_r = ops.self_attention_forward(*args)
    out_f, cache_f, kv_f = kernels.self_attention_forward(*args)
    assert_twins_equal(out_r, out_f, dtype)
    assert_twins_equal(tuple(kv_r), tuple(kv_f), dtype)
    dout = randn(rng, out_r.shape, dtype)
    assert_twins_equal(ops.self_attention_backward(dout, cache_r),
                       kernels.self_attention_backward(dout, cache_f), dtype)


def test_self_attention_twin_falls_back_for_dropout_and_kv_cache(rng):
    C = 8
    args = (randn(rng, (2, 3, C), np.float64), randn(rng, (C, 3 * C), np.float64), None,
            randn(rng, (C, C), np.float64), None, 2)
    _, _, past = ops.self_attention_forward(*args)
    for kw in [dict(past_kv=past), dict(dropout_p=0.3, rng=np.random.default_rng(0))]:
        ref = ops.self_attention_forward(*args, **{**kw, "rng": np.random.default_rng(0)} if "rng" in kw else kw)
        fast = kernels.self_attention_forward(*args, **{**kw, "rng": np.random.default_rng(0)} if "rng" in kw else kw)
        assert_twins_equal(ref[0], fast[0], np.float64)
        dout = randn(rng, ref[0].shape, np.float64)
        assert_twins_equal(ops.self_attention_backward(dout, ref[1]),
                           kernels.self_attention_backward(dout, fast[1]), np.float64)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(1, 1, 5), (2, 7, 9), (3, 64, 128), (4, 3)])
@pytest.mark.parametrize("bias", [True, False])
def test_layernorm_twin(rng, dtype, shape, bias):
    C = shape[-1]
    args = (randn(rng, shape, dtype, 3.0) + 1, randn(rng, C, dtype), randn(rng, C, dtype) if bias else None)
    y_r, cache_r = ops.layernorm_forward(*args)
    y_f, cache_f = kernels.layernorm_forward(*args)
    assert_twins_equal(y_r, y_f, dtype)
    dout = randn(rng, shape, dtype)
    assert_twins_equal(ops.layernorm_backward(dout, cache_r), kernels.layernorm_backward(dout, cache_f), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(1,), (3, 7), (2, 5, 33), (12, 64, 512)])
def test_gelu_twin(rng, dtype, shape):
    x = randn(rng, shape, dtype, 3.0)
    y_r, cache_r = ops.gelu_forward(x)
    y_f, cache_f = kernels.gelu_forward(x)
    assert_twins_equal(y_r, y_f, dtype)
    dout = randn(rng, shape, dtype)
    assert_twins_equal(ops.gelu_backward(dout, cache_r), kernels.gelu_backward(dout, cache_f), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape, H", [((1, 1, 4), 16), ((2, 7, 5), 20), ((3, 5, 9), 7), ((12, 64, 128), 512)])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("parallel", [False, True])
def test_mlp_twin(rng, monkeypatch, dtype, shape, H, bias, parallel):
    """The fused bias + GELU MLP, serial and parallel builds, odd widths (a pruned H = 7) included."""
    monkeypatch.setattr("npgpt.kernels._compile.PARALLEL_MIN_WORK", 0 if parallel else 1 << 62)
    C = shape[-1]
    args = (randn(rng, shape, dtype, 2.0), randn(rng, (C, H), dtype, C ** -0.5), randn(rng, H, dtype) if bias else None,
            randn(rng, (H, C), dtype, H ** -0.5), randn(rng, C, dtype) if bias else None)
    y_r, cache_r = ops.mlp_forward(*args)
    y_f, cache_f = kernels.mlp_forward(*args)
    assert y_f.shape == y_r.shape
    assert_twins_equal(y_r, y_f, dtype)
    dout = randn(rng, shape, dtype)
    assert_twins_equal(ops.mlp_backward(dout, cache_r), kernels.mlp_backward(dout, cache_f), dtype)


def test_mlp_twin_runs_factorised_weights_through_the_reference(rng):
    from npgpt.ops.low_rank_linear import Factors
    x = randn(rng, (2, 3, 6), np.float32)
    args = (x, Factors(randn(rng, (6, 2), np.float32), randn(rng, (2, 24), np.float32)), randn(rng, 24, np.float32),
            randn(rng, (24, 6), np.float32), randn(rng, 6, np.float32))
    (y_r, cache_r), (y_f, cache_f) = ops.mlp_forward(*args), kernels.mlp_forward(*args)
    assert_twins_equal(y_r, y_f, np.float32)
    grads_r, grads_f = ops.mlp_backward(y_r, cache_r), kernels.mlp_backward(y_r, cache_f)
    assert isinstance(grads_f[1], Factors)
    for r, f in zip(grads_r[1], grads_f[1]):
        assert_twins_equal(r, f, np.float32)


def test_rational_tanh_is_float32_accurate():
    """The float32 MLP's tanh: within 4e-7 (relative) of the exact tanh, +-1 at +-inf, NaN kept."""
    import numba

    from npgpt.kernels.mlp import rational_tanh
    tanh32 = numba.vectorize(["float32(float32)"])(rational_tanh)
    u = np.concatenate([np.linspace(-12, 12, 400_001), np.geomspace(1e-30, 1, 200)]).astype(np.float32)
    u = np.concatenate([u, -u])
    exact = np.tanh(u.astype(np.float64))
    rel = np.abs(tanh32(u) - exact) / np.maximum(np.abs(exact), 1e-38)
    assert rel.max() <= 4e-7, (rel.max(), u[rel.argmax()])
    np.testing.assert_array_equal(tanh32(np.array([np.inf, -np.inf, np.nan], np.float32)), [1, -1, np.nan])


def test_float32_exp_is_accurate():
    """The attention softmax's float32 exp: within 1e-7 (relative) of the exact e^x over float32's normal
    range (np.exp's float32 is within 2.1e-7), 0 at -inf and below -87.34, inf above 88.37, NaN kept."""
    import numba

    from npgpt.kernels.attention import exp_float32
    exp32 = numba.vectorize(["float32(float32)"])(exp_float32)
    x = np.concatenate([np.linspace(-87.33, 88.3, 2_000_001), -np.geomspace(1e-30, 80, 1000),
                        np.geomspace(1e-30, 80, 1000)]).astype(np.float32)
    exact = np.exp(x.astype(np.float64))
    rel = np.abs(exp32(x) - exact) / exact
    assert rel.max() <= 1e-7, (rel.max(), x[rel.argmax()])
    with np.errstate(invalid="ignore"):
        special = exp32(np.array([-np.inf, -88.0, -1e30, 0.0, 89.0, np.inf, np.nan], np.float32))
    np.testing.assert_array_equal(special, [0, 0, 0, 1, np.inf, np.inf, np.nan])


@pytest.mark.parametrize("dtype", DTYPES)
def test_causal_softmax_twin_propagates_nan_within_its_row(rng, dtype):
    """A NaN score makes its row NaN (a diverged model must show it), not its neighbours; 0 above the diagonal."""
    scores = randn(rng, (2, 3, 9, 9), dtype, 4.0)
    scores[1, 2, 5, 3] = np.nan
    att = scores.copy()
    kernels.attention.causal_softmax_inplace(att.size)(att, dtype(0.5))
    assert np.isnan(att[1, 2, 5, :6]).all() and (att[1, 2, 5, 6:] == 0).all()
    finite = np.ones(att.shape, bool)
    finite[1, 2, 5] = False
    assert np.isfinite(att[finite]).all()
    assert (np.triu(att, 1) == 0).all()


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("N, V", [(1, 2), (7, 11), (768, 65)])
@pytest.mark.parametrize("ignore", [False, True])
def test_cross_entropy_twin(rng, dtype, N, V, ignore):
    logits = randn(rng, (N, V), dtype, 4.0)
    targets = rng.integers(0, V, N)
    if ignore and N > 1:
        targets[::2] = -1
    kw = {"ignore_index": -1} if ignore else {}
    loss_r, cache_r = ops.cross_entropy_forward(logits, targets, **kw)
    loss_f, cache_f = kernels.cross_entropy_forward(logits, targets, **kw)
    assert abs(loss_r - loss_f) <= TOL[dtype] * max(abs(loss_r), 1.0)
    assert_twins_equal(ops.cross_entropy_backward(1.0, cache_r), kernels.cross_entropy_backward(1.0, cache_f), dtype)


def test_cross_entropy_twin_huge_logits():
    logits = np.array([[1e4, -1e4, 0.0], [-1e4, 1e4, -1e4]], dtype=np.float32)
    loss, cache = kernels.cross_entropy_forward(logits, np.array([1, 1]))
    assert loss == pytest.approx(1e4)
    assert np.all(np.isfinite(kernels.cross_entropy_backward(1.0, cache)))


@pytest.mark.parametrize("dtype", DTYPES)
def test_embedding_backward_twin(rng, dtype):
    idx = rng.integers(0, 7, (3, 11))
    idx[0, :4] = 2                                 # repeated ids accumulate
    _, cache = ops.embedding_forward(idx, np.zeros((7, 5), dtype))
    dout = randn(rng, (3, 11, 5), dtype)
    assert_twins_equal(ops.embedding_backward(dout, cache), kernels.embedding_backward(dout, cache), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("decay", [0.0, 0.1])
def test_adamw_update_twin(rng, dtype, decay):
    p, g, m, v = (randn(rng, (13, 7), dtype) for _ in range(4))
    v = np.abs(v)
    reference = [a.copy() for a in (p, m, v)]
    fast = [a.copy() for a in (p, m, v)]
    for step in (1, 2, 3):
        ops.adamw_update(reference[0], g, reference[1], reference[2], 1e-2, 0.9, 0.99, 1e-8, decay, step)
        kernels.adamw_update(fast[0], g, fast[1], fast[2], 1e-2, 0.9, 0.99, 1e-8, decay, step)
    for r, f in zip(reference, fast):
        assert_twins_equal(r, f, dtype)


@pytest.mark.parametrize("backend", ["numpy", "numba"])
@pytest.mark.parametrize("pos_encoding", ["learned", "sinusoidal"])
@pytest.mark.slow
def test_whole_model_gradcheck_on_each_backend(rng, backend, pos_encoding):
    model = GPT(GPTConfig(vocab_size=11, block_size=8, n_layer=2, n_head=2, n_embd=8,
                          pos_encoding=pos_encoding), dtype=np.float64)
    jitter(model.params, seed=5)
    idx, targets = rng.integers(0, 11, (2, 5)), rng.integers(0, 11, (2, 5))
    with use_backend(backend):
        report = check_model(model, idx, targets)
    assert report.max_rel_error <= 1e-6, f"\n{report}"


def test_training_gives_the_same_losses_on_both_backends(tmp_path):
    text = "a cat sat on the mat; the dog ate the log. " * 30
    losses = {}
    for backend in ("numpy", "numba"):
        data = npgpt.Dataset(text, cache=False)
        config = GPTConfig(vocab_size=data.vocab_size, block_size=16, n_layer=2, n_head=2, n_embd=16)
        trainer = npgpt.Trainer(GPT(config), data, npgpt.TrainConfig(max_iters=6, batch_size=4, eval_interval=6,
                                                                     warmup_iters=2))
        with use_backend(backend):
            trainer.train(progress=False, log=lambda *_: None)
        losses[backend] = trainer.history["train_loss"]
    np.testing.assert_allclose(losses["numba"], losses["numpy"], rtol=1e-5)
    assert losses["numpy"][-1] < losses["numpy"][0]


def test_backend_switch():
    assert npgpt.get_backend() in ("numpy", "numba")
    with use_backend("numpy") as F:
        assert npgpt.get_backend() == "numpy" and F.layernorm_forward is ops.layernorm_forward
        with use_backend("numba") as G:
            assert G.layernorm_forward is kernels.layernorm_forward
        assert npgpt.get_backend() == "numpy"
    with pytest.raises(ValueError, match="backend must be one of \\('numpy', 'numba'\\), got 'cuda'"):
        npgpt.set_backend("cuda")


@pytest.mark.slow
def test_backend_from_environment():
    import subprocess
    import sys
    code = "import npgpt; print(npgpt.get_backend())"
    for name in ("numpy", "numba"):
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                             env={**__import__("os").environ, "NPGPT_BACKEND": name}).stdout.strip()
        assert out == name


@pytest.mark.parametrize("dtype", DTYPES)
def test_kernels_propagate_nan(dtype):
    """A diverged model must show a NaN loss, not a finite number or an exception."""
    logits = np.ones((3, 5), dtype)
    logits[1, 2] = np.nan
    loss, _ = kernels.cross_entropy_forward(logits, np.array([0, 1, 2]))
    assert np.isnan(loss)
    x = np.ones((2, 4), dtype)
    x[0, 1] = np.nan
    y, _ = kernels.layernorm_forward(x, np.ones(4, dtype), np.zeros(4, dtype))
    assert np.isnan(y[0]).all() and np.isfinite(y[1]).all()
    a, cache = kernels.mlp_forward(x, np.eye(4, 8, dtype=dtype), np.zeros(8, dtype), np.eye(8, 4, dtype=dtype),
                                   np.zeros(4, dtype))
    assert np.isnan(a[0, 1]) and np.isfinite(a[1]).all()
    dx, _, db_fc, _, _ = kernels.mlp_backward(np.ones_like(a), cache)
    assert np.isnan(dx[0, 1]) and np.isnan(db_fc[1]) and np.isfinite(dx[1]).all()


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape, V", [((1, 4), 5), ((2, 1, 9), 13), ((8, 33), 7), ((3, 3, 16), 11)])
@pytest.mark.parametrize("build", ["serial", "parallel"])
def test_head_forward_twin(rng, monkeypatch, dtype, shape, V, build):
    """A dot product per row of the table for up to 8 rows (a decoding step), BLAS beyond; the same
    cache either way, so the readable backward takes it."""
    from npgpt.kernels import _compile
    if build == "parallel":
        monkeypatch.setattr(_compile, "PARALLEL_MIN_WORK", 0)      # a table this small would run serial
    x = rng.standard_normal(shape).astype(dtype)
    table = rng.standard_normal((V, shape[-1])).astype(dtype)
    (ref, ref_cache), (fast, fast_cache) = ops.head_forward(x, table), kernels.head_forward(x, table)
    assert_twins_equal(ref, fast, dtype)
    assert fast.shape == (*shape[:-1], V)
    dlogits = rng.standard_normal(fast.shape).astype(dtype)
    assert_twins_equal(ops.linear_backward(dlogits, ref_cache), ops.linear_backward(dlogits, fast_cache), dtype)


def test_head_forward_twin_propagates_nan(rng):
    x = rng.standard_normal((2, 6)).astype(np.float32)
    table = rng.standard_normal((9, 6)).astype(np.float32)
    table[4, 2] = np.nan
    logits, _ = kernels.head_forward(x, table)
    assert np.isnan(logits[:, 4]).all() and np.isfinite(np.delete(logits, 4, axis=1)).all()
