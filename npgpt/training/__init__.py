"""Training (document section 4.3: minimise the next-token NLL): batches, optimizers and the
learning-rate schedule, the training loop, and checkpoints. What the loop asks of a model and of
its data is :class:`TrainableModel` and :class:`BatchSource` (typing protocols, npgpt.training.trainer)."""
from .config import TrainConfig
from .data import Dataset
from .optim import SGD, AdamW, clip_grad_norm, lr_schedule
from .trainer import BatchSource, TrainableModel, Trainer, TrainingDiverged

__all__ = ["AdamW", "BatchSource", "Dataset", "SGD", "TrainConfig", "TrainableModel", "Trainer",
           "TrainingDiverged", "clip_grad_norm", "lr_schedule"]
