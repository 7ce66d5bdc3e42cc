"""The training step the benches time, one contender per implementation: npgpt on a backend (on
fixed threads or its adaptive governor) and the PyTorch twin, eager. Every contender trains the same
model (float32, same batch, AdamW) and has a ``name`` and a ``step()``, as
:mod:`npgpt.perf.harness` expects. The PyTorch twin is :mod:`npgpt.verify.twins`, imported only
when its contender is built (torch is optional).
"""
import time

import numpy as np

from ..models import GPT
from ..models.config import GPTConfig
from ..kernels import backend
from ..runtime.threads import StepThreads
from ..training.optim import AdamW

BENCH_PRESETS = {"baby": dict(batch_size=12), "small": dict(batch_size=16)}


def random_batch(cfg: GPTConfig, batch_size: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Inputs and targets of one step: random token ids, (batch_size, block_size) each."""
    rng = np.random.default_rng(seed)
    x = rng.integers(0, cfg.vocab_size, (batch_size, cfg.block_size))
    y = rng.integers(0, cfg.vocab_size, (batch_size, cfg.block_size))
    return x, y


class NpgptContender:
    """One training step of npgpt on a given backend, on ``threads`` threads (BLAS and numba), or
    "auto": the training loop's :class:`~npgpt.runtime.threads.ThreadGovernor` picks them step by step."""

    def __init__(self, cfg: GPTConfig, backend_name: str, x: np.ndarray, y: np.ndarray,
                 threads: int | str = 2, update: bool = True) -> None:
        self.threads = StepThreads(threads).__enter__()            # for the worker's whole life
        self.name = f"npgpt-{backend_name}" + ("-auto" if threads == "auto" else "")
        self.backend_name = backend_name
        self.model = GPT(cfg, seed=0)
        self.optimizer = AdamW(self.model.params, lr=1e-4, betas=(0.9, 0.99), weight_decay=0.1) if update else None
        self.x, self.y = x, y

    def step(self) -> None:
        start = time.perf_counter()
        with backend.use_backend(self.backend_name):
            self.model.forward(self.x, self.y)
            grads = self.model.backward()
            if self.optimizer:
                self.optimizer.step(grads)
        self.threads.record(time.perf_counter() - start)

    def thread_count(self) -> int:
        return self.threads.count


class TorchContender:
    """One training step of the PyTorch twin (eager), same shapes and optimizer."""

    def __init__(self, cfg: GPTConfig, x: np.ndarray, y: np.ndarray, threads: int, update: bool = True) -> None:
        import torch

        from ..verify.twins import TorchGPT
        torch.set_num_threads(threads)
        self.name, self.torch, self.update = "torch-eager", torch, update
        self.model = TorchGPT(cfg)
        params = list(self.model.parameters())
        self.optimizer = torch.optim.AdamW(
            [{"params": [p for p in params if p.dim() >= 2], "weight_decay": 0.1},
             {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}],
            lr=1e-4, betas=(0.9, 0.99))
        self.x, self.y = torch.from_numpy(x), torch.from_numpy(y)

    def step(self) -> None:
        _, loss = self.model(self.x, self.y)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.update:
            self.optimizer.step()

    def thread_count(self) -> int:
        return self.torch.get_num_threads()
