"""Pruning: magnitude masks that hold through training and resume, structured pruning that really
shrinks the matrices and computes exactly what the unpruned model computes without those units."""
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
