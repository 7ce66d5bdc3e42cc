r"""The planner (document section 7: "global optimal allocation"): given a compute budget, a memory
budget per rank, and optionally hours and ranks, which model to train, on how many tokens, and how.

    python -m npgpt plan --flops 3e15 --memory 8GB [--hours 2] [--ranks 4] [--json]

It answers from what npgpt has measured, in this order:

1. **The split of compute** between parameters and tokens comes from the scaling study
   (:mod:`npgpt.allocation.scaling`, Chinchilla's approach 2 on Tiny Shakespeare characters):
   $N_{opt}(C) = k_N C^a$ weights, shaped by :func:`~npgpt.allocation.scaling.shape_for`, trained on
   $D = C / f$ tokens, $f$ the exact training FLOPs per token.
2. **Memory** decides whether that model fits a rank: the training peak of
   :func:`~npgpt.allocation.costs.training_memory` (tested within 15% of a real step) at the
   micro-batch, plus the gradient buckets of data-parallel training ($Ps$ bytes), minus what
   ZeRO-1 shards away (AdamW's $2Ps$ becomes $2Ps/n$). To fit, the planner first shards the
   optimizer (ZeRO-1, when there are several ranks: it costs an all-gather, not compute), then
   accumulates gradients (smaller micro-batches: the same run, more steps of less memory), and only
   then shrinks the model: the memory budget binds.
3. **Time**, when ``--hours`` is given: a step is the micro-steps' FLOPs at the FLOP rate measured
   on this machine (each rank a machine like this one) plus the ring all-reduce of the gradients
   (:mod:`npgpt.allocation.network`). If the budget's compute does not fit in the hours, the
   planner plans for the compute that does: the time budget binds.
4. **The loss** it predicts is the study's fitted law $L(N, D) = E + A/N^\alpha + B/D^\beta$; a
   plan outside the sizes, tokens or budgets the study measured is marked as an extrapolation.

The recipe is the study's (batch of 16 sequences of 64 characters, AdamW), with the global batch
rounded up to a multiple of the ranks. Precision is float32: float64 doubles memory and time and
the study saw no lower loss for it. Every plan's memory fits its budget, or the planner raises a
:class:`PlanError` that says by how much it cannot.
"""
import math
import re
import time
from dataclasses import dataclass

import numpy as np

from ..checks import UsageError, check_int, check_real
from .costs import count_flops, matmul_params, num_params, training_memory
from .network import NETWORKS, allgather_seconds, allreduce_seconds
from .scaling import BLOCK_SIZE, VOCAB_SIZE, Recipe, family, flops_per_token_trained, load_law, shape_for

DTYPE = np.float32
SMALLEST_N = 1_000          # the planner never goes below this many weights
BYTE_UNITS = {"": 1, "b": 1, "kb": 1e3, "mb": 1e6, "gb": 1e9, "tb": 1e12,
              "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}
NUMBER = r"\s*([+-]?[0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)\s*"


class PlanError(UsageError):
    """No allocation fits the budgets; the message says which budget and by how much (a budget
    the user gave is refused: one line from the command line, exit 2)."""


# --------------------------------------------------------------------------- budgets
def _positive(what, text, value):
    if not math.isfinite(value) or value <= 0:
        raise UsageError(f"{what} must be a positive amount, got {text!r}")
    return value


def parse_bytes(text):
    """``"8GB"``, ``"8 GB"`` (10^9), ``"8GiB"`` (2^30), ``"8e9"`` (bytes) -> bytes as a float."""
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        return _positive("a memory budget", text, float(text))
    match = re.fullmatch(NUMBER + r"([A-Za-z]*)\s*", str(text))
    if not match or match.group(2).lower() not in BYTE_UNITS:
        raise UsageError(f"a memory budget must be a number of bytes with an optional unit (B, KB, MB, GB, "
                         f"TB, KiB, MiB, GiB, TiB), like '8GB', '8 GiB' or '8e9'; got {text!r}")
    return _positive("a memory budget", text, float(match.group(1)) * BYTE_UNITS[match.group(2).lower()])


def parse_flops(text):
    """``"3e15"`` or ``"3e15 FLOPs"`` -> FLOPs as a float."""
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        return _positive("a compute budget", text, float(text))
    match = re.fullmatch(NUMBER + r"(?:flops?)?\s*", str(text), flags=re.IGNORECASE)
    if not match:
        raise UsageError(f"a compute budget must be a number of FLOPs, like '3e15'; got {text!r}")
    return _positive("a compute budget", text, float(match.group(1)))


def parse_hours(text):
    """``"2"`` or ``"0.5"`` -> hours as a float."""
    try:
        value = float(text)
    except (TypeError, ValueError):
        raise UsageError(f"a time budget must be a number of hours, like '2' or '0.5'; got {text!r}") from None
    return _positive("a time budget", text, value)


# --------------------------------------------------------------------------- the plan
@dataclass(frozen=True)
class Plan:
    """An allocation and what it is predicted to cost; :meth:`to_dict` is the ``--json`` output."""
    config: object
    tokens: int
    steps: int
    batch_size: int
    grad_accum: int
    micro_batch: int
    zero: int
    ranks: int
    flops: float
    loss: float
    memory_bytes_per_rank: int
    wall_seconds: float
    binding: str
    reasons: tuple
    extrapolated: bool

    def to_dict(self):
        c = self.config
        return {
            "model": {"n_layer": c.n_layer, "n_head": c.n_head, "n_embd": c.n_embd, "params": num_params(c),
                      "matmul_params": matmul_params(c), "block_size": c.block_size, "vocab_size": c.vocab_size},
            "tokens": self.tokens, "steps": self.steps, "batch_size": self.batch_size,
            "grad_accum": self.grad_accum, "micro_batch": self.micro_batch, "dtype": np.dtype(DTYPE).name,
            "zero": self.zero, "ranks": self.ranks, "flops": self.flops,
            "predicted": {"loss": self.loss, "memory_bytes_per_rank": self.memory_bytes_per_rank,
                          "wall_seconds": self.wall_seconds},
            "binding": self.binding, "reasons": list(self.reasons), "extrapolated": self.extrapolated,
        }


def memory_per_rank(config, micro_batch, ranks, grad_accum, zero):
    """Peak training bytes of one rank: :func:`training_memory` at the micro-batch, plus the
    gradient buckets of a data-parallel or accumulating run, minus ZeRO-1's sharded moments."""
    cost = training_memory(config, micro_batch, dtype=DTYPE).by_part
    total = sum(cost.values())
    if ranks > 1 or grad_accum > 1:
        total += cost["gradients"]                              # the buckets: one more copy
    if zero:
        total -= cost["optimizer state"] - -(-cost["optimizer state"] // ranks)
    return int(total)


def global_batch(ranks, recipe):
    """The recipe's batch, rounded up to a multiple of the ranks (each rank needs a sequence)."""
    return ranks * -(-recipe.batch_size // ranks)


def fitting_layout(config, memory, ranks, batch):
    """The cheapest ``(zero, grad_accum, micro_batch, bytes)`` that fits ``memory`` per rank, or
    None: ZeRO-1 first (when there are ranks to shard over), then accumulation."""
    per_rank = batch // ranks
    for zero in (0, 1) if ranks > 1 else (0,):
        for grad_accum in (k for k in range(1, per_rank + 1) if per_rank % k == 0):
            used = memory_per_rank(config, per_rank // grad_accum, ranks, grad_accum, zero)
            if used <= memory:
                return zero, grad_accum, per_rank // grad_accum, used
    return None


def step_seconds(config, micro_batch, grad_accum, ranks, zero, flop_rate, network):
    """One optimizer step: the micro-steps at ``flop_rate`` FLOP/s, then the all-reduce (and ZeRO-1's
    all-gather) of the gradients over ``network``."""
    compute = grad_accum * count_flops(config, micro_batch).total / flop_rate
    grad_bytes = num_params(config) * np.dtype(DTYPE).itemsize
    talk = allreduce_seconds(grad_bytes, ranks, network)
    if zero:
        talk += allgather_seconds(grad_bytes, ranks, network)
    return compute + talk


def plan(flops, memory, hours=None, ranks=1, flop_rate=None, network="10GbE", law=None, recipe=None):
    """The :class:`Plan` for a budget of ``flops`` training FLOPs and ``memory`` bytes per rank
    (and ``hours`` of wall time on ``ranks`` ranks, each as fast as this machine: ``flop_rate``
    FLOP/s, measured by :func:`measured_flop_rate` when not given). Raises :class:`PlanError` when
    nothing fits."""
    flops, memory = parse_flops(flops), parse_bytes(memory)
    hours = None if hours is None else parse_hours(hours)
    ranks = check_int("ranks", ranks)
    if flop_rate is not None:
        flop_rate = check_real("flop_rate", flop_rate, low=0.0, low_open=True)
    if network not in NETWORKS:
        raise UsageError(f"network must be one of {sorted(NETWORKS)}, got {network!r}")
    law = load_law() if law is None else law
    _check_optimum(law, flops)
    recipe = Recipe() if recipe is None else recipe
    batch = global_batch(ranks, recipe)
    reasons = ["float32: float64 would double memory and time for no lower loss"]
    if batch != recipe.batch_size:
        reasons.append(f"global batch {batch}: the study's {recipe.batch_size} rounded up to a multiple of "
                       f"{ranks} ranks")

    budget, binding = flops, "compute"
    for _ in range(50):            # shrink the compute until the plan fits the hours (wall ~ compute)
        chosen = _choose_model(budget, memory, ranks, batch, law)
        config, (zero, grad_accum, micro_batch, used), memory_bound = chosen
        tokens = budget / flops_per_token_trained(config)
        steps = math.floor(tokens / (batch * config.block_size))
        if steps < 1:
            spent = f" (of which the time budget leaves {budget:.3g})" if budget < flops else ""
            raise PlanError(f"cannot be done: a budget of {flops:.3g} FLOPs{spent} buys the smallest model that fits "
                            f"({matmul_params(config):,} weights) {tokens:,.0f} tokens, less than one step of "
                            f"{batch} x {config.block_size}; it needs at least "
                            f"{budget / tokens * batch * config.block_size:.3g} FLOPs")
        if flop_rate is None:      # measured once, on the first candidate: every later one is smaller
            flop_rate = measured_flop_rate(config, micro_batch, grad_accum)
        wall = steps * step_seconds(config, micro_batch, grad_accum, ranks, zero, flop_rate, NETWORKS[network])
        if hours is None or wall <= hours * 3600:
            break
        budget *= 0.98 * hours * 3600 / wall
        binding = "time"
    else:
        raise PlanError(f"cannot be done: no plan fits {hours} hours")
    n_opt = law.optimal(budget)[0]
    if memory_bound:
        binding = "memory"
    reasons += _reasons(config, n_opt, budget, flops, memory, used, zero, grad_accum, ranks, memory_bound,
                        binding, hours, wall, network)
    tokens = steps * batch * config.block_size
    used_flops = tokens * flops_per_token_trained(config)
    extrapolated = not law.in_range(n_params=matmul_params(config), tokens=tokens, flops=used_flops)
    if extrapolated:
        reasons.append("the loss is extrapolated: this plan lies outside the sizes, tokens or budgets the study "
                       f"measured ({_ranges(law)})")
    return Plan(config, int(tokens), steps, batch, grad_accum, micro_batch, zero, ranks, used_flops,
                law.predict_loss(matmul_params(config), tokens), used, wall, binding, tuple(reasons), extrapolated)


def _check_optimum(law, flops):
    """Refuse a budget whose optimal model, by ``law``, is no model npgpt can shape: no weights at
    all (a law whose numbers are wrong) or more than the study's rule makes (widths stop below
    65,536, about 1e14 weights). A plan is never 'at 0 weights', nor a search over sizes no shape has."""
    n_opt = law.optimal(flops)[0]
    largest = largest_shape(law)
    if not n_opt > 0:               # a small budget's optimum below the smallest shape is planned at it
        raise PlanError(f"cannot be done: the scaling law puts the optimal model for {flops:.3g} FLOPs at "
                        f"{n_opt:.3g} weights; check the law's k_n and a")
    if n_opt > largest:
        raise PlanError(f"cannot be done: the scaling law puts the optimal model for {flops:.3g} FLOPs at "
                        f"{n_opt:.3g} weights, more than the largest shape the study's rule makes "
                        f"({largest:,} weights); give a smaller compute budget")


def largest_shape(law):
    """The weights (matmul_params) of the largest shape of the study's rule for ``law``'s vocabulary."""
    return family(math.inf, law.meta.get("vocab_size", VOCAB_SIZE))[-1][0]


def _choose_model(budget, memory, ranks, batch, law):
    """(config, layout, memory_bound): the study's optimal shape for ``budget``, or the largest
    smaller one whose layout fits ``memory`` (each try 1.25 times smaller: at most about 100 tries
    from the largest shape down to ``SMALLEST_N``)."""
    n_opt = law.optimal(budget)[0]
    block, vocab = law.meta.get("block_size", BLOCK_SIZE), law.meta.get("vocab_size", VOCAB_SIZE)
    target, memory_bound = max(n_opt, SMALLEST_N), False
    while True:
        config = shape_for(target, vocab_size=vocab, block_size=block)
        layout = fitting_layout(config, memory, ranks, batch)
        if layout is not None:
            return config, layout, memory_bound
        if target <= SMALLEST_N:
            need = memory_per_rank(config, 1, ranks, batch // ranks, int(ranks > 1))
            raise PlanError(f"cannot be done: the smallest model ({matmul_params(config):,} weights) needs "
                            f"{need:,} bytes per rank at a micro-batch of 1 sequence, {need - memory:,.0f} bytes "
                            f"more than the memory budget of {memory:,.0f}")
        target, memory_bound = max(SMALLEST_N, target / 1.25), True


def _reasons(config, n_opt, budget, flops, memory, used, zero, grad_accum, ranks, memory_bound, binding, hours,
             wall, network):
    n = matmul_params(config)
    reasons = []
    if binding == "time":
        reasons.append(f"time binds: the whole budget of {flops:.3g} FLOPs would take longer than {hours:g} h, so the plan "
                       f"spends {budget:.3g} FLOPs, what fits")
    if memory_bound:
        reasons.append(f"memory binds: the compute-optimal model ({n_opt:,.0f} weights) does not fit "
                       f"{memory:,.0f} bytes per rank even with ZeRO-1 and accumulation; this is the largest "
                       f"shape that does ({n:,} weights)")
    else:
        reasons.append(f"compute sets the size: the study's law puts the optimum for {budget:.3g} FLOPs at "
                       f"{n_opt:,.0f} weights; the nearest shape has {n:,}")
    if zero:
        reasons.append(f"ZeRO-1: AdamW's moments sharded over {ranks} ranks, needed to fit the memory")
    elif ranks > 1:
        reasons.append("no ZeRO: the model fits without sharding the optimizer, which would add an all-gather")
    if grad_accum > 1:
        reasons.append(f"{grad_accum} micro-steps of accumulation: a whole per-rank batch would not fit the memory")
    reasons.append(f"memory per rank {used:,} of {memory:,.0f} bytes ({100 * used / memory:.0f}%)")
    if ranks > 1:
        reasons.append(f"ranks joined by {NETWORKS[network].name} (the network setting) for the all-reduce time")
    return reasons


def _ranges(law):
    return ", ".join(f"{k} {lo:.3g}..{hi:.3g}" for k, (lo, hi) in law.fitted_range.items())


def measured_flop_rate(config, micro_batch, grad_accum=1, repeats=5):
    """FLOP/s of a real training step of ``config`` (``grad_accum`` micro-steps of ``micro_batch``
    sequences, as :class:`~npgpt.training.distributed.DataParallelTrainer` runs it, clipping and
    AdamW included) on this machine: its FLOPs over the fastest of ``repeats`` steps after a
    warm-up (other work on the machine only ever makes a step slower, so the fastest is the
    machine's own speed). A model whose step would take more than a few seconds is timed on a
    smaller proxy of the same shape rule (its rate is a lower bound: bigger matrix products run
    closer to the peak)."""
    from ..models import GPT
    from ..training.distributed import DataParallelTrainer
    from ..training.trainer import TrainConfig
    proxy = config
    while count_flops(proxy, micro_batch).total * grad_accum > 2e10 and proxy.n_embd > 8:
        proxy = shape_for(matmul_params(proxy) / 4, vocab_size=config.vocab_size, block_size=config.block_size)
    trainer = DataParallelTrainer(GPT(proxy, seed=0, dtype=np.dtype(DTYPE)), RandomTokens(proxy.vocab_size),
                                  TrainConfig(batch_size=micro_batch * grad_accum, max_iters=10**9),
                                  grad_accum=grad_accum)
    trainer.train_step()
    fastest = min(_timed(trainer.train_step) for _ in range(check_int("repeats", repeats)))
    return grad_accum * count_flops(proxy, micro_batch).total / fastest


class RandomTokens:
    """Batches of random token ids: all a trainer needs to time a step."""

    def __init__(self, vocab_size):
        self.vocab_size = vocab_size

    def get_batch(self, split, batch_size, block_size, rng):
        return tuple(rng.integers(0, self.vocab_size, (batch_size, block_size)) for _ in range(2))


def _timed(fn):
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def format_plan(p, flop_rate_note=""):
    """The plan as the lines ``python -m npgpt plan`` prints."""
    d, c = p.to_dict(), p.config
    lines = [
        f"model:      n_layer={c.n_layer} n_head={c.n_head} n_embd={c.n_embd} block_size={c.block_size} "
        f"({d['model']['params']:,} parameters, {d['model']['matmul_params']:,} in matrix products)",
        f"tokens:     {p.tokens:,} ({p.steps:,} steps of {p.batch_size} x {c.block_size}); "
        f"{p.tokens / d['model']['matmul_params']:.1f} tokens per weight",
        f"layout:     {p.ranks} rank(s) x {p.grad_accum} micro-step(s) of {p.micro_batch} sequences, "
        f"ZeRO stage {p.zero}, float32",
        f"predicted:  val loss {p.loss:.3f} nats/char{' (extrapolated)' if p.extrapolated else ''}, "
        f"{p.memory_bytes_per_rank / 2**20:,.1f} MiB per rank, wall {_duration(p.wall_seconds)}{flop_rate_note}",
        f"binding:    {p.binding}",
        "why:",
        *(f"  - {r}" for r in p.reasons),
    ]
    return "\n".join(lines)


def _duration(seconds):
    if seconds < 120:
        return f"{seconds:.1f} s"
    return f"{seconds / 60:.1f} min" if seconds < 7200 else f"{seconds / 3600:.1f} h"
