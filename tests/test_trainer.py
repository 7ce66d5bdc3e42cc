"""The training loop: learning, exact resume from a checkpoint, Ctrl-C, divergence, evaluation."""
import os
import signal

import numpy as np
import pytest

from npgpt import GPT, CharTokenizer, Dataset, GPTConfig, TrainConfig, Trainer
from npgpt.io.checkpoint import model_from_checkpoint, read_checkpoint
from npgpt.training.trainer import TrainingDiverged

TEXT = "the quick brown fox jumps over the lazy dog. " * 40


def make_trainer(tmp_path, dropout=0.0, optimizer="adamw", **train_kwargs):
    data = Dataset(TEXT, cache_dir=tmp_path / "cache")
    config = GPTConfig(vocab_size=data.vocab_size, block_size=16, n_layer=2, n_head=2, n_embd=16,
                       dropout=dropout)
    defaults = dict(max_iters=8, batch_size=4, warmup_iters=2, eval_interval=4, eval_iters=2,
                    optimizer=optimizer)
    return Trainer(GPT(config, seed=0), data, TrainConfig(**{**defaults, **train_kwargs}), data.tokenizer)


def test_training_reduces_the_loss(tmp_path):
    trainer = make_trainer(tmp_path, max_iters=150, lr=3e-3, eval_interval=150)
    before = trainer.evaluate()["val"]
    trainer.train(progress=False, log=lambda *_: None)
    after = trainer.evaluate()["val"]
    assert after < before - 1.0, (before, after)


@pytest.mark.parametrize("dropout, optimizer", [(0.0, "adamw"), (0.2, "adamw"), (0.1, "sgd")])
def test_resume_reproduces_an_uninterrupted_run_exactly(tmp_path, dropout, optimizer):
    full = make_trainer(tmp_path, dropout, optimizer)
    full.train(progress=False, log=lambda *_: None)

    first = make_trainer(tmp_path, dropout, optimizer, max_iters=3)
    first.train(progress=False, log=lambda *_: None)
    first.save_checkpoint(tmp_path / "ckpt.npz")
    resumed = Trainer.from_checkpoint(tmp_path / "ckpt.npz", first.data, first.tokenizer, max_iters=8)
    assert resumed.step == 3
    resumed.train(progress=False, log=lambda *_: None)

    assert resumed.history["train_loss"] == full.history["train_loss"]   # bit for bit
    for name, p in full.model.params.items():
        np.testing.assert_array_equal(resumed.model.params[name], p, err_msg=name)


def test_checkpoint_contents_and_strict_loading(tmp_path):
    trainer = make_trainer(tmp_path)
    trainer.train(progress=False, log=lambda *_: None)
    path = tmp_path / "ckpt.npz"
    trainer.save_checkpoint(path)
    meta, arrays = read_checkpoint(path)
    assert meta["step"] == 8 and meta["model_config"].n_layer == 2
    assert CharTokenizer.from_json(meta["tokenizer"]) == trainer.tokenizer
    assert {"optim/step", "optim/m.transformer.wte.weight", "param/transformer.ln_f.bias"} <= set(arrays)
    with np.load(path, allow_pickle=False) as f:     # no object arrays anywhere
        assert all(f[k].dtype != object for k in f.files)
    model = model_from_checkpoint(path)
    for name, p in trainer.model.params.items():
        np.testing.assert_array_equal(model.params[name], p)
    assert not list(tmp_path.glob(".tmp*")) and not list(tmp_path.glob(".ckpt*"))   # no temp files left


def test_corrupt_or_missing_checkpoint_is_a_clear_error(tmp_path):
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a zip file")
    with pytest.raises(ValueError, match="truncated or corrupted"):
        read_checkpoint(bad)
    with pytest.raises(ValueError, match="does not exist"):
        read_checkpoint(tmp_path / "missing.npz")


def test_ctrl_c_saves_a_checkpoint_at_the_step_boundary(tmp_path, monkeypatch):
    """Ctrl-C during step 6 lets step 6 finish, then saves and returns."""
    trainer = make_trainer(tmp_path)
    real_step = trainer.train_step

    def step_with_ctrl_c():
        if trainer.step == 5:
            os.kill(os.getpid(), signal.SIGINT)          # arrives in the middle of step 6
        return real_step()

    monkeypatch.setattr(trainer, "train_step", step_with_ctrl_c)
    messages = []
    trainer.train(checkpoint_path=tmp_path / "ckpt.npz", progress=False, log=messages.append)
    assert trainer.step == 6 and trainer.stopped_by == signal.SIGINT
    assert read_checkpoint(tmp_path / "ckpt.npz")[0]["step"] == 6
    assert "SIGINT: stopped at step 6" in messages[-1]


def test_nan_loss_stops_training_naming_the_step(tmp_path):
    trainer = make_trainer(tmp_path)
    trainer.train_step()
    trainer.train_step()
    trainer.model.params["transformer.ln_f.weight"][0] = np.nan
    with pytest.raises(TrainingDiverged, match="at step 3"):
        trainer.train(progress=False, log=lambda *_: None)


def test_evaluation_is_repeatable_and_leaves_training_batches_alone(tmp_path):
    trainer = make_trainer(tmp_path, dropout=0.3)
    state = trainer.batch_rng.bit_generator.state
    first, second = trainer.evaluate(), trainer.evaluate()
    assert first == second
    assert trainer.batch_rng.bit_generator.state == state
    assert trainer.model.training        # evaluation restores training mode


def test_history_records_every_step_and_evaluation(tmp_path):
    trainer = make_trainer(tmp_path)
    history = trainer.train(progress=False, log=lambda *_: None)
    assert history["step"] == list(range(1, 9))
    assert history["eval_step"] == [4, 8]
    assert len(history["eval_val"]) == 2 and all(np.isfinite(history["eval_val"]))


@pytest.mark.parametrize("kwargs, message", [
    (dict(max_iters=0), "max_iters must be a positive integer, got 0"),
    (dict(optimizer="adam"), "optimizer must be 'adamw' or 'sgd'"),
    (dict(lr=1e-3, min_lr=1e-2), r"min_lr must be in \[0, 0.001\], got 0.01"),
])
def test_bad_train_config(kwargs, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig(**kwargs)


# ----------------------------------------------------------------------------- recurrent models
def make_recurrent_trainer(tmp_path, cell, dropout=0.0, **train_kwargs):
    from npgpt import RecurrentConfig, RecurrentLM
    data = Dataset(TEXT, cache_dir=tmp_path / "cache")
    config = RecurrentConfig(vocab_size=data.vocab_size, block_size=16, cell=cell, n_embd=8, n_hidden=16,
                             n_layer=2, dropout=dropout)
    defaults = dict(max_iters=8, batch_size=4, warmup_iters=2, eval_interval=4, eval_iters=2)
    return Trainer(RecurrentLM(config, seed=0), data, TrainConfig(**{**defaults, **train_kwargs}),
                   data.tokenizer)


@pytest.mark.parametrize("cell, dropout", [("lstm", 0.0), ("lstm", 0.2), ("gru", 0.2), ("rnn", 0.0)])
def test_recurrent_resume_reproduces_an_uninterrupted_run_exactly(tmp_path, cell, dropout):
    full = make_recurrent_trainer(tmp_path, cell, dropout)
    full.train(progress=False, log=lambda *_: None)

    first = make_recurrent_trainer(tmp_path, cell, dropout, max_iters=3)
    first.train(progress=False, log=lambda *_: None)
    first.save_checkpoint(tmp_path / "ckpt.npz")
    resumed = Trainer.from_checkpoint(tmp_path / "ckpt.npz", first.data, first.tokenizer, max_iters=8)
    assert type(resumed.model).__name__ == "RecurrentLM" and resumed.model.config == full.model.config
    resumed.train(progress=False, log=lambda *_: None)

    assert resumed.history["train_loss"] == full.history["train_loss"]   # bit for bit
    for name, p in full.model.params.items():
        np.testing.assert_array_equal(resumed.model.params[name], p, err_msg=name)


def test_model_from_checkpoint_dispatches_on_the_saved_config(tmp_path):
    from npgpt import RecurrentLM
    trainer = make_recurrent_trainer(tmp_path, "gru", max_iters=2)
    trainer.train(checkpoint_path=tmp_path / "ckpt.npz", progress=False, log=lambda *_: None)
    meta, _ = read_checkpoint(tmp_path / "ckpt.npz")
    assert meta["model_config"].cell == "gru"
    model = model_from_checkpoint(tmp_path / "ckpt.npz")
    assert isinstance(model, RecurrentLM) and model.dtype == np.float32
    for name, p in trainer.model.params.items():
        np.testing.assert_array_equal(model.params[name], p, err_msg=name)
    gpt_trainer = make_trainer(tmp_path, max_iters=2)
    gpt_trainer.save_checkpoint(tmp_path / "gpt.npz")
    assert isinstance(model_from_checkpoint(tmp_path / "gpt.npz"), GPT)
