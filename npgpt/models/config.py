"""The models' configurations and their named presets: :class:`GPTConfig` (``PRESETS``) and
:class:`RecurrentConfig` (``RECURRENT_PRESETS``).

A field a user may set carries its help text and its allowed values in its metadata
(:func:`option`); ``npgpt train`` makes its flags and checks its ``--config`` files from them
(:mod:`npgpt.cli.flags`), and :class:`npgpt.training.TrainConfig` does the same. The presets are
one dict each, in code: a preset is a GPTConfig, checked when the module loads, and a run's own
settings go in a ``--config`` file, which can hold every field a preset sets.
"""
from dataclasses import Field, asdict, dataclass, field, fields, replace
from typing import Any, Self, cast

import numpy as np
from numpy.typing import DTypeLike

from ..checks import UsageError, check_int, check_real
from ..runtime.memory import require_memory

POS_ENCODINGS = ("learned", "sinusoidal")
RECURRENT_CELLS = ("rnn", "lstm", "gru")       # tanh RNN, LSTM, GRU (npgpt.models.recurrent)


def option(help: str, *, low: float | None = None, high: float | None = None, low_open: bool = False,
           high_open: bool = False, choices: tuple[object, ...] | None = None, resumable: bool = False) -> dict[str, Any]:
    """The metadata of a config field a user may set: ``help`` (what it means, for ``--help``), the
    allowed values (``low``/``high`` bounds, closed unless ``*_open``; or ``choices``), and whether
    it may change when a run resumes from a checkpoint (``resumable``: it shapes neither the model
    nor the optimizer's state). The field's annotation (int, float, str, bool) is its type."""
    return {"help": help, "low": low, "high": high, "low_open": low_open, "high_open": high_open,
            "choices": choices, "resumable": resumable}


def options(cls: type) -> dict[str, Field[Any]]:
    """The fields of the dataclass ``cls`` that a user may set (those made with :func:`option`), by name."""
    return {f.name: f for f in fields(cls) if "help" in f.metadata}


def check_option(name: str, value: object, f: Field[Any]) -> object:
    """``value`` for the field ``f`` (see :func:`option`), checked against its type and allowed
    values; a :class:`UsageError` naming ``name`` otherwise. Integers are accepted for a float field."""
    meta, kind, choices = f.metadata, cast(type, f.type), f.metadata["choices"]  # no string annotations here
    if choices is not None:
        if not isinstance(value, kind) or isinstance(value, bool) != (kind is bool) or value not in choices:
            listed = [repr(c) for c in choices]
            raise UsageError(f"{name} must be {', '.join(listed[:-1])} or {listed[-1]}, got {value!r}")
        return value
    if kind is bool:
        if not isinstance(value, bool):
            raise UsageError(f"{name} must be true or false, got {value!r}")
        return value
    if kind is int:
        return check_int(name, value, low=int(meta["low"]))
    if kind is float:
        low, high = (-float("inf") if meta["low"] is None else meta["low"],
                     float("inf") if meta["high"] is None else meta["high"])
        return check_real(name, value, low, high, meta["low_open"], meta["high_open"])
    if not isinstance(value, str):
        raise UsageError(f"{name} must be a string, got {value!r}")
    return value


def require_model_memory(model: str, n_params: int, dtype: DTypeLike, extra_bytes: int = 0) -> None:
    """Refuse, before anything is allocated, a model whose ``n_params`` parameters of ``dtype``
    (and ``extra_bytes`` more that building it holds at once: float64 draws, a constant table) do
    not fit in the memory available, in one line (:func:`npgpt.runtime.memory.require_memory`).
    ``model`` names the model and its sizes, e.g. ``"GPT(n_layer=48, n_embd=8192)"``.

    Only what building the model allocates is counted. Training holds gradients and optimizer
    moments too (AdamW: three more copies of the parameters) and activations that grow with the
    batch: those are checked where the optimizer and the batch are known, not here, so that a model
    built only to sample or evaluate is never refused for what training it would need."""
    dtype = np.dtype(dtype)
    require_memory(n_params * dtype.itemsize + extra_bytes,
                   f"{model} with {n_params:,} parameters in {dtype.name}")


class Presets:
    """What the model configs share: a dict form for checkpoints and named presets
    (``cls.presets()``, a dict name -> config)."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)  # type: ignore[call-overload]  # every subclass is a dataclass

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Self:
        return cls(**d)

    @staticmethod
    def presets() -> dict[str, Any]:
        """Every named configuration of this kind, by name (each subclass has its own)."""
        raise NotImplementedError

    @classmethod
    def preset(cls, name: str, **overrides: Any) -> Self:
        """A named configuration, with any field overridden."""
        presets = cls.presets()
        if name not in presets:
            raise UsageError(f"unknown preset {name!r}; choose one of {sorted(presets)}")
        return replace(presets[name], **overrides)


@dataclass(frozen=True)
class GPTConfig(Presets):
    """Shape of a decoder-only GPT.

    vocab_size: number of token ids; block_size: longest context; n_layer: transformer blocks;
    n_head: attention heads (must divide n_embd); n_embd: model width C; dropout: probability used
    on embeddings, attention weights and residual branches while training; bias: biases in linear
    layers and LayerNorms; pos_encoding: "learned" (GPT-2) or "sinusoidal" (the document's code);
    tie_weights: share the token embedding with the output layer (GPT-2); layer_norm_epsilon: the
    epsilon of every LayerNorm (1e-5, GPT-2's and PyTorch's; a Hugging Face config may say otherwise).

    What compression changes (npgpt/allocation), None meaning "as the fields above say":
    head_counts: heads kept in each block (structured pruning; each head keeps its n_embd / n_head
    columns); mlp_widths: hidden neurons kept in each block's MLP (4 n_embd unpruned);
    factorized: weight name relative to the model (``"h.0.mlp.c_fc"``) -> rank k of the pair
    U (in, k), V (k, out) that replaces that layer's weight (low rank).
    """

    vocab_size: int
    block_size: int = field(metadata=option("context length in tokens", low=1))
    n_layer: int = field(metadata=option("transformer blocks", low=1))
    n_head: int = field(metadata=option("attention heads (must divide n_embd)", low=1))
    n_embd: int = field(metadata=option("model width", low=1))
    dropout: float = field(default=0.0, metadata=option("dropout probability while training", low=0.0, high=1.0,
                                                        high_open=True, resumable=True))
    bias: bool = field(default=True, metadata=option("biases in linear layers and LayerNorms"))
    pos_encoding: str = field(default="learned", metadata=option("position encoding", choices=POS_ENCODINGS))
    tie_weights: bool = field(default=True, metadata=option("share the token embedding with the output layer"))
    layer_norm_epsilon: float = 1e-5
    head_counts: tuple[int, ...] | None = None
    mlp_widths: tuple[int, ...] | None = None
    factorized: tuple[tuple[str, int], ...] | None = None

    def __post_init__(self) -> None:
        for name in ("vocab_size", "block_size", "n_layer", "n_head", "n_embd"):
            object.__setattr__(self, name, check_int(f"GPTConfig.{name}", getattr(self, name)))
        if self.n_embd % self.n_head:
            raise UsageError(f"n_embd={self.n_embd} is not divisible by n_head={self.n_head}: "
                             f"each head needs n_embd / n_head columns")
        object.__setattr__(self, "dropout", check_real("GPTConfig.dropout", self.dropout, 0.0, 1.0,
                                                       high_open=True))
        object.__setattr__(self, "layer_norm_epsilon", check_real("GPTConfig.layer_norm_epsilon",
                                                                  self.layer_norm_epsilon, 0.0, low_open=True))
        if self.pos_encoding not in POS_ENCODINGS:
            raise UsageError(f"pos_encoding must be one of {POS_ENCODINGS}, got {self.pos_encoding!r}")
        for name in ("head_counts", "mlp_widths"):
            value = getattr(self, name)
            if value is not None:
                if not isinstance(value, (list, tuple)) or len(value) != self.n_layer:
                    raise UsageError(f"GPTConfig.{name} must list one count per block ({self.n_layer}), got {value!r}")
                object.__setattr__(self, name, tuple(check_int(f"GPTConfig.{name}[{i}]", v)
                                                     for i, v in enumerate(value)))
        if self.head_counts is not None and max(self.head_counts) > self.n_head:
            raise UsageError(f"GPTConfig.head_counts {self.head_counts} has more than n_head={self.n_head} "
                             f"heads in a block: pruning only removes heads")
        if self.factorized is not None:            # kept as sorted (name, rank) pairs: hashable, JSON-able
            given: Any = self.factorized          # a dict is accepted too
            pairs = given.items() if isinstance(given, dict) else given
            try:
                ranked = sorted((str(name), check_int(f"GPTConfig.factorized[{name!r}]", k)) for name, k in pairs)
            except (TypeError, ValueError) as e:
                raise UsageError(f"GPTConfig.factorized must map weight names to ranks ({e})") from None
            object.__setattr__(self, "factorized", tuple(ranked) or None)

    def heads(self, layer: int) -> int:
        """Attention heads of block ``layer``."""
        return self.n_head if self.head_counts is None else self.head_counts[layer]

    def rank(self, name: str) -> int | None:
        """The rank of the factorised weight ``name`` (``"h.0.mlp.c_fc"``), or None for a full one."""
        return dict(self.factorized or ()).get(name)

    def mlp_width(self, layer: int) -> int:
        """Hidden neurons of block ``layer``'s MLP."""
        return 4 * self.n_embd if self.mlp_widths is None else self.mlp_widths[layer]

    @property
    def head_size(self) -> int:
        return self.n_embd // self.n_head

    @staticmethod
    def presets() -> dict[str, "GPTConfig"]:
        return PRESETS


PRESETS = {
    # nanoGPT's CPU recipe for character-level Tiny Shakespeare (65 characters).
    "baby": GPTConfig(vocab_size=65, block_size=64, n_layer=4, n_head=4, n_embd=128),
    "small": GPTConfig(vocab_size=65, block_size=256, n_layer=6, n_head=6, n_embd=384),
    # The configuration of the document's code (section 4, code example).
    "document": GPTConfig(vocab_size=10000, block_size=512, n_layer=24, n_head=8, n_embd=512,
                          pos_encoding="sinusoidal"),
    # GPT-2 small (124M), the layout whose parameter names npgpt uses.
    "gpt2": GPTConfig(vocab_size=50257, block_size=1024, n_layer=12, n_head=12, n_embd=768),
}


@dataclass(frozen=True, kw_only=True)
class RecurrentConfig(Presets):
    """Shape of a recurrent language model (keyword arguments only).

    vocab_size: number of token ids; block_size: longest training context (the trainer's window;
    the recurrence itself has no limit, but the model is held to it like the GPT); cell: "lstm",
    "gru" or "rnn" (tanh); n_embd: embedding width E; n_hidden: state width H; n_layer: stacked
    recurrent layers; dropout: probability used on the embeddings, between recurrent layers and
    before the output layer while training (Zaremba et al., 2014: never on the recurrent path).
    """

    vocab_size: int
    block_size: int = field(metadata=option("context length in tokens", low=1))
    cell: str = "lstm"
    n_embd: int = field(metadata=option("embedding width", low=1))
    n_hidden: int = field(metadata=option("state width of a recurrent model", low=1))
    n_layer: int = field(metadata=option("stacked recurrent layers", low=1))
    dropout: float = field(default=0.0, metadata=option("dropout probability while training", low=0.0, high=1.0,
                                                        high_open=True, resumable=True))

    def __post_init__(self) -> None:
        for name in ("vocab_size", "block_size", "n_embd", "n_hidden", "n_layer"):
            object.__setattr__(self, name, check_int(f"RecurrentConfig.{name}", getattr(self, name)))
        if self.cell not in RECURRENT_CELLS:
            raise UsageError(f"cell must be one of {RECURRENT_CELLS}, got {self.cell!r}")
        check_real("RecurrentConfig.dropout", self.dropout, 0.0, 1.0, high_open=True)

    @staticmethod
    def presets() -> dict[str, "RecurrentConfig"]:
        return RECURRENT_PRESETS


RECURRENT_PRESETS = {
    # Character-level Tiny Shakespeare, beside the GPT's "baby" (0.81M parameters): a 2-layer LSTM
    # with E=64, H=256 has 0.88M (a GRU 0.66M, a tanh RNN 0.23M).
    "baby": RecurrentConfig(vocab_size=65, block_size=64, cell="lstm", n_embd=64, n_hidden=256, n_layer=2),
}
