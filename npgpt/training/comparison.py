r"""Recurrence vs attention, measured (document sections 2 and 3, step 2): what notebook 03 and
``benchmarks/compare_sequence_models.py`` compute (:mod:`npgpt.plots.sequence_models` draws it).

**How far back the gradient reaches.** Take one sequence of input vectors $e_1, \dots, e_T$ (the
embedding outputs) and the loss $\ell_T$ of the last position's prediction alone. In a recurrent
network $e_{T-k}$ reaches $\ell_T$ only through the chain of states $h_{T-k}, \dots, h_T$:

$$\frac{\partial \ell_T}{\partial e_{T-k}} = \frac{\partial \ell_T}{\partial h_T}
  \Big(\prod_{j=T-k+1}^{T} \frac{\partial h_j}{\partial h_{j-1}}\Big)\frac{\partial h_{T-k}}{\partial e_{T-k}}$$

a product of $k$ Jacobians, which shrinks geometrically with $k$ when they are contractive: the
vanishing gradient. In self-attention, position $T$ reads position $T-k$ in one step, through the
weight $A_{T,\,T-k}$ of each layer, so no factor is repeated $k$ times.
:func:`input_gradient_norms` measures $\|\partial \ell_T / \partial e_{T-k}\|$ with each model's own
hand-written backward pass, reading the input gradient off a parameter gradient that equals it exactly:

- GPT: $e_t = W_{te}[\mathrm{idx}_t] + P_t$, so $\partial L/\partial P_t = \sum_b \partial L/\partial e_{b,t}$;
  for a single sequence the gradient of position row $t$ *is* the input gradient at $t$.
- Recurrent LM: $e_t = E[\mathrm{idx}_t]$, so row $v$ of $\partial L/\partial E$ sums the input gradients of
  the positions holding token $v$; with $T$ distinct tokens, row $\mathrm{idx}_t$ *is* the input
  gradient at $t$ (the output layer has its own weights, so nothing else lands in $E$'s gradient).

So the inputs are sequences of $T$ distinct random token ids (a random permutation; it needs
$V \ge T$, e.g. Tiny Shakespeare's 65 characters and $T = 64$), the target of the last position is
random, every other target is ignored, and the model runs in float64 and eval mode (a copy: the
model passed in is left alone).

**A fair race.** :func:`comparison_configs` gives an RNN, an LSTM, a GRU and a GPT of about 0.8M
parameters each; :func:`train_and_evaluate` trains one with :class:`npgpt.Trainer` (the same
batches for every model: they come from the trainer's seeded generator) and scores it on a fixed set
of validation batches.
"""
import time
from collections.abc import Callable
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ..checks import UsageError
from ..io.checkpoint import build_model
from ..models import GPT, RecurrentConfig, RecurrentLM
from ..models.config import GPTConfig
from .config import TrainConfig
from .trainer import BatchSource, Trainer

__all__ = ["comparison_configs", "input_gradient_norms", "train_and_evaluate"]


def comparison_configs(vocab_size: int = 65, block_size: int = 64) -> dict[str, GPTConfig | RecurrentConfig]:
    """RNN, LSTM, GRU and GPT configurations of about 0.8M parameters each for a character vocabulary
    (counts for V = 65: 808,241 / 800,885 / 806,525 / 809,856). The recurrent models have two layers
    and 64-wide embeddings and differ only in the state width H, chosen so the counts match: a layer
    holds G(E + H)H + 2GH parameters for G = 1, 4, 3 gate blocks. The GPT is the "baby" preset."""
    def recurrent(cell: str, n_hidden: int) -> RecurrentConfig:
        return RecurrentConfig(vocab_size=vocab_size, block_size=block_size, cell=cell, n_embd=64,
                               n_hidden=n_hidden, n_layer=2)
    return {"rnn": recurrent("rnn", 496), "lstm": recurrent("lstm", 244), "gru": recurrent("gru", 284),
            "gpt": GPTConfig.preset("baby", vocab_size=vocab_size, block_size=block_size)}


# =============================================================================== gradients through time
def input_gradient_norms(model: GPT | RecurrentLM, seq_len: int | None = None, n_sequences: int = 8,
                         seed: int = 0) -> NDArray[np.float64]:
    r"""$\|\partial \ell_T / \partial e_{T-k}\|$ for $k = 0, \dots, T-1$ (index $k$), the geometric mean
    over ``n_sequences`` random sequences of ``seq_len`` distinct tokens (default: block_size).

    ``model`` is a :class:`npgpt.GPT` with learned positions or a :class:`npgpt.RecurrentLM` (module
    docstring: how the input gradient is read off). Returns a float64 array of length ``seq_len``.
    """
    c = model.config
    T = c.block_size if seq_len is None else int(seq_len)
    if not 1 <= T <= min(c.block_size, c.vocab_size):
        raise UsageError(f"seq_len must be in [1, min(block_size, vocab_size)] = "
                         f"[1, {min(c.block_size, c.vocab_size)}] (distinct tokens), got {seq_len}")
    if isinstance(model, GPT) and model.config.pos_encoding != "learned":
        raise UsageError("input_gradient_norms reads a GPT's input gradient off its learned position "
                         "table; this model has sinusoidal positions")
    if not isinstance(model, (GPT, RecurrentLM)):
        raise UsageError(f"model must be a GPT or a RecurrentLM, got {type(model).__name__}")
    twin = build_model(c, dtype=np.float64).eval()            # float64 copy: tiny norms stay exact
    twin.load_state_dict(model.state_dict())
    rng = np.random.default_rng(seed)
    logs: list[np.ndarray] = []
    for _ in range(n_sequences):
        idx = rng.permutation(c.vocab_size)[:T][None]          # (1, T), no token twice
        targets = np.full_like(idx, -1)
        targets[0, -1] = rng.integers(c.vocab_size)            # only the last position is scored
        twin.forward(idx, targets, ignore_index=-1)
        grads = twin.backward()
        if isinstance(twin, GPT):
            de = grads["transformer.wpe.weight"][:T]           # row t = dL/de_t (one sequence)
        else:
            de = grads["embedding.weight"][idx[0]]             # row idx_t = dL/de_t (distinct tokens)
        norms = np.linalg.norm(de, axis=1)[::-1]               # index k = T-1-t
        logs.append(np.log(np.maximum(norms, np.finfo(np.float64).tiny)))
    return np.exp(np.mean(logs, axis=0))


# =============================================================================== the race
def train_and_evaluate(model: GPT | RecurrentLM, data: BatchSource, train_config: TrainConfig,
                       eval_batches: int = 100, eval_every: int = 50, eval_iters: int = 10,
                       log: Callable[[str], object] | None = None) -> dict[str, Any]:
    """Train ``model`` for ``train_config.max_iters`` steps and score it.

    Every ``eval_every`` steps (and at the end) the mean loss over the first ``eval_iters`` of the
    fixed validation batches is recorded; at the end, train and val losses over ``eval_batches``
    fixed batches. Tokens per second count training steps only (forward, backward, update), not the
    evaluations. Returns a dict: ``params``, ``val_loss``, ``train_loss``, ``tokens_per_s``,
    ``train_seconds`` and ``history`` (``step``, ``train_loss``, ``eval_step``, ``eval_val``,
    ``eval_seconds``: training time when each evaluation ran).
    """
    trainer = Trainer(model, data, train_config)
    steps = train_config.max_iters
    history: dict[str, list[float]] = {"step": [], "train_loss": [], "eval_step": [], "eval_val": [], "eval_seconds": []}
    seconds = 0.0
    for _ in range(steps):
        start = time.perf_counter()
        loss = trainer.train_step()
        seconds += time.perf_counter() - start
        history["step"].append(trainer.step)
        history["train_loss"].append(float(loss))
        if trainer.step % eval_every == 0 or trainer.step == steps:
            val = trainer.evaluate(eval_iters)["val"]
            history["eval_step"].append(trainer.step)
            history["eval_val"].append(val)
            history["eval_seconds"].append(seconds)
            if log:
                log(f"  step {trainer.step:4d}  train {loss:.4f}  val {val:.4f}  "
                    f"({seconds:.0f} s of training)")
    final = trainer.evaluate(eval_batches)
    tokens = steps * train_config.batch_size * model.config.block_size
    return {"params": int(model.num_params()), "val_loss": final["val"], "train_loss": final["train"],
            "tokens_per_s": tokens / seconds, "train_seconds": seconds, "history": history}
