"""Decoding: the KV cache changes nothing but speed (also past block_size), each strategy does
what its formula says, beam search scores are true log-probabilities, and bad input is named."""
import itertools

import numpy as np
import pytest

from npgpt import GPT, GPTConfig, jitter, use_backend
from npgpt.decoding import (
    beam_search,
    context_window_start,
    generate,
    greedy_continuations,
    greedy_token,
    log_softmax,
    next_token_distribution,
    next_token_logits,
    select_next_token,
    softmax,
    top_k_filter,
    top_p_filter,
)
from npgpt.models import KVCache

BLOCK = 8
V = 11
# Cached and uncached logits are the same sums taken in a different grouping (one row against the
# cached keys vs the whole window); float64 rounding keeps them within ~1e-14, so 1e-10 is loose
# yet far below any real mismatch (a wrong position or a stale key changes logits at ~1e-2).
CACHE_RTOL = 1e-10


@pytest.fixture(scope="module")
def model():
    m = GPT(GPTConfig(vocab_size=V, block_size=BLOCK, n_layer=2, n_head=2, n_embd=16), dtype=np.float64)
    jitter(m.params, scale=0.3, seed=7)     # away from the near-uniform initial distribution
    return m.eval()


def full_forward_logits(model, tokens):
    """Reference: the last position's logits from one plain forward over the context window."""
    window = np.asarray(tokens)[context_window_start(len(tokens), BLOCK):]
    return model.forward(window[None])[0][0, -1]


def relative_error(a, b):
    return np.max(np.abs(a - b)) / np.max(np.abs(b))


# ----------------------------------------------------------------------------- KV cache
def test_kv_cache_layers_hold_length_positions(model):
    cache = KVCache(model.config.n_layer)
    assert len(cache.layers) == 2 and cache.length == 0
    model.forward(np.array([[1, 2, 3]]), cache=cache)
    assert cache.length == 3 and cache.layers[1][0].shape == (1, 2, 3, 8)
    model.forward(np.array([[4]]), cache=cache)
    assert cache.length == 4
    cache.reorder(np.array([0, 0, 0]))
    assert cache.layers[0][1].shape == (3, 2, 4, 8) and cache.length == 4
    cache.reset()
    assert cache.length == 0 and cache.layers == [None, None]


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_cached_logits_equal_uncached_at_every_step_past_block_size(model, rng, backend):
    tokens = rng.integers(0, V, 3 * BLOCK)
    cache = model.new_cache()
    for n in range(1, tokens.size + 1):
        with use_backend(backend):
            cached = next_token_logits(model, tokens[None, :n], cache)[0]
            uncached = next_token_logits(model, tokens[None, :n])[0]
        reference = full_forward_logits(model, tokens[:n])
        assert relative_error(cached, reference) <= CACHE_RTOL, n
        assert relative_error(uncached, reference) <= CACHE_RTOL, n
        assert cache.length == n - context_window_start(n, BLOCK)   # the cache holds exactly the window


@pytest.mark.parametrize("backend", ["numpy", "numba"])
@pytest.mark.parametrize("dtype, rtol", [(np.float64, 1e-10), (np.float32, 1e-5)])
@pytest.mark.parametrize("variant", [{}, {"bias": False, "tie_weights": False},
                                     {"pos_encoding": "sinusoidal", "n_embd": 10},    # 10: not 4k
                                     {"layer_norm_epsilon": 0.25}])   # large enough to matter
def test_one_token_steps_equal_the_readable_blocks(variant, dtype, rtol, backend, rng, monkeypatch):
    """A cached one-token step is one dispatched op (npgpt.ops.decode_step_forward, or its numba
    twin that runs every block in one compiled call); on either backend its logits equal a full
    readable forward at every step, also across the window restarts past block_size and for a
    batch of rows."""
    import npgpt.kernels as kernels
    import npgpt.ops as ops
    cfg = GPTConfig(**{**dict(vocab_size=V, block_size=BLOCK, n_layer=2, n_head=2, n_embd=16), **variant})
    m = GPT(cfg, dtype=dtype)
    jitter(m.params, scale=0.3, seed=3)
    m.eval()
    calls = []
    twin = {"numpy": ops, "numba": kernels}[backend]
    real = twin.decode_step_forward
    monkeypatch.setattr(twin, "decode_step_forward", lambda *a: calls.append(a[1]) or real(*a))
    monkeypatch.setattr("npgpt.kernels.backend._namespaces", {})      # rebuilt with the recording op
    tokens = rng.integers(0, V, (3, 3 * BLOCK))
    with use_backend(backend):
        cache = m.new_cache(batch_size=3)
        for n in range(1, tokens.shape[1] + 1):
            stepped = next_token_logits(m, tokens[:, :n], cache)
            with use_backend("numpy"):
                window = tokens[:, context_window_start(n, BLOCK):n]
                reference = m.forward(window)[0][:, -1]
            assert relative_error(stepped, reference) <= rtol, n
    one_token_steps = [n for n in range(1, tokens.shape[1] + 1)    # the rest refill a new window
                       if context_window_start(n, BLOCK) == context_window_start(n - 1, BLOCK)]
    assert calls == [n - 1 - context_window_start(n, BLOCK) for n in one_token_steps]   # positions


def test_decoding_never_asks_which_backend_or_model_it_runs():
    """Decoding reaches models only through forward(..., cache=) and new_cache()."""
    import inspect

    import npgpt.decoding as decoding
    source = "".join(inspect.getsource(m) for m in (decoding.generate, decoding.beam,
                                                     decoding.strategies))
    for word in ("isinstance", "get_backend", "numba", "RecurrentState", "KVCache"):
        assert word not in source, word


def test_a_new_cache_sees_weights_changed_since_the_last(rng):
    m = GPT(GPTConfig(vocab_size=V, block_size=BLOCK, n_layer=1, n_head=2, n_embd=16), dtype=np.float64)
    first = generate(m, [1, 2], 6, strategy="temperature", seed=0)
    for p in m.params.values():
        p += rng.normal(0, 0.5, p.shape)                  # an optimizer step changes them in place
    with use_backend("numpy"):
        expected = generate(m, [1, 2], 6, strategy="temperature", seed=0)
    np.testing.assert_array_equal(generate(m, [1, 2], 6, strategy="temperature", seed=0), expected)
    assert not np.array_equal(first, expected)


def test_kv_cache_refuses_keys_of_another_shape(model):
    cache = KVCache(model.config.n_layer)
    model.forward(np.array([[1, 2, 3]]), cache=cache)
    with pytest.raises(ValueError, match="batch 1.*new ones are batch 2.*reset"):
        model.forward(np.array([[4], [5]]), cache=cache)
    cache.reset()
    model.forward(np.array([[4], [5]]), cache=cache)
    assert cache.length == 1 and cache.layers[0][0].shape == (2, 2, 1, 8)


def test_cache_feeds_one_token_per_step_until_the_window_slides(model, monkeypatch):
    fed = []
    forward = model.forward

    def recording_forward(idx, *args, **kwargs):
        fed.append(np.shape(idx)[1])
        return forward(idx, *args, **kwargs)

    monkeypatch.setattr(model, "forward", recording_forward)
    generate(model, [1, 2, 3], BLOCK)   # steps see 3, 4, ..., 10 tokens
    # prefill 3, one token per step up to block_size (8), then the window restarts from its last
    # 4 tokens: one refill of 5, then one token per step again
    assert fed == [3, 1, 1, 1, 1, 1, 5, 1]
    fed.clear()
    generate(model, [1, 2, 3], BLOCK, use_cache=False)
    assert fed == [3, 4, 5, 6, 7, 8, 5, 6]


@pytest.mark.parametrize("block_size", [1, 2, 5, 8, 64])
def test_context_window_start(block_size):
    previous = 0
    for n in range(1, 5 * block_size + 2):
        start = context_window_start(n, block_size)
        assert start >= previous                                   # the window only moves forward
        assert (start == 0 and n <= block_size) or block_size // 2 + 1 <= n - start <= block_size
        previous = start


@pytest.mark.parametrize("strategy, options", [
    ("greedy", {}), ("temperature", {"temperature": 0.8}), ("top-k", {"top_k": 3}),
    ("top-p", {"top_p": 0.7})])
def test_cached_and_uncached_generate_identical_tokens(model, strategy, options):
    prompt = [1, 5, 2]
    runs = [generate(model, prompt, 3 * BLOCK, strategy, seed=42, use_cache=c, **options)
            for c in (True, False)]
    assert runs[0].size == 3 + 3 * BLOCK > BLOCK       # well past block_size
    np.testing.assert_array_equal(runs[0], runs[1])


def test_prompt_longer_than_block_size_is_cropped(model, rng):
    prompt = rng.integers(0, V, 2 * BLOCK + 3)
    out = generate(model, prompt, 4)
    np.testing.assert_array_equal(out[:prompt.size], prompt)     # the whole prompt is returned
    # only the last block_size tokens matter: a different head of the prompt changes nothing
    other = prompt.copy()
    other[:-BLOCK] = (other[:-BLOCK] + 1) % V
    np.testing.assert_array_equal(generate(model, other, 4)[prompt.size:], out[prompt.size:])


# ----------------------------------------------------------------------------- strategies
def test_greedy_is_the_argmax_of_a_full_forward(model):
    out = generate(model, [3], 2 * BLOCK, use_cache=True)
    for n in range(1, out.size):
        assert out[n] == np.argmax(full_forward_logits(model, out[:n])), n
    assert len(set(out.tolist())) > 1                  # not a degenerate constant output


def test_parameters_of_other_strategies_are_ignored(model):
    """A CLI passes top_k and top_p whatever the strategy; only the strategy's own ones count."""
    plain = generate(model, [1, 2], 6, "temperature", seed=9)
    np.testing.assert_array_equal(generate(model, [1, 2], 6, "temperature", top_k=1, top_p=0.1, seed=9),
                                  plain)
    np.testing.assert_array_equal(generate(model, [1, 2], 6, top_k=2, top_p=0.5), generate(model, [1, 2], 6))


def test_generate_keeps_the_prompt_layout(model):
    assert generate(model, [1, 2], 3).shape == (5,)
    assert generate(model, np.array([[1, 2]]), 3).shape == (1, 5)
    assert generate(model, [1, 2], 0).tolist() == [1, 2]


def test_temperature_scales_logits_before_softmax():
    z = np.array([2.0, 1.0, 0.0])
    np.testing.assert_allclose(next_token_distribution(z, temperature=0.5), softmax(2 * z), rtol=1e-15)
    np.testing.assert_allclose(next_token_distribution(z, temperature=1e9), 1 / 3, rtol=1e-8)
    assert next_token_distribution(z, temperature=1e-3)[0] == 1.0     # e^-1000 underflows to 0


def test_small_temperature_samples_the_greedy_tokens(model):
    greedy = generate(model, [4, 4], 2 * BLOCK)
    cold = generate(model, [4, 4], 2 * BLOCK, "temperature", temperature=1e-6, seed=0)
    np.testing.assert_array_equal(cold, greedy)


def test_top_k_keeps_the_k_largest_renormalised():
    z = np.array([0.5, 3.0, -1.0, 2.0, 1.0])
    probs = next_token_distribution(z, top_k=2)
    kept = np.exp(z[[1, 3]]) / np.exp(z[[1, 3]]).sum()
    np.testing.assert_allclose(probs, [0, kept[0], 0, kept[1], 0], rtol=1e-15, atol=0)
    assert np.isneginf(top_k_filter(z, 2)).sum() == 3
    np.testing.assert_allclose(next_token_distribution(z, top_k=99), softmax(z), rtol=1e-15)
    assert np.count_nonzero(top_k_filter(np.zeros(4), 2) == 0) == 2   # ties: exactly k, lowest ids


def test_top_k_generation_never_leaves_the_top_k(model):
    out = generate(model, [0], 2 * BLOCK, "top-k", top_k=2, temperature=3.0, seed=3)
    for n in range(1, out.size):
        top2 = np.argsort(full_forward_logits(model, out[:n]))[-2:]
        assert out[n] in top2, n
    assert any(out[n] != np.argmax(full_forward_logits(model, out[:n])) for n in range(1, out.size))


@pytest.mark.parametrize("p, nucleus", [(1e-9, [0]), (0.5, [0]), (0.51, [0, 1]), (0.8, [0, 1]),
                                        (0.81, [0, 1, 2]), (1.0, [0, 1, 2, 3])])
def test_top_p_keeps_the_minimal_nucleus(p, nucleus):
    probs = np.array([0.5, 0.3, 0.15, 0.05])
    # shuffled ids, so the nucleus is found by probability, not by position
    perm = np.array([2, 0, 3, 1])
    filtered = top_p_filter(probs[perm], p)
    expected = np.zeros(4)
    expected[nucleus] = probs[nucleus] / probs[nucleus].sum()
    np.testing.assert_allclose(filtered, expected[perm], rtol=1e-14, atol=0)
    np.testing.assert_allclose(next_token_distribution(np.log(probs[perm]), top_p=p), expected[perm],
                               rtol=1e-14, atol=0)


def test_seed_reproducibility(model):
    runs = [generate(model, [1], 2 * BLOCK, "temperature", temperature=2.0, seed=s) for s in (5, 5, 6)]
    np.testing.assert_array_equal(runs[0], runs[1])
    assert not np.array_equal(runs[0], runs[2])   # 16 draws from ~flat 11-way distributions
    from_generator = generate(model, [1], 2 * BLOCK, "temperature", temperature=2.0,
                              seed=np.random.default_rng(5))
    np.testing.assert_array_equal(from_generator, runs[0])


def test_select_next_token_samples_from_the_distribution():
    z = np.log(np.array([0.7, 0.2, 0.1]))
    rng = np.random.default_rng(0)
    draws = [select_next_token(z, "temperature", rng=rng) for _ in range(4000)]
    # 4000 draws: the standard error of each frequency is <= 0.0073, so 0.03 is 4 sigma
    np.testing.assert_allclose(np.bincount(draws, minlength=3) / 4000, [0.7, 0.2, 0.1], atol=0.03)
    assert greedy_token(z) == 0 and select_next_token(z) == 0
    assert select_next_token(z, "top-k", top_k=1, rng=123) == 0       # a seed works as rng too


@pytest.mark.parametrize("use_cache", [True, False])
def test_generation_stops_after_eos(model, use_cache):
    free = generate(model, [2, 7], 2 * BLOCK, "temperature", seed=1, use_cache=use_cache)
    eos = int(free[5])
    first = 2 + next(i for i, t in enumerate(free[2:]) if t == eos)
    stopped = generate(model, [2, 7], 2 * BLOCK, "temperature", seed=1, eos_id=eos, use_cache=use_cache)
    np.testing.assert_array_equal(stopped, free[:first + 1])       # eos included, nothing after
    assert stopped[-1] == eos


def test_generate_restores_training_mode_and_turns_dropout_off():
    m = GPT(GPTConfig(vocab_size=V, block_size=BLOCK, n_layer=1, n_head=2, n_embd=16, dropout=0.5),
            dtype=np.float64)
    jitter(m.params, scale=0.3, seed=2)
    m.train()
    out = [generate(m, [1, 2], 10, use_cache=c) for c in (True, False)]
    assert m.training                                  # restored
    np.testing.assert_array_equal(out[0], out[1])      # dropout would make these differ
    generate(m.eval(), [1, 2], 1)
    assert not m.training                              # eval stays eval


# ----------------------------------------------------------------------------- beam search
def sequence_log_prob(model, tokens, n_prompt):
    """log P of tokens[n_prompt:] given the prompt, from one full forward (needs len <= block)."""
    logp = log_softmax(model.forward(np.asarray(tokens)[None, :-1])[0][0])
    return sum(logp[t - 1, tokens[t]] for t in range(n_prompt, len(tokens)))


@pytest.mark.parametrize("use_cache", [True, False])
def test_beam_width_one_is_greedy(model, use_cache):
    tokens, _ = beam_search(model, [6], 2 * BLOCK, beam_width=1, use_cache=use_cache)
    np.testing.assert_array_equal(tokens, generate(model, [6], 2 * BLOCK))


@pytest.mark.parametrize("length_penalty", [0.0, 1.0, 0.6])
def test_beam_score_is_the_log_prob_of_the_returned_tokens(model, length_penalty):
    tokens, score = beam_search(model, [2, 9], 5, beam_width=3, length_penalty=length_penalty)
    assert tokens.size == 7
    expected = sequence_log_prob(model, tokens, 2) / 5 ** length_penalty
    # sums of five float64 log-probabilities computed along different paths: ~1e-15 apart
    assert score == pytest.approx(expected, rel=1e-12)


def test_wide_beam_finds_the_exhaustive_optimum(model):
    """With beam_width = V (the widest allowed) nothing that can win is pruned over 2 steps: the
    first keeps every token, the second ranks all V^2 pairs. So beam search is exhaustive there."""
    tokens, score = beam_search(model, [5], 2, beam_width=V, length_penalty=0.0)
    best = max(sequence_log_prob(model, [5, *tail], 1) for tail in itertools.product(range(V), repeat=2))
    assert score == pytest.approx(best, rel=1e-12)
    assert score == pytest.approx(sequence_log_prob(model, tokens, 1), rel=1e-12)


def test_beam_search_cached_equals_uncached_past_block_size(model):
    runs = [beam_search(model, [1, 2, 3], 2 * BLOCK, beam_width=3, use_cache=c) for c in (True, False)]
    np.testing.assert_array_equal(runs[0][0], runs[1][0])
    assert runs[0][1] == pytest.approx(runs[1][1], rel=CACHE_RTOL)
    assert runs[0][0].size == 3 + 2 * BLOCK


def test_beam_search_with_eos(model):
    free, _ = beam_search(model, [3], 5, beam_width=2, length_penalty=0.0)
    eos = int(free[2])                                 # a token the best beam produces
    tokens, score = beam_search(model, [3], 5, beam_width=2, length_penalty=0.0, eos_id=eos)
    generated = tokens[1:].tolist()
    assert eos not in generated[:-1]                   # a hypothesis ends at its first eos
    assert generated[-1] == eos or len(generated) == 5
    assert score == pytest.approx(sequence_log_prob(model, tokens, 1), rel=1e-12)
    # the free run's prefix up to eos survives the same pruning and, being shorter, has the
    # larger total log-probability (length_penalty=0), so the winner is at least as good
    assert score >= sequence_log_prob(model, free[:3], 1) - 1e-12 > sequence_log_prob(model, free, 1)


def test_beam_search_keeps_the_prompt_layout(model):
    tokens, score = beam_search(model, np.array([[1, 2]]), 0)
    assert tokens.tolist() == [[1, 2]] and score == 0.0


# ----------------------------------------------------------------------------- batched greedy
PROMPTS = [[1, 2], [3], [4, 5], [6, 7, 8, 9, 10], [3, 3], [9]]      # lengths 1, 2 and 5, mixed


def assert_greedy_continuations(model, eos_id=None):
    """Each batched continuation is generate()'s greedy one for its prompt, cut after eos_id."""
    got = greedy_continuations(model, PROMPTS, BLOCK, eos_id)
    for prompt, continuation in zip(PROMPTS, got):
        alone = generate(model, prompt, BLOCK - len(prompt), eos_id=eos_id)[len(prompt):]
        np.testing.assert_array_equal(continuation, alone, err_msg=str(prompt))
        assert continuation.dtype == np.int64 and len(prompt) + len(continuation) <= BLOCK
    return got


def test_batched_greedy_continuations_are_generates_greedy_ones(model):
    free = assert_greedy_continuations(model)
    assert [len(c) for c in free] == [BLOCK - len(p) for p in PROMPTS]     # the context is the limit
    eos = int(free[0][2])                                  # the first prompt's third new token ends it
    stopped = assert_greedy_continuations(model, eos)
    assert len(stopped[0]) == 1 + free[0].tolist().index(eos) <= 3 and stopped[0][-1] == eos
    assert any(eos not in c for c in stopped)              # a row that never writes it runs to the limit
    assert [len(c) for c in greedy_continuations(model, PROMPTS, 2)] == [2] * len(PROMPTS)


def test_batched_greedy_runs_a_recurrent_model_too(recurrent):
    assert_greedy_continuations(recurrent, eos_id=int(generate(recurrent, [1, 2], 3)[-1]))


def test_batched_greedy_turns_dropout_off_and_restores_training_mode():
    m = GPT(GPTConfig(vocab_size=V, block_size=BLOCK, n_layer=1, n_head=2, n_embd=16, dropout=0.5),
            dtype=np.float64)
    jitter(m.params, scale=0.3, seed=2)
    first, second = (greedy_continuations(m.train(), [[1, 2], [3, 4]], 5) for _ in range(2))
    assert m.training
    np.testing.assert_array_equal(np.stack(first), np.stack(second))      # dropout would make these differ


@pytest.mark.parametrize("prompts, kwargs, match", [
    ([list(range(BLOCK))], {}, f"a prompt of {BLOCK} tokens leaves no room .* block_size={BLOCK}"),
    ([[1], []], {}, "prompt idx is empty"),
    ([[1, 11]], {}, "token id 11"),
    ([[1]], {"max_new_tokens": 0}, "max_new_tokens must be a positive integer, got 0"),
    ([[1]], {"eos_id": V}, f"eos_id .* got {V}"),
])
def test_batched_greedy_bad_input_names_the_value(model, prompts, kwargs, match):
    with pytest.raises(ValueError, match=match):
        greedy_continuations(model, prompts, **{"max_new_tokens": 3} | kwargs)


class OnlyTheDecodingProtocol:
    """A language model offering only what decoding asks of one: ``forward(idx, cache=)``,
    ``new_cache()``, ``config`` and ``evaluating()`` (no ``training``, ``train()`` or ``eval()``)."""

    __slots__ = ("_model", "config")

    def __init__(self, model):
        self._model, self.config = model, model.config

    def forward(self, idx, cache=None):
        return self._model.forward(idx, cache=cache)

    def new_cache(self, batch_size=1):
        return self._model.new_cache(batch_size=batch_size)

    def evaluating(self):
        return self._model.evaluating()


def test_decoding_asks_a_model_only_for_forward_new_cache_config_and_evaluating(model):
    bare = OnlyTheDecodingProtocol(model)
    np.testing.assert_array_equal(generate(bare, [1, 2], 2 * BLOCK), generate(model, [1, 2], 2 * BLOCK))
    tokens, score = beam_search(bare, [3], 5, beam_width=3)
    np.testing.assert_array_equal(tokens, beam_search(model, [3], 5, beam_width=3)[0])
    for got, expected in zip(greedy_continuations(bare, PROMPTS, 4), greedy_continuations(model, PROMPTS, 4)):
        np.testing.assert_array_equal(got, expected)


# ----------------------------------------------------------------------------- bad input
@pytest.mark.parametrize("kwargs, match", [
    ({"strategy": "nucleus"}, "unknown strategy 'nucleus'"),
    ({"strategy": "temperature", "temperature": 0.0}, "temperature .* got 0.0"),
    ({"strategy": "temperature", "temperature": -1.0}, "temperature .* got -1.0"),
    ({"strategy": "top-k", "top_k": 0}, "top_k .* got 0"),
    ({"strategy": "top-k"}, "strategy 'top-k' needs top_k"),
    ({"strategy": "top-p"}, "strategy 'top-p' needs top_p"),
    ({"strategy": "greedy", "top_k": 0}, "top_k .* got 0"),         # checked even when unused
    ({"strategy": "top-p", "top_p": 0.0}, r"top_p must be in \(0, 1\], got 0.0"),
    ({"strategy": "top-p", "top_p": 1.5}, r"top_p must be in \(0, 1\], got 1.5"),
    ({"max_new_tokens": -1}, "max_new_tokens .* got -1"),
    ({"idx": []}, "prompt idx is empty"),
    ({"idx": [[1], [2]]}, r"shape \(2, 1\)"),
    ({"idx": [1, 11]}, "token id 11"),
    ({"idx": [1.0]}, "integer token ids"),
    ({"eos_id": 11}, "eos_id .* got 11"),
])
def test_generate_bad_input_names_the_value(model, kwargs, match):
    args = {"idx": [1, 2], "max_new_tokens": 3} | kwargs
    with pytest.raises(ValueError, match=match):
        generate(model, **args)


@pytest.mark.parametrize("kwargs, match", [
    ({"beam_width": 0}, "beam_width .* got 0"),
    ({"length_penalty": float("inf")}, "length_penalty .* got inf"),
    ({"max_new_tokens": -2}, "max_new_tokens .* got -2"),
    ({"idx": np.zeros((1, 0), dtype=int)}, "prompt idx is empty"),
])
def test_beam_search_bad_input_names_the_value(model, kwargs, match):
    args = {"idx": [1, 2], "max_new_tokens": 3} | kwargs
    with pytest.raises(ValueError, match=match):
        beam_search(model, **args)


def test_distribution_functions_reject_bad_values():
    with pytest.raises(ValueError, match="logits must be a non-empty 1-D"):
        next_token_distribution(np.zeros((2, 3)))
    with pytest.raises(ValueError, match="top_k .* got 2.5"):
        top_k_filter(np.zeros(3), 2.5)
    with pytest.raises(ValueError, match="n_layer .* got 0"):
        KVCache(0)


# ----------------------------------------------------------------------------- recurrent models
@pytest.fixture(scope="module", params=["lstm", "gru", "rnn"])
def recurrent(request):
    from npgpt import RecurrentConfig, RecurrentLM
    m = RecurrentLM(RecurrentConfig(vocab_size=V, block_size=BLOCK, cell=request.param, n_embd=8,
                                    n_hidden=12, n_layer=2), seed=3, dtype=np.float64)
    jitter(m.params, scale=0.3, seed=7)
    return m.eval()


def test_recurrent_generation_carries_a_state_not_a_kv_cache(recurrent, monkeypatch):
    from npgpt import RecurrentState
    seen = []
    forward = recurrent.forward

    def recording_forward(idx, *args, **kwargs):
        seen.append((np.shape(idx)[1], type(kwargs.get("cache")).__name__))
        return forward(idx, *args, **kwargs)

    monkeypatch.setattr(recurrent, "forward", recording_forward)
    generate(recurrent, [1, 2, 3], BLOCK)
    assert [n for n, _ in seen] == [3, 1, 1, 1, 1, 1, 5, 1]      # as the GPT's cache
    assert all(s == RecurrentState.__name__ for _, s in seen)


def test_recurrent_state_logits_equal_uncached_past_block_size(recurrent, rng):
    tokens = rng.integers(0, V, 3 * BLOCK)
    state = recurrent.new_cache()
    for n in range(1, tokens.size + 1):
        cached = next_token_logits(recurrent, tokens[None, :n], state)[0]
        reference = recurrent.forward(tokens[None, context_window_start(n, BLOCK):n])[0][0, -1]
        # the same recurrence; only the output layer's matrix product is grouped differently
        assert relative_error(cached, reference) <= CACHE_RTOL, n
        assert state.length == n - context_window_start(n, BLOCK)


@pytest.mark.parametrize("strategy, options", [
    ("greedy", {}), ("temperature", {"temperature": 0.8}), ("top-k", {"top_k": 3}),
    ("top-p", {"top_p": 0.7})])
def test_recurrent_cached_and_uncached_generate_identical_tokens(recurrent, strategy, options):
    runs = [generate(recurrent, [1, 5, 2], 3 * BLOCK, strategy, seed=42, use_cache=c, **options)
            for c in (True, False)]
    assert runs[0].size == 3 + 3 * BLOCK > BLOCK
    np.testing.assert_array_equal(runs[0], runs[1])
    assert len(set(runs[0].tolist())) > 1


def test_recurrent_beam_search_cached_equals_uncached_past_block_size(recurrent):
    runs = [beam_search(recurrent, [1, 2, 3], 2 * BLOCK, beam_width=3, use_cache=c) for c in (True, False)]
    np.testing.assert_array_equal(runs[0][0], runs[1][0])
    assert runs[0][1] == pytest.approx(runs[1][1], rel=CACHE_RTOL)
    assert runs[0][0].size == 3 + 2 * BLOCK
    greedy, _ = beam_search(recurrent, [6], 2 * BLOCK, beam_width=1)
    np.testing.assert_array_equal(greedy, generate(recurrent, [6], 2 * BLOCK))


def test_recurrent_beam_score_is_the_log_prob_of_the_returned_tokens(recurrent):
    tokens, score = beam_search(recurrent, [2, 9], 5, beam_width=3, length_penalty=0.0)
    logp = log_softmax(recurrent.forward(tokens[None, :-1])[0][0])
    assert score == pytest.approx(sum(logp[t - 1, tokens[t]] for t in range(2, 7)), rel=1e-12)


def test_recurrent_generation_turns_dropout_off_and_restores_training_mode():
    from npgpt import RecurrentConfig, RecurrentLM
    m = RecurrentLM(RecurrentConfig(vocab_size=V, block_size=BLOCK, n_embd=8, n_hidden=8, n_layer=2,
                                    dropout=0.5), dtype=np.float64)
    m.train()
    out = [generate(m, [1, 2], 2 * BLOCK, use_cache=c) for c in (True, False)]
    assert m.training
    np.testing.assert_array_equal(out[0], out[1])
