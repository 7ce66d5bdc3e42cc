"""Pruning: magnitude masks that hold through training and resume, structured pruning that really
shrinks the matrices and computes exactly what the unpruned model computes without those units."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from npgpt import GPT, Dataset, GPTConfig, TrainConfig, Trainer, check_model, generate, jitter, use_backend
from npgpt.allocation.prune import (
    apply_masks,
    head_scores,
    neuron_scores,
    prunable_weights,
    prune_heads,
    prune_magnitude,
    prune_neurons,
    sparsity_of,
)
from npgpt.cli import main
from npgpt.decoding import next_token_logits
from npgpt.io.checkpoint import model_from_checkpoint, read_checkpoint

TEXT = "the quick brown fox jumps over the lazy dog. " * 40
CFG = dict(vocab_size=11, block_size=8, n_layer=2, n_head=4, n_embd=16)


def model64(**overrides):
    m = GPT(GPTConfig(**{**CFG, **overrides}), dtype=np.float64)
    jitter(m.params, scale=0.3, seed=5)
    return m.eval()


# ----------------------------------------------------------------------------- magnitude
@pytest.mark.parametrize("scope", ["global", "layer"])
def test_magnitude_pruning_removes_exactly_the_smallest(scope):
    m = model64()
    before = {n: m.params[n].copy() for n in prunable_weights(m)}
    masks = prune_magnitude(m, 0.3, scope)
    groups = [list(before)] if scope == "global" else [[n] for n in before]
    for group in groups:
        kept = np.concatenate([np.abs(before[n][masks[n]]) for n in group])
        dropped = np.concatenate([np.abs(before[n][~masks[n]]) for n in group])
        total = kept.size + dropped.size
        assert dropped.size == round(0.3 * total) and dropped.max() <= kept.min()
    for n in before:
        assert np.all(m.params[n][~masks[n]] == 0) and np.array_equal(m.params[n][masks[n]], before[n][masks[n]])
    assert abs(sparsity_of(m) - 0.3) < 1e-3
    assert "transformer.wte.weight" not in masks                     # embeddings are left alone


def test_masked_weights_stay_zero_through_adamw_and_a_resume(tmp_path):
    data = Dataset(TEXT, cache_dir=tmp_path / "cache")
    config = GPTConfig(vocab_size=data.vocab_size, block_size=16, n_layer=2, n_head=2, n_embd=16)
    model = GPT(config)
    masks = prune_magnitude(model, 0.5)
    train = TrainConfig(max_iters=6, batch_size=4, warmup_iters=1, eval_interval=3, eval_iters=1, weight_decay=0.1)
    trainer = Trainer(model, data, train, data.tokenizer, masks)
    trainer.train(checkpoint_path=tmp_path / "ckpt.npz", progress=False, log=lambda *_: None)
    changed = any(not np.array_equal(model.params[n][masks[n]], 0) for n in masks)
    assert changed and all(np.all(model.params[n][~masks[n]] == 0) for n in masks)
    resumed = Trainer.from_checkpoint(tmp_path / "ckpt.npz", data, data.tokenizer, max_iters=10)
    assert resumed.masks.keys() == masks.keys()
    resumed.train(progress=False, log=lambda *_: None)
    assert all(np.all(resumed.model.params[n][~masks[n]] == 0) for n in masks)


def test_a_mask_that_does_not_fit_is_refused(tmp_path):
    data = Dataset(TEXT, cache_dir=tmp_path / "cache")
    model = GPT(GPTConfig(vocab_size=data.vocab_size, block_size=16, n_layer=1, n_head=2, n_embd=16))
    with pytest.raises(ValueError, match="masks must be bool arrays"):
        Trainer(model, data, masks={"transformer.h.0.mlp.c_fc.weight": np.ones((2, 2), dtype=bool)})


# ----------------------------------------------------------------------------- structured
def test_pruning_heads_equals_silencing_them():
    """The smaller model computes what the full one does with the dropped heads' output rows at 0."""
    full = model64()
    small, kept = prune_heads(full, 0.5)
    assert small.config.head_counts == (2, 2) and small.num_params() < full.num_params()
    assert small.params["transformer.h.0.attn.c_attn.weight"].shape == (16, 3 * 8)
    silenced = model64()
    hs = full.config.head_size
    for i, heads in enumerate(kept):
        for h in set(range(4)) - set(heads.tolist()):
            silenced.params[f"transformer.h.{i}.attn.c_proj.weight"][h * hs:(h + 1) * hs] = 0
    idx = np.random.default_rng(0).integers(0, 11, (2, 8))
    for backend in ("numpy", "numba"):
        with use_backend(backend):
            np.testing.assert_allclose(small.forward(idx)[0], silenced.forward(idx)[0], rtol=1e-12, atol=1e-12)


def test_pruning_neurons_equals_silencing_them():
    full = model64()
    small, kept = prune_neurons(full, 0.75)
    assert small.config.mlp_widths == (16, 16)
    silenced = model64()
    for i, neurons in enumerate(kept):
        dropped = sorted(set(range(64)) - set(neurons.tolist()))
        silenced.params[f"transformer.h.{i}.mlp.c_proj.weight"][dropped] = 0
    idx = np.random.default_rng(1).integers(0, 11, (2, 8))
    np.testing.assert_allclose(small.forward(idx)[0], silenced.forward(idx)[0], rtol=1e-12, atol=1e-12)


def test_the_lowest_scored_units_go():
    full = model64()
    full.params["transformer.h.1.attn.c_proj.weight"][8:12] *= 1e-3      # head 2 of block 1 nearly silent
    scores = head_scores(full)
    assert np.argmin(scores[1]) == 2
    _, kept = prune_heads(full, 0.25)
    assert 2 not in kept[1] and len(kept[0]) == 3
    assert [s.shape for s in neuron_scores(full)] == [(64,), (64,)]


@pytest.mark.parametrize("backend", ["numpy", "numba"])
@pytest.mark.slow
def test_a_pruned_model_passes_the_gradient_check(backend):
    small, _ = prune_heads(model64(), 0.5)
    small, _ = prune_neurons(small, 0.5)
    jitter(small.params, scale=0.3, seed=2)
    idx = np.random.default_rng(2).integers(0, 11, (2, 6))
    with use_backend(backend):
        report = check_model(small.train(), idx, np.roll(idx, -1, axis=1))
    assert report.max_rel_error <= 1e-6, f"\n{report}"


def test_a_pruned_model_generates_and_its_cache_agrees(tmp_path):
    small, _ = prune_heads(model64(), 0.25)
    tokens = np.random.default_rng(3).integers(0, 11, (1, 20))
    cache = small.new_cache()
    for n in range(1, 21):
        cached = next_token_logits(small, tokens[:, :n], cache)
        np.testing.assert_allclose(cached, next_token_logits(small, tokens[:, :n]), rtol=1e-10)
    assert generate(small, [1, 2], 12, use_cache=True).tolist() == generate(small, [1, 2], 12, use_cache=False).tolist()


def test_a_structurally_pruned_checkpoint_round_trips(tmp_path):
    data = Dataset(TEXT, cache_dir=tmp_path / "cache")
    model = GPT(GPTConfig(vocab_size=data.vocab_size, block_size=16, n_layer=2, n_head=4, n_embd=16))
    small, _ = prune_neurons(prune_heads(model, 0.5)[0], 0.5)
    Trainer(small, data, TrainConfig(max_iters=1), data.tokenizer).save_checkpoint(tmp_path / "ckpt.npz")
    loaded = model_from_checkpoint(tmp_path / "ckpt.npz")
    assert loaded.config == small.config and loaded.config.head_counts == (2, 2)
    for name, p in small.params.items():
        np.testing.assert_array_equal(loaded.params[name], p)


@pytest.mark.parametrize("call, message", [
    (lambda m: prune_magnitude(m, 1.0), r"sparsity must be in \[0, 1\), got 1.0"),
    (lambda m: prune_magnitude(m, -0.1), "sparsity must be in"),
    (lambda m: prune_magnitude(m, 0.5, scope="row"), "scope must be one of"),
    (lambda m: prune_magnitude(m, 0.5, names=["nope"]), "no parameters named"),
    (lambda m: prune_heads(m, 1.5), r"fraction must be in \[0, 1\)"),
    (lambda m: prune_neurons(object(), 0.5), "structured pruning works on a GPT, got object"),
    (lambda m: GPTConfig(**CFG, head_counts=(5, 4)), "more than n_head=4"),
    (lambda m: GPTConfig(**CFG, mlp_widths=(8,)), "one count per block"),
])
def test_bad_input_is_named(call, message):
    with pytest.raises(ValueError, match=message):
        call(model64())


@pytest.mark.slow
def test_prune_command_prunes_fine_tunes_and_saves(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(TEXT, encoding="utf-8")
    assert main(["train", "--data", str(corpus), "--out-dir", str(tmp_path / "run"), "--n-layer", "2",
                 "--n-head", "4", "--n-embd", "16", "--block-size", "16", "--batch-size", "4", "--max-iters", "4",
                 "--eval-iters", "1", "--final-eval-iters", "1", "--no-progress", "--sample-tokens", "0"]) == 0
    capsys.readouterr()
    assert main(["prune", "--ckpt", str(tmp_path / "run" / "ckpt.npz"), "--data", str(corpus), "--out-dir",
                 str(tmp_path / "pruned"), "--sparsity", "0.5", "--heads", "0.5", "--then-finetune", "3",
                 "--eval-iters", "2", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "trained" in out and "pruned" in out and "fine-tuned 3 steps" in out
    meta, arrays = read_checkpoint(tmp_path / "pruned" / "ckpt.npz")
    assert meta["model_config"].head_counts == (2, 2) and meta["step"] == 3
    masks = {k[5:]: v for k, v in arrays.items() if k.startswith("mask/")}
    assert masks and all(np.all(arrays[f"param/{n}"][~m] == 0) for n, m in masks.items())
    model = model_from_checkpoint(tmp_path / "pruned" / "ckpt.npz")
    apply_masks(model.params, masks)                       # already zero: applying again changes nothing
    assert all(np.array_equal(model.params[n], arrays[f"param/{n}"]) for n in masks)

    # Never over another run: not over its own input, not over an earlier result unless --force.
    before = {name: (tmp_path / name / "ckpt.npz").read_bytes() for name in ("run", "pruned")}
    prune = ["prune", "--ckpt", str(tmp_path / "run" / "ckpt.npz"), "--data", str(corpus), "--sparsity", "0.5",
             "--eval-iters", "1", "--no-progress"]
    capsys.readouterr()
    assert main([*prune, "--out-dir", str(tmp_path / "run")]) == 2
    assert "holds the checkpoint being pruned" in capsys.readouterr().err
    assert main([*prune, "--out-dir", str(tmp_path / "pruned")]) == 2
    err = capsys.readouterr().err
    assert "already holds a checkpoint" in err and "replace it with --force" in err
    assert main([*prune, "--out-dir", str(tmp_path / "run" / "ckpt.npz")]) == 2
    assert "is a file, expected a folder" in capsys.readouterr().err
    assert {name: (tmp_path / name / "ckpt.npz").read_bytes() for name in ("run", "pruned")} == before
    assert main([*prune, "--out-dir", str(tmp_path / "pruned"), "--force"]) == 0


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_evenly_pruned_blocks_keep_the_one_token_decode_step(backend, monkeypatch):
    """Pruning the same fraction of every block leaves blocks of one shape: generation keeps the
    dispatched one-token step (the fused kernel on numba), and its logits equal the plain forward."""
    import npgpt.kernels as kernels
    import npgpt.ops as ops
    small, _ = prune_neurons(prune_heads(model64(), 0.5)[0], 0.5)
    assert small.stacked_block_weights() is not None
    twin = {"numpy": ops, "numba": kernels}[backend]
    calls, real = [], twin.decode_step_forward
    monkeypatch.setattr(twin, "decode_step_forward", lambda *a: calls.append(a[5]) or real(*a))
    monkeypatch.setattr("npgpt.kernels.backend._namespaces", {})
    tokens = np.random.default_rng(4).integers(0, 11, (2, 8))
    with use_backend(backend):
        cache = small.new_cache(batch_size=2)
        for n in range(1, 9):
            stepped = next_token_logits(small, tokens[:, :n], cache)
            np.testing.assert_allclose(stepped, small.forward(tokens[:, :n])[0][:, -1], rtol=1e-10)
    assert calls == [2] * 8                                    # every step, with the pruned head count


# ----------------------------------------------------------------------------- the command guards its output (issue 28)
ROOT = Path(__file__).resolve().parents[1]
TRAIN_TINY = ["--n-layer", "2", "--n-head", "4", "--n-embd", "16", "--block-size", "16", "--batch-size", "4",
              "--max-iters", "3", "--eval-iters", "1", "--final-eval-iters", "1", "--no-progress",
              "--sample-tokens", "0"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """(corpus, checkpoint) of a tiny trained run, made once."""
    folder = tmp_path_factory.mktemp("prune")
    corpus = folder / "corpus.txt"
    corpus.write_text(TEXT, encoding="utf-8")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("XDG_CACHE_HOME", str(folder / "cache"))
        assert main(["train", "--data", str(corpus), "--out-dir", str(folder / "run"), *TRAIN_TINY, "-q"]) == 0
    return corpus, folder / "run" / "ckpt.npz"


def prune_argv(trained, out_dir, *extra):
    corpus, ckpt = trained
    return ["prune", "--ckpt", str(ckpt), "--data", str(corpus), "--out-dir", str(out_dir), "--sparsity", "0.5",
            "--eval-iters", "1", "--no-progress", *extra]


@pytest.fixture
def no_work(monkeypatch):
    """Fails the test if prune reads the checkpoint (the start of its work)."""
    import npgpt.io.checkpoint

    def read(*a, **k):
        raise AssertionError("prune started its work before refusing")
    monkeypatch.setattr(npgpt.io.checkpoint, "read_checkpoint", read)


def test_prune_refuses_its_own_input_and_a_file_before_any_work(trained, tmp_path, capsys, no_work):
    corpus, ckpt = trained
    before = ckpt.read_bytes()
    for out_dir, extra, message in [
            (ckpt.parent, ["--force"], f"--out-dir {ckpt.parent} holds the checkpoint being pruned ({ckpt}); "
                                       f"write the pruned model to another --out-dir"),
            (ckpt, ["--force"], f"--out-dir {ckpt} is a file, expected a folder (it is the checkpoint being pruned)"),
            (corpus, [], f"--out-dir {corpus} is a file, expected a folder")]:
        assert main(prune_argv(trained, out_dir, *extra)) == 2
        assert capsys.readouterr().err == f"npgpt prune: error: {message}\n"
    linked = tmp_path / "linked"
    linked.symlink_to(ckpt.parent, target_is_directory=True)        # the same folder by another name
    assert main(prune_argv(trained, linked, "--force")) == 2
    assert "holds the checkpoint being pruned" in capsys.readouterr().err
    assert ckpt.read_bytes() == before


def test_prune_checks_room_before_any_work(trained, tmp_path, capsys, monkeypatch):
    import npgpt.training.trainer as trainer_module
    evaluated = []
    monkeypatch.setattr(trainer_module.Trainer, "evaluate", lambda *a, **k: evaluated.append(1))
    monkeypatch.setattr(trainer_module.shutil, "disk_usage", lambda p: type("U", (), {"free": 1000})())
    assert main(prune_argv(trained, tmp_path / "out")) == 2
    assert "MB free; a checkpoint needs about" in capsys.readouterr().err
    assert evaluated == [] and not (tmp_path / "out" / "ckpt.npz").exists()


HOLD_LOCK = """
import sys
from npgpt.locks import folder_lock, hold_lock
with hold_lock(folder_lock(sys.argv[1]), "x"):
    print("held", flush=True)
    sys.stdin.readline()
"""


def test_prune_into_a_folder_in_use_is_refused_before_any_work(trained, tmp_path, capsys, no_work):
    out = tmp_path / "out"
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(out)], cwd=ROOT, text=True,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        assert holder.stdout.readline().strip() == "held"
        assert main(prune_argv(trained, out)) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"npgpt prune: error: --out-dir {out} is in use by another npgpt run "
                              f"(pid {holder.pid}, started ") and err.count("\n") == 1
    finally:
        holder.stdin.close()
        holder.wait(timeout=30)
    assert not (out / "ckpt.npz").exists()


def test_sigterm_while_fine_tuning_keeps_the_steps_that_ran_and_says_so(trained, tmp_path, capsys, monkeypatch):
    """Before: 'fine-tuned 5 steps' and exit 0 for a run stopped at step 2."""
    real_step = Trainer.train_step

    def step_then_sigterm(self):
        loss = real_step(self)
        if self.step == 2:
            os.kill(os.getpid(), signal.SIGTERM)      # the loop stops at this step boundary
        return loss
    monkeypatch.setattr(Trainer, "train_step", step_then_sigterm)
    assert main(prune_argv(trained, tmp_path / "out", "--then-finetune", "5")) == 143
    out = capsys.readouterr().out
    assert "fine-tuned" not in out.replace("fine-tuned 2 of 5 steps", "")
    assert "fine-tuning stopped at step 2 of 5 (SIGTERM); not evaluated" in out
    assert f"checkpoint: {tmp_path / 'out' / 'ckpt.npz'} (partial: fine-tuned 2 of 5 steps)" in out
    meta, _ = read_checkpoint(tmp_path / "out" / "ckpt.npz")
    assert meta["step"] == 2 and meta["train_config"]["max_iters"] == 5    # the partial mark: step < max_iters


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_before_the_save_saves_nothing_and_exits_with_its_code(trained, tmp_path, signum):
    """A real prune process, signalled while it evaluates (--eval-iters 100000 keeps it there): before,
    SIGTERM ended it with -15 and no word."""
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-m", "npgpt", *prune_argv(trained, out), "--eval-iters", "100000"],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=dict(os.environ, XDG_CACHE_HOME=str(tmp_path / "cache")))
    deadline = time.monotonic() + 60
    while not (out / ".npgpt.lock").exists() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)                             # the lock: past the checks, into the work
    time.sleep(1.0)
    proc.send_signal(signum)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == {signal.SIGTERM: 143, signal.SIGINT: 130}[signum], stderr
    assert stderr.strip().splitlines()[-1].startswith("npgpt prune: interrupted") and "Traceback" not in stderr
    assert stdout == "" and (not out.exists() or list(out.iterdir()) == [])   # no checkpoint, lock or temp file
