r"""Compute-optimal allocation (document section 7, "global optimal allocation"), measured small:
Chinchilla's approach 2 (Hoffmann et al. 2022, "Training Compute-Optimal Large Language Models")
on Tiny Shakespeare characters.

**The question.** A training run of $N$ parameters on $D$ tokens costs about $C \approx 6ND$ FLOPs.
For a fixed $C$, a bigger model sees fewer tokens. Which split of $C$ between $N$ and $D$ gives the
lowest loss, and how does that split move as $C$ grows?

**Approach 2, IsoFLOP profiles.** Fix a budget $C$ and train several sizes $N_i$, each on the
tokens the budget leaves it, $D_i = C / f(N_i)$. Along this IsoFLOP line the final loss falls, then
rises again (too small a model cannot use its data; too big a one sees too little). Near its
minimum the curve is a parabola in $x = \ln N$:

$$L(x) \approx c_0 + c_1 x + c_2 x^2,\qquad
  x^\star = -\frac{c_1}{2 c_2},\qquad N_{opt}(C) = e^{x^\star}\quad (c_2 > 0)$$

and likewise in $\ln D$ for $D_{opt}(C)$. Over several budgets the optima follow power laws,
straight lines in log-log, fitted by least squares:

$$N_{opt}(C) = k_N\,C^{a},\qquad D_{opt}(C) = k_D\,C^{b},\qquad a + b \approx 1$$

Chinchilla found $a \approx b \approx 0.5$: double the compute, multiply both $N$ and $D$ by
$\sqrt 2$; at their scale about 20 tokens per parameter.

**The loss law.** To predict a loss for any $(N, D)$, not only on the sampled lines, every run is
also fitted with Chinchilla's parametric form (their approach 3):

$$L(N, D) = E + \frac{A}{N^{\alpha}} + \frac{B}{D^{\beta}}$$

$E$ is the loss of a perfect model (the text's entropy), the second term what a finite model
loses, the third what finite data loses. With $\alpha, \beta$ fixed the law is linear in
$(E, A, B)$, so :func:`fit_loss_law` solves a small least-squares problem at every point of an
$(\alpha, \beta)$ grid (with $E, A, B \ge 0$), keeps the best, and zooms the grid in around it.
NumPy only; Chinchilla minimised a Huber loss of $\log L$ with L-BFGS instead. Minimising the law
under $6ND = C$ gives its own optimum, $N_{opt} \propto C^{\beta/(\alpha+\beta)}$; the planner
uses the IsoFLOP laws above for the split and this law for the loss (:class:`ScalingLaw`).

**What N and C mean here.** $N$ is :func:`npgpt.allocation.costs.matmul_params`, the weights of
the matrix products, $12LC^2 + VC$ (the $N$ of $6ND$; the position table, LayerNorms and biases
are left out). The budget is not $6ND$ but the exact count of every matrix product
(:func:`npgpt.allocation.costs.count_flops`, backward included), which adds attention's
$12LTC$ per token: $D = C / f$ with $f = 6N + 12LTC$ FLOPs per trained token
(:func:`flops_per_token_trained`). Chinchilla counted its budgets exactly too (its appendix F).
At $T = 64$ attention adds $T / 6C$ of $6N$: 17% at width 64, 6% at width 192.

**The recipe** (the same for every run, :class:`Recipe`): AdamW (betas 0.9/0.99, weight decay
0.1), batch 16 x 64 characters, peak learning rate $5\times10^{-3}$ for every size, linear warmup
over the first 5% of the steps, cosine decay to a tenth of the peak at the run's last step (a
schedule fitted to each run's length, as Chinchilla found it must be), gradients clipped at 1.
The shapes (:func:`shape_for`): 4 heads, width about 32 times the depth, at least 2 layers.
The loss is measured on the whole validation split (every non-overlapping window of 64
characters, :func:`split_loss`), so it carries no sampling noise; what is left comes from the
seed (initialisation and batch order). :func:`exponent_spread` turns the scatter of each IsoFLOP
curve about its parabola into error bars on $a$ and $b$ (a parametric bootstrap).

**The committed study** (:class:`StudyDesign`, trained by :func:`run_study` and fitted by
:func:`analyse_study`; ``benchmarks/scaling.py`` is its command line, results in
``benchmarks/results/scaling.json``, the law in ``scaling_law.json``): budgets $10^{12}$,
$3\times10^{12}$ and $10^{13}$ FLOPs, six sizes each (11k to 795k weights), three seeds at one size
of each. It found $a = 0.60 \pm 0.09$,
$b = 0.45 \pm 0.09$ (Chinchilla's 0.5 is inside one standard deviation of both) and 46 to 97
characters per weight at the optimum; the fitted law's own split, $\beta/(\alpha+\beta) = 0.60$,
agrees with approach 2.

**Where this departs from the paper.** Chinchilla trained 70M to 16B parameters on up to 500B
tokens, each token seen once, over nine budgets. Here:

- the models are tiny ($10^4$ to $10^6$ weights) and three budgets span one decade, so the
  exponents carry error bars of about $\pm 0.09$. Smaller budgets do not help: below about
  $10^{12}$ FLOPs the models stop near the loss where a character model has learnt only which
  letter follows which (2.2 to 2.5 nats), the step out of it comes earlier in some runs than in
  others, and a pilot's IsoFLOP curves at $10^{11}$ and $3\times10^{11}$ were jagged;
- one seed per point, three at one point of each budget: the seed-to-seed spread of the val loss
  is about 0.006 nats, and the points scatter about 0.01 to 0.02 around their parabolas
  (shape-to-shape effects the law does not have: the depth steps from 2 to 3 layers at 190k
  weights, one learning rate for every width);
- character tokens: a character carries less than a BPE token (English BPE averages about four
  characters), so a ratio counted in characters should be several times Chinchilla's 20 tokens
  per parameter (roughly 80), as it is;
- one 1.1 MB corpus: the optimal runs see the training split 3.5 times at $10^{12}$ and about 10
  times at $10^{13}$, the small models up to 18 times. Repeated text is worth less than fresh text
  (Muennighoff et al. 2023: up to about 4 passes almost as much, then less), and the law has no
  term for repetition, so extrapolating $D_{opt}$ to large budgets on this corpus overstates what
  more passes buy;
- the token table is 12% of $N$ at the smallest model and 1% at the largest, and the position
  table (left out of $N$) as large again: whether they count moves the small end of the curves,
  and so the exponents, at this size (Kaplan et al. left embeddings out, Chinchilla kept them);
- one learning rate for all sizes, not tuned per size (a pilot found 4e-3 to 8e-3 equally good
  within 0.03 nats, small models leaning low, short runs high), and short runs (1,100 to 17,500
  steps), where warmup and the schedule's shape weigh more than in a 100k-step run;
- the validation split is the last tenth of the plays, a different text from the training
  split: val loss sits 0.11 to 0.22 above train loss, 0.14 already for an 11k-weight model, far
  too small to memorise the text.

A planner that asks outside the measured ranges of $N$, $D$ and $C$ (``ScalingLaw.fitted_range``,
:meth:`ScalingLaw.in_range`) is extrapolating, and should say so.
"""
import bisect
import functools
import json
import math
import os
import stat
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from ..checks import MissingFile, UsageError, check_int, check_real
from ..models import GPT
from ..models.config import GPTConfig
from ..training.trainer import TrainConfig, Trainer
from .costs import count_flops, matmul_params, num_params

LAW_PATH = Path(__file__).with_name("scaling_law.json")
VOCAB_SIZE = 65          # Tiny Shakespeare's characters
BLOCK_SIZE = 64          # context of every model of the study
N_HEAD = 4               # heads of every model (head size n_embd / 4)
ASPECT = 32              # width / depth the shapes keep, about
MIN_LAYER = 2            # one layer cannot form the two-step circuits (induction heads) text needs
WIDTH_STEP = 4           # widths are multiples of 4 (the 4 heads split them evenly)
MIN_WIDTH = 8            # heads of at least 2 dimensions
MAX_WIDTH = 1 << 16      # widths stop below this: the family's largest shape has about 1.05e14 weights

# Chinchilla's fits (Hoffmann et al. 2022): approach 2's exponents, approach 3's law, and the ratio.
CHINCHILLA = {"a": 0.49, "b": 0.51, "tokens_per_param": 20.0,
              "E": 1.69, "A": 406.4, "alpha": 0.34, "B": 410.7, "beta": 0.28}


# ----------------------------------------------------------------------------- input checks
def _positive_array(name, values, min_size=1):
    """``values`` as a 1-D float array of finite numbers > 0 with at least ``min_size`` entries."""
    array = _finite_array(name, values, min_size)
    if (array <= 0).any():
        raise UsageError(f"{name} must be positive numbers, got {array[array <= 0][0]:g} in {array.tolist()}")
    return array


def _finite_array(name, values, min_size=1):
    try:
        array = np.asarray(values, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        raise UsageError(f"{name} must be numbers, got {values!r}") from None
    if array.size < min_size:
        raise UsageError(f"{name} needs at least {min_size} values, got {array.size}")
    if not np.isfinite(array).all():
        raise UsageError(f"{name} must be finite numbers, got {array.tolist()} (NaN or infinite)")
    return array


def _same_length(**arrays):
    sizes = {name: a.size for name, a in arrays.items()}
    if len(set(sizes.values())) > 1:
        raise UsageError(f"these must have one value per run, got lengths {sizes}")


def _check_flops(flops):
    return check_real("flops (the compute budget)", flops, low=0.0, low_open=True)


# ----------------------------------------------------------------------------- the shapes
def depth(n_params):
    r"""The depth the shapes give $N$ weights: $L = \max(2, \mathrm{round}((N / 12\cdot32^2)^{1/3}))$,
    so that the width is about 32 times the depth ($N \approx 12 L (32 L)^2$)."""
    return max(MIN_LAYER, round((n_params / (12 * ASPECT**2)) ** (1 / 3)))


def family(n_max, vocab_size=VOCAB_SIZE):
    """Every shape of the study's rule up to ``n_max`` weights, by size: ``(N, n_layer, n_embd)``
    with the width a multiple of 4 (at least 8) and the depth :func:`depth` of its own N."""
    shapes = []
    n_layer = MIN_LAYER
    while n_layer == MIN_LAYER or 12 * ASPECT**2 * (n_layer - 0.5) ** 3 <= n_max:
        first = _first_width(n_layer, vocab_size)
        if first >= MAX_WIDTH:        # this depth's shapes would be wider than any: so would every deeper one's
            break
        for n_embd in range(first, MAX_WIDTH, WIDTH_STEP):
            n = 12 * n_layer * n_embd**2 + vocab_size * n_embd
            if n > n_max:
                break
            layers = depth(n)
            if layers == n_layer:
                shapes.append((n, n_layer, n_embd))
            elif layers > n_layer:    # N grows with the width: the rest of the widths are deeper still
                break
        n_layer += 1
    return sorted(shapes)


def _first_width(n_layer, vocab_size):
    r"""The width to start the search of depth ``n_layer`` at: the family's widths below it give
    fewer weights than $12\cdot32^2 (L - 1/2)^3$, whose depth rounds to $L - 1$ or less. Two steps of
    margin below the root keep a width that rounding might put at the boundary. Starting here (and
    stopping past the depth) lists the same shapes as trying every width, in time per depth, not
    per width: a family of 10^24 weights was minutes of trying widths that cannot be in it.
    The shallowest depth takes every width from the narrowest (:func:`depth` never goes below it)."""
    if n_layer <= MIN_LAYER:
        return MIN_WIDTH
    low = 12 * ASPECT**2 * (n_layer - 0.5) ** 3                      # N at the lower edge of depth L
    root = (-vocab_size + math.sqrt(vocab_size**2 + 48 * n_layer * low)) / (24 * n_layer)   # 12 L C^2 + V C = low
    steps = max(0, math.floor((root - MIN_WIDTH) / WIDTH_STEP) - 2)
    return MIN_WIDTH + WIDTH_STEP * steps


def _config(n_layer, n_embd, vocab_size, block_size):
    return GPTConfig(vocab_size=vocab_size, block_size=block_size, n_layer=n_layer, n_head=N_HEAD, n_embd=n_embd)


def shape_for(n_target, vocab_size=VOCAB_SIZE, block_size=BLOCK_SIZE):
    """The shape of the :func:`family` whose $N = 12LC^2 + VC$ is nearest ``n_target`` (in ratio);
    4 heads."""
    n_target = check_real("n_target (parameters)", n_target, low=0.0, low_open=True)
    shapes, sizes = _whole_family(check_int("vocab_size", vocab_size))
    # family(2 n_target + 1e4): shapes[:end]; at least the smallest shape, for a target far below it
    end = max(1, bisect.bisect_right(sizes, 2 * n_target + 1e4))
    # |ln(N / n_target)| falls, then rises with N: the nearest is a neighbour of n_target's place;
    # among equals the first (what min() over the list gave)
    i = bisect.bisect_left(sizes, n_target, 0, end)
    below = bisect.bisect_left(sizes, sizes[i - 1]) if i > 0 else None
    candidates = [j for j in (below, i if i < end else None) if j is not None]
    best = min(candidates, key=lambda j: abs(math.log(sizes[j] / n_target)))
    _, n_layer, n_embd = shapes[best]
    return _config(n_layer, n_embd, vocab_size, block_size)


@functools.lru_cache(maxsize=4)
def _whole_family(vocab_size: int) -> tuple[tuple[tuple[int, int, int], ...], tuple[int, ...]]:
    """Every shape of the :func:`family` (about 25,000: widths stop below ``MAX_WIDTH``) and their
    sizes, listed once per vocabulary: :func:`shape_for` then finds one by bisection, where listing
    the family at each call cost a planner searching hundreds of sizes minutes."""
    shapes = tuple(family(math.inf, vocab_size))
    return shapes, tuple(n for n, _, _ in shapes)


def flops_per_token_trained(config):
    r"""Training FLOPs per token of ``config`` (forward and backward, every matrix product):
    $f = 6N + 12LTC$ (:func:`npgpt.allocation.costs.count_flops` of one sequence over $T$)."""
    return count_flops(config, 1).total / config.block_size


def tokens_for_budget(config, flops):
    """D = C / f: the tokens a budget of ``flops`` (exact count) buys ``config``."""
    return _check_flops(flops) / flops_per_token_trained(config)


def ladder(flops, n_sizes=5, spread=8.0, centre=None, vocab_size=VOCAB_SIZE, block_size=BLOCK_SIZE):
    r"""``n_sizes`` shapes for the budget ``flops``, as near as the :func:`family` allows to $N$
    spaced evenly in $\ln N$ over a factor ``spread`` (largest / smallest) around ``centre``, a guess
    of the optimal $N$ (default: Chinchilla's 20 tokens per weight, $N^\star = \sqrt{C / 120}$).
    Distinct shapes, by size: of all increasing choices of ``n_sizes`` shapes of the family, the one
    closest to the targets in least squares of $\ln N$."""
    flops = _check_flops(flops)
    n_sizes = check_int("n_sizes", n_sizes)
    spread = check_real("spread", spread, low=1.0, low_open=n_sizes > 1)
    centre = math.sqrt(flops / (6 * CHINCHILLA["tokens_per_param"])) if centre is None else \
        check_real("centre (parameters)", centre, low=0.0, low_open=True)
    offsets = np.linspace(-0.5, 0.5, n_sizes) if n_sizes > 1 else np.zeros(1)
    targets = np.log(centre) + offsets * np.log(spread)
    shapes = [s for s in family(centre * spread, vocab_size) if s[0] >= centre / spread]
    if len(shapes) < n_sizes:
        raise UsageError(f"a spread of {spread:g} holds only {len(shapes)} distinct shapes of the {n_sizes} "
                         f"asked near N = {centre:,.0f}: widen the spread or ask for fewer sizes")
    chosen = _closest_increasing(np.log([s[0] for s in shapes]), targets)
    return [_config(shapes[j][1], shapes[j][2], vocab_size, block_size) for j in chosen]


def _closest_increasing(candidates, targets):
    """Indices j_0 < j_1 < ... of sorted ``candidates``, one per sorted target, minimising
    sum (candidates[j_i] - targets[i])^2: dynamic programming over (target, candidate)."""
    n, m = len(targets), len(candidates)
    cost = np.full((n, m), np.inf)                        # cost[i, j]: targets 0..i placed, i-th on j
    previous = np.zeros((n, m), dtype=int)
    cost[0] = (candidates - targets[0]) ** 2
    for i in range(1, n):
        for j in range(i, m):
            k = int(np.argmin(cost[i - 1, :j]))           # the best place of target i - 1 left of j
            cost[i, j] = cost[i - 1, k] + (candidates[j] - targets[i]) ** 2
            previous[i, j] = k
    chosen = [int(np.argmin(cost[-1]))]
    for i in range(n - 1, 0, -1):
        chosen.append(int(previous[i, chosen[-1]]))
    return chosen[::-1]


# ----------------------------------------------------------------------------- one run
@dataclass(frozen=True)
class Recipe:
    """How every point of the study is trained (module docstring): the same for every size and
    budget. ``warmup_fraction`` of the steps warm up; the cosine ends at ``lr * min_lr_ratio``."""
    batch_size: int = 16
    lr: float = 5e-3
    min_lr_ratio: float = 0.1
    warmup_fraction: float = 0.05
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.99
    grad_clip: float = 1.0
    eval_batch_size: int = 64

    def __post_init__(self):
        check_int("batch_size", self.batch_size)
        check_int("eval_batch_size", self.eval_batch_size)
        check_real("lr", self.lr, low=0.0, low_open=True)
        for name in ("min_lr_ratio", "warmup_fraction"):
            check_real(name, getattr(self, name), 0.0, 1.0)

    def steps(self, tokens, block_size):
        """Optimizer steps for ``tokens`` tokens: whole batches of batch_size x block_size, at least one."""
        return max(1, round(tokens / (self.batch_size * block_size)))

    def train_config(self, steps, seed=0):
        return TrainConfig(max_iters=steps, batch_size=self.batch_size, lr=self.lr,
                           min_lr=self.lr * self.min_lr_ratio, warmup_iters=round(self.warmup_fraction * steps),
                           weight_decay=self.weight_decay, beta1=self.beta1, beta2=self.beta2,
                           grad_clip=self.grad_clip, eval_interval=steps, seed=seed)


def split_loss(model, ids, batch_size=64, max_windows=None):
    """Mean next-token loss of ``model`` over ``ids`` cut into non-overlapping windows of
    block_size (the tail shorter than a window is left out); ``max_windows`` windows spread evenly
    over ``ids`` when given. Deterministic: the same ids give the same loss."""
    T = model.config.block_size
    n = (len(ids) - 1) // T
    if n < 1:
        raise UsageError(f"{len(ids)} tokens are too few for one window of block_size={T} (+1 target)")
    starts = np.arange(n) * T
    if max_windows is not None and max_windows < n:
        starts = starts[np.linspace(0, n - 1, check_int("max_windows", max_windows)).round().astype(int)]
    total = 0.0
    with model.evaluating():
        for i in range(0, len(starts), batch_size):
            window = starts[i:i + batch_size, None] + np.arange(T)
            _, loss = model.forward(ids[window].astype(np.int64), ids[window + 1].astype(np.int64))
            total += loss * len(window)
    return total / len(starts)


def train_point(config, flops, data, recipe=None, seed=0, on_step=None):
    """Train ``config`` on ``data`` (a :class:`npgpt.Dataset`) for the tokens the budget ``flops``
    buys it (whole steps of the recipe's batch), then measure its loss on the whole validation
    split and on as many windows spread over the training split. ``on_step(step, loss)`` is called
    after every step (a progress bar). Returns the run as a dict (shape, N, D, FLOPs, losses, time)."""
    recipe = recipe or Recipe()
    flops = _check_flops(flops)
    T = config.block_size
    steps = recipe.steps(tokens_for_budget(config, flops), T)
    train_config = recipe.train_config(steps, seed)
    model = GPT(config, seed=seed)
    trainer = Trainer(model, data, train_config)
    start = time.perf_counter()
    for _ in range(steps):
        loss = trainer.train_step()
        if on_step is not None:
            on_step(trainer.step, loss)
    seconds = time.perf_counter() - start
    val = split_loss(model, data.split("val"), recipe.eval_batch_size)
    n_val_windows = (len(data.split("val")) - 1) // T
    train = split_loss(model, data.split("train"), recipe.eval_batch_size, max_windows=n_val_windows)
    tokens = steps * recipe.batch_size * T
    N = matmul_params(config)
    return {
        "budget": flops, "n_layer": config.n_layer, "n_head": config.n_head, "n_embd": config.n_embd,
        "block_size": T, "vocab_size": config.vocab_size, "n_params": N, "all_params": num_params(config),
        "tokens": tokens, "steps": steps, "epochs": tokens / len(data.split("train")),
        "flops": steps * count_flops(config, recipe.batch_size).total, "flops_6nd": 6 * N * tokens,
        "tokens_per_param": tokens / N, "val_loss": float(val), "train_loss": float(train),
        "last_batch_loss": float(loss), "seconds": seconds, "tokens_per_s": tokens / seconds,
        "seed": seed, "lr": recipe.lr, "warmup_steps": train_config.warmup_iters,
    }


# ----------------------------------------------------------------------------- the fits
@dataclass(frozen=True)
class ParabolaFit:
    r"""$y \approx c_0 + c_1 x + c_2 x^2$ with its vertex ``x_min`` $= -c_1 / 2c_2$ and the value
    there, ``y_min``; ``coef`` = $(c_0, c_1, c_2)$."""
    x_min: float
    y_min: float
    coef: tuple

    def __call__(self, x):
        c0, c1, c2 = self.coef
        x = np.asarray(x, dtype=np.float64)
        return c0 + c1 * x + c2 * x * x


def fit_parabola(log_n, loss):
    r"""The least-squares parabola of ``loss`` against ``log_n`` (at least 3 points) and its
    minimum: a :class:`ParabolaFit`. Raises ValueError when the parabola opens downward
    ($c_2 \le 0$: no minimum) or when its vertex lies outside the sampled range of ``log_n`` (the
    minimum would be an extrapolation: sample further on that side instead)."""
    x = _finite_array("log_n", log_n, min_size=3)
    y = _finite_array("loss", loss, min_size=3)
    _same_length(log_n=x, loss=y)
    if np.unique(x).size < 3:
        raise UsageError(f"log_n needs at least 3 distinct values for a parabola, got {np.unique(x).tolist()}")
    c2, c1, c0 = np.polyfit(x, y, 2)
    if c2 <= 0:
        raise UsageError(f"the parabola through these points opens downward (c2 = {c2:.3g} <= 0): the "
                         f"losses {np.round(y, 4).tolist()} have no minimum inside the sampled sizes")
    x_min = -c1 / (2 * c2)
    if not x.min() <= x_min <= x.max():
        side = "smaller" if x_min < x.min() else "larger"
        raise UsageError(f"the parabola's minimum, log N = {x_min:.3f} (N = {math.exp(x_min):,.0f}), lies outside "
                         f"the sampled range [{x.min():.3f}, {x.max():.3f}]: it would be an extrapolation; "
                         f"add {side} sizes")
    return ParabolaFit(float(x_min), float(c0 + c1 * x_min + c2 * x_min**2), (float(c0), float(c1), float(c2)))


def fit_power_law(c, y):
    r"""$y = k\,c^{e}$ by least squares on $\ln y = \ln k + e \ln c$ (at least 2 points, all
    positive): returns ``(k, e)``."""
    c = _positive_array("c", c, min_size=2)
    y = _positive_array("y", y, min_size=2)
    _same_length(c=c, y=y)
    if np.unique(c).size < 2:
        raise UsageError(f"c needs at least 2 distinct values for a power law, got {c.tolist()}")
    e, log_k = np.polyfit(np.log(c), np.log(y), 1)
    return float(math.exp(log_k)), float(e)


@dataclass(frozen=True)
class LossLawFit:
    r"""$L = E + A N^{-\alpha} + B D^{-\beta}$ fitted to runs, with the root-mean-square residual
    ``rms`` (nats)."""
    E: float
    A: float
    alpha: float
    B: float
    beta: float
    rms: float


SUPPORTS = ((0,), (1,), (2,), (0, 1), (0, 2), (1, 2), (0, 1, 2))   # the non-empty subsets of (E, A, B)


def _nonnegative_least_squares(X, y):
    """For a stack of designs ``X`` (G, R, 3) and targets ``y`` (R,): the coefficients (G, 3), all
    >= 0, of least squared error, and that error (G,). With three unknowns the exact answer is the
    best of the unconstrained solutions on each subset of the columns that come out >= 0."""
    G = X.shape[0]
    best_sse = np.full(G, np.inf)
    best = np.zeros((G, 3))
    scale = np.linalg.norm(X, axis=1, keepdims=True)               # (G, 1, 3): unit columns, for conditioning
    Xs = X / scale
    for support in SUPPORTS:
        cols = list(support)
        coef = np.einsum("gkr,r->gk", np.linalg.pinv(Xs[:, :, cols]), y)          # (G, |S|)
        sse = ((np.einsum("grk,gk->gr", Xs[:, :, cols], coef) - y) ** 2).sum(axis=1)
        ok = (coef >= 0).all(axis=1) & (sse < best_sse)
        full = np.zeros((G, 3))
        full[:, cols] = coef / scale[:, 0, cols]
        best_sse = np.where(ok, sse, best_sse)
        best = np.where(ok[:, None], full, best)
    return best, best_sse


def fit_loss_law(n_params, tokens, loss, alpha_range=(0.05, 1.5), beta_range=(0.05, 1.5), grid=41, zooms=6):
    r"""Fit $L = E + A N^{-\alpha} + B D^{-\beta}$ (all five $\ge 0$) to runs by least squares:
    for each $(\alpha, \beta)$ of a ``grid`` x ``grid`` grid the law is linear in $(E, A, B)$,
    solved exactly; the best grid point is refined ``zooms`` times on a grid four steps wide
    around it. At least 5 runs. Returns a :class:`LossLawFit`."""
    N = _positive_array("n_params", n_params, min_size=5)
    D = _positive_array("tokens", tokens, min_size=5)
    y = _finite_array("loss", loss, min_size=5)
    _same_length(n_params=N, tokens=D, loss=y)
    grid = check_int("grid", grid, low=3)
    # Work with N and D divided by their geometric means: the same law, better-conditioned columns.
    n0, d0 = math.exp(np.log(N).mean()), math.exp(np.log(D).mean())
    lo_a, hi_a = alpha_range
    lo_b, hi_b = beta_range
    for _ in range(zooms + 1):
        alphas, betas = np.linspace(lo_a, hi_a, grid), np.linspace(lo_b, hi_b, grid)
        a, b = (g.reshape(-1) for g in np.meshgrid(alphas, betas, indexing="ij"))
        X = np.stack([np.ones((a.size, N.size)), (N / n0)[None] ** -a[:, None], (D / d0)[None] ** -b[:, None]],
                     axis=2)                                                     # (G, R, 3)
        coef, sse = _nonnegative_least_squares(X, y)
        i = int(np.argmin(sse))
        step_a, step_b = alphas[1] - alphas[0], betas[1] - betas[0]
        lo_a, hi_a = max(alpha_range[0], a[i] - 2 * step_a), min(alpha_range[1], a[i] + 2 * step_a)
        lo_b, hi_b = max(beta_range[0], b[i] - 2 * step_b), min(beta_range[1], b[i] + 2 * step_b)
    E, A, B = coef[i]
    return LossLawFit(E=float(E), A=float(A * n0 ** a[i]), alpha=float(a[i]), B=float(B * d0 ** b[i]),
                      beta=float(b[i]), rms=float(math.sqrt(sse[i] / y.size)))


# ----------------------------------------------------------------------------- the law
@dataclass(frozen=True)
class ScalingLaw:
    r"""What the study found, for a planner to call (module docstring).

    ``predict_loss(N, D)`` $= E + A N^{-\alpha} + B D^{-\beta}$; ``optimal(C)`` $= (k_N C^a, k_D C^b)$,
    the compute-optimal weights and tokens of approach 2; ``minimum_loss(C)`` the law's loss there.
    $N$ counts :func:`~npgpt.allocation.costs.matmul_params`, $C$ the exact training FLOPs
    (:func:`flops_per_token_trained` per token). ``fitted_range`` holds the (min, max) of ``n_params``,
    ``tokens`` and ``flops`` the law was fitted on; ``meta`` how (corpus, recipe, shapes)."""
    E: float
    A: float
    alpha: float
    B: float
    beta: float
    k_n: float
    a: float
    k_d: float
    b: float
    fitted_range: dict = field(default_factory=dict)
    meta: dict = field(default_factory=dict)

    def __post_init__(self):
        for f in fields(self)[:9]:
            check_real(f"ScalingLaw.{f.name}", getattr(self, f.name))
        for f in ("E", "A", "B", "alpha", "beta", "k_n", "k_d"):
            check_real(f"ScalingLaw.{f}", getattr(self, f), low=0.0)

    def predict_loss(self, n_params, tokens):
        """The loss of ``n_params`` weights (matmul_params) trained on ``tokens`` tokens (scalars
        or arrays that broadcast); a float for scalars."""
        N = _positive_array("n_params", n_params).reshape(np.shape(n_params))
        D = _positive_array("tokens", tokens).reshape(np.shape(tokens))
        loss = self.E + self.A * N ** -self.alpha + self.B * D ** -self.beta
        return float(loss) if np.ndim(loss) == 0 else loss

    def optimal(self, flops):
        """``(N_opt, D_opt)`` for a budget of ``flops`` (exact training FLOPs): floats for a scalar."""
        C = _positive_array("flops (the compute budget)", flops).reshape(np.shape(flops))
        n, d = self.k_n * C**self.a, self.k_d * C**self.b
        return (float(n), float(d)) if np.ndim(C) == 0 else (n, d)

    def minimum_loss(self, flops):
        """The predicted loss of the compute-optimal run at ``flops``."""
        return self.predict_loss(*self.optimal(flops))

    def tokens_per_param(self, flops):
        """$D_{opt} / N_{opt}$ at ``flops``."""
        n, d = self.optimal(flops)
        return d / n

    def in_range(self, n_params=None, tokens=None, flops=None):
        """True when every value given lies inside the ranges the law was fitted on."""
        asked = {"n_params": n_params, "tokens": tokens, "flops": flops}
        return all(self.fitted_range[k][0] <= v <= self.fitted_range[k][1]
                   for k, v in asked.items() if v is not None and k in self.fitted_range)

    def to_dict(self):
        return asdict(self)

    @classmethod
    def from_dict(cls, d):
        if not isinstance(d, dict):
            raise UsageError(f"a scaling law must be a dict, got {type(d).__name__}")
        names = [f.name for f in fields(cls)]
        missing = [n for n in names[:9] if n not in d]
        if missing:
            raise UsageError(f"the scaling law is missing {', '.join(missing)}")
        return cls(**{n: d[n] for n in names if n in d})


LAW_MAX_BYTES = 1 << 20          # a law is a few hundred bytes; its file is refused unread beyond this
MAX_LAW_SIZE = 1 << 20           # block_size and vocab_size a law may name (npgpt's GPTs stay far below)
# The law's numbers a file must hold, and the values that make sense: a loss and its coefficients
# are >= 0; the exponents and the optimum's factors > 0 (else the optimum is 0 weights or does not
# move with compute); N_opt and D_opt grow at most as fast as the compute (a, b <= 1).
LAW_FIELDS = {"E": (0.0, False, math.inf), "A": (0.0, False, math.inf), "B": (0.0, False, math.inf),
              "alpha": (0.0, True, math.inf), "beta": (0.0, True, math.inf), "k_n": (0.0, True, math.inf),
              "k_d": (0.0, True, math.inf), "a": (0.0, True, 1.0), "b": (0.0, True, 1.0)}
RANGE_KEYS = ("n_params", "tokens", "flops")


def load_law(path: str | Path | None = None) -> "ScalingLaw":
    """The :class:`ScalingLaw` of the committed study (``npgpt/allocation/scaling_law.json``,
    written by ``benchmarks/scaling.py``), or of the JSON file at ``path``. A file that is not a
    regular file of at most ``LAW_MAX_BYTES`` of UTF-8 JSON, or whose law has a field missing or
    impossible (:data:`LAW_FIELDS`), is refused in one line naming the file and the field."""
    path = LAW_PATH if path is None else Path(path)
    d = _read_law_json(path)
    try:
        check_law_fields(d)
        return ScalingLaw.from_dict(d)
    except UsageError as e:
        raise UsageError(f"scaling law {str(path)!r}: {e}") from None


def _read_law_json(path: Path) -> object:
    """The JSON value of the file ``path``, read only when it is a regular file of a law's size."""
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise MissingFile(f"no scaling law at {str(path)!r}: run benchmarks/scaling.py to measure one") from None
    except OSError as e:
        raise UsageError(f"scaling law {str(path)!r} cannot be read ({e.strerror})") from None
    if not stat.S_ISREG(info.st_mode):
        kind = "a folder" if stat.S_ISDIR(info.st_mode) else "not a regular file"
        raise UsageError(f"scaling law {str(path)!r} is {kind}; expected a JSON file")
    if info.st_size > LAW_MAX_BYTES:
        raise UsageError(f"scaling law {str(path)!r} has {info.st_size:,} bytes; a law's JSON is at most "
                         f"{LAW_MAX_BYTES:,}")
    try:
        with open(path, "rb") as f:
            data = f.read(LAW_MAX_BYTES + 1)
        return json.loads(data.decode("utf-8"))
    except OSError as e:
        raise UsageError(f"scaling law {str(path)!r} cannot be read ({e.strerror})") from None
    except UnicodeDecodeError as e:
        raise UsageError(f"scaling law {str(path)!r} is not UTF-8 text (byte {e.start}); expected JSON") from None
    except (ValueError, RecursionError) as e:        # JSONDecodeError, a 5000-digit number, deep nesting
        raise UsageError(f"scaling law {str(path)!r} is not valid JSON ({_short(str(e) or type(e).__name__)})") from None


def check_law_fields(d: object) -> None:
    """Refuse a law (a JSON value) whose fields are missing or impossible, naming the field."""
    if not isinstance(d, dict):
        raise UsageError(f"a scaling law must be a JSON object, got a JSON {type(d).__name__}")
    missing = [name for name in LAW_FIELDS if name not in d]
    if missing:
        raise UsageError(f"{'fields' if len(missing) > 1 else 'field'} {', '.join(missing)} missing")
    for name, (low, low_open, high) in LAW_FIELDS.items():
        label = f"field {name!r}"
        check_real(label, _as_float(label, d[name]), low, high, low_open=low_open)
    ranges = d.get("fitted_range", {})
    if not isinstance(ranges, dict) or not set(ranges) <= set(RANGE_KEYS):
        raise UsageError(f"field 'fitted_range' must map some of {RANGE_KEYS} to [low, high], "
                         f"got {_short(repr(ranges))}")
    for key, bounds in ranges.items():
        numbers = [_as_float(f"field 'fitted_range' {key!r}", v) for v in bounds] if isinstance(bounds, list) else []
        if len(numbers) != 2 or not all(math.isfinite(v) and v > 0 for v in numbers) or numbers[0] > numbers[1]:
            raise UsageError(f"field 'fitted_range' {key!r} must be [low, high] with 0 < low <= high, "
                             f"got {_short(repr(bounds))}")
    meta = d.get("meta", {})
    if not isinstance(meta, dict):
        raise UsageError(f"field 'meta' must be a JSON object, got {_short(repr(meta))}")
    for key in ("block_size", "vocab_size"):
        value = meta.get(key, 1)
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_LAW_SIZE:
            raise UsageError(f"field 'meta' {key!r} must be an integer in [1, {MAX_LAW_SIZE}], got {_short(repr(value))}")


def _as_float(label: str, value: object) -> float:
    """A JSON number as a float (an integer too large for one is infinite); anything else is
    refused, naming ``label``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise UsageError(f"{label} must be a number, got {_short(repr(value))}")
    try:
        return float(value)
    except OverflowError:
        return math.inf


def _short(text: str, limit: int = 80) -> str:
    """``text`` cut to ``limit`` characters: a value quoted from a file never makes a long line."""
    return text if len(text) <= limit else text[:limit] + "..."


# ----------------------------------------------------------------------------- the study
def seed_means(runs):
    """The runs averaged over their seeds: one dict per (budget, shape), the first run's fields with
    ``val_loss`` and ``train_loss`` the means, ``val_losses`` every seed's and ``seeds`` their number."""
    groups = {}
    for r in runs:
        groups.setdefault((r["budget"], r["n_layer"], r["n_embd"]), []).append(r)
    points = []
    for group in groups.values():
        val = [r["val_loss"] for r in group]
        points.append({**group[0], "val_loss": float(np.mean(val)), "val_losses": val, "seeds": len(group),
                       "train_loss": float(np.mean([r["train_loss"] for r in group]))})
    return sorted(points, key=lambda p: (p["budget"], p["n_params"]))


def seed_noise(runs):
    r"""The seed-to-seed spread of val loss: the pooled standard deviation over every (budget, shape)
    run with more than one seed, $\sqrt{\sum_g \sum_i (L_{gi} - \bar L_g)^2 / \sum_g (n_g - 1)}$,
    and the largest range; None when no point has two seeds."""
    points = [p for p in seed_means(runs) if p["seeds"] > 1]
    if not points:
        return None
    squares = sum(((np.array(p["val_losses"]) - p["val_loss"]) ** 2).sum() for p in points)
    dof = sum(p["seeds"] - 1 for p in points)
    return {"pooled_std": float(math.sqrt(squares / dof)), "points": len(points),
            "max_range": float(max(max(p["val_losses"]) - min(p["val_losses"]) for p in points))}


def isoflop_fits(runs):
    """Per budget (sorted), the parabolas of the seed-mean val loss against ln N and against ln D:
    a list of dicts with ``budget``, ``n_opt``, ``d_opt``, ``loss_min``, the coefficients, or
    ``error`` (why there is no minimum: too few sizes, a parabola opening downward, a vertex
    outside the sampled sizes)."""
    points = seed_means(runs)
    out = []
    for C in sorted({p["budget"] for p in points}):
        group = [p for p in points if p["budget"] == C]
        loss = [p["val_loss"] for p in group]
        row = {"budget": C, "sizes": len(group)}
        try:
            on_n = fit_parabola(np.log([p["n_params"] for p in group]), loss)
            on_d = fit_parabola(np.log([p["tokens"] for p in group]), loss)
        except ValueError as e:
            row["error"] = str(e)
        else:
            row.update({"n_opt": math.exp(on_n.x_min), "d_opt": math.exp(on_d.x_min), "loss_min": on_n.y_min,
                        "coef_log_n": list(on_n.coef), "coef_log_d": list(on_d.coef)})
            row["tokens_per_param"] = row["d_opt"] / row["n_opt"]
        out.append(row)
    return out


def exponent_spread(runs, draws=2000, seed=0):
    r"""How far noise moves $a$ and $b$: a parametric bootstrap. Each draw adds Gaussian noise to
    every point's (seed-mean) loss, with the standard deviation of its budget's parabola residuals
    ($\sqrt{\sum r^2 / (n - 3)}$, which holds the seed noise and the parabola's misfit), then refits
    the parabolas and the power laws. Returns the standard deviations of ``a`` and ``b``, their 16th
    and 84th percentiles, the spread of each budget's $\ln N_{opt}$, and the share of draws in which
    some parabola had no interior minimum (those are left out)."""
    points = seed_means(runs)
    fits = isoflop_fits(runs)
    budgets = [f["budget"] for f in fits]
    rng = np.random.default_rng(seed)
    groups, sigmas = [], []
    for f in fits:
        if "error" in f:
            raise UsageError(f"budget {f['budget']:.3g} has no minimum to perturb: {f['error']}")
        group = [p for p in points if p["budget"] == f["budget"]]
        x, d = np.log([p["n_params"] for p in group]), np.log([p["tokens"] for p in group])
        y = np.array([p["val_loss"] for p in group])
        residuals = y - ParabolaFit(0.0, 0.0, tuple(f["coef_log_n"]))(x)
        groups.append((x, d, y))
        sigmas.append(math.sqrt((residuals**2).sum() / max(len(y) - 3, 1)))
    a, b, x_min, failed = [], [], [], 0
    for _ in range(check_int("draws", draws)):
        try:
            draw = []
            for (x, d, y), sigma in zip(groups, sigmas):
                noisy = y + rng.normal(0.0, sigma, y.size)
                draw.append((fit_parabola(x, noisy).x_min, fit_parabola(d, noisy).x_min))
        except ValueError:
            failed += 1
            continue
        x_min.append([n for n, _ in draw])
        a.append(fit_power_law(budgets, np.exp([n for n, _ in draw]))[1])
        b.append(fit_power_law(budgets, np.exp([t for _, t in draw]))[1])
    if not a:
        raise UsageError(f"no draw of {draws} gave every budget an interior minimum")
    return {"a_std": float(np.std(a)), "b_std": float(np.std(b)),
            "a_16_84": np.percentile(a, [16, 84]).tolist(), "b_16_84": np.percentile(b, [16, 84]).tolist(),
            "log_n_opt_std": np.std(x_min, axis=0).tolist(), "residual_std": sigmas,
            "draws": draws, "failed_share": failed / draws}


def fit_scaling_law(runs, meta=None):
    """The :class:`ScalingLaw` of a study's ``runs`` (dicts as :func:`train_point` returns, every
    seed of every shape: the parabolas fit the seed means, the loss law every run) and the
    per-budget fits of :func:`isoflop_fits`. Raises ValueError when a budget has no interior
    minimum (the law would rest on an extrapolation) or fewer than 2 budgets have one."""
    fits = isoflop_fits(runs)
    failed = [f for f in fits if "error" in f]
    if failed:
        raise UsageError("; ".join(f"budget {f['budget']:.3g}: {f['error']}" for f in failed))
    if len(fits) < 2:
        raise UsageError(f"N_opt(C) needs at least 2 budgets, got {len(fits)}")
    C = [f["budget"] for f in fits]
    k_n, a = fit_power_law(C, [f["n_opt"] for f in fits])
    k_d, b = fit_power_law(C, [f["d_opt"] for f in fits])
    law = fit_loss_law([r["n_params"] for r in runs], [r["tokens"] for r in runs], [r["val_loss"] for r in runs])
    fitted_range = {key: [float(min(r[key] for r in runs)), float(max(r[key] for r in runs))]
                    for key in ("n_params", "tokens", "flops")}
    return ScalingLaw(E=law.E, A=law.A, alpha=law.alpha, B=law.B, beta=law.beta, k_n=k_n, a=a, k_d=k_d, b=b,
                      fitted_range=fitted_range, meta={"rms": law.rms, **(meta or {})}), fits


# ----------------------------------------------------------------------------- the study, end to end
@dataclass(frozen=True)
class StudyDesign:
    """What a study trains (the committed study by default, sized in :data:`STUDY_NOTES`): compute
    ``budgets`` (FLOPs), ``sizes`` models per budget over a factor ``spread`` of N, centred for
    budget C on N0 (C / C0)^centre_exponent with ``centre`` = (N0, C0) (the optimum of a pilot),
    ``seeds`` per point and ``noise_seeds`` more at each budget's middle size."""
    budgets: tuple[float, ...] = (1e12, 3e12, 1e13)
    sizes: int = 6
    spread: float = 10.0
    seeds: int = 1
    noise_seeds: int = 2
    centre: tuple[float, float] = (4e4, 1e12)
    centre_exponent: float = 0.8

    def centre_for(self, flops: float) -> float:
        """Where the sizes of budget ``flops`` are centred: N0 (C / C0)^a."""
        n0, c0 = self.centre
        return n0 * (flops / c0) ** self.centre_exponent

    def plan(self, vocab_size: int) -> list[tuple[float, GPTConfig, int]]:
        """The runs, in the order they run: (budget, config, seed), smallest budget first, every
        seed of a shape one after the other; the middle size ((sizes - 1) // 2) of each budget has
        ``noise_seeds`` more."""
        runs = []
        for C in sorted(self.budgets):
            shapes = ladder(C, self.sizes, self.spread, self.centre_for(C), vocab_size=vocab_size)
            for i, config in enumerate(shapes):
                seeds = self.seeds + (self.noise_seeds if i == (self.sizes - 1) // 2 else 0)
                runs += [(C, config, seed) for seed in range(seeds)]
        return runs


# One budget, two sizes: a study of seconds that shows the machinery (no law: a parabola needs three).
FAST_STUDY = StudyDesign(budgets=(5e9,), sizes=2, spread=4.0, seeds=1, noise_seeds=0, centre=(3e3, 5e9))

# What the study's results file says about its method (``notes``), next to the numbers.
STUDY_NOTES = [
    "N is matmul_params (12 L C^2 + V C, the N of 6ND: the token table counts; the position table, LayerNorms and "
    "biases do not). A budget C is the exact FLOP count of every matrix product, backward included "
    "(npgpt.allocation.costs.count_flops), so each run trains on D = C / f tokens with f = 6N + 12 L T C FLOPs "
    "per token, rounded to whole steps; flops_6nd in each run shows how far 6ND falls short of it.",
    "Approach 2 as in Chinchilla: per budget, a least-squares parabola of val loss (the mean over a point's seeds) "
    "against ln N, and one against ln D; each vertex must lie inside the sampled sizes. Then least-squares lines in "
    "log-log across budgets give a and b. exponents.spread is a parametric bootstrap: every point moved by Gaussian "
    "noise of its budget's parabola-residual standard deviation, all fits redone, 2000 times.",
    "The loss law L = E + A / N^alpha + B / D^beta is fitted to every run (all seeds) by least squares: exact in "
    "(E, A, B) >= 0 on an (alpha, beta) grid, refined by zooming. a_implied = beta / (alpha + beta) is the split "
    "the law itself prefers; it should agree with approach 2's a.",
    "The recipe is the same for every run: AdamW (0.9, 0.99, weight decay 0.1), one peak learning rate for all "
    "sizes, warmup over 5% of the steps, cosine to a tenth of the peak at the last step, clip 1, batch 16 x 64 "
    "characters. The peak rate (5e-3) comes from a pilot at C = 1e12 on three sizes (N = 27k, 102k, 396k; lr "
    "1e-3, 2e-3, 4e-3, 6e-3, 8e-3): 4e-3 to 8e-3 lay within about 0.03 nats of each other for every size, 1e-3 "
    "and 2e-3 were 0.06 to 0.25 worse; smaller models leaned to 4e-3, the shorter runs of larger ones to 8e-3.",
    "Val loss is the mean over every non-overlapping 64-character window of the validation split (the last 10% of "
    "the text), so it has no sampling noise; train_loss over as many windows spread over the training split. The "
    "val split is other plays: val loss sits 0.11 to 0.22 above train loss, 0.14 already for the 11k-weight model, "
    "far too small to memorise the text, so most of that gap is the split, not overfitting.",
    "Sizing, for one core: three budgets 3-3.3x apart, six sizes each over a factor 10 of N centred on "
    "N0 (C / C0)^0.8 (N0 = 4e4 at C0 = 1e12, the optimum of a pilot), three seeds at each budget's third size; "
    "24 runs, 1.1e14 FLOPs, every run 1,100 steps or more. A pilot at 1e11 and 3e11 FLOPs gave jagged IsoFLOP "
    "curves (neighbours out of order by up to 0.14 nats): there the models end near the plateau where a character "
    "model knows only which letter follows which (2.2-2.5 nats), and leave it earlier in some runs than others. "
    "wall_seconds is measured on a shared 2-core machine while other sessions used both cores "
    "(load_average_at_start; the load stayed between 4.5 and 7.5 through the committed run); an idle core runs "
    "these steps about twice as fast.",
    "Departures from the paper: 1e4-8e5 weights (Chinchilla: 7e7-1.6e10) and three budgets over one decade "
    "(Chinchilla: nine over 2.5), hence error bars of about 0.09 on a and b; one seed per point but three at one "
    "point of each budget (seed_noise); character tokens, each worth less than a BPE token (about four characters "
    "of English), so Chinchilla's 20 tokens per parameter is roughly 80 characters; one 1.1 MB corpus, which the "
    "optimal runs pass over 3.5 to 10 times (Chinchilla: once) and the small models up to 18 times, while the law "
    "has no term for repeated data; the token table is 12% of N for the smallest model and the position table, "
    "left out of N, as big again; one learning rate for every width; short runs.",
]


def _design_record(design, recipe, vocab_size):
    """The ``design`` entry of a study's results."""
    return {"budgets": sorted(design.budgets), "sizes_per_budget": design.sizes, "spread": design.spread,
            "seeds": design.seeds, "noise_seeds": design.noise_seeds,
            "centre": {"n_params": design.centre[0], "budget": design.centre[1], "exponent": design.centre_exponent},
            "block_size": BLOCK_SIZE, "vocab_size": vocab_size,
            "shape_rule": f"{N_HEAD} heads, n_layer = max({MIN_LAYER}, round((N / (12 * {ASPECT}^2))^(1/3))) "
                          f"of its own N, n_embd a multiple of {WIDTH_STEP} (>= {MIN_WIDTH})",
            "n_params": "matmul_params = 12 L C^2 + V C",
            "flops": "exact count of every matrix product, forward and backward (costs.count_flops)",
            "recipe": asdict(recipe)}


def run_study(design: StudyDesign, data: Any, corpus: str, recipe: Recipe | None = None, command: str = "",
              machine: dict | None = None, on_run: Callable[[dict], Any] | None = None, progress: bool = True,
              log: Callable[..., Any] = print) -> dict[str, Any]:
    """Train every run of ``design`` on ``data`` (a :class:`npgpt.Dataset` of the text ``corpus``
    describes) with ``recipe``, one after the other with progress bars (unless ``progress`` is
    False), and return the study's results: the design, the runs (:func:`train_point`), the
    ``machine`` and ``command`` given, :data:`STUDY_NOTES`. ``on_run(result)`` is called after every
    run with ``complete`` False, so a caller can save what is measured; the fits are
    :func:`analyse_study`'s."""
    recipe = recipe or Recipe()
    todo = design.plan(data.vocab_size)
    step_flops = [count_flops(config, recipe.batch_size).total for _, config, _ in todo]
    steps = [recipe.steps(tokens_for_budget(config, C), config.block_size) for C, config, _ in todo]
    log(f"{len(todo)} runs, {sum(f * s for f, s in zip(step_flops, steps)):.3g} FLOPs in all:")
    for (C, config, seed), s in zip(todo, steps):
        log(f"  C={C:.0e}  L={config.n_layer} C={config.n_embd:<4} N={matmul_params(config):>9,}  "
            f"{s:>6,} steps" + (f"  (seed {seed})" if seed else ""))
    result = {
        "study": "compute-optimal allocation, Chinchilla's approach 2 (npgpt/allocation/scaling.py)",
        "command": command, "complete": False, "corpus": corpus,
        "train_tokens": len(data.split("train")), "val_tokens": len(data.split("val")),
        "design": _design_record(design, recipe, data.vocab_size),
        "machine": machine or {}, "notes": STUDY_NOTES, "runs": [],
    }
    start = time.perf_counter()
    total = sum(f * s for f, s in zip(step_flops, steps)) / 1e9
    with tqdm(total=total, unit="GFLOP", unit_scale=True, desc="study", dynamic_ncols=True,
              disable=not progress, position=0) as study:
        for i, ((C, config, seed), flops) in enumerate(zip(todo, step_flops)):
            study.set_postfix_str(f"run {i + 1}/{len(todo)}: C={C:.0e} N={matmul_params(config):,}")
            with tqdm(total=steps[i], unit="step", desc=f"  L={config.n_layer} C={config.n_embd}", leave=False,
                      dynamic_ncols=True, disable=not progress, position=1) as bar:
                def on_step(step, loss, bar=bar, flops=flops):
                    bar.update(1)
                    study.update(flops / 1e9)
                    if step % 50 == 0:
                        bar.set_postfix(loss=f"{loss:.3f}", refresh=False)
                run = train_point(config, C, data, recipe, seed=seed, on_step=on_step)
            result["runs"].append(run)
            study.write(f"C={C:.0e} L={run['n_layer']} C={run['n_embd']:<4} N={run['n_params']:>9,} "
                        f"D={run['tokens']:>11,} ({run['epochs']:.1f} epochs)  val {run['val_loss']:.4f}  "
                        f"train {run['train_loss']:.4f}  {run['seconds']:.0f} s" + (f"  seed {seed}" if seed else ""))
            result["wall_seconds"] = time.perf_counter() - start
            if on_run is not None:
                on_run(result)
    result["complete"] = True
    result["wall_seconds"] = time.perf_counter() - start
    return result


def analyse_study(result: dict[str, Any]) -> ScalingLaw | None:
    """Add the seed means and the fits to a study's ``result`` (from :func:`run_study`, or its runs
    alone with the ``corpus`` and ``design``); returns the ScalingLaw, or None with the reason in
    ``result["fit_error"]``."""
    runs = result["runs"]
    result["isoflop_fits"] = isoflop_fits(runs)
    result["points"] = seed_means(runs)
    result["seed_noise"] = seed_noise(runs)
    meta = {"corpus": result["corpus"], "recipe": result["design"]["recipe"], "shapes": result["design"]["shape_rule"],
            "n_counts": "matmul_params: 12 L C^2 + V C", "flops_count": "exact matrix-product FLOPs, backward included",
            "block_size": result["design"]["block_size"], "vocab_size": result["design"]["vocab_size"],
            "study": "benchmarks/results/scaling.json"}
    try:
        law, _ = fit_scaling_law(runs, meta)
    except ValueError as e:
        result["fit_error"] = str(e)
        return None
    result.pop("fit_error", None)
    fits = result["isoflop_fits"]
    ratios = [f["tokens_per_param"] for f in fits]
    result["exponents"] = {"a": law.a, "b": law.b, "k_n": law.k_n, "k_d": law.k_d, "a_plus_b": law.a + law.b,
                           "spread": exponent_spread(runs),
                           "chinchilla": {"a": CHINCHILLA["a"], "b": CHINCHILLA["b"]}}
    result["tokens_per_param"] = {"per_budget": ratios, "geometric_mean": math.exp(np.mean(np.log(ratios))),
                                  "chinchilla": CHINCHILLA["tokens_per_param"]}
    law_optimum = law.beta / (law.alpha + law.beta)
    result["loss_law"] = {"E": law.E, "A": law.A, "alpha": law.alpha, "B": law.B, "beta": law.beta,
                          "rms": law.meta["rms"], "a_implied": law_optimum, "b_implied": 1 - law_optimum,
                          "chinchilla": {k: CHINCHILLA[k] for k in ("E", "A", "alpha", "B", "beta")},
                          "predicted_minimum_loss": {f"{f['budget']:.0e}": law.minimum_loss(f["budget"]) for f in fits},
                          "measured_minimum_loss": {f"{f['budget']:.0e}": f["loss_min"] for f in fits}}
    return law


def study_report(result: dict[str, Any], law: ScalingLaw | None) -> str:
    """What a study found, in a few lines: each budget's optimum, the seed noise, the exponents and
    the loss law (or why there is none)."""
    lines = []
    for f in result["isoflop_fits"]:
        if "error" in f:
            lines.append(f"C={f['budget']:.0e}: no minimum: {f['error']}")
        else:
            lines.append(f"C={f['budget']:.0e}: N_opt={f['n_opt']:,.0f}  D_opt={f['d_opt']:,.0f}  "
                         f"D/N={f['tokens_per_param']:.0f}  min val loss {f['loss_min']:.4f}")
    if result.get("seed_noise"):
        s = result["seed_noise"]
        lines.append(f"seed noise: pooled std of val loss {s['pooled_std']:.4f} over {s['points']} points "
                     f"(largest range {s['max_range']:.4f})")
    if law is not None:
        e, lw = result["exponents"], result["loss_law"]
        lines.append(f"N_opt = {e['k_n']:.3g} C^{e['a']:.3f} (+-{e['spread']['a_std']:.3f}), D_opt = {e['k_d']:.3g} "
                     f"C^{e['b']:.3f} (+-{e['spread']['b_std']:.3f}) (Chinchilla: a=0.49, b=0.51); "
                     f"tokens per parameter {result['tokens_per_param']['geometric_mean']:.0f} (Chinchilla: 20)")
        lines.append(f"L(N, D) = {lw['E']:.3f} + {lw['A']:.4g} / N^{lw['alpha']:.3f} + {lw['B']:.4g} / D^{lw['beta']:.3f} "
                     f"(rms {lw['rms']:.4f})")
    elif "fit_error" in result:
        lines.append(f"no scaling law: {result['fit_error']}")
    return "\n".join(lines)
