"""The training loop: learning, exact resume from a checkpoint, Ctrl-C, divergence, evaluation."""
import os
import signal

import numpy as np
import pytest

from npgpt import GPT, CharTokenizer, Dataset, GPTConfig, TrainConfig, Trainer
from npgpt.checks import UsageError
from npgpt.io.checkpoint import model_from_checkpoint, read_checkpoint
from npgpt.models.quantized import QuantizedGPT
from npgpt.training.distributed import DataParallelTrainer
from npgpt.training.trainer import TrainingDiverged, checkpoint_state

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
    (dict(lr=1e-3, min_lr=1e-2), r"min_lr 0.01 is above lr 0.001: the cosine schedule falls from lr to min_lr"),
])
def test_bad_train_config(kwargs, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig(**kwargs)


# ----------------------------------------------------------------------------- what the Trainer asks
class OnlyTheTrainerProtocol:
    """A model offering only what the Trainer asks of one: ``params``, ``forward(x, y)``,
    ``backward()``, ``evaluating()`` and, for checkpoints, ``checkpoint_state()``. No ``config``,
    ``dtype``, ``dropout_rng``, ``training``, ``train()`` or ``eval()``."""

    __slots__ = ("_model", "params")

    def __init__(self, model):
        self._model, self.params = model, model.params

    def forward(self, x, y):
        return self._model.forward(x, y)

    def backward(self):
        return self._model.backward()

    def evaluating(self):
        return self._model.evaluating()

    def checkpoint_state(self):
        return checkpoint_state(self._model)


@pytest.mark.parametrize("trainer_class", [Trainer, DataParallelTrainer])
def test_the_trainer_asks_a_model_only_for_its_protocol(tmp_path, trainer_class):
    """A model with nothing but the protocol trains, evaluates, saves and resumes exactly as the
    GPT it wraps: the sequence length is the Trainer's argument, the dtype the parameters'."""
    plain = make_trainer(tmp_path, dropout=0.1, max_iters=4)
    plain.train(checkpoint_path=tmp_path / "plain.npz", progress=False, log=lambda *_: None)

    model = GPT(plain.model.config, seed=0)
    bare = trainer_class(OnlyTheTrainerProtocol(model), plain.data, plain.config, plain.tokenizer, block_size=16)
    bare.train(checkpoint_path=tmp_path / "bare.npz", progress=False, log=lambda *_: None)
    assert bare.history == plain.history
    assert bare.evaluate() == plain.evaluate()
    assert model.training                             # evaluating() restored the GPT's mode
    assert read_checkpoint(tmp_path / "bare.npz")[0] == read_checkpoint(tmp_path / "plain.npz")[0]

    resumed = [Trainer.from_checkpoint(tmp_path / name, plain.data, plain.tokenizer, max_iters=8)
               for name in ("bare.npz", "plain.npz")]
    from_bare, from_plain = (r.train(progress=False, log=lambda *_: None) for r in resumed)
    assert from_bare == from_plain and len(from_bare["train_loss"]) == 8        # bit for bit


def test_without_a_block_size_a_model_without_config_is_named(tmp_path):
    plain = make_trainer(tmp_path)
    with pytest.raises(ValueError, match="pass block_size=, or give the data a block_size .*"
                                         "OnlyTheTrainerProtocol has no config.block_size"):
        Trainer(OnlyTheTrainerProtocol(plain.model), plain.data)


@pytest.mark.parametrize("trainer_class", [Trainer, DataParallelTrainer])
def test_a_model_without_a_backward_pass_is_refused_when_the_trainer_is_built(tmp_path, trainer_class):
    """A QuantizedGPT runs forward only: the Trainer says so at once, in one line naming the
    class and what it lacks, not with an AttributeError at the first step."""
    plain = make_trainer(tmp_path)
    quantized = QuantizedGPT.from_float(plain.model, bits=8)
    with pytest.raises(UsageError, match=r"^a QuantizedGPT cannot be trained: it has no backward\(\)"):
        trainer_class(quantized, plain.data, plain.config)


class WithoutCheckpointState(OnlyTheTrainerProtocol):
    """The protocol without ``checkpoint_state()``: it trains, but cannot be saved."""

    checkpoint_state = None


def test_a_model_that_cannot_say_its_checkpoint_state_is_named_when_saving(tmp_path):
    """Training needs no checkpoint_state(); writing a checkpoint does, and says so in one line."""
    plain = make_trainer(tmp_path)
    trainer = Trainer(WithoutCheckpointState(plain.model), plain.data, plain.config, block_size=16)
    with pytest.raises(UsageError, match="^a WithoutCheckpointState cannot be saved in a checkpoint: it has no "
                                         r"checkpoint_state\(\)"):
        trainer.save_checkpoint(tmp_path / "ckpt.npz")
    assert not (tmp_path / "ckpt.npz").exists()


class Windows:
    """A Dataset's batches, saying their own length (``block_size``) and recording the lengths asked."""

    def __init__(self, dataset, block_size, ignore_index=None):
        self.dataset, self.block_size, self.ignore_index, self.asked = dataset, block_size, ignore_index, []

    def get_batch(self, split, batch_size, block_size, rng):
        self.asked.append(block_size)
        x, y = self.dataset.get_batch(split, batch_size, block_size, rng)
        if self.ignore_index is not None:
            y[:, :block_size // 2] = self.ignore_index      # the first half is "prompt": not scored
        return x, y


def test_the_data_may_say_its_sequence_length(tmp_path):
    plain = make_trainer(tmp_path, max_iters=2, eval_interval=2)
    data = Windows(plain.data, block_size=8)                  # shorter than the model's context of 16
    Trainer(plain.model, data, plain.config).train(progress=False, log=lambda *_: None)
    assert set(data.asked) == {8}


def test_the_data_says_which_targets_the_loss_skips(tmp_path):
    plain = make_trainer(tmp_path, max_iters=1, eval_interval=1)
    data = Windows(plain.data, block_size=16, ignore_index=-1)
    expected = data.get_batch("train", plain.config.batch_size, 16, np.random.default_rng([plain.config.seed, 0]))
    _, loss = GPT(plain.model.config, seed=0).forward(*expected, ignore_index=-1)
    history = Trainer(plain.model, data, plain.config).train(progress=False, log=lambda *_: None)
    assert history["train_loss"] == [loss]


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
