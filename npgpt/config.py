"""GPT configuration and named presets."""
from dataclasses import asdict, dataclass, replace

from .checks import check_int, check_real

POS_ENCODINGS = ("learned", "sinusoidal")


class Presets:
    """What the model configs share: a dict form for checkpoints and named presets
    (``cls.presets()``, a dict name -> config)."""

    def to_dict(self):
        return asdict(self)

    @classmethod
    def from_dict(cls, d):
        return cls(**d)

    @classmethod
    def preset(cls, name, **overrides):
        """A named configuration, with any field overridden."""
        presets = cls.presets()
        if name not in presets:
            raise ValueError(f"unknown preset {name!r}; choose one of {sorted(presets)}")
        return replace(presets[name], **overrides)


@dataclass(frozen=True)
class GPTConfig(Presets):
    """Shape of a decoder-only GPT.

    vocab_size: number of token ids; block_size: longest context; n_layer: transformer blocks;
    n_head: attention heads (must divide n_embd); n_embd: model width C; dropout: probability used
    on embeddings, attention weights and residual branches while training; bias: biases in linear
    layers and LayerNorms; pos_encoding: "learned" (GPT-2) or "sinusoidal" (the document's code);
    tie_weights: share the token embedding with the output layer (GPT-2).
    """

    vocab_size: int
    block_size: int
    n_layer: int
    n_head: int
    n_embd: int
    dropout: float = 0.0
    bias: bool = True
    pos_encoding: str = "learned"
    tie_weights: bool = True

    def __post_init__(self):
        for name in ("vocab_size", "block_size", "n_layer", "n_head", "n_embd"):
            object.__setattr__(self, name, check_int(f"GPTConfig.{name}", getattr(self, name)))
        if self.n_embd % self.n_head:
            raise ValueError(f"n_embd={self.n_embd} is not divisible by n_head={self.n_head}: "
                             f"each head needs n_embd / n_head columns")
        object.__setattr__(self, "dropout", check_real("GPTConfig.dropout", self.dropout, 0.0, 1.0,
                                                       high_open=True))
        if self.pos_encoding not in POS_ENCODINGS:
            raise ValueError(f"pos_encoding must be one of {POS_ENCODINGS}, got {self.pos_encoding!r}")

    @property
    def head_size(self):
        return self.n_embd // self.n_head

    @staticmethod
    def presets():
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
