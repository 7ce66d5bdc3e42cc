r"""What a GPT costs (document sections 2 and 7, "global optimal allocation"): compute, memory,
disk and time, counted from its configuration before anything runs.

Symbols: $B$ sequences of $T$ tokens, $L$ layers of width $C$ with $h$ heads, vocabulary $V$,
$s$ bytes per number (4 for float32), $P$ parameters.

**Compute.** Only matrix products are counted, $2mnk$ FLOPs for an $(m, k)\,(k, n)$ product.
LayerNorm, GELU, the softmaxes, the residual adds, the embedding lookup and the optimizer are not
matrix products and count 0 (they are $O(BTC)$, the products $O(BTC^2)$). The forward pass of one
step, by part:

$$\underbrace{6BTC^2L}_{\text{qkv}} + \underbrace{2BT^2CL}_{\text{attention scores}}
  + \underbrace{2BT^2CL}_{\text{attention-weighted sum}} + \underbrace{2BTC^2L}_{\text{output projection}}
  + \underbrace{16BTC^2L}_{\text{mlp}} + \underbrace{2BTCV}_{\text{lm head}}$$

Attention counts the whole $T\times T$ score matrix, the masked half included: npgpt (and PyTorch)
compute it and then mask it. Backward is twice the forward: every product $Y = XW$ needs
$\partial X = \delta W^\top$ and $\partial W = X^\top\delta$, each as big as the product itself.
So a training step is $3\times$ the forward. Generating one token with a KV cache at context $t$
(the new token attends to $t$ positions, itself included) is the same with one row and $t$ keys:
$24C^2L + 4tCL + 2CV$.

The usual estimate is $6ND$ with $D = BT$ tokens and $N = 12LC^2 + VC$, the weights of the matrix
products (npgpt's biases, LayerNorms and position table take part in none). It is exact for
every product but attention's two, so it falls short of the count by $12LTC$ FLOPs per token.

**Memory, training.** Parameters $Ps$, gradients $Ps$, the optimizer's state (AdamW's two moments
$2Ps$, SGD's momentum $Ps$), and the activations the forward keeps for the backward. These are
read from the caches of the ops (:mod:`npgpt.ops`, :mod:`npgpt.kernels`), counting each buffer
once (views such as $q, k, v$ of the fused qkv output cost nothing). Per token, each layer keeps

- LayerNorm 1 and 2: $\hat x$ ($C$) and $1/\sigma$ (1) each;
- attention: its input ($C$, LayerNorm 1's output), qkv ($3C$), the weights $A$ ($hT$: the fused
  kernel's (B, h, T, T) array) and the merged heads ($C$, the output projection's input);
- MLP: its input ($C$), the GELU input ($4C$), $\tanh u$ ($4C$) and the GELU output ($4C$);

$20C + 2 + hT$ numbers, and once per model: the final LayerNorm ($\hat x$, $1/\sigma$, its output
the head reads: $2C + 1$) and the cross-entropy's probabilities ($V$). The residual stream itself
is not kept (no backward reads it). The token ids, targets and scored rows are three int64
numbers per token. With dropout, training also keeps each mask (embedding: $C$; per layer: $2C$ and
$hT$) and the attention weights after dropout ($hT$). The two backends keep the same arrays.

The backward keeps all of that until it ends (the model releases its caches only at the next
forward) while it adds the gradients, so its peak also holds the **transient peak**: the logits'
gradient ($V$ per token, alive for the whole backward) and the most that one block's backward has
alive at once, $\max(10C,\ 9C + hT)$ per token: in the MLP, the incoming gradient ($C$), the GELU
output's and input's gradients ($4C + 4C$) and the input's gradient ($C$); in attention, four
gradients of the block's ($4C$), the projection's input gradient ($C$), qkv's ($3C$), the weights'
($hT$) and the input's ($C$).

Left out, each under 1% for the presets: Python objects, the batch before it reaches the model,
the tied head's second $VC$ gradient while the embedding's is summed in, AdamW's contiguous copy
of an untied head's gradient, the numpy backend's extra $T\times T$ temporaries in the attention
backward (this counts the default numba backend), and clipping's float64 squares.

A run's later steps peak no higher than its first: a model's forward lets go of the previous
step's caches and gradients before it makes its own.

**Memory, inference.** The parameters; the KV cache, $2LBC$ numbers per position, of which
:meth:`npgpt.GPT.new_cache` reserves $\max(T_{block}, 16)$ positions up front (the part in use is
the context, the rest is shown apart); and the caches the prompt's forward keeps (the training
activations for the prompt, minus the loss's, plus its logits, all alive until the next forward
ends). A one-token prompt runs the fused decoding step, which keeps no block caches and reads the
blocks' weights where the model keeps them, stacked by kind: no copy.

**Disk.** A checkpoint holds the parameters and the optimizer's buffers
(:func:`npgpt.io.checkpoint.checkpoint_bytes`), plus a few kB of metadata and history.

**Time.** A step's FLOPs over the machine's measured matmul rate
(:func:`matmul_peak_gflops`) is the time it would take if every FLOP ran at
BLAS's peak and nothing else took any: a lower bound. :func:`step_time` puts it beside a measured
step; their ratio is the model FLOPs utilisation.
"""
import math
import time
from dataclasses import dataclass

import numpy as np

from ..checks import UsageError, check_dtype, check_int, check_real
from ..io.checkpoint import OPTIMIZER_BUFFERS, checkpoint_bytes
from ..models import GPT
from ..models.config import GPTConfig
from ..runtime.memory import require_memory
from ..training.optim import SGD, AdamW

PARTS = ("qkv", "attention scores", "attention-weighted sum", "output projection", "mlp", "lm head")
INDEX_BYTES = 8                  # token ids, targets and scored rows are int64
KV_CACHE_MIN_POSITIONS = 16      # KVCache.reserve never makes room for fewer


# ----------------------------------------------------------------------------- input checks
def _check_config(config):
    if not isinstance(config, GPTConfig):
        raise UsageError(f"config must be a GPTConfig, got {type(config).__name__}")
    return config


def _check_length(name, value, config):
    """``value`` (None: block_size) as an int in [1, block_size]."""
    if value is None:
        return config.block_size
    value = check_int(name, value)
    if value > config.block_size:
        raise UsageError(f"{name} must be <= block_size={config.block_size}, got {value}")
    return value


def _check_optimizer(optimizer):
    if not isinstance(optimizer, str) or optimizer not in OPTIMIZER_BUFFERS:
        raise UsageError(f"optimizer must be one of {tuple(OPTIMIZER_BUFFERS)}, got {optimizer!r}")
    return optimizer


def _itemsize(dtype):
    """Bytes per number of ``dtype``, which must be float32 or float64."""
    try:
        dtype = np.dtype(dtype)
    except TypeError:
        raise UsageError(f"dtype must be float32 or float64, got {dtype!r}") from None
    return check_dtype(dtype).itemsize


# ----------------------------------------------------------------------------- compute
@dataclass(frozen=True)
class FlopCount:
    """FLOPs of the matrix products: ``by_part`` (part -> forward FLOPs, parts :data:`PARTS`),
    ``forward``, ``backward`` (0 when there is none) and ``total``."""
    by_part: dict
    forward: int
    backward: int

    @property
    def total(self):
        return self.forward + self.backward


def forward_flops_by_part(config, rows, keys):
    """Forward FLOPs of each product for ``rows`` query rows (tokens), each attending to ``keys``
    positions: every product is $2mnk$."""
    C, L, V = config.n_embd, config.n_layer, config.vocab_size
    return {
        "qkv": L * 2 * rows * C * (3 * C),
        "attention scores": L * 2 * rows * C * keys,           # Q K^T, all heads: sum of h (hs) = C
        "attention-weighted sum": L * 2 * rows * keys * C,     # A V
        "output projection": L * 2 * rows * C * C,
        "mlp": L * (2 * rows * C * (4 * C) + 2 * rows * (4 * C) * C),
        "lm head": 2 * rows * C * V,
    }


def count_flops(config, batch_size, seq_len=None):
    """FLOPs of one training step on ``batch_size`` sequences of ``seq_len`` tokens (default
    block_size): a :class:`FlopCount` whose backward is twice its forward (module docstring)."""
    config = _check_config(config)
    B = check_int("batch_size", batch_size)
    T = _check_length("seq_len", seq_len, config)
    by_part = forward_flops_by_part(config, rows=B * T, keys=T)
    forward = sum(by_part.values())
    return FlopCount(by_part, forward, 2 * forward)


def flops_per_token(config, context):
    """FLOPs of generating one token with a KV cache, the new token attending to ``context``
    positions (itself included, at most block_size): a :class:`FlopCount` with no backward."""
    config = _check_config(config)
    t = _check_length("context", context, config)
    by_part = forward_flops_by_part(config, rows=1, keys=t)
    return FlopCount(by_part, sum(by_part.values()), 0)


def matmul_params(config):
    """N of 6ND: the weights of the matrix products, $12LC^2 + VC$ (no biases, LayerNorms or
    position table; a tied head's table counted once, as the head)."""
    C = config.n_embd
    return config.n_layer * 12 * C * C + config.vocab_size * C


@dataclass(frozen=True)
class SixND:
    """The estimate $6ND$ beside the exact count: ``flops``, and ``relative_error`` =
    (6ND - exact) / exact (negative: the estimate is short)."""
    n_params: int
    tokens: int
    exact: int

    @property
    def flops(self):
        return 6 * self.n_params * self.tokens

    @property
    def relative_error(self):
        return (self.flops - self.exact) / self.exact


def six_nd(config, batch_size, seq_len=None):
    """$6ND$ for one training step, N = :func:`matmul_params`, D = batch_size * seq_len tokens."""
    exact = count_flops(config, batch_size, seq_len)
    T = _check_length("seq_len", seq_len, config)
    return SixND(matmul_params(config), batch_size * T, exact.total)


# ----------------------------------------------------------------------------- memory
@dataclass(frozen=True)
class MemoryCost:
    """Bytes by part (``by_part``: part -> bytes) and their ``total``."""
    by_part: dict

    @property
    def total(self):
        return sum(self.by_part.values())


def num_params(config):
    """P: every parameter of :class:`npgpt.GPT` with ``config``, counted from its shapes."""
    return sum(math.prod(shape) for shape in GPT.param_shapes(config).values())


def constant_bytes(config, s):
    """What the model holds beside its parameters: the sinusoidal table, when it uses one."""
    return config.block_size * config.n_embd * s if config.pos_encoding == "sinusoidal" else 0


def block_cache_numbers(config, T, training):
    """Numbers one layer's forward keeps per token for its backward (module docstring): LayerNorms
    $2(C + 1)$, attention $5C + hT$, MLP $13C$; with dropout while training, masks $2C + hT$ and
    the dropped attention weights $hT$."""
    C, h = config.n_embd, config.n_head
    kept = {"LayerNorms": 2 * (C + 1), "attention": 5 * C + h * T, "MLP": 13 * C}
    kept["dropout"] = 2 * C + 2 * h * T if training and config.dropout > 0 else 0
    return kept


def activation_bytes(config, batch_size, seq_len=None, dtype=np.float32):
    """Bytes of the activations one training forward keeps for the backward, by part (module
    docstring). Equal, byte for byte, to the distinct arrays the model's caches hold."""
    config = _check_config(config)
    B = check_int("batch_size", batch_size)
    T = _check_length("seq_len", seq_len, config)
    s, C, L = _itemsize(dtype), config.n_embd, config.n_layer
    layer = block_cache_numbers(config, T, training=True)
    tokens = B * T
    parts = {
        "LayerNorms (x-hat, 1/sigma)": tokens * s * (L * layer["LayerNorms"] + C + 1),
        "attention (input, qkv, weights, output)": tokens * s * L * layer["attention"],
        "MLP (input, GELU input, tanh, GELU output)": tokens * s * L * layer["MLP"],
        "head input, probabilities": tokens * s * (C + config.vocab_size),
        "token ids, targets, scored rows": tokens * 3 * INDEX_BYTES,
    }
    if layer["dropout"]:
        parts["dropout masks, dropped weights"] = tokens * s * (L * layer["dropout"] + C)
    return parts


def backward_transient_bytes(config, batch_size, T, s):
    r"""The most the backward has alive beyond the caches and gradients: the logits' gradient and
    one block's largest working set, $\max(10C, 9C + hT)$ per token (module docstring)."""
    C, h = config.n_embd, config.n_head
    return batch_size * T * s * (config.vocab_size + max(10 * C, 9 * C + h * T))


def training_memory(config, batch_size, seq_len=None, dtype=np.float32, optimizer="adamw"):
    """Peak bytes of one training step, by part: a :class:`MemoryCost` (module docstring)."""
    config = _check_config(config)
    B = check_int("batch_size", batch_size)
    T = _check_length("seq_len", seq_len, config)
    s, n_buffers = _itemsize(dtype), len(OPTIMIZER_BUFFERS[_check_optimizer(optimizer)])
    P = num_params(config)
    parts = {"parameters": P * s}
    if constant_bytes(config, s):
        parts["position table (constant)"] = constant_bytes(config, s)
    parts.update({
        "gradients": P * s,
        "optimizer state": n_buffers * P * s,
        "activations": sum(activation_bytes(config, B, T, dtype).values()),
        "transient peak": backward_transient_bytes(config, B, T, s),
    })
    return MemoryCost(parts)


def kv_cache_positions(config):
    """Positions :meth:`npgpt.GPT.new_cache` reserves: block_size, and never fewer than 16."""
    return max(config.block_size, KV_CACHE_MIN_POSITIONS)


def prompt_bytes(config, batch_size, n, s):
    """What the forward of an ``n``-token prompt keeps until the next forward ends: the blocks'
    caches (none for one token: the fused decoding step keeps none), the final LayerNorm's and the
    head's ($2C + 1$), the ids, and the logits ($V$), per token."""
    C, L = config.n_embd, config.n_layer
    per_layer = sum(block_cache_numbers(config, n, training=False).values()) if n > 1 else 0
    return batch_size * n * (s * (L * per_layer + 2 * C + 1 + config.vocab_size) + INDEX_BYTES)


def inference_memory(config, batch_size, context, dtype=np.float32, prompt_len=1):
    """Peak bytes of generating ``batch_size`` sequences up to ``context`` positions from a
    ``prompt_len``-token prompt with the KV cache, by part: a :class:`MemoryCost`."""
    config = _check_config(config)
    B = check_int("batch_size", batch_size)
    t = _check_length("context", context, config)
    n = check_int("prompt_len", prompt_len)
    if n > t:
        raise UsageError(f"prompt_len must be <= context={t}, got {n}")
    s, C, L = _itemsize(dtype), config.n_embd, config.n_layer
    per_position = 2 * L * B * C * s                          # keys and values of every layer
    parts = {"parameters": num_params(config) * s}
    if constant_bytes(config, s):
        parts["position table (constant)"] = constant_bytes(config, s)
    parts.update({
        "KV cache, in use": t * per_position,
        "KV cache, reserved beyond the context": (kv_cache_positions(config) - t) * per_position,
        "prompt forward (caches, logits)": prompt_bytes(config, B, n, s),
    })
    return MemoryCost(parts)


# ----------------------------------------------------------------------------- disk and time
def checkpoint_size(config, dtype=np.float32, optimizer="adamw"):
    """Bytes of a training checkpoint's arrays: parameters and optimizer buffers
    (:func:`npgpt.io.checkpoint.checkpoint_bytes`); metadata and history add a few kB."""
    _itemsize(dtype)
    return checkpoint_bytes(_check_config(config), dtype, _check_optimizer(optimizer))


@dataclass(frozen=True)
class StepTime:
    """A training step's ``flops``, the time they take at the measured matmul rate
    (``predicted_s``) and a measured step (``measured_s``, median)."""
    flops: int
    peak_gflops: float
    predicted_s: float
    measured_s: float
    repeats: int

    @property
    def mfu(self):
        """Model FLOPs utilisation: the share of the matmul peak a real step reaches."""
        return self.predicted_s / self.measured_s


def matmul_peak_gflops(n: int = 1024, repeats: int = 10) -> float:
    """Measured float32 matmul throughput of this machine's BLAS (GFLOP/s, best of ``repeats``): the
    rate :func:`step_time` divides a step's FLOPs by (and ``npgpt bench`` its MFU)."""
    a = np.random.default_rng(0).standard_normal((n, n)).astype(np.float32)
    a @ a
    best = math.inf
    for _ in range(repeats):
        start = time.perf_counter()
        a @ a
        best = min(best, time.perf_counter() - start)
    return 2 * n ** 3 / best / 1e9


def step_time(config, batch_size, seq_len=None, dtype=np.float32, optimizer="adamw", repeats=3,
              peak_gflops=None, seed=0):
    """Predicted and measured seconds of one training step (forward, backward, optimizer) on the
    active backend: the measurement is the median of ``repeats`` steps after one warm-up step.
    ``peak_gflops`` (default: :func:`matmul_peak_gflops`, measured now)."""
    flops = count_flops(config, batch_size, seq_len).total
    T = _check_length("seq_len", seq_len, config)
    repeats = check_int("repeats", repeats)
    peak = matmul_peak_gflops() if peak_gflops is None else \
        check_real("peak_gflops", peak_gflops, low=0.0, low_open=True)
    # Measuring runs real steps: refuse one that cannot fit before the model is built (its own
    # prediction, within 15% of the measured peak: tests/test_costs.py).
    require_memory(training_memory(config, batch_size, T, dtype, optimizer).total,
                   f"measuring a training step of batch {batch_size} x {T} tokens")
    step = _training_step(config, batch_size, T, dtype, optimizer, seed)
    step()
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        seconds.append(time.perf_counter() - start)
    return StepTime(flops, peak, flops / (peak * 1e9), float(np.median(seconds)), repeats)


def _training_step(config, B, T, dtype, optimizer, seed):
    """A zero-argument function running one step of a fresh model on a fixed random batch."""
    _itemsize(dtype)
    model = GPT(config, seed=seed, dtype=np.dtype(dtype))
    opt = (AdamW(model.params) if _check_optimizer(optimizer) == "adamw"
           else SGD(model.params, lr=1e-3, momentum=0.9))
    rng = np.random.default_rng(seed)
    x, y = (rng.integers(0, config.vocab_size, (B, T)) for _ in range(2))

    def step():
        model.forward(x, y)
        opt.step(model.backward())
    return step


# ----------------------------------------------------------------------------- the table
def report(config, batch_size, seq_len=None, dtype=np.float32, optimizer="adamw", context=None,
           measure=False, label=None):
    """Every figure of the costs table (``python -m npgpt costs``) as a dict: training FLOPs and
    6ND, FLOPs per generated token at ``context`` (default seq_len), training and inference
    memory, checkpoint bytes and, with ``measure``, the predicted and measured step time."""
    config = _check_config(config)
    T = _check_length("seq_len", seq_len, config)
    t = T if context is None else _check_length("context", context, config)
    _itemsize(dtype)
    return {
        "label": label, "config": config, "batch_size": batch_size, "seq_len": T, "context": t,
        "dtype": np.dtype(dtype).name, "optimizer": _check_optimizer(optimizer), "params": num_params(config),
        "flops": count_flops(config, batch_size, T),
        "six_nd": six_nd(config, batch_size, T),
        "token_flops": flops_per_token(config, t),
        "training_memory": training_memory(config, batch_size, T, dtype, optimizer),
        "activations": activation_bytes(config, batch_size, T, dtype),
        "inference_memory": inference_memory(config, 1, t, dtype),
        "checkpoint_bytes": checkpoint_size(config, dtype, optimizer),
        "step_time": step_time(config, batch_size, T, dtype, optimizer) if measure else None,
    }


def mib(n_bytes):
    return f"{n_bytes / 2**20:,.2f} MiB"


def _bytes_row(label, n_bytes, indent=2):
    return f"{' ' * indent}{label:<{50 - indent}} {n_bytes:>16,} B {mib(n_bytes):>14}"


def _flops_rows(count, title):
    """A FLOPs table: forward, backward and total by part, or one column when there is no backward."""
    columns = ("forward", "backward", "total") if count.backward else ("FLOPs",)
    lines = [title, f"  {'':<28}" + "".join(f" {name:>18}" for name in columns)]
    rows = [(part, (f, 2 * f, 3 * f)) for part, f in count.by_part.items()]
    rows.append(("all matrix products", (count.forward, count.backward, count.total)))
    for part, figures in rows:
        lines.append(f"  {part:<28}" + "".join(f" {n:>18,}" for n in figures[:len(columns)]))
    return lines


def format_report(r):
    """The costs table of :func:`report`'s figures, as text."""
    c, B, T = r["config"], r["batch_size"], r["seq_len"]
    lines = [f"{r['label'] or 'GPT'}: {r['params']:,} parameters ({c.n_layer} layers, {c.n_head} heads, "
             f"width {c.n_embd}, block {c.block_size}, vocabulary {c.vocab_size},",
             f"  {c.pos_encoding} positions, {'tied' if c.tie_weights else 'untied'} head, "
             f"{'with' if c.bias else 'no'} biases, dropout {c.dropout:g})",
             f"one training step: batch {B} x {T} tokens = {B * T:,} tokens, {r['dtype']}, {r['optimizer']}",
             ""]
    lines += _flops_rows(r["flops"], "FLOPs per training step")
    approx = r["six_nd"]
    lines += [f"  {'6ND':<28} {'':>18} {'':>18} {approx.flops:>18,}",
              f"    {abs(approx.relative_error):.2%} {'short of' if approx.flops < approx.exact else 'over'} "
              f"the exact count; N = {approx.n_params:,} weights of the matrix products,",
              f"    D = {approx.tokens:,} tokens; attention's two products (12 L T C per token) are not in N",
              "  only matrix products are counted (not LayerNorm, GELU, softmax, the optimizer)", ""]
    lines += _flops_rows(r["token_flops"], f"FLOPs per generated token, KV cache, context {r['context']}")
    memory = r["training_memory"]
    lines += ["", f"training memory, one step ({r['dtype']}, {r['optimizer']})"]
    for part, n in memory.by_part.items():
        lines.append(_bytes_row(part, n))
        if part == "activations":
            lines += [_bytes_row(name, n, indent=4) for name, n in r["activations"].items()]
    lines.append(_bytes_row("total", memory.total))
    inference = r["inference_memory"]
    lines += ["", f"inference memory (batch 1, one-token prompt, context {r['context']}, {r['dtype']})"]
    lines += [_bytes_row(part, n) for part, n in inference.by_part.items()]
    lines += [_bytes_row("total", inference.total), ""]
    lines.append(_bytes_row(f"checkpoint on disk ({r['dtype']}, {r['optimizer']})", r["checkpoint_bytes"], indent=0))
    timing = r["step_time"]
    if timing is not None:
        lines += ["", f"step time: predicted {timing.predicted_s * 1e3:,.1f} ms ({timing.flops / 1e9:,.2f} GFLOP at "
                      f"the measured matmul peak, {timing.peak_gflops:,.1f} GFLOP/s),",
                  f"  measured {timing.measured_s * 1e3:,.1f} ms (median of {timing.repeats}): "
                  f"{timing.mfu:.1%} of the peak"]
    return "\n".join(lines)
