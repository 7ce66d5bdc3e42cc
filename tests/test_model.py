"""The GPT: whole-model gradient checks, GPT-2 layout and initialisation, state dicts, bad input."""
import numpy as np
import pytest

import npgpt
from npgpt import GPT, GPTConfig, RecurrentConfig, RecurrentLM, check_model, jitter
from npgpt.models import DecodingCache, KVCache, Model, RecurrentState
from npgpt.verify.counting import gpt_num_params

TINY = dict(vocab_size=11, block_size=8, n_layer=2, n_head=2, n_embd=8)


def tiny_batch(rng, B=2, T=5, V=11):
    return rng.integers(0, V, (B, T)), rng.integers(0, V, (B, T))


@pytest.mark.parametrize("pos_encoding", ["learned", "sinusoidal"])
@pytest.mark.parametrize("tie_weights", [True, False])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.slow
def test_whole_model_gradcheck(rng, pos_encoding, tie_weights, bias):
    model = GPT(GPTConfig(**TINY, pos_encoding=pos_encoding, tie_weights=tie_weights, bias=bias),
                dtype=np.float64)
    jitter(model.params, seed=1)
    idx, targets = tiny_batch(rng)
    report = check_model(model, idx, targets)
    assert len(report.rows) == len(model.params)
    assert report.max_rel_error <= 1e-6, f"\n{report}"


@pytest.mark.slow
def test_whole_model_gradcheck_with_ignore_index(rng):
    model = GPT(GPTConfig(**TINY), dtype=np.float64)
    jitter(model.params, seed=2)
    idx, targets = tiny_batch(rng)
    targets[0, :3] = -1
    model.forward(idx, targets, ignore_index=-1)
    grads = model.backward()
    report = npgpt.gradcheck(lambda: model.forward(idx, targets, ignore_index=-1)[1], model.params, grads)
    assert report.ok, f"\n{report}"


@pytest.mark.slow
def test_a_broken_backward_is_caught(rng, monkeypatch):
    """The check can fail: a LayerNorm backward missing its variance term is flagged."""
    import npgpt.ops.block as block

    def wrong_layernorm_backward(dout, cache):
        xhat, rstd, w, has_bias = cache
        g = dout * w
        dx = rstd * (g - g.mean(-1, keepdims=True))               # forgot the xhat term
        C = w.shape[0]
        return dx, (dout * xhat).reshape(-1, C).sum(0), dout.reshape(-1, C).sum(0)

    monkeypatch.setattr(block, "layernorm_backward", wrong_layernorm_backward)
    model = GPT(GPTConfig(**TINY), dtype=np.float64)
    jitter(model.params, seed=3)
    with npgpt.use_backend("numpy"):            # the readable block is the one patched
        report = check_model(model, *tiny_batch(rng))
    assert not report.ok and report.max_rel_error > 1e-3
    failed = {row.name for row in report.failures()}
    assert "transformer.h.0.ln_1.weight" in failed        # downstream of the broken formula
    assert not failed & {"transformer.ln_f.weight", "transformer.ln_f.bias",
                         "transformer.h.1.mlp.c_proj.weight"}   # upstream of it: still correct


def test_parameter_names_and_shapes_follow_gpt2():
    C, V = 8, 11
    model = GPT(GPTConfig(**TINY))
    p = model.params
    assert p["transformer.wte.weight"].shape == (V, C)
    assert p["transformer.wpe.weight"].shape == (8, C)
    assert p["transformer.h.1.attn.c_attn.weight"].shape == (C, 3 * C)
    assert p["transformer.h.1.attn.c_attn.bias"].shape == (3 * C,)
    assert p["transformer.h.0.attn.c_proj.weight"].shape == (C, C)
    assert p["transformer.h.0.mlp.c_fc.weight"].shape == (C, 4 * C)
    assert p["transformer.h.0.mlp.c_proj.weight"].shape == (4 * C, C)
    assert p["transformer.ln_f.bias"].shape == (C,)
    assert "lm_head.weight" not in p
    untied = GPT(GPTConfig(**TINY, tie_weights=False))
    assert untied.params["lm_head.weight"].shape == (V, C)
    sinusoidal = GPT(GPTConfig(**TINY, pos_encoding="sinusoidal"))
    assert "transformer.wpe.weight" not in sinusoidal.state_dict()
    assert not any(k.endswith(".bias") for k in GPT(GPTConfig(**TINY, bias=False)).params)


def test_gpt2_initialisation():
    cfg = GPTConfig(vocab_size=500, block_size=64, n_layer=4, n_head=4, n_embd=64)
    p = GPT(cfg, seed=0).params
    assert p["transformer.wte.weight"].std() == pytest.approx(0.02, rel=0.02)
    assert p["transformer.h.0.mlp.c_fc.weight"].std() == pytest.approx(0.02, rel=0.03)
    residual = np.concatenate([p[f"transformer.h.{i}.mlp.c_proj.weight"].ravel() for i in range(4)])
    assert residual.std() == pytest.approx(0.02 / np.sqrt(8), rel=0.03)
    assert np.all(p["transformer.h.2.attn.c_attn.bias"] == 0)
    assert np.all(p["transformer.h.3.ln_2.weight"] == 1) and np.all(p["transformer.ln_f.bias"] == 0)


def test_initialisation_is_seeded_and_dtype_independent():
    a, b, c = GPT(GPTConfig(**TINY), seed=5), GPT(GPTConfig(**TINY), seed=5), GPT(GPTConfig(**TINY), seed=6)
    d64 = GPT(GPTConfig(**TINY), seed=5, dtype=np.float64)
    for k in a.params:
        np.testing.assert_array_equal(a.params[k], b.params[k])
        np.testing.assert_array_equal(a.params[k], d64.params[k].astype(np.float32))
    assert not np.array_equal(a.params["transformer.wte.weight"], c.params["transformer.wte.weight"])


def test_float32_and_float64_agree(rng):
    idx, targets = tiny_batch(rng)
    _, loss32 = GPT(GPTConfig(**TINY)).forward(idx, targets)
    logits64, loss64 = GPT(GPTConfig(**TINY), dtype=np.float64).forward(idx, targets)
    assert logits64.dtype == np.float64
    assert loss32 == pytest.approx(loss64, rel=1e-5)


def test_float32_stays_float32(rng):
    model = GPT(GPTConfig(**TINY, dropout=0.1))
    logits, _ = model.forward(*tiny_batch(rng))
    assert logits.dtype == np.float32
    assert all(g.dtype == np.float32 for g in model.backward().values())


def test_initial_loss_is_near_uniform(rng):
    _, loss = GPT(GPTConfig(**TINY)).forward(*tiny_batch(rng))
    assert loss == pytest.approx(np.log(11), rel=0.02)


def test_grads_have_parameter_keys_and_shapes(rng):
    model = GPT(GPTConfig(**TINY, tie_weights=False))
    model.forward(*tiny_batch(rng))
    grads = model.backward()
    assert list(grads) == list(model.params)
    assert all(grads[k].shape == model.params[k].shape for k in grads)


def test_num_params_counts_every_trainable_scalar():
    for kw in [{}, {"tie_weights": False}, {"pos_encoding": "sinusoidal"}, {"bias": False}]:
        model = GPT(GPTConfig(**TINY, **kw))
        assert model.num_params() == sum(p.size for p in model.params.values())
        assert model.num_params() == gpt_num_params(model.config)
    C = 8
    assert GPT(GPTConfig(**TINY)).num_params() == 11 * C + 8 * C + 2 * (12 * C * C + 13 * C) + 2 * C


def test_state_dict_round_trip(rng):
    a, b = GPT(GPTConfig(**TINY), seed=1), GPT(GPTConfig(**TINY), seed=2)
    b.load_state_dict(a.state_dict())
    idx, targets = tiny_batch(rng)
    assert a.forward(idx, targets)[1] == b.forward(idx, targets)[1]
    sd = a.state_dict()
    sd["transformer.ln_f.weight"][:] = 7.0
    assert not np.any(a.params["transformer.ln_f.weight"] == 7.0)   # state_dict() is a copy


def test_load_state_dict_is_strict():
    model = GPT(GPTConfig(**TINY))
    sd = model.state_dict()
    del sd["transformer.h.0.ln_1.bias"]
    sd["transformer.h.9.ln_1.bias"] = np.zeros(8)
    sd["transformer.wte.weight"] = np.zeros((12, 8))
    with pytest.raises(ValueError) as err:
        model.load_state_dict(sd)
    message = str(err.value)
    assert "missing keys: transformer.h.0.ln_1.bias" in message
    assert "unexpected keys: transformer.h.9.ln_1.bias" in message
    assert "transformer.wte.weight: expected (11, 8), got (12, 8)" in message


def test_tied_model_accepts_hf_style_lm_head_copy():
    model = GPT(GPTConfig(**TINY))
    sd = model.state_dict()
    sd["lm_head.weight"] = sd["transformer.wte.weight"].copy()
    model.load_state_dict(sd)
    sd["lm_head.weight"] = sd["lm_head.weight"] + 1
    with pytest.raises(ValueError, match="tie_weights=False"):
        model.load_state_dict(sd)


def test_dropout_on_in_training_off_in_eval(rng):
    idx, targets = tiny_batch(rng)
    model = GPT(GPTConfig(**TINY, dropout=0.5))
    train_a = model.forward(idx, targets)[1]
    train_b = model.forward(idx, targets)[1]
    model.eval()
    eval_a, eval_b = model.forward(idx, targets)[1], model.forward(idx, targets)[1]
    assert train_a != train_b and eval_a == eval_b


def test_huge_logits_give_finite_loss_and_gradients(rng):
    model = GPT(GPTConfig(**TINY), dtype=np.float64)
    model.params["transformer.wte.weight"][:] = rng.choice([-1.0, 1.0], size=(11, 8)) * 40.0
    model.params["transformer.ln_f.weight"][:] = 40.0    # logits reach about +-1e4
    idx, targets = tiny_batch(rng)
    logits, loss = model.forward(idx, targets)
    assert np.abs(logits).max() > 5e3
    assert np.isfinite(loss)
    assert all(np.all(np.isfinite(g)) for g in model.backward().values())


@pytest.mark.parametrize("idx, message", [
    (np.array([[1, 11]]), "token id 11, outside \\[0, vocab_size=11\\)"),
    (np.array([[-1, 2]]), "token id -1"),
    (np.zeros((1, 9), dtype=int), "sequence length 9 exceeds block_size=8"),
    (np.zeros(4, dtype=int), "must be 2-D"),
    (np.zeros((1, 2, 3), dtype=int), "must be 2-D"),
    (np.zeros((1, 4)), "integer token ids, got dtype float64"),
    (np.zeros((1, 0), dtype=int), "no time steps"),
])
def test_bad_ids_raise_clear_errors(idx, message):
    with pytest.raises(ValueError, match=message):
        GPT(GPTConfig(**TINY)).forward(idx)


def test_bad_targets_raise_clear_errors():
    model = GPT(GPTConfig(**TINY))
    idx = np.zeros((1, 3), dtype=int)
    with pytest.raises(ValueError, match="targets shape \\(1, 2\\) does not match idx shape \\(1, 3\\)"):
        model.forward(idx, np.zeros((1, 2), dtype=int))
    with pytest.raises(ValueError, match="token id 11"):
        model.forward(idx, np.array([[0, 1, 11]]))


def test_backward_before_forward_with_targets_is_an_error():
    model = GPT(GPTConfig(**TINY))
    with pytest.raises(ValueError, match="preceding forward"):
        model.backward()
    model.forward(np.zeros((1, 3), dtype=int))
    with pytest.raises(ValueError, match="with targets"):
        model.backward()


@pytest.mark.parametrize("kwargs, message", [
    (dict(n_embd=10, n_head=3), "n_embd=10 is not divisible by n_head=3"),
    (dict(n_layer=0), "n_layer must be a positive integer, got 0"),
    (dict(dropout=1.0), "dropout must be in \\[0, 1\\)"),
    (dict(pos_encoding="rotary"), "pos_encoding must be one of"),
    (dict(layer_norm_epsilon=0.0), "layer_norm_epsilon must be a finite number > 0, got 0.0"),
    (dict(layer_norm_epsilon=True), "layer_norm_epsilon must be a finite number > 0, got True"),
])
def test_bad_config_raises_clear_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        GPTConfig(**{**TINY, **kwargs})


def test_presets():
    assert GPTConfig.preset("baby") == GPTConfig(65, 64, 4, 4, 128)
    assert GPTConfig.preset("document").n_layer == 24
    assert GPTConfig.preset("baby", dropout=0.1).dropout == 0.1
    with pytest.raises(ValueError, match="unknown preset 'huge'"):
        GPTConfig.preset("huge")


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_attention_weights_are_causal_distributions(rng, backend):
    """On either backend, without switching: the numba forward keeps its weights too."""
    from npgpt import get_backend, use_backend
    model = GPT(GPTConfig(**TINY, dropout=0.5), dtype=np.float64)
    idx = rng.integers(0, 11, (3, 6))
    with use_backend(backend):
        maps = model.attention_weights(idx)
        assert get_backend() == backend
    with use_backend("numpy"):
        reference = model.attention_weights(idx)
    assert len(maps) == 2 and maps[0].shape == (3, 2, 6, 6)
    for a, ref in zip(maps, reference):
        np.testing.assert_allclose(a.sum(-1), 1.0, rtol=1e-12)
        assert np.all(a[..., np.triu_indices(6, 1)[0], np.triu_indices(6, 1)[1]] == 0)
        np.testing.assert_allclose(a, ref, rtol=1e-10, atol=1e-15)
    assert model.training          # the previous mode is restored


def test_replacing_a_parameter_array_is_seen_by_the_next_forward(rng):
    model = GPT(GPTConfig(**TINY))
    idx = rng.integers(0, 11, (1, 4))
    before = model.forward(idx)[0]
    model.params["transformer.h.1.mlp.c_proj.bias"] = np.full(8, 3.0, dtype=np.float32)   # a new array
    assert not np.allclose(model.forward(idx)[0], before)


def test_block_weights_live_in_stacks_the_decoding_step_reads_without_a_copy(rng):
    """Each kind of block weight is one (n_layer, ...) array and the blocks' parameters are views of
    it, so decoding reads the weights with no second copy; the cache holds keys and values only."""
    model = GPT(GPTConfig(**TINY), dtype=np.float64).eval()
    jitter(model.params, seed=2)
    stacks = model.stacked_block_weights()
    for i in range(TINY["n_layer"]):
        for key in ("attn.c_attn.weight", "ln_2.bias", "mlp.c_proj.weight"):
            p = model.params[f"transformer.h.{i}.{key}"]
            assert np.shares_memory(p, stacks[key]) and np.array_equal(p, stacks[key][i])
    cache = model.new_cache()
    assert not hasattr(cache, "blocks") and not hasattr(cache, "owner")
    assert isinstance(cache, KVCache) and isinstance(cache, DecodingCache)


def decoding_model(dtype=np.float64):
    model = GPT(GPTConfig(**TINY), dtype=dtype).eval()
    jitter(model.params, seed=2)
    return model


def next_logits(model, cache, idx):
    """The logits of the token after idx's last, continuing ``cache`` one token at a time."""
    logits = None
    while cache.length < idx.shape[1]:
        logits = model.forward(idx[:, cache.length:cache.length + 1], cache=cache)[0][0, -1]
    return logits


# One-token steps read the stacks through the same ops as the whole forward, in float64: the two
# agree to rounding (1e-12 relative, as test_generate's cached steps do).
@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_steps_read_the_weights_as_last_checked(rng, backend):
    """An in-place update shows at the next step (the stacks are the weights). A replaced array is
    seen when the model next checks its arrays, stacked_block_weights() or new_cache(); until then
    the steps of a running cache read the stacks as last checked (BlockStacks says why). The last
    block's MLP changes: the cached keys and values do not depend on it."""
    model, idx = decoding_model(), rng.integers(0, 11, (1, 7))
    with npgpt.use_backend(backend):
        cache = model.new_cache()
        next_logits(model, cache, idx[:, :4])
        model.params["transformer.h.1.mlp.c_proj.weight"] *= 1.5                       # in place
        np.testing.assert_allclose(next_logits(model, cache, idx[:, :5]), model.forward(idx[:, :5])[0][0, -1],
                                   rtol=1e-12)
        name = "transformer.h.1.mlp.c_fc.weight"
        model.params[name] = model.params[name] * 2.0                                   # replaced
        assert not np.allclose(next_logits(model, cache, idx[:, :6]), model.forward(idx[:, :6])[0][0, -1])
        copy = model.stacked_block_weights()                                            # checked
        np.testing.assert_allclose(next_logits(model, cache, idx), model.forward(idx)[0][0, -1], rtol=1e-12)
        assert not np.shares_memory(copy["mlp.c_fc.weight"], model.params[name])
        assert model.stacked_block_weights()["mlp.c_fc.weight"] is copy["mlp.c_fc.weight"], "kept, not restacked"
        np.testing.assert_allclose(next_logits(model, model.new_cache(), idx), model.forward(idx)[0][0, -1],
                                   rtol=1e-12)


def test_new_cache_and_load_state_dict_check_the_arrays_again(rng):
    """new_cache() sees a replaced array; after a replacement the model steps on a copy, and an
    in-place update of the replaced array shows from the next new_cache() on; load_state_dict shows
    at once (the copy is dropped). Again the last block's MLP, which the cached keys and values do
    not depend on."""
    model, idx = decoding_model(), rng.integers(0, 11, (1, 6))
    next_logits(model, model.new_cache(), idx)                   # the stacks, checked and read
    name = "transformer.h.1.mlp.c_fc.weight"
    model.params[name] = model.params[name] * 2.0                # replaced
    np.testing.assert_allclose(next_logits(model, model.new_cache(), idx), model.forward(idx)[0][0, -1], rtol=1e-12)
    model.params[name] *= 0.5                                     # in place, into the replaced array
    np.testing.assert_allclose(next_logits(model, model.new_cache(), idx), model.forward(idx)[0][0, -1], rtol=1e-12)
    cache = model.new_cache()
    next_logits(model, cache, idx[:, :5])
    state = model.state_dict()
    state["transformer.h.1.mlp.c_proj.weight"] = state["transformer.h.1.mlp.c_proj.weight"] * 1.5
    model.load_state_dict(state)
    np.testing.assert_allclose(next_logits(model, cache, idx), model.forward(idx)[0][0, -1], rtol=1e-12)


@pytest.mark.parametrize("variant", [dict(head_counts=(1, 2)), dict(mlp_widths=(20, 24)),
                                     dict(factorized={"h.0.mlp.c_fc": 2})], ids=["heads", "widths", "factors"])
def test_blocks_that_do_not_stack_decode_block_by_block(rng, variant):
    """Blocks of different shapes (pruned unevenly) or with factorised weights have no stacks: the
    cached steps run block by block and give the whole forward's logits (float64 rounding)."""
    model = GPT(GPTConfig(**TINY, **variant), dtype=np.float64).eval()
    jitter(model.params, seed=3)
    idx = rng.integers(0, 11, (1, 6))
    assert model.stacked_block_weights() is None
    np.testing.assert_allclose(next_logits(model, model.new_cache(), idx), model.forward(idx)[0][0, -1], rtol=1e-12)


def test_model_declares_the_protocol_and_caches_keep_theirs():
    """Model is abstract: a subclass defines forward and backward; every language model's cache is a
    DecodingCache (length, reset, reorder)."""
    with pytest.raises(TypeError, match="abstract"):
        Model(np.float32)

    class ForwardOnly(Model):
        def forward(self, x):
            return x

    with pytest.raises(TypeError, match="backward"):
        ForwardOnly(np.float32)
    lstm = RecurrentLM(RecurrentConfig(vocab_size=11, block_size=8, n_embd=4, n_hidden=6, n_layer=1))
    for cache in (GPT(GPTConfig(**TINY)).new_cache(), lstm.new_cache(), KVCache(2), RecurrentState()):
        assert isinstance(cache, DecodingCache)
    assert not isinstance(object(), DecodingCache)


def test_init_false_gives_zeros_to_be_filled():
    model = GPT(GPTConfig(**TINY), init=False)
    assert all(not p.any() for p in model.params.values())
    with pytest.raises(ValueError, match="init must be True or False"):
        GPT(GPTConfig(**TINY), init="no")


@pytest.mark.parametrize("mode", [True, False])
def test_evaluating_switches_to_evaluation_mode_and_restores_the_mode_the_model_had(mode):
    model = GPT(GPTConfig(vocab_size=11, block_size=8, n_layer=1, n_head=2, n_embd=8, dropout=0.1)).train(mode)
    with model.evaluating() as inside:
        assert inside is model and not model.training
    assert model.training is mode
    with pytest.raises(RuntimeError), model.evaluating():
        raise RuntimeError("an error inside the block")
    assert model.training is mode, "an error inside the block must not leave the model in evaluation mode"


@pytest.mark.parametrize("model", [
    GPT(GPTConfig(vocab_size=11, block_size=8, n_layer=1, n_head=2, n_embd=8, dropout=0.1), seed=3,
        dtype=np.float64),
    RecurrentLM(RecurrentConfig(vocab_size=11, block_size=8, cell="gru", n_embd=4, n_hidden=6, n_layer=1,
                                dropout=0.1), seed=3, dtype=np.float64),
], ids=["GPT", "RecurrentLM"])
def test_a_language_model_says_what_a_checkpoint_records(model):
    """What the Trainer's checkpoints record, asked of the model (issue 24, protocol 1): the config
    as a dict that rebuilds it, the parameters' dtype and the dropout generator's state."""
    model.dropout_rng.random(5)                         # a state that is not the initial one
    state = model.checkpoint_state()
    assert set(state) == {"model_config", "dtype", "dropout_rng"}
    assert type(model.config).from_dict(state["model_config"]) == model.config
    assert state["dtype"] == "float64"
    assert state["dropout_rng"] == model.dropout_rng.bit_generator.state
    model.params[next(iter(model.params))] = np.zeros(1, np.float32)
    with pytest.raises(ValueError, match=r"the parameters must share one dtype, got \['float32', 'float64'\]"):
        model.checkpoint_state()
