"""npgpt.training.comparison, npgpt.plots.sequence_models and benchmarks/compare_sequence_models.py:
gradient-through-time curves read the right positions, the race is fair (same batches) and repeatable,
the plots and the script run."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from matplotlib.figure import Figure

from npgpt import GPT, Dataset, GPTConfig, RecurrentConfig, RecurrentLM, TrainConfig
from npgpt.io.checkpoint import build_model
from npgpt.models.recurrent import RNN
from npgpt.plots.sequence_models import plot_sequence_model_losses, plot_vanishing_gradients
from npgpt.training import comparison as analysis

ROOT = Path(__file__).resolve().parents[1]

V, T = 13, 10
TEXT = "the quick brown fox jumps over the lazy dog. " * 40


def tiny_rnn(**kwargs):
    return RecurrentLM(RecurrentConfig(vocab_size=V, block_size=T, cell="rnn", n_embd=4, n_hidden=6, n_layer=1,
                                       **kwargs), seed=0)


def test_recurrent_curve_equals_the_layers_own_input_gradient():
    """k indexes steps back from the last position; the norm is that of dL/de_{T-1-k}, computed here
    directly with the recurrent layer's backward on the embedded sequence."""
    model = tiny_rnn()
    curve = analysis.input_gradient_norms(model, T, n_sequences=1, seed=3)
    rng = np.random.default_rng(3)                     # the sequence input_gradient_norms draws
    idx = rng.permutation(V)[:T]
    target = rng.integers(V)
    p = {k: v.astype(np.float64) for k, v in model.params.items()}
    layer = RNN(4, 6, batch_first=True, dtype=np.float64)
    layer.load_state_dict({k[4:]: v for k, v in p.items() if k.startswith("rnn.")})
    out, _ = layer.forward(p["embedding.weight"][idx][None])
    logits = out[0, -1] @ p["lm_head.weight"].T + p["lm_head.bias"]
    probs = np.exp(logits - logits.max())
    probs /= probs.sum()
    dout = np.zeros_like(out)
    dout[0, -1] = (probs - np.eye(V)[target]) @ p["lm_head.weight"]      # d(-log p_target)/dh_T
    dx, _ = layer.backward(dout)
    np.testing.assert_allclose(curve, np.linalg.norm(dx[0], axis=1)[::-1], rtol=1e-10)


def test_without_recurrent_weights_only_the_last_input_matters():
    model = tiny_rnn()
    model.params["rnn.weight_hh_l0"][...] = 0.0
    curve = analysis.input_gradient_norms(model, T, n_sequences=2)
    assert curve[0] > 1e-3 and np.all(curve[1:] < 1e-300)


def test_gpt_curve_reaches_every_position_and_leaves_the_model_alone():
    model = GPT(GPTConfig(vocab_size=V, block_size=T, n_layer=1, n_head=2, n_embd=8, dropout=0.1), seed=0)
    before = model.state_dict()
    curve = analysis.input_gradient_norms(model, n_sequences=2)
    assert curve.shape == (T,) and curve.dtype == np.float64 and np.all(curve > 1e-6)
    assert curve[0] == curve.max()                     # the residual path from the last input
    assert model.training and model.dtype == np.float32
    for name, p in model.params.items():
        np.testing.assert_array_equal(p, before[name])


@pytest.mark.parametrize("model, kwargs, message", [
    (lambda: tiny_rnn(), dict(seq_len=T + 1), r"seq_len must be in \[1, min\(block_size, vocab_size\)\]"),
    (lambda: RecurrentLM(RecurrentConfig(vocab_size=5, block_size=T, n_embd=2, n_hidden=2, n_layer=1)), {},
     r"\[1, 5\] \(distinct tokens\)"),
    (lambda: GPT(GPTConfig(vocab_size=V, block_size=T, n_layer=1, n_head=1, n_embd=4,
                           pos_encoding="sinusoidal")), {}, "sinusoidal positions"),
])
def test_input_gradient_norms_bad_input(model, kwargs, message):
    with pytest.raises(ValueError, match=message):
        analysis.input_gradient_norms(model(), **kwargs)


def test_comparison_configs_are_the_same_size():
    counts = {name: build_model(cfg).num_params()
              for name, cfg in analysis.comparison_configs(65).items()}
    assert counts == {"rnn": 808_241, "lstm": 800_885, "gru": 806_525, "gpt": 809_856}


def test_train_and_evaluate_is_repeatable_and_uses_the_same_batches(tmp_path):
    data = Dataset(TEXT, cache_dir=tmp_path / "cache")
    tc = TrainConfig(max_iters=6, batch_size=4, warmup_iters=1, seed=5)
    make = lambda: RecurrentLM(RecurrentConfig(vocab_size=data.vocab_size, block_size=8, cell="gru", n_embd=4,
                                               n_hidden=8, n_layer=1), seed=0)
    seen = []
    real = data.get_batch

    def recording(split, *args):
        x, y = real(split, *args)
        seen.append((split, x.copy()))
        return x, y

    data.get_batch = recording
    first = analysis.train_and_evaluate(make(), data, tc, eval_batches=3, eval_every=4, eval_iters=2)
    batches_first, seen[:] = list(seen), []
    second = analysis.train_and_evaluate(make(), data, tc, eval_batches=3, eval_every=4, eval_iters=2)
    assert all(a[0] == b[0] and np.array_equal(a[1], b[1]) for a, b in zip(batches_first, seen))
    assert first["val_loss"] == second["val_loss"] and first["history"]["train_loss"] == second["history"]["train_loss"]
    h = first["history"]
    assert h["step"] == list(range(1, 7)) and h["eval_step"] == [4, 6] and len(h["eval_seconds"]) == 2
    assert first["params"] == make().num_params() and first["tokens_per_s"] > 0


@pytest.mark.slow
def test_plots_return_figures_and_save(tmp_path):
    curves = {"rnn": np.geomspace(1, 1e-6, 8), "gpt": np.full(8, 0.5)}
    fig = plot_vanishing_gradients({"a": curves, "b": curves}, path=tmp_path / "vg.png")
    assert isinstance(fig, Figure) and (tmp_path / "vg.png").stat().st_size > 0
    history = {"step": [1, 2, 3], "train_loss": [3.0, 2.5, 2.2], "eval_step": [3], "eval_val": [2.3],
               "eval_seconds": [0.5]}
    result = {"params": 10, "history": history}
    fig = plot_sequence_model_losses({"lstm": result, "gpt": result}, path=tmp_path / "loss.png")
    assert isinstance(fig, Figure) and (tmp_path / "loss.png").stat().st_size > 0


@pytest.mark.slow
def test_benchmark_script_runs_and_prints_json(tmp_path):
    out = tmp_path / "results.json"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "compare_sequence_models.py"), "--data", "fallback",
         "--steps", "2", "--models", "rnn", "gpt", "--eval-batches", "1", "--eval-iters", "1",
         "--grad-sequences", "1", "--json", "--out", str(out), "--figures-dir", str(tmp_path)],
        capture_output=True, text=True, check=True, timeout=300,
        env=dict(os.environ, XDG_CACHE_HOME=str(tmp_path / "cache"), OPENBLAS_NUM_THREADS="1"))
    results = json.loads(proc.stdout)
    assert set(results["models"]) == {"rnn", "gpt"} and results["steps"] == 2
    assert json.loads(out.read_text())["models"]["gpt"]["params"] == results["models"]["gpt"]["params"]
    assert set(results["gradient_norms"]["trained"]) == {"rnn", "gpt"}
    assert (tmp_path / "sequence_models_loss.png").is_file() and (tmp_path / "vanishing_gradients.png").is_file()
    replot = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "compare_sequence_models.py"), "--replot", "--out", str(out),
         "--figures-dir", str(tmp_path / "again")], capture_output=True, text=True, check=True, timeout=120)
    assert "val loss" in replot.stdout and (tmp_path / "again" / "vanishing_gradients.png").is_file()
