"""How to train: :class:`TrainConfig`, every setting of the training loop in one dataclass.

Each field carries its help text and allowed values (:func:`npgpt.models.config.option`): the
dataclass checks itself with them, ``npgpt train`` makes one flag per field from them
(``--max-iters`` for ``max_iters``) and checks ``--config`` files with them, and the fields marked
``resumable`` are the ones a resumed run may change.
"""
from dataclasses import dataclass, field, fields
from typing import Any

from ..checks import UsageError, check_real
from ..models.config import check_option, option, options

OPTIMIZERS = ("adamw", "sgd")


@dataclass
class TrainConfig:
    """How to train. Defaults are nanoGPT's CPU recipe for character-level Tiny Shakespeare."""

    max_iters: int = field(default=2000, metadata=option("training steps", low=1, resumable=True))
    batch_size: int = field(default=12, metadata=option(
        "sequences per optimizer step (the global batch, over every MPI rank and micro-step)", low=1,
        resumable=True))
    optimizer: str = field(default="adamw", metadata=option("update rule", choices=OPTIMIZERS))
    lr: float = field(default=1e-3, metadata=option("peak learning rate", low=0.0, resumable=True))
    min_lr: float = field(default=1e-4, metadata=option("learning rate at the end of the cosine (at most lr)",
                                                        low=0.0, resumable=True))
    warmup_iters: int = field(default=100, metadata=option("linear warmup steps", low=0, resumable=True))
    weight_decay: float = field(default=0.1, metadata=option(
        "decoupled weight decay (2-D weights and embeddings only)", low=0.0, resumable=True))
    beta1: float = field(default=0.9, metadata=option("AdamW first-moment decay", low=0.0, high=1.0,
                                                      high_open=True, resumable=True))
    beta2: float = field(default=0.99, metadata=option("AdamW second-moment decay", low=0.0, high=1.0,
                                                       high_open=True, resumable=True))
    momentum: float = field(default=0.9, metadata=option("SGD momentum", low=0.0, high=1.0, high_open=True,
                                                         resumable=True))
    grad_clip: float = field(default=1.0, metadata=option("global gradient-norm clip (0: off)", low=0.0,
                                                          resumable=True))
    eval_interval: int = field(default=250, metadata=option("steps between evaluations", low=1, resumable=True))
    eval_iters: int = field(default=20, metadata=option("batches per split per evaluation", low=1,
                                                        resumable=True))
    seed: int = field(default=1337, metadata=option("seed for initialisation, batches and dropout", low=0))

    def __post_init__(self) -> None:
        for name, f in options(TrainConfig).items():
            setattr(self, name, check_option(name, getattr(self, name), f))
        if self.min_lr > self.lr:          # named with lr: a user who lowered lr never gave min_lr
            raise UsageError(f"min_lr {self.min_lr:g} is above lr {self.lr:g}: the cosine schedule falls from lr to "
                             f"min_lr, so min_lr must be at most lr (min_lr defaults to 0.0001)")
        self.min_lr = check_real("min_lr", self.min_lr, low=0.0, high=self.lr)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TrainConfig":
        """The config of a checkpoint's ``train_config`` dict; keys it does not know are left out."""
        known = {f.name for f in fields(cls)}
        try:
            return cls(**{k: v for k, v in d.items() if k in known})
        except TypeError as e:
            raise UsageError(f"train_config is not valid ({e})") from None
