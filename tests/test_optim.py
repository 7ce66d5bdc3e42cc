"""Optimizers, schedule and clipping: steps worked out by hand, weight decay only on matrices,
state dicts that resume exactly, the same trajectories as torch.optim, and bad input."""
import io
import itertools
import math

import numpy as np
import pytest
from references import optional_reference

from npgpt.training.optim import SGD, AdamW, clip_grad_norm, decays, lr_schedule


def tiny_params():
    """A 2-D "weight" (decayed) and a 1-D "bias" (never decayed)."""
    return {"w": np.array([[1.0, 2.0]]), "b": np.array([1.0])}


# ----------------------------------------------------------------------------- SGD
def test_sgd_without_momentum_is_gradient_descent():
    params = tiny_params()
    SGD(params, lr=0.1).step({"w": np.array([[0.5, -1.0]]), "b": np.array([2.0])})
    # p - lr * g
    np.testing.assert_allclose(params["w"], [[1.0 - 0.05, 2.0 + 0.1]], rtol=0, atol=1e-15)
    np.testing.assert_allclose(params["b"], [1.0 - 0.2], rtol=0, atol=1e-15)


def test_sgd_momentum_and_weight_decay_by_hand():
    params = tiny_params()
    opt = SGD(params, lr=0.1, momentum=0.9, weight_decay=0.1)
    grads = {"w": np.array([[0.5, -1.0]]), "b": np.array([2.0])}
    expected_w = [
        # g' = g + 0.1 w = [0.6, -0.8]; v = g'; w -= 0.1 v
        [[0.94, 2.08]],
        # g' = [0.5 + 0.094, -1 + 0.208] = [0.594, -0.792]; v = 0.9 [0.6, -0.8] + g' = [1.134, -1.512]
        [[0.94 - 0.1134, 2.08 + 0.1512]],
        # g' = [0.5 + 0.08266, -1 + 0.22312]; v = 0.9 [1.134, -1.512] + g' = [1.60326, -2.13768]
        [[0.8266 - 0.160326, 2.2312 + 0.213768]],
    ]
    # the bias is not decayed: v = 2, 3.8, 5.42
    expected_b = [[0.8], [0.8 - 0.38], [0.42 - 0.542]]
    for w, b in zip(expected_w, expected_b):
        opt.step(grads)
        # the hand numbers are exact decimals; 1e-12 covers float64 rounding of ~10 operations
        np.testing.assert_allclose(params["w"], w, rtol=0, atol=1e-12)
        np.testing.assert_allclose(params["b"], b, rtol=0, atol=1e-12)


def test_sgd_lr_override_applies_to_that_step_only():
    params = tiny_params()
    opt = SGD(params, lr=0.1)
    grads = {"w": np.zeros((1, 2)), "b": np.array([1.0])}
    opt.step(grads, lr=0.5)
    assert params["b"][0] == pytest.approx(0.5, abs=1e-15)
    opt.step(grads)
    assert params["b"][0] == pytest.approx(0.4, abs=1e-15)
    assert opt.lr == 0.1


# ----------------------------------------------------------------------------- AdamW
def test_adamw_by_hand():
    """Three steps, grads 1, 3, -2, lr 0.1, betas (0.9, 0.999), weight decay 0.5 on the matrix only.

    step 1: m = 0.1,  v = 0.001;     m_hat = 1,            v_hat = 1               -> update 0.1
    step 2: m = 0.39, v = 0.009999;  m_hat = 0.39 / 0.19,  v_hat = 0.009999 / 0.001999
    step 3: m = 0.151, v = 0.013989001; m_hat = 0.151 / 0.271, v_hat = 0.013989001 / 0.002997001
    update = 0.1 m_hat / (sqrt(v_hat) + 1e-8); the matrix is first shrunk by (1 - 0.1 * 0.5).
    """
    params = {"w": np.array([[2.0]]), "b": np.array([1.0])}
    opt = AdamW(params, lr=0.1, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.5)
    updates = [0.1 * 1 / (1 + 1e-8),
               0.1 * (0.39 / 0.19) / (math.sqrt(0.009999 / 0.001999) + 1e-8),
               0.1 * (0.151 / 0.271) / (math.sqrt(0.013989001 / 0.002997001) + 1e-8)]
    assert updates[1] == pytest.approx(0.091778, abs=1e-6)       # the numbers, for a reader
    assert updates[2] == pytest.approx(0.025790, abs=1e-6)
    w, b = 2.0, 1.0
    for g, update in zip([1.0, 3.0, -2.0], updates):
        opt.step({"w": np.array([[g]]), "b": np.array([g])})
        w, b = w * (1 - 0.1 * 0.5) - update, b - update
        # same formula evaluated in another order: agreement to float64 rounding
        assert params["w"][0, 0] == pytest.approx(w, rel=0, abs=1e-13)
        assert params["b"][0] == pytest.approx(b, rel=0, abs=1e-13)
    assert (params["w"][0, 0], params["b"][0]) == pytest.approx((1.511520415, 0.782431509), abs=1e-9)


def test_adamw_first_step_moves_each_entry_by_lr():
    """Bias correction makes step 1 exactly -lr * sign(g) (up to eps), whatever |g| is."""
    params = {"b": np.array([1.0, 1.0, 1.0])}
    AdamW(params, lr=0.01).step({"b": np.array([1e-3, -5.0, 200.0])})
    # eps = 1e-8 against |g| >= 1e-3 shifts the update by at most 1e-5 relative, i.e. 1e-7 absolute
    np.testing.assert_allclose(params["b"], [0.99, 1.01, 0.99], rtol=0, atol=1e-7)


@pytest.mark.parametrize("make", [lambda p: SGD(p, lr=0.1, weight_decay=0.5),
                                  lambda p: AdamW(p, lr=0.1, weight_decay=0.5)])
def test_weight_decay_only_on_matrices(make):
    """With zero gradients the only change is decay: the matrix shrinks, the vector does not."""
    params = {"wte": np.full((3, 2), 2.0), "ln.weight": np.full(2, 2.0), "bias": np.full(2, 2.0)}
    opt = make(params)
    opt.step({k: np.zeros_like(p) for k, p in params.items()})
    np.testing.assert_allclose(params["wte"], 2.0 * (1 - 0.1 * 0.5), rtol=1e-15)
    assert np.all(params["ln.weight"] == 2.0) and np.all(params["bias"] == 2.0)
    assert decays(params["wte"]) and not decays(params["bias"])


def test_float32_params_stay_float32_and_in_place():
    params = {"w": np.ones((2, 2), np.float32), "b": np.ones(2, np.float32)}
    arrays = dict(params)
    AdamW(params, lr=0.1, weight_decay=0.1).step({"w": np.ones((2, 2)), "b": np.ones(2, np.float32)})
    for name, p in params.items():
        assert p is arrays[name] and p.dtype == np.float32
    assert np.all(params["b"] < 1)


# ----------------------------------------------------------------------------- state dicts
@pytest.mark.parametrize("make", [lambda p: SGD(p, lr=0.05, momentum=0.9, weight_decay=0.1),
                                  lambda p: AdamW(p, lr=0.05, weight_decay=0.1)])
def test_state_dict_round_trip_through_npz_resumes_exactly(make, rng):
    shapes = {"w": (3, 4), "b": (4,)}
    params = {k: rng.normal(size=s) for k, s in shapes.items()}
    grads = [{k: rng.normal(size=s) for k, s in shapes.items()} for _ in range(3)]
    opt = make(params)
    opt.step(grads[0])
    opt.step(grads[1])

    buffer = io.BytesIO()
    np.savez(buffer, **opt.state_dict())
    buffer.seek(0)
    with np.load(buffer, allow_pickle=False) as npz:
        state = dict(npz)
    resumed_params = {k: p.copy() for k, p in params.items()}
    resumed = make(resumed_params)
    resumed.load_state_dict(state)

    opt.step(grads[2])
    resumed.step(grads[2])
    assert resumed.t == opt.t == 3
    for k, p in params.items():
        np.testing.assert_array_equal(resumed_params[k], p)   # bit for bit


def test_state_dict_holds_arrays_only():
    state = AdamW(tiny_params()).state_dict()
    assert set(state) == {"step", "m.w", "m.b", "v.w", "v.b"}
    assert all(isinstance(a, np.ndarray) for a in state.values())


def test_load_state_dict_names_bad_keys_and_shapes():
    opt = AdamW(tiny_params())
    state = opt.state_dict()
    with pytest.raises(ValueError, match=r"missing keys: m\.w"):
        opt.load_state_dict({k: a for k, a in state.items() if k != "m.w"})
    with pytest.raises(ValueError, match=r"unexpected keys: momentum_buffer\.w"):
        opt.load_state_dict({**state, "momentum_buffer.w": np.zeros((1, 2))})
    with pytest.raises(ValueError, match=r"mis-shaped keys: v\.b: expected \(1,\), got \(3,\)"):
        opt.load_state_dict({**state, "v.b": np.zeros(3)})
    with pytest.raises(ValueError, match="step"):
        opt.load_state_dict({**state, "step": np.array(-1)})
    # an SGD without momentum has no buffers, so an AdamW state does not fit it
    with pytest.raises(ValueError, match="unexpected keys"):
        SGD(tiny_params(), lr=0.1).load_state_dict(state)


def test_step_names_mismatched_grads():
    opt = SGD(tiny_params(), lr=0.1)
    with pytest.raises(ValueError, match="missing grads: b"):
        opt.step({"w": np.zeros((1, 2))})
    with pytest.raises(ValueError, match="unknown params: extra"):
        opt.step({"w": np.zeros((1, 2)), "b": np.zeros(1), "extra": np.zeros(1)})
    with pytest.raises(ValueError, match=r"mis-shaped grads: w"):
        opt.step({"w": np.zeros((2, 1)), "b": np.zeros(1)})


# ----------------------------------------------------------------------------- against PyTorch
def torch_trajectory(torch, make_torch_opt, params, grads_per_step):
    """Run torch.optim on float64 copies, with decay for ndim >= 2 only (two param groups)."""
    tensors = {k: torch.tensor(p, dtype=torch.float64, requires_grad=True) for k, p in params.items()}
    groups = [{"params": [t for t in tensors.values() if t.ndim >= 2]},
              {"params": [t for t in tensors.values() if t.ndim < 2], "weight_decay": 0.0}]
    opt = make_torch_opt(groups)
    for grads in grads_per_step:
        for k, t in tensors.items():
            t.grad = torch.tensor(grads[k], dtype=torch.float64)
        opt.step()
    return {k: t.detach().numpy() for k, t in tensors.items()}


@pytest.mark.parametrize("which", ["adamw", "sgd"])
def test_matches_torch_optim(which, rng):
    torch = optional_reference("torch", reason="the reference optimizers")
    shapes = {"wte": (5, 3), "h.0.attn.weight": (3, 6), "h.0.attn.bias": (6,), "ln.weight": (3,)}
    params = {k: rng.normal(size=s) for k, s in shapes.items()}
    grads_per_step = [{k: rng.normal(size=s) for k, s in shapes.items()} for _ in range(6)]
    if which == "adamw":
        ours = AdamW({k: p.copy() for k, p in params.items()}, lr=0.01, betas=(0.8, 0.95),
                     eps=1e-6, weight_decay=0.1)
        theirs = torch_trajectory(torch, lambda g: torch.optim.AdamW(
            g, lr=0.01, betas=(0.8, 0.95), eps=1e-6, weight_decay=0.1), params, grads_per_step)
    else:
        ours = SGD({k: p.copy() for k, p in params.items()}, lr=0.05, momentum=0.9, weight_decay=0.1)
        theirs = torch_trajectory(torch, lambda g: torch.optim.SGD(
            g, lr=0.05, momentum=0.9, weight_decay=0.1), params, grads_per_step)
    for grads in grads_per_step:
        ours.step(grads)
    for k in params:
        # same float64 formula, different operation order: agreement to ~1e-15 per step
        np.testing.assert_allclose(ours.params[k], theirs[k], rtol=1e-12, atol=1e-14, err_msg=k)


# ----------------------------------------------------------------------------- schedule
def test_lr_schedule_at_key_points():
    kw = {"max_lr": 1.0, "min_lr": 0.1, "warmup_steps": 10, "total_steps": 110}
    assert lr_schedule(0, **kw) == pytest.approx(1 / 11, abs=1e-15)       # (0 + 1) / (10 + 1)
    assert lr_schedule(9, **kw) == pytest.approx(10 / 11, abs=1e-15)      # last warmup step
    assert lr_schedule(10, **kw) == pytest.approx(1.0, abs=1e-15)         # cosine starts at max
    assert lr_schedule(60, **kw) == pytest.approx(0.55, abs=1e-15)        # halfway: (max + min) / 2
    assert lr_schedule(110, **kw) == pytest.approx(0.1, abs=1e-15)        # end: min
    assert lr_schedule(500, **kw) == 0.1                                  # after the end: min
    assert lr_schedule(35, **kw) == pytest.approx(0.1 + 0.45 * (1 + math.cos(math.pi / 4)), abs=1e-15)
    decay = [lr_schedule(s, **kw) for s in range(10, 111)]
    assert all(a >= b for a, b in itertools.pairwise(decay))


def test_lr_schedule_with_warmup_longer_than_the_run_never_decays():
    """W >= S: the whole run is warmup (nanoGPT's order of cases), then min_lr from step W."""
    lrs = [lr_schedule(s, max_lr=1.0, min_lr=0.1, warmup_steps=4, total_steps=2) for s in range(6)]
    assert lrs == pytest.approx([0.2, 0.4, 0.6, 0.8, 0.1, 0.1], abs=1e-15)


def test_lr_schedule_without_warmup_starts_at_max():
    assert lr_schedule(0, max_lr=3e-4, min_lr=0.0, warmup_steps=0, total_steps=100) == 3e-4


# ----------------------------------------------------------------------------- clipping
def test_clip_grad_norm_below_threshold_leaves_grads_alone():
    grads = {"a": np.array([3.0]), "b": np.array([[4.0]])}
    assert clip_grad_norm(grads, max_norm=10.0) == 5.0                    # sqrt(9 + 16)
    assert grads["a"][0] == 3.0 and grads["b"][0, 0] == 4.0


def test_clip_grad_norm_above_threshold_scales_to_max_norm():
    grads = {"a": np.array([3.0]), "b": np.array([[4.0]])}
    assert clip_grad_norm(grads, max_norm=1.0) == 5.0                     # the norm before clipping
    # scaled by 1 / (5 + 1e-6): direction kept, norm 1 - 2e-7
    np.testing.assert_allclose([grads["a"][0], grads["b"][0, 0]], [0.6, 0.8], rtol=1e-6)
    assert math.hypot(grads["a"][0], grads["b"][0, 0]) == pytest.approx(1.0, abs=1e-6)


def test_clip_grad_norm_leaves_non_finite_grads_for_the_caller():
    grads = {"a": np.array([np.inf, 1.0])}
    assert clip_grad_norm(grads, 1.0) == math.inf
    assert grads["a"][1] == 1.0


# ----------------------------------------------------------------------------- bad input
@pytest.mark.parametrize("build, match", [
    (lambda: SGD(tiny_params(), lr=-0.1), "lr must be a finite number >= 0, got -0.1"),
    (lambda: SGD(tiny_params(), lr=0.1, momentum=1.0), "momentum .* got 1.0"),
    (lambda: SGD(tiny_params(), lr=0.1, weight_decay=-1), "weight_decay .* got -1"),
    (lambda: SGD({}, lr=0.1), "non-empty dict"),
    (lambda: AdamW(tiny_params(), lr=float("nan")), "lr must be a finite number >= 0, got nan"),
    (lambda: AdamW(tiny_params(), betas=(0.9, 1.0)), r"betas\[1\] .* got 1.0"),
    (lambda: AdamW(tiny_params(), betas=(-0.1, 0.9)), r"betas\[0\] .* got -0.1"),
    (lambda: AdamW(tiny_params(), betas=0.9), "betas must be a pair"),
    (lambda: AdamW(tiny_params(), eps=-1e-8), "eps .* got -1e-08"),
    (lambda: AdamW(tiny_params()).step({"w": np.zeros((1, 2)), "b": np.zeros(1)}, lr=-1.0), "got -1.0"),
    (lambda: lr_schedule(-1, 1.0, 0.1, 10, 100), "step .* got -1"),
    (lambda: lr_schedule(0, 1.0, 2.0, 10, 100), r"min_lr must be in \[0, 1\], got 2.0"),
    (lambda: lr_schedule(0, 1.0, 0.1, 10, -5), "total_steps .* got -5"),
    (lambda: lr_schedule(0, 1.0, 0.1, -1, 5), "warmup_steps .* got -1"),
    (lambda: clip_grad_norm({"a": np.ones(1)}, 0.0), "max_norm .* got 0.0"),
])
def test_bad_input_names_the_value(build, match):
    with pytest.raises(ValueError, match=match):
        build()
