"""Weights-only quantization (npgpt/allocation/quantize.py), the quantized model
(npgpt/models/quantized.py) and its one-token numba kernel (npgpt/kernels/quantized.py).

Tolerances, and why:
- one tensor: |w - dequantized| <= scale/2 elementwise, plus the two roundings of the float
  arithmetic (w / s and q * s), at most (2Q + 1) ulp-of-1 times s (:func:`error_bound`).
- the whole model against the float one, relative to the largest logit: int8 <= 2%, int4 with
  groups of 64 <= 30%. Every weight moves by at most s/2, a rounding error spread evenly over
  [-s/2, s/2], so about s/sqrt(12) in RMS. GPT-2's initialisation draws N(0, sigma) weights; a
  channel's absmax is about 3 sigma (int8, 128-512 rows), a group of 64's about 2.4 sigma, so the
  weights move by about 3/(127 sqrt 12) = 0.7% (int8) and 2.4/(7 sqrt 12) = 10% (int4) of their
  size, and the logits, sums of many such products, by about as much: measured 0.6% and 10%.
  The tolerances are three times that.
- kernel against the readable step: the kernel sums x_i q_i first and multiplies by the scale
  once, the readable path multiplies every weight: the same sums reassociated, so the relative
  error is float rounding: <= 1e-5 (float32), <= 1e-10 (float64), as for every numba twin.
"""
import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from references import optional_reference

import npgpt
from npgpt import GPT, GPTConfig, ops
from npgpt import kernels as numba_ops
from npgpt.allocation.quantize import (
    QMAX,
    QuantizedGPT,
    dequantize_blocks,
    dequantize_tensor,
    load_quantized,
    pack_int4,
    quantize_model,
    quantize_tensor,
    quantized_decode_step_forward,
    save_quantized,
    unpack_int4,
)
from npgpt.kernels import head as head_kernel
from npgpt.kernels import quantized as kernel
from npgpt.models import DecodingCache, Model
from npgpt.models import quantized as quantized_module
from npgpt.models.gpt import stack_blocks

TINY = GPTConfig(vocab_size=11, block_size=12, n_layer=2, n_head=2, n_embd=8)
TWIN_TOL = {np.float32: 1e-5, np.float64: 1e-10}


def error_bound(scale, bits, axis, group, shape, dtype):
    """Each entry's bound: s/2 and the rounding of w / s and q s (module docstring)."""
    per_entry = np.repeat(scale, group, axis=1 - axis).astype(np.float64)
    return per_entry * (0.5 + (2 * QMAX[bits] + 1) * np.finfo(dtype).eps)


def rel_error(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(a)), 1e-30))


# ----------------------------------------------------------------------------- one tensor
@st.composite
def matrices(draw):
    """(w, bits, axis, group_size): a random float matrix whose channels split into groups."""
    bits, axis = draw(st.sampled_from([4, 8])), draw(st.sampled_from([0, 1]))
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    group = draw(st.integers(1, 9))
    n_groups, channels = draw(st.integers(1, 4)), draw(st.integers(1, 7))
    shape = [0, 0]
    shape[axis], shape[1 - axis] = channels, group * n_groups
    elements = st.floats(-1e6, 1e6, width=np.dtype(dtype).itemsize * 8, allow_subnormal=True)
    w = draw(hnp.arrays(dtype, tuple(shape), elements=elements))
    w = w * draw(st.sampled_from([1.0, 1e-30, 1e-40]))          # tiny and subnormal channels too
    group_size = draw(st.sampled_from([None, group]))
    return w.astype(dtype), bits, axis, group_size


@settings(max_examples=300, deadline=None)
@given(matrices())
@pytest.mark.slow
def test_every_error_is_at_most_half_a_scale(case):
    w, bits, axis, group_size = case
    q, scale = quantize_tensor(w, bits, axis, group_size)
    group = group_size or w.shape[1 - axis]
    assert q.dtype == np.int8 and q.shape == w.shape and scale.dtype == w.dtype
    assert np.abs(q.astype(int)).max() <= QMAX[bits]
    assert (scale > 0).all()
    w_hat = dequantize_tensor(q, scale, axis, group_size)
    assert w_hat.dtype == w.dtype
    error = np.abs(w.astype(np.float64) - w_hat.astype(np.float64))
    assert (error <= error_bound(scale, bits, axis, group, w.shape, w.dtype)).all()


def test_scale_is_the_absmax_over_q_per_channel_and_per_group(rng):
    w = rng.standard_normal((8, 3)).astype(np.float32)
    _, scale = quantize_tensor(w, 8, axis=1)
    np.testing.assert_array_equal(scale, np.abs(w).max(axis=0, keepdims=True) / np.float32(127))
    _, scale = quantize_tensor(w, 4, axis=1, group_size=4)
    assert scale.shape == (2, 3)
    np.testing.assert_array_equal(scale[1], np.abs(w[4:]).max(axis=0) / np.float32(7))
    _, scale = quantize_tensor(w, 8, axis=0, group_size=3)          # rows are channels here
    assert scale.shape == (8, 1)


@pytest.mark.parametrize("axis, group_size", [(1, None), (1, 3), (0, None), (0, 2)])
def test_dequantizing_a_transposed_view_gives_the_same_matrix(rng, axis, group_size):
    """q stored transposed (a QuantizedGPT's per-channel int8) is dequantized in its memory order;
    the values are the C-ordered matrix's exactly."""
    w = rng.standard_normal((6, 12)).astype(np.float32)
    q, scale = quantize_tensor(w, 8, axis, group_size)
    view = np.ascontiguousarray(q.T).T
    assert not view.flags.c_contiguous
    np.testing.assert_array_equal(dequantize_tensor(view, scale, axis, group_size),
                                  dequantize_tensor(q, scale, axis, group_size))


def test_rounding_is_half_to_even():
    # absmax 127 makes the scale exactly 1, so w / s is w itself: exact halves
    w = np.array([[127, 0.5, 1.5, 2.5, -0.5, -1.5, -2.5, 3.5, 126.5]], np.float32).T
    q, scale = quantize_tensor(w, 8, axis=1)
    assert scale.item() == 1.0
    assert q.ravel().tolist() == [127, 0, 2, 2, 0, -2, -2, 4, 126]
    w = np.array([[7, 0.5, 1.5, 2.5, -2.5, 6.5]], np.float64)           # int4: absmax 7, scale 1
    q, scale = quantize_tensor(w, 4, axis=0)
    assert scale.item() == 1.0 and q.ravel().tolist() == [7, 0, 2, 2, -2, 6]


def test_a_zero_channel_gets_the_smallest_normal_scale():
    w = np.zeros((4, 2), np.float32)
    w[:, 1] = [1e-41, -3e-42, 0, 0]                          # subnormal: its scale must not be
    q, scale = quantize_tensor(w, 8, axis=1)
    assert (scale == np.finfo(np.float32).tiny).all()
    assert (q == 0).all() and (dequantize_tensor(q, scale, 1) == 0).all()
    with np.errstate(all="raise"):                           # nothing divides by zero
        quantize_tensor(np.zeros((3, 3)), 4, axis=0, group_size=3)


@pytest.mark.filterwarnings("ignore:torch.quantize_per_tensor:UserWarning")
@pytest.mark.parametrize("axis", [0, 1])
def test_int8_equals_torch_quantize_per_channel(rng, axis):
    torch = optional_reference("torch", reason="the reference quantization")
    w = (rng.standard_normal((96, 40)) * rng.uniform(0.01, 3.0, 40)).astype(np.float32)
    w[:, 7] = 0.0
    q, scale = quantize_tensor(w, 8, axis)
    reference = torch.quantize_per_channel(
        torch.from_numpy(w), torch.from_numpy(scale.ravel().astype(np.float64)),
        torch.zeros(scale.size, dtype=torch.int64), axis, torch.qint8).int_repr().numpy()
    np.testing.assert_array_equal(q, reference)


# ----------------------------------------------------------------------------- int4 packing
@settings(max_examples=200, deadline=None)
@given(st.data())
def test_pack_unpack_round_trip(data):
    shape = data.draw(hnp.array_shapes(min_dims=1, max_dims=3, max_side=7))
    axis = data.draw(st.integers(-len(shape), len(shape) - 1))
    q = data.draw(hnp.arrays(np.int8, shape, elements=st.integers(-8, 7)))
    packed = pack_int4(q, axis=axis)
    assert packed.dtype == np.uint8 and packed.shape[axis] == (shape[axis] + 1) // 2
    restored = unpack_int4(packed, shape[axis], axis=axis)
    assert restored.dtype == np.int8
    np.testing.assert_array_equal(restored, q)


def test_pack_layout_low_nibble_first_twos_complement():
    assert pack_int4(np.array([1, -1, -8, 7, 3])).tolist() == [0xF1, 0x78, 0x03]


def test_pack_and_unpack_reject_bad_input():
    with pytest.raises(ValueError, match=r"int4 values must lie in \[-8, 7\], got values from -9 to 2"):
        pack_int4(np.array([-9, 2]))
    with pytest.raises(ValueError, match="must be an integer array"):
        pack_int4(np.array([0.5]))
    with pytest.raises(ValueError, match="length must be 5 or 6 for 3 packed bytes along axis -1, got 7"):
        unpack_int4(np.zeros(3, np.uint8), 7)
    with pytest.raises(ValueError, match="packed must be a uint8 array"):
        unpack_int4(np.zeros(3, np.int8), 6)


# ----------------------------------------------------------------------------- bad input
@pytest.mark.parametrize("bits", [3, 16, 0, True, "8", 8.5])
def test_bits_must_be_4_or_8(bits):
    with pytest.raises(ValueError, match=r"bits must be one of \(4, 8\), got"):
        quantize_tensor(np.ones((4, 4)), bits, 1)
    with pytest.raises(ValueError, match=r"bits must be one of \(4, 8\), got"):
        quantize_model(GPT(TINY), bits)


@pytest.mark.parametrize("group_size", [0, -4, 3, 2.0, True])
def test_group_size_must_be_positive_and_divide_the_rows(group_size):
    with pytest.raises(ValueError, match=rf"group_size must be None or a positive integer dividing the 8 "
                                         rf"entries of each channel \(axis 0 of shape \(8, 5\)\), got {group_size!r}"):
        quantize_tensor(np.ones((8, 5)), 4, 1, group_size)
    with pytest.raises(ValueError, match=r"dividing the n_embd=8 \(the rows of every quantized matrix\)"):
        quantize_model(GPT(TINY), 4, group_size)


def test_other_bad_input_is_named():
    with pytest.raises(ValueError, match="axis must be the channel axis of a 2-D matrix"):
        quantize_tensor(np.ones((2, 2)), 8, 2)
    with pytest.raises(ValueError, match=r"w must be a non-empty 2-D float32 or float64 matrix, got shape \(2, 2, 2\)"):
        quantize_tensor(np.ones((2, 2, 2)), 8, 1)
    with pytest.raises(ValueError, match="w holds NaN or infinite values"):
        quantize_tensor(np.array([[1.0, np.nan]]), 8, 1)
    q, scale = quantize_tensor(np.ones((4, 2)), 8, 1)
    with pytest.raises(ValueError, match=r"scale has shape \(1, 2\), expected \(2, 2\)"):
        dequantize_tensor(q, scale, 1, group_size=2)
    for model in (npgpt.RecurrentLM(npgpt.RecurrentConfig(vocab_size=5, block_size=4, n_embd=4, n_hidden=4, n_layer=1)),
                  {"transformer.wte.weight": np.ones((2, 2))}, quantize_model(GPT(TINY), 8)):
        with pytest.raises(ValueError, match=f"model must be a float npgpt.GPT, got {type(model).__name__}"):
            quantize_model(model, 8)
    with pytest.raises(ValueError, match="quantize_embeddings must be True or False, got 'yes'"):
        quantize_model(GPT(TINY), 8, quantize_embeddings="yes")


# ----------------------------------------------------------------------------- the model
@pytest.fixture(scope="module")
def baby():
    return GPT(GPTConfig.preset("baby"), seed=0)


@pytest.mark.parametrize("bits, group_size, tolerance", [(8, None, 0.02), (4, 64, 0.30)])
@pytest.mark.parametrize("quantize_embeddings", [False, True])
def test_logits_stay_close_to_the_float_model(rng, baby, bits, group_size, tolerance, quantize_embeddings):
    model = quantize_model(baby, bits, group_size, quantize_embeddings)
    idx = rng.integers(0, 65, (3, 64))
    expected, _ = baby.forward(idx)
    logits, loss = model.forward(idx, idx)
    assert logits.dtype == np.float32 and np.isfinite(loss)
    assert rel_error(expected, logits) <= tolerance


@pytest.mark.parametrize("cfg", [TINY, GPTConfig(vocab_size=11, block_size=12, n_layer=2, n_head=3, n_embd=9,
                                                 bias=False, tie_weights=False, pos_encoding="sinusoidal",
                                                 layer_norm_epsilon=0.25)],
                         ids=["gpt2-layout", "no-bias-untied-sinusoidal-eps"])
@pytest.mark.parametrize("bits, grouped", [(8, False), (4, False), (4, True), (8, True)])
@pytest.mark.parametrize("quantize_embeddings", [False, True])
def test_cached_steps_give_the_logits_of_the_whole_sequence(rng, cfg, bits, grouped, quantize_embeddings):
    """Through the readable step and the kernel; odd widths and groups of 3 rows included."""
    float_model = GPT(cfg, seed=3, dtype=np.float64)
    group_size = (4 if cfg.n_embd == 8 else 3) if grouped else None
    for backend in ("numpy", "numba"):                 # the readable step, then the kernel
        with npgpt.use_backend(backend):
            model = QuantizedGPT.from_float(float_model, bits, group_size, quantize_embeddings)
            idx = rng.integers(0, 11, (2, 9))
            whole, _ = model.forward(idx)
            cache = model.new_cache(batch_size=2)
            steps = [model.forward(idx[:, :4], cache=cache)[0]]
            steps += [model.forward(idx[:, t:t + 1], cache=cache)[0] for t in range(4, 9)]
            assert rel_error(whole, np.concatenate(steps, axis=1)) <= 1e-10
            dequantized = GPT(cfg, dtype=np.float64)              # the float model of the stored weights
            dequantized.load_state_dict({name: model.weight(name) for name in dequantized.params})
            assert rel_error(dequantized.forward(idx)[0], whole) <= 1e-12


@pytest.mark.parametrize("bits, group_size", [(8, None), (4, 64)])
@pytest.mark.slow
def test_generation_runs_from_the_quantized_weights(baby, bits, group_size):
    model = quantize_model(baby, bits, group_size)
    prompt = [1, 2, 3]
    for kwargs in (dict(strategy="greedy"), dict(strategy="top-k", temperature=0.9, top_k=20, seed=5)):
        cached = npgpt.generate(model, prompt, 40, **kwargs)             # the numba kernel
        assert cached.shape == (43,) and cached[:3].tolist() == prompt
        np.testing.assert_array_equal(npgpt.generate(model, prompt, 40, use_cache=False, **kwargs), cached)
        with npgpt.use_backend("numpy"):                                 # the readable step
            np.testing.assert_array_equal(npgpt.generate(model, prompt, 40, **kwargs), cached)
    long = npgpt.generate(model, prompt, 100)                  # past block_size: the window restarts
    np.testing.assert_array_equal(npgpt.generate(model, prompt, 100, use_cache=False), long)


def test_steps_read_the_models_own_stacks(baby):
    """The one-token step reads the integers where the model keeps them (no second copy of them, and
    none in the cache); an entry replaced by another array is read, from a copy, once the model
    checks its arrays again: at the next new_cache() or quantized_block_weights()."""
    model = quantize_model(baby, 8)
    blocks = model.quantized_block_weights()
    q, scale = model.quantized["transformer.h.2.mlp.c_fc.weight"]
    assert np.shares_memory(q, blocks["mlp.c_fc.weight"]) and np.shares_memory(scale, blocks["mlp.c_fc.weight.scale"])
    assert np.shares_memory(model.params["transformer.h.3.ln_1.weight"], blocks["ln_1.weight"])
    for kind in ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight"):
        read, by_output = kernel.matrix_form(blocks[kind], blocks[kind + ".scale"], packed=False)
        assert by_output and np.shares_memory(read, blocks[kind])      # per-channel int8: stored (out, in)
    cache = model.new_cache()
    assert not hasattr(cache, "blocks") and not hasattr(cache, "owner") and isinstance(cache, DecodingCache)
    idx = np.arange(6).reshape(1, 6)
    model.forward(idx[:, :5], cache=cache)
    name = "transformer.h.3.mlp.c_fc.weight"           # the last block's MLP: the cached keys stay valid
    model.quantized[name][0] = -model.quantized[name][0]
    # The steps and the whole forward read the same stored weights through different ops (the
    # readable step dequantizes the stacks, the forward each matrix): float32 rounding, 1e-5.
    with npgpt.use_backend("numpy"):
        expected = model.forward(idx)[0][:, -1]
        assert rel_error(expected, model.forward(idx, cache=model.new_cache())[0][:, -1]) <= 1e-5
        copied = model.quantized_block_weights()
        assert rel_error(expected, model.forward(idx[:, 5:], cache=cache)[0][:, -1]) <= 1e-5
    assert not np.shares_memory(copied["mlp.c_fc.weight"], q)
    read, by_output = kernel.matrix_form(copied["mlp.c_fc.weight"], copied["mlp.c_fc.weight.scale"], packed=False)
    assert by_output and np.shares_memory(read, copied["mlp.c_fc.weight"])
    np.testing.assert_array_equal(copied["mlp.c_fc.weight"][3], model.quantized[name][0])


def test_generating_never_builds_the_float_weights(baby, backend="numba"):
    """With a cache, the prompt runs block by block from one block's dequantized weights at a time
    and the new tokens through the quantized step: a generation allocates the KV cache, one block's
    float weights and the two temporaries of dequantizing one matrix (its integers as floats, its
    scales repeated: each at most the largest matrix), not the float copy of every block (3.1 MB
    for baby). Measured: 1.33 MB of the 1.57 MB allowed; 6.6 MB when every block was dequantized
    first, 2.3 MB when the previous block's weights lived on while the next were made.
    (On the numba kernel: the readable one-token step, by design, dequantizes.)"""
    import gc
    import tracemalloc
    model = quantize_model(baby, 8)
    c = model.config
    kv_bytes = 2 * c.n_layer * c.n_embd * c.block_size * 4
    matrices = [p.nbytes for name, p in baby.params.items() if name.startswith("transformer.h.0.") and p.ndim == 2]
    one_block = sum(matrices) + 2 * max(matrices)
    with npgpt.use_backend(backend):
        npgpt.generate(model, list(range(20)), 5)              # compile and warm up outside the trace
        gc.collect()
        tracemalloc.start()
        try:
            npgpt.generate(model, list(range(20)), 5)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    assert kv_bytes <= peak < kv_bytes + one_block, (peak, kv_bytes, one_block)


def test_the_quantized_model_is_a_composition_with_no_backward(baby):
    """It holds a GPTConfig and its entries: not a GPT, not a trainable Model, no backward or grads
    to raise from; it has a mode, a forward and a cache. The old import path names the same class."""
    model = quantize_model(baby, 8)
    assert not isinstance(model, GPT) and not isinstance(model, Model)
    assert not hasattr(model, "backward") and not hasattr(model, "grads")
    assert QuantizedGPT is quantized_module.QuantizedGPT
    with model.evaluating():
        assert not model.training
        logits, loss = model.forward(np.zeros((1, 4), np.int64), np.zeros((1, 4), np.int64))
    assert model.training and np.isfinite(loss)
    with pytest.raises(ValueError, match="model must be a float npgpt.GPT, got QuantizedGPT"):
        quantize_model(model, 8)


def test_a_whole_sequence_forward_runs_in_the_models_mode():
    """The float GPT built for a whole-sequence forward takes the model's mode and dropout stream:
    dropout in training mode (two calls draw different masks), none in evaluation mode, where the
    logits are the float model's of the dequantized weights (the same ops on the same arrays)."""
    cfg = GPTConfig(vocab_size=11, block_size=12, n_layer=2, n_head=2, n_embd=8, dropout=0.5)
    model = quantize_model(GPT(cfg, seed=1), 8)
    idx = np.arange(8).reshape(1, 8) % 11
    assert not np.array_equal(model.forward(idx)[0], model.forward(idx)[0])
    twin = GPT(cfg).eval()
    twin.load_state_dict({name: model.weight(name) for name in twin.params})
    with model.evaluating():
        np.testing.assert_array_equal(model.forward(idx)[0], twin.forward(idx)[0])


# ----------------------------------------------------------------------------- bytes
def matrix_bytes(model):
    """(bytes of the quantized matrices as float32, as integers and scales)."""
    n = sum(q.size * (2 if model.bits == 4 else 1) for q, _ in model.quantized.values())
    stored = sum(q.nbytes + s.nbytes for q, s in model.quantized.values())
    return 4 * n, stored


def test_num_bytes_is_the_real_storage(baby):
    float_bytes = sum(p.nbytes for p in baby.params.values())
    int8, int4 = quantize_model(baby, 8), quantize_model(baby, 4, 64)
    for model in (int8, int4):
        floats = sum(p.nbytes for p in model.params.values())
        assert model.num_bytes() == floats + matrix_bytes(model)[1]
        assert model.num_params() == baby.num_params()
    as_float, stored = matrix_bytes(int8)
    scales = sum(s.nbytes for _, s in int8.quantized.values())
    assert stored == as_float / 4 + scales and 0.25 < stored / as_float < 0.26
    as_float, stored = matrix_bytes(int4)
    assert stored == as_float / 8 + as_float / 64              # a float32 scale per 64 weights
    assert int4.num_bytes() < int8.num_bytes() < float_bytes / 3


# ----------------------------------------------------------------------------- files
@pytest.mark.parametrize("bits, group_size, quantize_embeddings", [(8, None, False), (4, 64, True), (4, 32, False)])
def test_save_load_round_trip_is_bit_exact(tmp_path, baby, bits, group_size, quantize_embeddings):
    model = quantize_model(baby, bits, group_size, quantize_embeddings)
    path = tmp_path / "q.npz"
    save_quantized(model, path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["q.npz"]            # no temporary left
    with pytest.raises(ValueError, match="model must be a QuantizedGPT, got GPT"):
        save_quantized(baby, tmp_path / "float.npz")
    loaded = load_quantized(path)
    assert (loaded.bits, loaded.group_size, loaded.quantize_embeddings) == (bits, group_size, quantize_embeddings)
    state, restored = model.state_dict(), loaded.state_dict()
    assert state.keys() == restored.keys()
    for name, a in state.items():
        assert restored[name].dtype == a.dtype and np.array_equal(restored[name], a), name
    idx = np.arange(20).reshape(2, 10) % 65
    np.testing.assert_array_equal(model.forward(idx)[0], loaded.forward(idx)[0])
    assert loaded.num_bytes() == model.num_bytes()


def rewrite(path, out, meta=None, drop=(), replace=None):
    """A copy of the saved model at ``path`` with its metadata or entries changed."""
    with np.load(path, allow_pickle=False) as npz:
        entries = {k: npz[k] for k in npz.files if k not in drop}
    if meta is not None:
        entries["meta"] = np.array(json.dumps({**json.loads(str(entries["meta"])), **meta}))
    entries.update(replace or {})
    np.savez(out, **entries)
    return out


def test_load_checks_everything_before_using_it(tmp_path):
    model = quantize_model(GPT(TINY), 8)
    path = tmp_path / "q.npz"
    save_quantized(model, path)
    name = "transformer.h.0.attn.c_attn.weight"
    q = model.quantized[name][0]
    cases = {
        "bits must be one of \\(4, 8\\), got 3": dict(meta={"bits": 3}),
        "group_size must be None or a positive integer dividing the n_embd=8": dict(meta={"group_size": 5}),
        f"missing 1 entry: {name}.scale$": dict(drop=[name + ".scale"]),
        "unexpected 1 entry: extra$": dict(replace={"extra": np.zeros(2)}),
        f"entry {name}.q holds dtype float32, expected int8 array": dict(replace={name + ".q": q.astype(np.float32)}),
        f"entry {name}.q has shape \\(4, 24\\), expected \\(8, 24\\)": dict(replace={name + ".q": q[:4]}),
        f"entry {name}.q holds values outside \\[-127, 127\\]": dict(replace={name + ".q": np.full_like(q, -128)}),
        f"entry {name}.scale holds scales that are not finite and positive":
            dict(replace={name + ".scale": np.zeros((1, 24), np.float32)}),
        "its metadata must be a JSON object": dict(meta={"extra": 1}),
        "metadata 'dtype' is 'float16'": dict(meta={"dtype": "float16"}),
        "its model_config describes a recurrent model": dict(meta={"model_config": {"cell": "lstm", "vocab_size": 5, "block_size": 4,
                                                                     "n_embd": 4, "n_hidden": 4, "n_layer": 1}}),
        f"entry {name}.scale holds dtype object, expected float32 array":
            dict(replace={name + ".scale": np.full((1, 24), None)}),
    }
    for i, (message, change) in enumerate(cases.items()):
        bad = rewrite(path, tmp_path / f"bad{i}.npz", **change)
        with pytest.raises(ValueError, match=f"quantized model .*bad{i}.npz.* cannot be loaded: {message}"):
            load_quantized(bad)
    truncated = tmp_path / "truncated.npz"
    truncated.write_bytes(path.read_bytes()[:300])
    with pytest.raises(ValueError, match="is truncated or corrupted"):
        load_quantized(truncated)
    with pytest.raises(ValueError, match="does not exist"):
        load_quantized(tmp_path / "nothing.npz")


# ----------------------------------------------------------------------------- the kernel
def random_blocks(rng, n_layer, C, bits, group_size, dtype, bias=True):
    """Quantized block stacks of random weights, the layout QuantizedGPT.new_cache gives."""
    shapes = {"attn.c_attn.weight": (C, 3 * C), "attn.c_proj.weight": (C, C),
              "mlp.c_fc.weight": (C, 4 * C), "mlp.c_proj.weight": (4 * C, C)}
    blocks = {}
    for name in ops.BLOCK_WEIGHTS:
        if name in shapes:
            pairs = [quantize_tensor((rng.standard_normal(shapes[name]) * 0.3).astype(dtype), bits, 1, group_size)
                     for _ in range(n_layer)]
            blocks[name] = np.stack([pack_int4(q, axis=0) if bits == 4 else q for q, _ in pairs])
            blocks[name + ".scale"] = np.stack([s for _, s in pairs])
        else:
            width = 3 * C if "c_attn" in name else 4 * C if "c_fc" in name else C
            value = rng.standard_normal((n_layer, width)) * 0.1 + (1.0 if name.startswith("ln") and "weight" in name else 0)
            blocks[name] = value.astype(dtype) if bias or "weight" in name else np.zeros((n_layer, width), dtype)
    return blocks


def stored_by_output(blocks):
    """The same stacks with the integers stored as a QuantizedGPT stores per-channel int8."""
    return {kind: stack_blocks(list(a), by_output=True) if kind + ".scale" in blocks else a for kind, a in blocks.items()}


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("bits, group_size, C, n_head", [(8, None, 12, 3), (8, 4, 12, 2), (4, None, 12, 3),
                                                        (4, 3, 9, 3), (4, 1, 6, 2), (4, 32, 64, 4), (8, 5, 10, 5)])
@pytest.mark.parametrize("B, pos", [(1, 0), (2, 5)])
@pytest.mark.parametrize("stored", ["by rows", "by output"])
def test_kernel_equals_the_readable_step(rng, dtype, bits, group_size, C, n_head, B, pos, stored):
    """Per-channel int8 stored by output is read along each output's row; every other stack (and
    per-channel int8 stored by rows) along the rows (npgpt.kernels.quantized.matrix_form)."""
    n_layer, capacity = 2, 8
    blocks = random_blocks(rng, n_layer, C, bits, group_size, dtype, bias=B == 1)
    if stored == "by output":
        blocks = stored_by_output(blocks)
    x = rng.standard_normal((B, C)).astype(dtype)
    keys = rng.standard_normal((n_layer, B, n_head, capacity, C // n_head)).astype(dtype)
    values = rng.standard_normal(keys.shape).astype(dtype)
    k_ref, v_ref, k_fast, v_fast = keys.copy(), values.copy(), keys.copy(), values.copy()
    with npgpt.use_backend("numpy"):
        expected = quantized_decode_step_forward(x, pos, blocks, k_ref, v_ref, n_head)
    np.testing.assert_array_equal(expected, ops.decode_step_forward(x, pos, dequantize_blocks(blocks, C),
                                                                    keys.copy(), values.copy(), n_head))
    x_before = x.copy()
    out = kernel.quantized_decode_step_forward(x, pos, blocks, k_fast, v_fast, n_head)
    np.testing.assert_array_equal(x, x_before)
    assert out.dtype == dtype and out.shape == (B, C)
    assert rel_error(expected, out) <= TWIN_TOL[dtype]
    assert rel_error(k_ref, k_fast) <= TWIN_TOL[dtype] and rel_error(v_ref, v_fast) <= TWIN_TOL[dtype]


@pytest.mark.parametrize("bits, group_size, stored", [(8, None, "by rows"), (8, None, "by output"), (4, 3, "by rows"),
                                                      (4, None, "by rows")])
def test_kernel_propagates_nan_within_its_row(rng, bits, group_size, stored):
    """A NaN in one row of x (one sequence) makes that row's output NaN and leaves the other's
    finite and equal to the readable step's."""
    C, n_head, n_layer = 12, 3, 2
    blocks = random_blocks(rng, n_layer, C, bits, group_size, np.float32)
    blocks = stored_by_output(blocks) if stored == "by output" else blocks
    x = rng.standard_normal((2, C)).astype(np.float32)
    x[1, 4] = np.nan
    keys = rng.standard_normal((n_layer, 2, n_head, 8, C // n_head)).astype(np.float32)
    values = rng.standard_normal(keys.shape).astype(np.float32)
    expected = quantized_decode_step_forward(x, 3, blocks, keys.copy(), values.copy(), n_head)
    out = kernel.quantized_decode_step_forward(x, 3, blocks, keys.copy(), values.copy(), n_head)
    assert np.isnan(out[1]).all() and np.isfinite(out[0]).all()
    assert rel_error(expected[0], out[0]) <= TWIN_TOL[np.float32]


def test_kernel_rejects_float_or_mixed_matrices(rng):
    blocks = random_blocks(rng, 1, 8, 8, None, np.float32)
    blocks["mlp.c_fc.weight"] = blocks["mlp.c_fc.weight"].astype(np.float32)
    keys = np.zeros((1, 1, 2, 4, 4), np.float32)
    with pytest.raises(ValueError, match="must all be int8 or all packed int4"):
        kernel.quantized_decode_step_forward(np.ones((1, 8), np.float32), 0, blocks, keys, keys.copy(), 2)


# ----------------------------------------------------------------------------- the output layer
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("bits, group_size, C, V, rows", [(8, None, 12, 7, 1), (8, 4, 12, 5, 3), (4, None, 10, 9, 1),
                                                           (4, 3, 9, 4, 2), (4, 32, 64, 33, 1), (8, 5, 15, 6, 8)])
@pytest.mark.parametrize("build", ["serial", "parallel"])
def test_quantized_head_kernel_equals_its_readable_twin(rng, monkeypatch, dtype, bits, group_size, C, V, rows, build):
    from npgpt.kernels import _compile
    if build == "parallel":
        monkeypatch.setattr(_compile, "PARALLEL_MIN_WORK", 0)      # a table this small would run serial
    table = rng.standard_normal((V, C)).astype(dtype)
    q, scale = quantize_tensor(table, bits, 0, group_size)
    q = pack_int4(q, axis=1) if bits == 4 else q              # the layout QuantizedGPT stores: along C
    x = rng.standard_normal((rows, C)).astype(dtype)
    expected = ops.quantized_head_forward(x, q, scale)
    np.testing.assert_allclose(expected, x @ dequantize_tensor(quantize_tensor(table, bits, 0, group_size)[0],
                                                               scale, 0, group_size).T, rtol=1e-12 if dtype == np.float64 else 1e-5)
    out = head_kernel.quantized_head_forward(x, q, scale)
    assert out.dtype == dtype and out.shape == (rows, V)
    assert rel_error(expected, out) <= TWIN_TOL[dtype]


def test_quantized_head_kernel_propagates_nan_and_hands_many_rows_to_blas(rng):
    table = rng.standard_normal((6, 8)).astype(np.float32)
    q, scale = quantize_tensor(table, 8, 0)
    x = rng.standard_normal((2, 8)).astype(np.float32)
    x[1, 3] = np.nan
    out = head_kernel.quantized_head_forward(x, q, scale)
    assert np.isnan(out[1]).all() and np.isfinite(out[0]).all()
    many = rng.standard_normal((3, 4, 8)).astype(np.float32)          # 12 rows: the readable op's product
    np.testing.assert_allclose(head_kernel.quantized_head_forward(many, q, scale),
                               ops.quantized_head_forward(many, q, scale), rtol=1e-5)


@pytest.mark.parametrize("bits, group_size", [(8, None), (4, 32)])
def test_a_quantized_head_generates_what_its_dequantized_twin_does(rng, bits, group_size):
    cfg = GPTConfig(vocab_size=50, block_size=16, n_layer=2, n_head=2, n_embd=64)
    model = quantize_model(GPT(cfg, seed=3), bits, group_size, quantize_embeddings=True)
    prompt = rng.integers(0, 50, 5)
    with npgpt.use_backend("numpy"):
        expected = npgpt.generate(model, prompt, 8)
        expected_logits, _ = model.forward(prompt[None], cache=model.new_cache())
    with npgpt.use_backend("numba"):
        np.testing.assert_array_equal(npgpt.generate(model, prompt, 8), expected)
        logits, _ = model.forward(prompt[None], cache=model.new_cache())
    assert rel_error(expected_logits, logits) <= TWIN_TOL[np.float32]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("bits, group_size, stored", [(8, None, "by rows"), (8, None, "by output"), (8, 4, "by rows"),
                                                      (4, 3, "by rows"), (4, None, "by rows")])
@pytest.mark.parametrize("threads", [2, 3])
def test_kernel_split_over_threads_equals_the_readable_step(rng, monkeypatch, dtype, bits, group_size, stored, threads):
    """Each thread sums its own run of a matrix's rows (npgpt.kernels.decode.part_rows); the runs may
    cut a group of rows, or an int4 byte's pair when the group is odd. 3 runs on 1 or 2 threads work
    the same: numba gives the runs out to the threads it has."""
    from npgpt.kernels import decode
    monkeypatch.setattr(decode, "run_threads", lambda: threads)
    monkeypatch.setattr(decode, "SPLIT_MIN_WEIGHTS", 0)           # split matrices this small too
    monkeypatch.setattr(decode, "regions_are_cheap", lambda: True)  # whatever pool this process started
    C, n_head, n_layer, pos = 36, 3, 2, 3
    blocks = random_blocks(rng, n_layer, C, bits, group_size, dtype)
    blocks = stored_by_output(blocks) if stored == "by output" else blocks
    x = rng.standard_normal((2, C)).astype(dtype)
    keys = rng.standard_normal((n_layer, 2, n_head, 8, C // n_head)).astype(dtype)
    values = rng.standard_normal(keys.shape).astype(dtype)
    expected = quantized_decode_step_forward(x, pos, blocks, keys.copy(), values.copy(), n_head)
    out = kernel.quantized_decode_step_forward(x, pos, blocks, keys.copy(), values.copy(), n_head)
    assert rel_error(expected, out) <= TWIN_TOL[dtype]
    floats = dequantize_blocks(blocks, C)
    expected = ops.decode_step_forward(x.copy(), pos, floats, keys.copy(), values.copy(), n_head)
    out = numba_ops.decode_step_forward(x.copy(), pos, floats, keys.copy(), values.copy(), n_head)
    assert rel_error(expected, out) <= TWIN_TOL[dtype]


@pytest.mark.parametrize("n, parts", [(768, 2), (3072, 2), (36, 3), (9, 2), (7, 4), (1, 2), (16, 3)])
def test_the_runs_of_rows_cover_every_row_once_in_whole_eights(n, parts):
    from npgpt.kernels.decode import part_rows
    runs = [part_rows(n, parts, c) for c in range(parts)]
    assert [i for start, stop in runs for i in range(start, stop)] == list(range(n))
    assert all(start % 8 == 0 for start, stop in runs if stop > start)
