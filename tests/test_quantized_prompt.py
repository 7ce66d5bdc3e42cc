"""A quantized model's prompt with a KV cache, one batched pass per block
(npgpt/models/quantized.py, ``QuantizedGPT._prompt``), against the token-by-token path it replaced
(``_token_by_token``: :meth:`QuantizedGPT.decode_step` per position), kept as the reference.

Tolerances, and why: both paths compute the same block of the same dequantized weights; the
batched one multiplies (T, C) matrices with BLAS and a softmax over T rows, the reference does
matrix-vector products (the numba kernel sums x_i q_i, then multiplies by the scale). The same sums
reassociated, so the differences are float rounding, relative to the largest logit (or key):
<= 1e-5 in float32 and <= 1e-10 in float64, the bounds every numba twin is held to
(tests/test_quantize.py): 30 and 1e5 times the worst measured over the first test's cases (3.0e-7
and 7.2e-16), while a wrong position or cache slot moves the logits by a fraction of their size.
"""
import numpy as np
import pytest

import npgpt
from npgpt import GPT, GPTConfig
from npgpt.allocation.quantize import QuantizedGPT
from npgpt.models import quantized as quantized_module
from npgpt.ops import quantize as quantize_ops
from npgpt.ops.quantize import dequantize_tensor, quantize_tensor

TOL = {np.float32: 1e-5, np.float64: 1e-10}
CONFIGS = {
    "learned-tied-bias": GPTConfig(vocab_size=11, block_size=12, n_layer=2, n_head=2, n_embd=8),
    "sinusoidal-untied-no-bias": GPTConfig(vocab_size=11, block_size=12, n_layer=2, n_head=3, n_embd=9, bias=False,
                                           tie_weights=False, pos_encoding="sinusoidal", layer_norm_epsilon=0.25),
}
FORMATS = [(8, None), (8, "grouped"), (4, None), (4, "grouped")]     # groups of 4 rows (n_embd 8) or 3 (n_embd 9)


def rel_error(a, b):
    return float(np.abs(a - b).max() / np.abs(b).max())


def make_model(cfg_name, bits, group, quantize_embeddings, dtype, spread=1.0):
    """The quantized twin of a random GPT, its weights ``spread`` times GPT-2's initialisation."""
    cfg = CONFIGS[cfg_name]
    group_size = None if group is None else (4 if cfg.n_embd == 8 else 3)
    float_model = GPT(cfg, seed=3, dtype=dtype)
    for p in float_model.params.values():
        p *= spread
    return QuantizedGPT.from_float(float_model, bits, group_size, quantize_embeddings)


def filled(model, idx, batched=True, cache=None):
    """(logits, cache) of the prompt idx, through the batched path (whatever its length: forward sends
    short prompts token by token) or the token-by-token one."""
    cache = model.new_cache(len(idx)) if cache is None else cache
    logits = model._prompt(np.asarray(idx), cache) if batched else model._token_by_token(np.asarray(idx), cache)
    return logits, cache


def assert_same_cache(model, cache, expected, dtype):
    assert cache.length == expected.length
    for got, want in ((cache.keys, expected.keys), (cache.values, expected.values)):
        assert rel_error(got[..., :cache.length, :], want[..., :cache.length, :]) <= TOL[dtype]


def greedy(model, cache, last_logits, steps):
    """``steps`` greedy tokens per row after the cache's prompt, one token at a time."""
    tokens = []
    for _ in range(steps):
        token = last_logits.argmax(-1)
        tokens.append(token)
        last_logits = model.forward(token[:, None], cache=cache)[0][:, -1]
    return np.stack(tokens, axis=1) if tokens else np.zeros((len(last_logits), 0), np.int64)


@pytest.mark.parametrize("backend", ["numba", "numpy"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("bits, group", FORMATS)
@pytest.mark.parametrize("quantize_embeddings", [False, True])
@pytest.mark.parametrize("cfg_name", list(CONFIGS))
def test_a_batched_prompt_gives_the_token_by_token_logits_and_cache(rng, cfg_name, quantize_embeddings, bits, group,
                                                                    dtype, backend):
    """B 1 and 2, T 1, 2, 7 and block_size: the same logits, keys, values and length."""
    model = make_model(cfg_name, bits, group, quantize_embeddings, dtype)
    with npgpt.use_backend(backend):
        for B in (1, 2):
            for T in (1, 2, 7, model.config.block_size):
                idx = rng.integers(0, model.config.vocab_size, (B, T))
                logits, cache = filled(model, idx)
                expected, reference = filled(model, idx, batched=False)
                assert logits.shape == (B, T, model.config.vocab_size) and logits.dtype == dtype
                assert rel_error(logits, expected) <= TOL[dtype]
                assert_same_cache(model, cache, reference, dtype)


@pytest.mark.parametrize("bits, group", FORMATS)
@pytest.mark.parametrize("cfg_name", list(CONFIGS))
def test_the_tokens_generated_after_a_batched_prompt_are_the_token_by_token_ones(rng, monkeypatch, cfg_name,
                                                                                 bits, group):
    """Greedy tokens after a prompt: two rows continued from the cache, and npgpt.generate past
    block_size (the window restarts and the cache is refilled with a prompt of half a block).
    The weights are 10 times GPT-2's initialisation: at its scale a model this small gives nearly
    flat logits and greedily repeats one token whatever came before (with the prompt's positions
    off by one it generated the same tokens); float32 at this spread differs from the reference by
    up to 8e-5 of the largest logit (sharper softmaxes), far from any tie here."""
    model = make_model(cfg_name, bits, group, True, np.float32, spread=10.0)
    idx = rng.integers(0, 11, (2, 5))
    logits, cache = filled(model, idx)
    expected, reference = filled(model, idx, batched=False)
    np.testing.assert_array_equal(greedy(model, cache, logits[:, -1], 4),
                                  greedy(model, reference, expected[:, -1], 4))
    monkeypatch.setattr(quantized_module, "BATCHED_PROMPT_MIN_TOKENS", 2)     # this model's prompts are short
    batched = npgpt.generate(model, [1, 2, 3, 4, 5], 20)
    monkeypatch.setattr(model, "_prompt", model._token_by_token)
    np.testing.assert_array_equal(npgpt.generate(model, [1, 2, 3, 4, 5], 20), batched)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("cfg_name", list(CONFIGS))
def test_a_prompt_continues_a_cache_that_holds_tokens(rng, cfg_name, dtype):
    """A second prompt after a first (cache.length > 0), up to the last position of the window,
    whichever path filled the cache first."""
    model = make_model(cfg_name, 4, "grouped", False, dtype)
    first, second = rng.integers(0, 11, (2, 3)), rng.integers(0, 11, (2, model.config.block_size - 3))
    for first_batched in (True, False):
        _, cache = filled(model, first, batched=first_batched)
        _, reference = filled(model, first, batched=False)
        logits, cache = filled(model, second, cache=cache)
        expected, reference = filled(model, second, batched=False, cache=reference)
        assert rel_error(logits, expected) <= TOL[dtype]
        assert_same_cache(model, cache, reference, dtype)
    whole, _ = model.forward(np.concatenate([first, second], axis=1))       # the float model, no cache
    assert rel_error(logits, whole[:, 3:]) <= TOL[dtype]


@pytest.mark.parametrize("path", ["forward", "batched", "token by token"])
def test_bad_input_is_named_in_one_line_and_leaves_the_cache_alone(rng, path):
    """A prompt past the window, a token outside the vocabulary, a batch the cache does not hold: the
    same one-line errors from either path; the batched one checks before it changes anything, so
    the cache still holds its tokens. (A prompt past the window: the reference names the first
    position past it, the batched path the whole length asked for.)"""
    model = make_model("learned-tied-bias", 8, None, False, np.float32)
    _, cache = filled(model, rng.integers(0, 11, (2, 5)))
    keys = cache.keys.copy()
    run = {"forward": lambda idx: model.forward(idx, cache=cache), "batched": lambda idx: model._prompt(idx, cache),
           "token by token": lambda idx: model._token_by_token(idx, cache)}[path]
    batched = path != "token by token"          # forward checks a short prompt before it runs token by token
    too_long = 13 if not batched else 5 + 9
    cases = {f"sequence length {too_long} exceeds block_size=12": np.zeros((2, 9), np.int64),
             r"idx contains token id 11, outside \[0, vocab_size=11\)": np.full((2, 2), 11),
             "the cache holds keys of batch 2, 2 heads of size 4": np.zeros((3, 2), np.int64)}
    for message, idx in cases.items():
        with pytest.raises(ValueError, match=message):
            run(idx)
        if batched:
            assert cache.length == 5
            np.testing.assert_array_equal(cache.keys[..., :5, :], keys[..., :5, :])
        else:
            cache.length = 5                     # the reference may have cached some positions first


@pytest.mark.parametrize("threshold", [4, 16])
def test_forward_runs_short_prompts_token_by_token_and_longer_ones_batched(rng, monkeypatch, threshold):
    """Below BATCHED_PROMPT_MIN_TOKENS the batched pass costs more than the tokens it replaces (it
    dequantizes every block once); forward's logits and cache are exactly one path's."""
    monkeypatch.setattr(quantized_module, "BATCHED_PROMPT_MIN_TOKENS", threshold)
    model = make_model("learned-tied-bias", 8, None, False, np.float32)
    for length in (2, 3, 4, 5, 12):
        idx = rng.integers(0, 11, (2, length))
        cache = model.new_cache(2)
        logits, _ = model.forward(idx, cache=cache)
        expected, reference = filled(model, idx, batched=length >= threshold)
        np.testing.assert_array_equal(logits, expected)
        np.testing.assert_array_equal(cache.keys[..., :length, :], reference.keys[..., :length, :])
        assert cache.length == length


@pytest.mark.parametrize("bits, group_size", [(8, None), (4, 2), (4, None)])
def test_the_quantized_head_dequantizes_a_few_rows_at_a_time(rng, monkeypatch, bits, group_size):
    """Chunks of 4 rows of an 11-row table (the last one short): the logits of the whole table."""
    table = rng.standard_normal((11, 8))
    q, scale = quantize_tensor(table, bits, 0, group_size)
    x = rng.standard_normal((2, 3, 8))
    expected = x @ dequantize_tensor(q, scale, 0, group_size).T
    packed = quantize_ops.pack_int4(q, axis=1) if bits == 4 else q
    monkeypatch.setattr(quantize_ops, "HEAD_ROWS", 4)
    assert rel_error(quantize_ops.quantized_head_forward(x, packed, scale), expected) <= TOL[np.float64]
