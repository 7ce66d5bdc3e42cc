"""What every npgpt model shares: its parameters, their gradients, loading and saving, and its mode.

    model.params         # name -> array, named as the PyTorch / Hugging Face twin names them
    model.grads          # the same keys, filled by model.backward()
    model.num_params()   # trainable scalars
    model.state_dict()   # a copy of params; model.load_state_dict(state) is strict, all or nothing
    model.forward(...)   # the outputs (a language model: logits and the loss of the targets given)
    model.backward(...)  # the gradients of the last forward
    model.train() / model.eval()
    with model.evaluating(): ...  # evaluation mode for a block, then the mode it had
    model.new_cache(batch_size)   # language models: what forward(..., cache=) carries between steps

A language model's ``backward()`` returns the gradients it leaves in ``grads``. A layer that, like
its PyTorch twin, takes arrays rather than token ids (:class:`~npgpt.RNN`, :class:`~npgpt.Transformer`,
:class:`~npgpt.MultiheadAttention`) returns the gradients of its inputs instead and leaves the
parameters' gradients in ``grads``.

The mode (training or evaluation) is its own small class, :class:`TrainingMode`: a model that only
runs inference (:class:`~npgpt.models.quantized.QuantizedGPT`) has a mode, a forward and a cache,
but no ``backward`` and no ``grads``, so it is not a :class:`Model`.

Building a model changes nothing in the process: the ``malloc`` setting that training steps want
is applied by :func:`npgpt.runtime.configure` (``Trainer.train()`` calls it).
"""
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any, Self

import numpy as np
from numpy.typing import DTypeLike

from ..checks import UsageError, check_dtype, load_strict
from .cache import DecodingCache
from .config import Presets


class TrainingMode:
    """Training mode (dropout on, where a model has any) or evaluation mode: ``training``."""

    training: bool

    def train(self, mode: bool = True) -> Self:
        """Training mode (dropout on, where the model has any); returns the model."""
        self.training = bool(mode)
        return self

    def eval(self) -> Self:
        """Evaluation mode (dropout off); returns the model."""
        return self.train(False)

    @contextmanager
    def evaluating(self) -> Iterator[Self]:
        """Evaluation mode for the block, then back to the mode the model had (also on an error)."""
        was_training = self.training
        self.eval()
        try:
            yield self
        finally:
            self.train(was_training)


class Model(TrainingMode, ABC):
    """The shared protocol. A subclass sets ``self.params`` after calling ``super().__init__(dtype)``
    and defines ``forward`` and ``backward``."""

    def __init__(self, dtype: DTypeLike) -> None:
        self.dtype = check_dtype(dtype)
        self.training = True
        self.params: dict[str, np.ndarray] = {}
        self.grads: dict[str, np.ndarray] = {}

    @abstractmethod
    def forward(self, *inputs: Any, **options: Any) -> Any:
        """The model's outputs for ``inputs``; what ``backward`` differentiates."""

    @abstractmethod
    def backward(self, *upstream: Any, **options: Any) -> Any:
        """The gradients of the last forward (module docstring: of the parameters, or of the inputs)."""

    def num_params(self) -> int:
        """Number of trainable scalars (a tied weight counts once; constant tables count zero)."""
        return sum(p.size for p in self.params.values())

    def state_dict(self) -> dict[str, np.ndarray]:
        """A copy of every parameter, keyed by its name."""
        return {name: p.copy() for name, p in self.params.items()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Copy ``state`` (name -> array) into the parameters. Strict: missing, unexpected or
        mis-shaped keys raise a ValueError naming them, and nothing changes unless every key checks out."""
        load_strict(self.params, state, self.dtype, type(self).__name__)

    def _cache_with_loss(self) -> Any:
        """What the last forward kept (``self._caches``), which must hold a loss to differentiate."""
        cache = getattr(self, "_caches", None)
        if cache is None or cache.loss is None:
            raise UsageError("backward() needs a preceding forward(idx, targets) with targets: "
                             "there is no loss to differentiate")
        return cache

    def new_cache(self, batch_size: int = 1) -> DecodingCache:
        """What ``forward(..., cache=)`` carries from one decoding step to the next."""
        raise UsageError(f"{type(self).__name__} does not decode step by step: it has no cache")


class ConfiguredModel(Model):
    """A language model built from a config dataclass (:class:`~npgpt.GPT`, :class:`~npgpt.RecurrentLM`)
    with one dropout generator: it says itself what a training checkpoint records of it."""

    config: Presets
    dropout_rng: np.random.Generator

    def checkpoint_state(self) -> dict[str, Any]:
        """What a checkpoint records beside the parameters: ``model_config`` (the dict that rebuilds
        the model, :func:`npgpt.io.checkpoint.model_from_checkpoint`), ``dtype`` (the parameters')
        and ``dropout_rng`` (the generator's state, so a resumed run draws the same masks)."""
        return {"model_config": self.config.to_dict(), "dtype": params_dtype(self.params).name,
                "dropout_rng": self.dropout_rng.bit_generator.state}


def params_dtype(params: Mapping[str, np.ndarray]) -> np.dtype:
    """The one dtype of every array in ``params`` (a model of mixed dtypes is refused)."""
    dtypes = {p.dtype for p in params.values()}
    if len(dtypes) != 1:
        raise UsageError(f"the parameters must share one dtype, got {sorted(map(str, dtypes)) or 'none'}")
    return dtypes.pop()


def check_sequences(x: Any, name: str, width: int, width_name: str, layout: str, dtype: np.dtype) -> np.ndarray:
    """``x`` as a 3-D float array of ``dtype`` holding at least one step of one sequence, whose
    last axis is ``width`` (``width_name`` names it: input_size, d_model, embed_dim); ``layout``
    (e.g. "(batch, time, input_size)") is what the messages show. The caller transposes it."""
    x = np.asarray(x)
    if not np.issubdtype(x.dtype, np.floating):
        raise UsageError(f"{name} must be a floating-point array, got dtype {x.dtype}")
    if x.ndim != 3:
        raise UsageError(f"{name} has shape {x.shape}, expected 3 axes {layout}")
    if x.shape[-1] != width:
        raise UsageError(f"{name} has shape {x.shape}: its last axis must be {width_name}={width} "
                         f"{layout}, got {x.shape[-1]}")
    if 0 in x.shape:
        raise UsageError(f"{name} has shape {x.shape}: it needs at least one time step and one batch row")
    return x.astype(dtype, copy=False)
