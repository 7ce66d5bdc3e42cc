"""The numba attention core, in both builds (serial, parallel), equals the readable reference
(float64: relative error <= 1e-10, float32: <= 1e-5) on odd shapes, and lets a NaN through."""
import numpy as np
import pytest

import npgpt.kernels._compile as compile_
from npgpt import kernels, ops

TOL = {np.float64: 1e-10, np.float32: 1e-5}
SHAPES = [(1, 1, 4, 1), (2, 7, 3, 1), (1, 7, 15, 5), (2, 5, 5, 5), (3, 9, 9, 3), (2, 33, 24, 2)]   # (B, T, C, nh)


def rel_error(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(a)), 1e-30))


def attention_args(rng, dtype, B, T, C, nh, bias):
    def randn(shape, scale=1.0):
        return (scale * rng.standard_normal(shape)).astype(dtype)
    return (randn((B, T, C)), randn((C, 3 * C), C ** -0.5), randn(3 * C) if bias else None,
            randn((C, C), C ** -0.5), randn(C) if bias else None, nh)


@pytest.fixture(params=["serial", "parallel"])
def build(request, monkeypatch):
    monkeypatch.setattr(compile_, "PARALLEL_MIN_WORK", 10 ** 18 if request.param == "serial" else 0)
    return request.param


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("B, T, C, nh", SHAPES)
@pytest.mark.parametrize("bias", [True, False])
def test_attention_core_equals_reference(rng, build, dtype, B, T, C, nh, bias):
    args = attention_args(rng, dtype, B, T, C, nh, bias)
    out_r, cache_r, kv_r = ops.self_attention_forward(*args)
    out_f, cache_f, kv_f = kernels.self_attention_forward(*args)
    dout = (rng.standard_normal(out_r.shape)).astype(dtype)
    reference = (out_r, *kv_r, ops.self_attention_weights(cache_r), *ops.self_attention_backward(dout, cache_r))
    fast = (out_f, *kv_f, kernels.self_attention_weights(cache_f), *kernels.self_attention_backward(dout, cache_f))
    for r, f in zip(reference, fast, strict=True):
        if r is None:
            assert f is None
            continue
        assert f.dtype == r.dtype and f.shape == r.shape
        assert rel_error(r, f) <= TOL[dtype], rel_error(r, f)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_attention_core_propagates_nan(rng, build, dtype):
    """A NaN in one sequence's input shows in that sequence's output and gradient, not in another's."""
    args = list(attention_args(rng, dtype, 2, 6, 8, 2, True))
    args[0][0, 3, 1] = np.nan
    out, cache, _ = kernels.self_attention_forward(*args)
    assert np.isnan(out[0, 3:]).any() and np.isfinite(out[1]).all()
    dx = kernels.self_attention_backward(np.ones_like(out), cache)[0]
    assert np.isnan(dx[0]).any() and np.isfinite(dx[1]).all()
