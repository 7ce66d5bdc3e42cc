"""The four explorers of npgpt.plots.explorers, driven through their controls as a reader would
(``widget.value = ...``), and their fallback where widgets cannot show. ipywidgets and jupyter_client
are in requirements.txt: the tests need both."""
import sys

import numpy as np
import pytest
from jupyter_client.manager import start_new_kernel
from matplotlib.figure import Figure

import npgpt
from npgpt.checks import UsageError
from npgpt.decoding.generate import next_token_logits
from npgpt.decoding.strategies import select_next_token, softmax
from npgpt.ops.quantize import QMAX
from npgpt.plots import explorers
from npgpt.plots.explorers import (
    AttentionExplorer,
    DecodingExplorer,
    PlannerExplorer,
    QuantizationExplorer,
    widgets_can_show,
)
from npgpt.text import CharTokenizer

TEXT = "to be or not to be, that is the question\n"
FLOP_RATE = 1e9          # a fixed FLOP rate: the planner's tests do not time this machine


def label(ch):
    """How the explorers show a character: a space as ␣, a newline as ⏎."""
    return {" ": "\u2423", "\n": "\u23ce"}.get(ch, ch)


def entropy(p):
    p = p[p > 0]
    return float(-(p * np.log(p)).sum())


@pytest.fixture(scope="module")
def tokenizer():
    return CharTokenizer.from_text(TEXT)


@pytest.fixture(scope="module")
def model(tokenizer):
    config = npgpt.GPTConfig(vocab_size=tokenizer.vocab_size, block_size=16, n_layer=2, n_head=2, n_embd=16)
    return npgpt.GPT(config, seed=0, dtype=np.float64)


@pytest.fixture
def decoding(model, tokenizer):
    explorer = DecodingExplorer(model, "to be or ", tokenizer)
    explorer.widget()
    return explorer


def set_controls(explorer, **values):
    for name, value in values.items():
        explorer.controls[name].value = value
    return explorer.result


# ----------------------------------------------------------------------------- decoding
def test_decoding_reads_the_models_own_distribution(decoding, model, tokenizer):
    z = next_token_logits(model, tokenizer.encode("to be or ")[None])[0]
    view = set_controls(decoding, temperature=1.0)
    # the same float64 computation, two routes: rounding only
    np.testing.assert_allclose(view.model, softmax(z), rtol=1e-12)
    np.testing.assert_allclose(view.after_temperature, softmax(z), rtol=1e-12)


@pytest.mark.parametrize("k", [1, 3, 7])
def test_top_k_keeps_exactly_k_tokens_renormalised(decoding, k):
    view = set_controls(decoding, top_k=k, top_p=1.0)
    kept = np.flatnonzero(view.after_top_k)
    assert kept.size == k
    assert set(kept) == set(np.argsort(-view.after_temperature, kind="stable")[:k])   # the k likeliest
    assert view.after_top_k.sum() == pytest.approx(1.0, abs=1e-12)                   # a sum of <= 15 floats
    renormalised = view.after_temperature[kept] / view.after_temperature[kept].sum()
    np.testing.assert_allclose(view.after_top_k[kept], renormalised, rtol=1e-12)


def test_temperature_moves_the_entropy_the_right_way(decoding):
    entropies = [entropy(set_controls(decoding, temperature=t).after_temperature) for t in (0.3, 1.0, 2.5)]
    assert entropies[0] < entropies[1] < entropies[2] < np.log(decoding.vocab_size)


def test_top_p_keeps_the_smallest_set_that_reaches_p(decoding):
    view = set_controls(decoding, temperature=1.0, top_k=decoding.vocab_size, top_p=0.5)
    kept = np.flatnonzero(view.after_top_p)
    mass = np.sort(view.after_top_k)[::-1].cumsum()
    assert mass[kept.size - 1] >= 0.5 > mass[kept.size - 2]
    assert view.after_top_p.sum() == pytest.approx(1.0, abs=1e-12)


def test_the_draw_is_seeded_and_comes_from_what_is_kept(decoding):
    tokens = set()
    set_controls(decoding, temperature=1.2, top_k=decoding.vocab_size, top_p=0.6)
    for seed in range(30):
        view = set_controls(decoding, seed=seed)
        assert view.after_top_p[view.token] > 0
        # the explorer draws exactly as generation does with the same seed
        assert view.token == select_next_token(decoding.logits, "top-p", 1.2, top_p=0.6, rng=seed)
        tokens.add(view.token)
    assert len(tokens) > 1
    again = set_controls(decoding, seed=29)
    assert again.token == view.token and again.text == label(decoding.tokenizer.decode([view.token]))


# ----------------------------------------------------------------------------- attention
def test_attention_rows_sum_to_one_and_are_causal(model, tokenizer):
    explorer = AttentionExplorer(model, "to be", tokenizer)
    explorer.widget()
    for layer, head, prompt in [(0, 0, "to be"), (1, 1, "or not to be"), (1, 0, "q")]:
        view = set_controls(explorer, layer=layer, head=head, prompt=prompt)
        T = len(prompt)
        assert view.weights.shape == (T, T) and len(view.tokens) == T
        np.testing.assert_allclose(view.weights.sum(-1), 1.0, rtol=1e-12)   # softmax rows, float64
        assert np.all(np.triu(view.weights, k=1) == 0)                     # the future is masked exactly
        expected = model.attention_weights(tokenizer.encode(prompt)[None])[layer][0, head]
        np.testing.assert_array_equal(view.weights, expected)


def test_attention_keeps_the_last_block_and_refuses_what_is_not_there(model, tokenizer):
    explorer = AttentionExplorer(model, "to be", tokenizer)
    long = "that is the question, to be or not"
    assert explorer.compute(0, 0, long).tokens == [label(c) for c in long[-16:]]
    with pytest.raises(UsageError, match=r"^layer must be in \[0, 2\), got 2$"):
        explorer.compute(2, 0, "to be")
    with pytest.raises(UsageError, match=r"^head must be in \[0, 2\), got 5$"):
        explorer.compute(0, 5, "to be")
    explorer.widget()
    assert set_controls(explorer, prompt="") is None
    assert "prompt must hold at least one token" in explorer.message.value


def test_attention_without_a_tokenizer_reads_ids(model):
    view = AttentionExplorer(model, "1 2 3").compute(0, 1, "3 1 4 1 5")
    assert view.tokens == ["3", "1", "4", "1", "5"]
    with pytest.raises(UsageError, match="prompt must be token ids separated by spaces"):
        AttentionExplorer(model, "1").compute(0, 0, "to be")


# ----------------------------------------------------------------------------- quantization
@pytest.fixture
def quantization():
    weight = np.random.default_rng(0).normal(0, 0.02, (64, 128)).astype(np.float32)
    explorer = QuantizationExplorer(weight)
    explorer.widget()
    return explorer


def test_int4_errs_more_than_int8_in_half_the_bytes(quantization):
    int8 = set_controls(quantization, bits=8, group_size=None)
    int4 = set_controls(quantization, bits=4)
    assert int4.relative_error > int8.relative_error
    assert 2 * int4.integer_bytes == int8.integer_bytes == 64 * 128        # one byte, then half a byte a weight
    assert int4.scale_bytes == int8.scale_bytes == 128 * 4                  # one float32 scale a channel
    assert int4.total_bytes < int8.total_bytes < int8.float_bytes


def test_smaller_groups_cost_scales_and_cut_the_error(quantization):
    channel = set_controls(quantization, bits=4, group_size=None)
    grouped = set_controls(quantization, group_size=8)
    assert grouped.scale_bytes == 8 * channel.scale_bytes                   # 64 / 8 groups a channel
    # each entry's bound s/2 shrinks with its group's absmax; on 8,192 seeded Gaussian weights the error does too
    assert grouped.relative_error < channel.relative_error


@pytest.mark.parametrize("bits, group_size", [(8, None), (4, None), (4, 16)])
def test_every_error_is_a_rounding_error(quantization, bits, group_size):
    view = quantization.compute(bits, group_size)
    w = quantization.weight
    groups = w.reshape(-1, group_size or 64, 128)
    scale = np.abs(groups).max(axis=1, keepdims=True) / QMAX[bits]
    bound = np.broadcast_to(scale / 2, groups.shape).reshape(w.shape)
    # |w - w_hat| <= s/2, up to float32 rounding of w / s and s * q (a few ulps of s)
    assert np.all(np.abs(view.errors) <= bound * (1 + 1e-5))
    assert view.max_error == pytest.approx(np.abs(view.errors).max())


def test_the_group_sizes_offered_divide_the_rows(quantization):
    assert quantization.group_sizes() == [None, 8, 16, 32]
    assert quantization.controls["group_size"].options[0] == ("one scale per channel", None)


# ----------------------------------------------------------------------------- planner
@pytest.fixture
def planner():
    explorer = PlannerExplorer(flop_rate=FLOP_RATE)
    explorer.widget()
    return explorer


def respects_its_budgets(view):
    p = view.plan
    assert p.flops <= view.flops and p.memory_bytes_per_rank <= view.memory
    assert view.hours is None or p.wall_seconds <= 3600 * view.hours


def test_the_plan_respects_the_budgets_its_controls_set(planner):
    view = set_controls(planner, flops=1e13, memory=64e6, limit_time=False, ranks=1)
    respects_its_budgets(view)
    assert view.hours is None and view.plan.binding == "compute"
    view = set_controls(planner, memory=1e7)                 # the optimal model fits only with accumulation
    respects_its_budgets(view)
    assert view.plan.binding == "compute" and view.plan.grad_accum > 1
    view = set_controls(planner, memory=3e6)                 # not even then: a smaller model
    respects_its_budgets(view)
    assert view.plan.binding == "memory"
    view = set_controls(planner, memory=1e9, flops=1e15, limit_time=True, hours=0.5, ranks=4)
    respects_its_budgets(view)
    assert view.hours == pytest.approx(0.5) and view.plan.binding == "time" and view.plan.ranks == 4
    assert "binding:    time" in planner.message.value


def test_an_impossible_budget_says_so_in_one_line(planner):
    assert set_controls(planner, memory=2e5) is None
    assert planner.message.value.startswith("<b>cannot be done: the smallest model") and "\n" not in planner.message.value


def test_the_flop_rate_is_measured_once(monkeypatch):
    calls = []
    monkeypatch.setattr(explorers, "measured_flop_rate", lambda config, batch: calls.append(config) or 2e9)
    explorer = PlannerExplorer()
    explorer.widget()
    set_controls(explorer, flops=1e12)
    assert len(calls) == 1 and explorer.flop_rate == 2e9


# ----------------------------------------------------------------------------- where widgets cannot show
def all_explorers(model, tokenizer):
    weight = np.random.default_rng(0).normal(0, 0.02, (64, 128)).astype(np.float32)
    return [DecodingExplorer(model, "to be or ", tokenizer), AttentionExplorer(model, "to be", tokenizer),
            QuantizationExplorer(weight), PlannerExplorer(flop_rate=FLOP_RATE)]


def test_without_ipywidgets_each_explorer_draws_its_default_figure(monkeypatch, model, tokenizer):
    monkeypatch.setitem(sys.modules, "ipywidgets", None)      # import ipywidgets now raises ImportError
    assert not widgets_can_show()
    for explorer in all_explorers(model, tokenizer):
        figure = explorer.show()
        assert isinstance(figure, Figure) and figure.axes and not explorer.controls
        with pytest.raises(UsageError, match=r"^interactive=True needs ipywidgets \(pip install ipywidgets\)"):
            explorer.show(interactive=True)


def test_outside_a_kernel_show_draws_and_true_builds_the_controls(model, tokenizer):
    assert not widgets_can_show()                             # pytest: no IPython kernel
    explorer = all_explorers(model, tokenizer)[2]
    assert isinstance(explorer.show(), Figure)
    box = explorer.show(interactive=True)
    assert type(box).__name__ == "VBox" and set(explorer.controls) == {"bits", "group_size"}


KERNEL_CODE = "from npgpt.plots.explorers import widgets_can_show; print(widgets_can_show())"


@pytest.mark.parametrize("allow_stdin", [True, False], ids=["a front end", "nbclient"])
def test_in_a_kernel_widgets_show_only_to_a_front_end_that_allows_stdin(allow_stdin):
    """Jupyter's front ends send allow_stdin=True with a cell; nbclient (headless) sends False."""
    km, kc = start_new_kernel(kernel_name="python3")
    printed = []
    try:
        reply = kc.execute_interactive(KERNEL_CODE, allow_stdin=allow_stdin, timeout=60,
                                       output_hook=lambda msg: printed.append(msg["content"].get("text", "")))
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)
    assert reply["content"]["status"] == "ok", reply["content"]
    assert "".join(printed).strip() == str(allow_stdin)
