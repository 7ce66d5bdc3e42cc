r"""Perplexity and bits per character of a language model on held-out text (document section 8).

A language model gives each next token a probability. Over a held-out text $u_0 \dots u_{N-1}$ the
mean negative log-likelihood of the tokens it predicts is the loss it was trained on,

$$\mathcal L = -\frac1{N-1} \sum_{t=1}^{N-1} \log p(u_t \mid u_{<t}) \quad\text{(nats per token)},$$

and three numbers restate it:

$$\mathrm{PPL} = e^{\mathcal L},\qquad \text{bits per token} = \frac{\mathcal L}{\ln 2},\qquad
  \text{bits per character} = \frac{(N-1)\,\mathcal L}{C \ln 2},\qquad
  \text{bits per byte} = \frac{(N-1)\,\mathcal L}{B \ln 2}$$

where $C$ and $B$ are the characters and UTF-8 bytes of the predicted tokens. Perplexity is the
size of a uniform choice that would be as surprising: a character model with perplexity 5 is, on
average, as unsure as if it picked among 5 equally likely characters. Bits per character and per
byte do not depend on the tokenizer, so they compare a character model with a BPE model.

**A sliding window with a stride.** A model sees at most ``window`` tokens (its block size). Cutting
the text into disjoint windows scores the first token of each window with no context at all. The
sliding window (the method of the Hugging Face guide "Perplexity of fixed-length models") moves a
window of W tokens by a stride $s \le W$ and scores, in each window, only the tokens that no earlier
window scored: the window starting at $b = ks$ takes inputs $u_{b} \dots u_{b+W-1}$ and scores the
targets $u_{t}$ with $t > b_{\text{prev}} + W$ (those the previous window did not reach). Every
token $u_1 \dots u_{N-1}$ is scored exactly once, token $t$ with the context $u_{b(t)} \dots u_{t-1}$ of

$$b(t) = s \cdot \max\Big(0,\ \Big\lceil \frac{t - W}{s} \Big\rceil\Big),$$

between $W - s + 1$ and $W$ tokens once $t > W$. A stride of 1 gives every token a full window (one
forward pass per token); a stride of W is disjoint windows. A recurrent model is scored the same
way, starting each window from a zero state: it could carry its state through the whole text, but
it was trained on windows of ``block_size`` tokens, and the same windows make the comparison with
the GPT fair.
"""
import math
from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
from numpy.typing import ArrayLike, NDArray
from tqdm import tqdm

from ..checks import UsageError, check_int, check_real

LN2 = math.log(2.0)
MAX_EXP = math.log(np.finfo(np.float64).max)       # about 709.78: e to more overflows a float


class ScoredModel(Protocol):
    """What scoring a text asks of a language model: its context (``config.block_size``), the
    logits of ``forward(idx)`` and ``evaluating()`` (evaluation mode for a block)."""

    config: Any

    def forward(self, idx: np.ndarray) -> tuple[np.ndarray, Any]: ...

    def evaluating(self) -> AbstractContextManager[Any]: ...


class Decoder(Protocol):
    """A tokenizer that turns ids back into text (for characters and bytes)."""

    def decode(self, ids: Any) -> str: ...


# ----------------------------------------------------------------------------- the formulas
# A negative log-likelihood is >= 0 and finite: a NaN, an infinity or a negative number is a loss
# that went wrong upstream (a diverged run, a sign flipped), and each formula refuses it by name
# rather than answering a perplexity of nan, or below 1.
def perplexity(mean_nll: float) -> float:
    """$e^{\\mathcal L}$ for a mean negative log-likelihood in nats per token (inf when it
    overflows a float: a loss above about 709 nats)."""
    mean_nll = _check_nll("mean_nll", mean_nll)
    return math.exp(mean_nll) if mean_nll < MAX_EXP else math.inf


def bits_per_token(mean_nll: float) -> float:
    """$\\mathcal L / \\ln 2$."""
    return _check_nll("mean_nll", mean_nll) / LN2


def bits_per_character(total_nll: float, n_characters: int) -> float:
    """Total NLL (nats) over the characters it predicted, in bits."""
    return _check_nll("total_nll", total_nll) / (check_int("n_characters", n_characters) * LN2)


def bits_per_byte(total_nll: float, n_bytes: int) -> float:
    """Total NLL (nats) over the UTF-8 bytes it predicted, in bits."""
    return _check_nll("total_nll", total_nll) / (check_int("n_bytes", n_bytes) * LN2)


def _check_nll(name: str, value: float) -> float:
    """``value`` as a float, which must be a finite negative log-likelihood (>= 0)."""
    return check_real(name, value, low=0.0)


@dataclass(frozen=True)
class TextScore:
    """What :func:`evaluate_text` measured: the summed NLL in nats of ``tokens`` predicted tokens,
    the ``characters`` and ``bytes`` they spell (None without a tokenizer), the window and stride."""
    nll: float
    tokens: int
    characters: int | None
    bytes: int | None
    window: int
    stride: int

    @property
    def loss(self) -> float:
        """Mean NLL per token, in nats (the training loss)."""
        return self.nll / self.tokens

    @property
    def perplexity(self) -> float:
        return perplexity(self.loss)

    @property
    def bits_per_token(self) -> float:
        return bits_per_token(self.loss)

    @property
    def bits_per_character(self) -> float | None:
        return None if self.characters is None else bits_per_character(self.nll, self.characters)

    @property
    def bits_per_byte(self) -> float | None:
        return None if self.bytes is None else bits_per_byte(self.nll, self.bytes)

    def summary(self) -> str:
        """One line: loss, perplexity, bits per character and byte (or per token)."""
        line = f"loss {self.loss:.4f} nats/token, perplexity {self.perplexity:.3f}"
        if self.characters is not None:
            line += f", bits/char {self.bits_per_character:.4f}, bits/byte {self.bits_per_byte:.4f}"
        else:
            line += f", bits/token {self.bits_per_token:.4f}"
        return line + f" ({self.tokens:,} tokens, window {self.window}, stride {self.stride})"


# ----------------------------------------------------------------------------- the windows
def windows(n_tokens: int, window: int, stride: int) -> list[tuple[int, int, int]]:
    """(begin, end, first) of each window over a text of ``n_tokens`` ids: inputs ids[begin:end],
    targets ids[begin+1:end+1], of which the positions from ``first`` on (window-relative) are scored."""
    spans, scored_to, begin = [], 0, 0          # scored_to: the targets u_1..u_{scored_to} are done
    while scored_to < n_tokens - 1:
        end = min(begin + window, n_tokens - 1)
        spans.append((begin, end, scored_to - begin))
        scored_to, begin = end, begin + stride
    return spans


def window_and_stride(model: ScoredModel, window: int | None = None, stride: int | None = None,
                      names: Sequence[str] = ("window", "stride")) -> tuple[int, int]:
    """(window, stride) checked against the model: the window defaults to its block size and may not
    exceed it, the stride defaults to half the window and may not exceed it. ``names``: what the
    errors call the two (the command line says --window, --stride)."""
    block = model.config.block_size
    window = block if window is None else check_int(names[0], window)
    if window > block:
        raise UsageError(f"{names[0]} must be at most the model's block size {block}, got {window}")
    stride = max(1, window // 2) if stride is None else check_int(names[1], stride)
    if stride > window:
        raise UsageError(f"{names[1]} must be at most the window of {window} tokens, got {stride}: it would "
                         f"skip {stride - window} tokens between windows")
    return window, stride


def token_nlls(model: ScoredModel, ids: ArrayLike, stride: int | None = None, window: int | None = None,
               batch_size: int = 16, progress: bool = False) -> NDArray[np.float64]:
    """$-\\log p(u_t \\mid u_{b(t)} \\dots u_{t-1})$ for t = 1 .. N-1 (float64, length N-1), by the
    sliding window (module docstring); ``window`` defaults to the model's block size and ``stride``
    to half the window. The model runs in eval mode (no dropout) and is left as it was."""
    ids = np.asarray(ids)
    if ids.ndim != 1 or not np.issubdtype(ids.dtype, np.integer):
        raise UsageError(f"ids must be a 1-D array of integer token ids, got shape {ids.shape}, dtype {ids.dtype}")
    if len(ids) < 2:
        raise UsageError(f"ids must hold at least 2 tokens (one to predict from, one to predict), got {len(ids)}")
    window, stride = window_and_stride(model, window, stride)
    batch_size = check_int("batch_size", batch_size)

    spans = windows(len(ids), window, stride)
    nlls = np.empty(len(ids) - 1)
    full = [w for w in spans if w[1] - w[0] == window]           # the windows of W tokens, batched,
    short = [w for w in spans if w[1] - w[0] != window]          # and the (at most one) shorter last
    groups = [full[i:i + batch_size] for i in range(0, len(full), batch_size)] + [[w] for w in short]
    bar = tqdm(total=len(spans), desc="evaluating", unit="window", disable=not progress, dynamic_ncols=True,
               leave=False)
    try:
        with model.evaluating():
            for group in groups:
                x = np.stack([ids[b:e] for b, e, _ in group]).astype(np.int64)        # (B, T)
                y = np.stack([ids[b + 1:e + 1] for b, e, _ in group]).astype(np.int64)
                logits, _ = model.forward(x)                                          # (B, T, V)
                nll = window_nlls(logits, y)                                          # (B, T)
                for row, (b, e, first) in enumerate(group):
                    nlls[b + first:e] = nll[row, first:]       # target u_{t} sits at index t - 1
                bar.update(len(group))
    finally:
        bar.close()
    return nlls


def window_nlls(logits: np.ndarray, targets: np.ndarray) -> NDArray[np.float64]:
    """$-\\log \\mathrm{softmax}(z)_y = \\log\\sum_v e^{z_v} - z_y$ at every position, in float64."""
    z = logits.astype(np.float64)
    top = z.max(axis=-1, keepdims=True)
    logsumexp = top[..., 0] + np.log(np.exp(z - top).sum(axis=-1))
    return logsumexp - np.take_along_axis(z, targets[..., None], axis=-1)[..., 0]


def evaluate_text(model: ScoredModel, ids: ArrayLike, tokenizer: Decoder | None = None, stride: int | None = None,
                  window: int | None = None, batch_size: int = 16, progress: bool = False) -> TextScore:
    """Score a held-out text: a :class:`TextScore` with the loss, perplexity and, when ``tokenizer``
    (with ``decode``) is given, bits per character and per byte of the predicted tokens."""
    nlls = token_nlls(model, ids, stride, window, batch_size, progress)
    characters = n_bytes = None
    if tokenizer is not None:
        predicted = tokenizer.decode(np.asarray(ids)[1:])
        characters, n_bytes = len(predicted), len(predicted.encode("utf-8"))
    return TextScore(float(nlls.sum()), len(nlls), characters, n_bytes, *window_and_stride(model, window, stride))
