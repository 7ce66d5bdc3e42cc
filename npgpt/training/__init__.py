"""Training (document section 4.3: minimise the next-token NLL): batches, optimizers and the
learning-rate schedule, the training loop, and checkpoints."""
from .config import TrainConfig
from .data import Dataset
from .optim import SGD, AdamW, clip_grad_norm, lr_schedule
from .trainer import Trainer, TrainingDiverged

__all__ = ["AdamW", "Dataset", "SGD", "TrainConfig", "Trainer", "TrainingDiverged", "clip_grad_norm",
           "lr_schedule"]
