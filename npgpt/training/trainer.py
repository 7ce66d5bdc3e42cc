r"""The training loop (document section 4.3: minimise the next-token NLL).

One step: draw a batch, forward to the loss, backward to the gradients, clip their global norm,
set the learning rate from the schedule, and let the optimizer update the parameters:

$$\theta \leftarrow \mathrm{AdamW}\big(\theta,\ \mathrm{clip}(\nabla_\theta L),\ \eta(t)\big)$$

Every few steps the model is evaluated: the mean loss over a fixed set of train and val batches
(drawn from their own seeded generator, so every evaluation scores the same batches and the
training batches are not disturbed). Checkpoints hold everything needed to continue exactly:
parameters, optimizer moments, step, configs, tokenizer, loss history and the random generators'
states; resuming reproduces the losses of an uninterrupted run bit for bit.
"""
import time
from dataclasses import asdict, dataclass, fields

import numpy as np
from tqdm import tqdm  # plain: tqdm.auto warns in notebooks without ipywidgets

from .checkpoint import CHECKPOINT_FORMAT, model_from_checkpoint, read_checkpoint, write_checkpoint
from .optim import SGD, AdamW, clip_grad_norm, lr_schedule


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite."""


@dataclass
class TrainConfig:
    """How to train. Defaults are nanoGPT's CPU recipe for character-level Tiny Shakespeare."""

    max_iters: int = 2000
    batch_size: int = 12
    optimizer: str = "adamw"          # "adamw" or "sgd"
    lr: float = 1e-3
    min_lr: float = 1e-4
    warmup_iters: int = 100
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.99
    momentum: float = 0.9             # SGD only
    grad_clip: float = 1.0            # 0 disables clipping
    eval_interval: int = 250
    eval_iters: int = 20              # batches per split at each periodic evaluation
    seed: int = 1337

    def __post_init__(self):
        for name in ("max_iters", "batch_size", "eval_interval", "eval_iters"):
            if getattr(self, name) < 1:
                raise ValueError(f"TrainConfig.{name} must be >= 1, got {getattr(self, name)!r}")
        if self.optimizer not in ("adamw", "sgd"):
            raise ValueError(f"optimizer must be 'adamw' or 'sgd', got {self.optimizer!r}")
        if not 0 <= self.min_lr <= self.lr:
            raise ValueError(f"need 0 <= min_lr <= lr, got min_lr={self.min_lr}, lr={self.lr}")
        if self.warmup_iters < 0 or self.grad_clip < 0:
            raise ValueError("warmup_iters and grad_clip must be >= 0")

    @classmethod
    def from_dict(cls, d):
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})


class Trainer:
    """Trains ``model`` on ``data`` (anything with ``get_batch(split, batch_size, block_size, rng)``).

    ``tokenizer`` (optional, with ``to_json()``/``from_json()``) is stored in checkpoints so that
    ``python -m npgpt sample`` can decode without the corpus.
    """

    def __init__(self, model, data, config=None, tokenizer=None):
        self.model, self.data, self.tokenizer = model, data, tokenizer
        self.config = config or TrainConfig()
        c = self.config
        self.optimizer = (AdamW(model.params, lr=c.lr, betas=(c.beta1, c.beta2), weight_decay=c.weight_decay)
                          if c.optimizer == "adamw"
                          else SGD(model.params, lr=c.lr, momentum=c.momentum, weight_decay=c.weight_decay))
        self.batch_rng = np.random.default_rng([c.seed, 0])
        self.step = 0
        self.history = {"step": [], "train_loss": [], "lr": [], "eval_step": [], "eval_train": [], "eval_val": []}

    # ------------------------------------------------------------------ one step
    def learning_rate(self, step):
        c = self.config
        return lr_schedule(step, c.lr, c.min_lr, c.warmup_iters, c.max_iters)

    def train_step(self):
        """One optimisation step; returns the batch loss before the update."""
        c, model = self.config, self.model
        x, y = self.data.get_batch("train", c.batch_size, model.config.block_size, self.batch_rng)
        _, loss = model.forward(x, y)
        if not np.isfinite(loss):
            raise TrainingDiverged(f"loss became {loss} at step {self.step}; lower the learning rate "
                                   f"(lr={c.lr}) or keep gradient clipping on")
        grads = model.backward()
        if c.grad_clip > 0:
            clip_grad_norm(grads, c.grad_clip)
        lr = self.learning_rate(self.step)
        self.optimizer.step(grads, lr=lr)
        self.step += 1
        self.history["step"].append(self.step)
        self.history["train_loss"].append(loss)
        self.history["lr"].append(lr)
        return loss

    def evaluate(self, n_batches=None):
        """Mean loss over the same ``n_batches`` batches of each split every time (eval mode)."""
        n_batches = n_batches or self.config.eval_iters
        model = self.model
        was_training = model.training
        model.eval()
        losses = {}
        for split in ("train", "val"):
            rng = np.random.default_rng([self.config.seed, 1, split == "val"])
            losses[split] = float(np.mean([
                model.forward(*self.data.get_batch(split, self.config.batch_size,
                                                   model.config.block_size, rng))[1]
                for _ in range(n_batches)]))
        model.train(was_training)
        return losses

    # ------------------------------------------------------------------ the loop
    def train(self, checkpoint_path=None, progress=True, log=print):
        """Run until ``max_iters``; evaluate every ``eval_interval`` steps and at the end.

        Ctrl-C saves a checkpoint (when ``checkpoint_path`` is set) and returns cleanly; a NaN/inf
        loss raises :class:`TrainingDiverged` naming the step. Returns the history dict.
        """
        c = self.config
        tokens_per_step = c.batch_size * self.model.config.block_size
        bar = tqdm(total=c.max_iters, initial=self.step, disable=not progress, unit="step", dynamic_ncols=True)
        try:
            while self.step < c.max_iters:
                t0 = time.perf_counter()
                loss = self.train_step()
                bar.update(1)
                bar.set_postfix(loss=f"{loss:.4f}", lr=f"{self.history['lr'][-1]:.2e}",
                                tok_s=f"{tokens_per_step / (time.perf_counter() - t0):,.0f}",
                                refresh=False)   # tqdm redraws on its own clock, not every step
                if self.step % c.eval_interval == 0 or self.step == c.max_iters:
                    self._record_eval(log, bar)
                    if checkpoint_path:
                        self.save_checkpoint(checkpoint_path)
        except KeyboardInterrupt:
            bar.close()
            if checkpoint_path:
                self.save_checkpoint(checkpoint_path)
                log(f"interrupted at step {self.step}; checkpoint saved to {checkpoint_path}")
            else:
                log(f"interrupted at step {self.step}")
            return self.history
        bar.close()
        return self.history

    def _record_eval(self, log, bar):
        losses = self.evaluate()
        self.history["eval_step"].append(self.step)
        self.history["eval_train"].append(losses["train"])
        self.history["eval_val"].append(losses["val"])
        message = f"step {self.step}: train loss {losses['train']:.4f}, val loss {losses['val']:.4f}"
        (bar.write if not bar.disable else log)(message)

    # ------------------------------------------------------------------ checkpoints
    def save_checkpoint(self, path):
        """Write everything needed to resume to an ``.npz``, atomically (temp file, then rename)."""
        arrays = {f"param/{k}": v for k, v in self.model.params.items()}
        arrays.update({f"optim/{k}": np.asarray(v) for k, v in self.optimizer.state_dict().items()})
        arrays.update({f"history/{k}": np.asarray(v, dtype=np.float64) for k, v in self.history.items()})
        meta = {
            "format": CHECKPOINT_FORMAT,
            "step": self.step,
            "model_config": self.model.config.to_dict(),
            "dtype": np.dtype(self.model.dtype).name,
            "train_config": asdict(self.config),
            "batch_rng": self.batch_rng.bit_generator.state,
            "dropout_rng": self.model.dropout_rng.bit_generator.state,
            "tokenizer": None if self.tokenizer is None else self.tokenizer.to_json(),
        }
        write_checkpoint(path, meta, arrays)

    @classmethod
    def from_checkpoint(cls, path, data, tokenizer=None, **overrides):
        """Rebuild model, optimizer and trainer state from ``path`` and continue with ``data``.

        ``overrides`` replace TrainConfig fields (for example a larger ``max_iters``)."""
        meta, arrays = read_checkpoint(path)
        model = model_from_checkpoint(path, meta, arrays)
        config = TrainConfig.from_dict({**meta["train_config"], **overrides})
        trainer = cls(model, data, config, tokenizer)
        trainer.optimizer.load_state_dict(
            {k[len("optim/"):]: v for k, v in arrays.items() if k.startswith("optim/")})
        trainer.step = meta["step"]
        trainer.batch_rng.bit_generator.state = meta["batch_rng"]
        model.dropout_rng.bit_generator.state = meta["dropout_rng"]
        for k in trainer.history:
            values = arrays.get(f"history/{k}", np.zeros(0))
            trainer.history[k] = [int(v) if "step" in k else float(v) for v in values]
        return trainer
