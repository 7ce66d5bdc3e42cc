"""Low rank: the truncated SVD is as good as Eckart–Young says, energy picks the right rank, the
factorised linear op's backward passes the gradient check, and factorize rewrites a params dict."""
import re

import numpy as np
import pytest

from npgpt import check_op, ops
from npgpt.allocation.low_rank import factorize, gpt_linear_weights, low_rank, rank_for_energy


def assert_grads_ok(report):
    assert report.ok, f"\n{report}"


def with_spectrum(s, m, n, seed=0):
    """An (m, n) matrix whose singular values are ``s``: random orthonormal columns either side."""
    rng = np.random.default_rng(seed)
    P, _ = np.linalg.qr(rng.standard_normal((m, len(s))))
    Q, _ = np.linalg.qr(rng.standard_normal((n, len(s))))
    return P @ np.diag(s) @ Q.T


# ----------------------------------------------------------------------------- low_rank
@pytest.mark.parametrize("shape", [(7, 5), (4, 9)])
def test_the_error_is_what_the_dropped_singular_values_hold(rng, shape):
    w = rng.standard_normal(shape)
    s = np.linalg.svd(w, compute_uv=False)
    for k in range(1, min(shape)):
        U, V = low_rank(w, rank=k)
        assert U.shape == (shape[0], k) and V.shape == (k, shape[1])
        assert np.linalg.norm(w - U @ V) == pytest.approx(np.sqrt(np.sum(s[k:] ** 2)), rel=1e-12)
        assert np.linalg.norm(w - U @ V, 2) == pytest.approx(s[k], rel=1e-10)      # spectral: s_{k+1}


@pytest.mark.parametrize("shape", [(7, 5), (4, 9), (6, 6)])
def test_full_rank_reconstructs_exactly(rng, shape):
    w = rng.standard_normal(shape)
    U, V = low_rank(w, rank=min(shape))
    np.testing.assert_allclose(U @ V, w, rtol=0, atol=1e-13)


def test_the_split_is_balanced(rng):
    w = rng.standard_normal((8, 6))
    s = np.linalg.svd(w, compute_uv=False)
    U, V = low_rank(w, rank=4)
    np.testing.assert_allclose(U.T @ U, np.diag(s[:4]), atol=1e-12)   # both factors carry sqrt(s)
    np.testing.assert_allclose(V @ V.T, np.diag(s[:4]), atol=1e-12)


def test_the_factors_keep_a_float32_weights_dtype(rng):
    U, V = low_rank(rng.standard_normal((6, 5)).astype(np.float32), rank=2)
    assert U.dtype == V.dtype == np.float32


@pytest.mark.parametrize("energy, k", [(0.5, 1), (16 / 30 - 1e-9, 1), (16 / 30 + 1e-9, 2), (0.8, 2),
                                       (0.9, 3), (0.99, 4), (1.0, 4)])
def test_energy_picks_the_smallest_rank_that_keeps_it(energy, k):
    s = np.array([4.0, 3.0, 2.0, 1.0])          # s^2 = 16, 9, 4, 1 of 30: cumulative 16, 25, 29, 30
    w = with_spectrum(s, 9, 6)
    U, V = low_rank(w, energy=energy)
    assert U.shape[1] == k
    kept = np.sum(s[:k] ** 2) / 30
    assert kept >= energy - 1e-12 and (k == 1 or np.sum(s[:k - 1] ** 2) / 30 < energy)


def test_energy_one_stops_at_the_matrixs_rank():
    w = with_spectrum(np.array([3.0, 1.0]), 6, 5)          # rank 2, min(m, n) = 5
    assert low_rank(w, energy=1.0)[0].shape[1] == 2
    assert rank_for_energy(np.zeros(3), 0.5) == 1            # a zero matrix: one (zero) component


@pytest.mark.parametrize("kwargs, match", [
    ({"rank": 0}, "rank must be a positive integer, got 0"),
    ({"rank": -2}, "rank must be a positive integer, got -2"),
    ({"rank": 2.0}, "rank must be a positive integer, got 2.0"),
    ({"rank": 6}, r"rank=6 exceeds min\(m, n\) = 5 for w of shape \(5, 7\)"),
    ({"energy": 0.0}, r"energy must be in \(0, 1\], got 0.0"),
    ({"energy": 1.5}, r"energy must be in \(0, 1\], got 1.5"),
    ({"energy": -0.1}, r"energy must be in \(0, 1\], got -0.1"),
    ({"energy": float("nan")}, r"energy must be in \(0, 1\], got nan"),
    ({}, "give exactly one of rank and energy, got rank=None and energy=None"),
    ({"rank": 2, "energy": 0.9}, "give exactly one of rank and energy, got rank=2 and energy=0.9"),
])
def test_bad_choices_are_refused(rng, kwargs, match):
    with pytest.raises(ValueError, match=match):
        low_rank(rng.standard_normal((5, 7)), **kwargs)


@pytest.mark.parametrize("shape", [(5,), (2, 3, 4), ()])
def test_only_matrices_are_factorised(shape):
    with pytest.raises(ValueError, match=re.escape(f"w must be a 2-D matrix (in, out), got shape {shape}")):
        low_rank(np.ones(shape), rank=1)


def test_a_matrix_with_nan_is_refused():
    with pytest.raises(ValueError, match="w holds NaN or infinite values"):
        low_rank(np.array([[1.0, np.nan], [0.0, 1.0]]), rank=1)


# ----------------------------------------------------------------------------- the op
@pytest.mark.parametrize("bias", [True, False])
def test_low_rank_linear_gradcheck(rng, bias):
    inputs = {"x": rng.standard_normal((2, 3, 6)), "U": rng.standard_normal((6, 2)),
              "V": rng.standard_normal((2, 5)), "b": rng.standard_normal(5) if bias else None}
    wrt = ["x", "U", "V", "b"] if bias else ["x", "U", "V"]
    backward = ops.low_rank_linear_backward if bias else (lambda d, c: ops.low_rank_linear_backward(d, c)[:3])
    report = check_op(ops.low_rank_linear_forward, backward, inputs, wrt)
    assert_grads_ok(report)
    print(report)


def test_low_rank_linear_is_the_linear_layer_of_the_product(rng):
    x, U, V, b = rng.standard_normal((2, 3, 6)), rng.standard_normal((6, 2)), rng.standard_normal((2, 5)), \
        rng.standard_normal(5)
    y, _ = ops.low_rank_linear_forward(x, U, V, b)
    expected, _ = ops.linear_forward(x, U @ V, b)
    assert y.shape == (2, 3, 5)
    np.testing.assert_allclose(y, expected, rtol=1e-12, atol=1e-12)
    assert ops.low_rank_linear_backward(np.ones_like(y), ops.low_rank_linear_forward(x, U, V)[1])[3] is None


@pytest.mark.parametrize("shapes, match", [
    (((2, 6), (5, 2), (2, 4)), r"got x \(2, 6\), U \(5, 2\), V \(2, 4\)"),
    (((2, 6), (6, 2), (3, 4)), r"got x \(2, 6\), U \(6, 2\), V \(3, 4\)"),
])
def test_low_rank_linear_refuses_shapes_that_do_not_chain(shapes, match):
    with pytest.raises(ValueError, match=match):
        ops.low_rank_linear_forward(*(np.ones(s) for s in shapes))
    with pytest.raises(ValueError, match=r"b must have shape \(4,\) to match V \(2, 4\), got \(3,\)"):
        ops.low_rank_linear_forward(np.ones((2, 6)), np.ones((6, 2)), np.ones((2, 4)), np.ones(3))


# ----------------------------------------------------------------------------- factorize
def plain_params(rng):
    return {"a.weight": rng.standard_normal((8, 6)), "a.bias": rng.standard_normal(6),
            "ln.weight": rng.standard_normal(6),
            "b.weight": rng.standard_normal((6, 10)), "b.bias": rng.standard_normal(10)}


def test_factorize_replaces_the_chosen_weights_in_place_of_the_originals(rng):
    params = plain_params(rng)
    new, report = factorize(params, ["b.weight", "a.weight"], rank=3)
    assert list(new) == ["a.weight_u", "a.weight_v", "a.bias", "ln.weight", "b.weight_u", "b.weight_v", "b.bias"]
    assert new["a.weight_u"].shape == (8, 3) and new["a.weight_v"].shape == (3, 6)
    assert new["b.weight_u"].shape == (6, 3) and new["b.weight_v"].shape == (3, 10)
    for name in ("a.bias", "ln.weight", "b.bias"):               # copied, not shared
        np.testing.assert_array_equal(new[name], params[name])
        assert new[name] is not params[name]
    assert "a.weight" in params                                   # the input is left alone

    assert [row.name for row in report.rows] == ["b.weight", "a.weight"]
    assert report.ranks == {"b.weight": 3, "a.weight": 3}
    a = next(row for row in report.rows if row.name == "a.weight")
    assert (a.params_before, a.params_after) == (48, 3 * (8 + 6))
    assert report.total_before == sum(p.size for p in params.values())
    assert report.total_after == sum(p.size for p in new.values()) == report.total_before - 48 - 60 + 42 + 48
    s = np.linalg.svd(params["a.weight"], compute_uv=False)
    assert a.rel_error == pytest.approx(np.sqrt(np.sum(s[3:] ** 2) / np.sum(s ** 2)), rel=1e-10)
    assert "all parameters:" in str(report) and "a.weight" in str(report)


def test_factorized_pairs_compute_what_low_rank_gives(rng):
    params = plain_params(rng)
    new, _ = factorize(params, "a.weight", energy=1.0)
    x = rng.standard_normal((2, 3, 8))
    y, _ = ops.low_rank_linear_forward(x, new["a.weight_u"], new["a.weight_v"], new["a.bias"])
    expected, _ = ops.linear_forward(x, params["a.weight"], params["a.bias"])
    np.testing.assert_allclose(y, expected, rtol=1e-10, atol=1e-12)


def test_energy_chooses_a_rank_per_weight(rng):
    params = {"p.weight": with_spectrum(np.array([5.0, 0.1, 0.1]), 7, 6),
              "q.weight": with_spectrum(np.array([1.0, 1.0, 1.0]), 5, 9)}
    _, report = factorize(params, ["p.weight", "q.weight"], energy=0.99)
    assert report.ranks == {"p.weight": 1, "q.weight": 3}


def test_the_gpt_linear_weights_are_found():
    import npgpt
    model = npgpt.GPT(npgpt.GPTConfig(vocab_size=11, block_size=8, n_layer=2, n_head=2, n_embd=8))
    names = gpt_linear_weights(model.params)
    assert len(names) == 8 and all(model.params[n].ndim == 2 for n in names)
    new, report = factorize(model.params, names, rank=2)
    assert sum(n.endswith(("weight_u", "weight_v")) for n in new) == 16 and len(report.rows) == 8


@pytest.mark.parametrize("names, kwargs, match", [
    (["c.weight"], {"rank": 1}, "there is no parameter named 'c.weight' to factorize"),
    (["a.bias"], {"rank": 1}, "'a.bias' does not end in '.weight'"),
    (["ln.weight"], {"rank": 1}, r"ln.weight must be a 2-D matrix \(in, out\), got shape \(6,\)"),
    (["a.weight", "b.weight"], {"rank": 7}, r"rank=7 exceeds min\(m, n\) = 6 for a.weight of shape \(8, 6\)"),
    (["a.weight", "a.weight"], {"rank": 1}, "names lists a.weight more than once"),
    ([], {"rank": 1}, "names is empty"),
    (["a.weight"], {"energy": 2}, r"energy must be in \(0, 1\], got 2"),
    (["a.weight"], {}, "give exactly one of rank and energy"),
])
def test_factorize_refuses_bad_requests(rng, names, kwargs, match):
    with pytest.raises(ValueError, match=match):
        factorize(plain_params(rng), names, **kwargs)


def test_factorize_refuses_a_weight_already_factorized(rng):
    new, _ = factorize(plain_params(rng), ["a.weight"], rank=2)
    new["a.weight"] = np.ones((8, 6))
    with pytest.raises(ValueError, match="params already holds a.weight_u, a.weight_v"):
        factorize(new, ["a.weight"], rank=2)


# ----------------------------------------------------------------------------- a factorised GPT
def _gpt64():
    from npgpt import GPT, GPTConfig, jitter
    model = GPT(GPTConfig(vocab_size=11, block_size=8, n_layer=2, n_head=2, n_embd=8), dtype=np.float64)
    jitter(model.params, scale=0.3, seed=4)
    return model


def test_a_full_rank_factorised_gpt_computes_what_the_gpt_computes():
    from npgpt.allocation.low_rank import factorize_gpt
    model = _gpt64()
    factorised, report = factorize_gpt(model, rank=8)              # min(in, out) = 8 for every weight
    assert "transformer.h.0.mlp.c_fc.weight_u" in factorised.params
    assert factorised.config.rank("h.1.attn.c_proj") == 8
    idx = np.random.default_rng(0).integers(0, 11, (2, 8))
    np.testing.assert_allclose(factorised.forward(idx)[0], model.forward(idx)[0], rtol=1e-10, atol=1e-12)
    assert max(row.rel_error for row in report.rows) < 1e-12


@pytest.mark.parametrize("backend", ["numpy", "numba"])
@pytest.mark.slow
def test_a_factorised_gpt_passes_the_gradient_check(backend):
    from npgpt import check_model, jitter, use_backend
    from npgpt.allocation.low_rank import factorize_gpt
    factorised, _ = factorize_gpt(_gpt64(), names=["transformer.h.0.mlp.c_fc.weight",
                                                   "transformer.h.1.attn.c_attn.weight"], rank=3)
    jitter(factorised.params, scale=0.3, seed=6)
    idx = np.random.default_rng(1).integers(0, 11, (2, 6))
    with use_backend(backend):
        report = check_model(factorised, idx, np.roll(idx, -1, axis=1))
    assert report.max_rel_error <= 1e-6, f"\n{report}"
    assert {"transformer.h.0.mlp.c_fc.weight_u", "transformer.h.0.mlp.c_fc.weight_v"} <= {r.name for r in report.rows}


def test_a_factorised_gpt_generates_and_round_trips_a_checkpoint(tmp_path):
    from npgpt import Dataset, TrainConfig, Trainer, generate
    from npgpt.allocation.low_rank import factorize_gpt
    from npgpt.io.checkpoint import model_from_checkpoint
    data = Dataset("abcdefghij " * 60, cache_dir=tmp_path / "cache")
    from npgpt import GPT, GPTConfig
    model = GPT(GPTConfig(vocab_size=data.vocab_size, block_size=8, n_layer=2, n_head=2, n_embd=8))
    factorised, _ = factorize_gpt(model, energy=0.9)
    assert generate(factorised, [1, 2], 10).tolist() == generate(factorised, [1, 2], 10, use_cache=False).tolist()
    trainer = Trainer(factorised, data, TrainConfig(max_iters=3, batch_size=2, eval_interval=3, eval_iters=1),
                      data.tokenizer)
    trainer.train(checkpoint_path=tmp_path / "ckpt.npz", progress=False, log=lambda *_: None)
    loaded = model_from_checkpoint(tmp_path / "ckpt.npz")
    assert loaded.config == factorised.config
    for name, p in factorised.params.items():
        np.testing.assert_array_equal(loaded.params[name], p)
