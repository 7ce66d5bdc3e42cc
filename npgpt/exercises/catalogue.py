r"""The exercises, as data: one :class:`Exercise` entry per function to write, beside the cases it
is graded on. An entry names the function (``name``), the library function it is graded against
(``reference``: the library's own, or a two-line wrapper around it, so an exercise cannot drift from
the library), how to build its cases (``make_cases(rng)``: each :class:`Case` holds the arguments
and, for a backward pass, a gradient check against the op's forward), what is graded (the names of
its ``outputs``; ``exact`` for ids and lists), and the text a student reads (``signature``,
``statement``, ``hints`` in three tiers, and ``where`` it is taught). :data:`EXERCISES` lists those
the notebook asks, in its order, and :data:`ALL_EXERCISES` every one; :mod:`npgpt.exercises.grading`
grades an answer against an entry.
"""
import copy
from collections.abc import Callable
from dataclasses import dataclass, field
from types import SimpleNamespace

import numpy as np

from ..allocation.costs import forward_flops_by_part, inference_memory
from ..allocation.network import Network, allreduce_seconds
from ..allocation.prune import prune_magnitude
from ..allocation.scaling import fit_parabola
from ..checks import UsageError
from ..decoding.strategies import next_token_distribution, top_p_filter
from ..evaluation.bleu import closest_ref_len, compute_bleu, segment_statistics
from ..evaluation.perplexity import perplexity
from ..evaluation.rouge import rouge_l
from ..models.config import GPTConfig
from ..ops import (
    attention_backward,
    attention_forward,
    block_backward,
    block_forward,
    causal_mask,
    cross_entropy_backward,
    cross_entropy_forward,
    dropout_backward,
    dropout_forward,
    embedding_backward,
    embedding_forward,
    gelu_backward,
    gelu_forward,
    layernorm_backward,
    layernorm_forward,
    linear_backward,
    linear_forward,
    lstm_cell_backward,
    lstm_cell_forward,
    self_attention_forward,
    sinusoidal_table,
    softmax_backward,
    softmax_forward,
)
from ..ops.quantize import quantize_tensor
from ..text.bpe import bpe_merge
from ..text.bpe_train import train_bpe
from ..verify.gradcheck import check_op, gradcheck

__all__ = ["ALL_EXERCISES", "EXERCISES", "HINT_LEVELS", "Case", "Exercise", "block_flops", "bpe_merge_step",
           "brevity_penalty",
           "clipped_precision", "isoflop_vertex", "kv_attention_step", "kv_cache_bytes", "magnitude_prune",
           "perplexity_from_losses", "quantize_int8", "ring_allreduce_seconds", "scaled_dot_product_attention",
           "top_k_distribution"]

# What each tier of hints gives: a student first gets the idea, and the formula only after failing twice.
HINT_LEVELS = ("the idea", "the shape of the formula", "the formula")


# ====================================================================== the two small references
def kv_attention_step(x, w_attn, b_attn, w_proj, b_proj, n_head, past_k, past_v):
    """Causal self-attention for new positions ``x`` (B, T_new, C) given the cached keys and values
    ``past_k``, ``past_v`` (B, n_head, T_past, hs) of the positions before them.

    Returns (out, k, v): the attention output (B, T_new, C) and the keys and values of all
    T_past + T_new positions, the cache for the next step. The reference is
    :func:`npgpt.ops.self_attention_forward` with ``past_kv``."""
    out, _, (k, v) = self_attention_forward(x, w_attn, b_attn, w_proj, b_proj, n_head,
                                            past_kv=(past_k, past_v))
    return out, k, v


def bpe_merge_step(words, counts):
    """One step of BPE training on words of byte values (0..255) that occur ``counts`` times.

    Returns ((a, b), count, merged): the adjacent pair with the largest total count (ties: the
    smallest (a, b)), that count, and every word with each occurrence of a b, read left to right,
    replaced by the new token 256. The reference is :func:`npgpt.text.bpe_train.train_bpe` asked for
    one merge, and :func:`npgpt.text.bpe.bpe_merge` to apply it."""
    pieces = [bytes(w) for w in words]
    tokens, log = train_bpe(pieces, list(counts), 257)
    if not log:
        raise UsageError("no word has two bytes: there is no pair to merge")
    ranks = {bytes([b]): b for b in range(256)}
    ranks[tokens[256]] = 256
    return (log[0].left, log[0].right), log[0].count, [bpe_merge(ranks, p) for p in pieces]


# ====================================================================== an entry, and its cases
@dataclass(frozen=True)
class Case:
    """One graded input: ``args`` for the function, described by ``label``; ``gradcheck``, when set,
    maps the student's function to a :class:`GradcheckReport` against the op's forward."""
    label: str
    args: tuple
    gradcheck: Callable = None


@dataclass(frozen=True)
class Exercise:
    """One exercise: the function to write (``name``, ``signature``), what it must do (``statement``),
    where it is taught (``where``), its ``hints`` in tiers (:data:`HINT_LEVELS`: the idea, the shape
    of the formula, the formula), the library's ``reference``, the names of its ``outputs`` and the
    graded cases (``make_cases(rng)``)."""
    name: str
    title: str
    where: str
    signature: str
    statement: str
    hints: tuple
    reference: Callable
    outputs: tuple
    make_cases: Callable = field(repr=False)
    exact: bool = False            # outputs are ids or lists, compared exactly

    def __post_init__(self):
        if len(self.hints) != len(HINT_LEVELS):
            raise ValueError(f"exercise {self.name!r} has {len(self.hints)} hints, expected {len(HINT_LEVELS)}")

    @property
    def hint(self) -> str:
        """The first tier: the idea (the formula stays for ``hints[-1]``)."""
        return self.hints[0]

    def __str__(self):
        return (f"{self.name}: {self.title}\n  taught in: {self.where}\n  write: {self.signature}\n\n"
                f"{self.statement}\n\nhint: {self.hint}")


def _op_check(forward, inputs, wrt, adapt=None):
    """A case's gradient check: ``check_op(forward, student_backward, inputs, wrt)``. Inputs that are
    None (an absent bias) are left out of both. ``adapt`` turns the student's backward into
    check_op's ``backward(G, cache)`` when the signatures differ."""
    inputs = {name: value for name, value in inputs.items() if value is not None}
    wrt = [name for name in wrt if name in inputs]

    def run(fn):
        backward = fn if adapt is None else adapt(fn)
        return check_op(forward, backward, copy.deepcopy(inputs), wrt)
    return run


def _with_cache(forward, inputs, rng):
    """(upstream gradient, cache) for ``forward(**inputs)``: the arguments of a backward pass."""
    out, cache = forward(**inputs)
    return rng.standard_normal(np.shape(out)), cache


# ---------------------------------------------------------------------- linear
def _linear_cases(rng):
    cases = []
    for label, x_shape, n_out, bias in (("x (2, 3, 4) @ W (4, 5) + b", (2, 3, 4), 5, True),
                                        ("x (6, 4) @ W (4, 3), no bias", (6, 4), 3, False),
                                        ("one row: x (1, 1, 4) @ W (4, 2) + b", (1, 1, 4), 2, True),
                                        # a transposed dW keeps its shape here: only its values tell
                                        ("square W: x (5, 3) @ W (3, 3) + b", (5, 3), 3, True)):
        inputs = {"x": rng.standard_normal(x_shape), "W": rng.standard_normal((x_shape[-1], n_out)),
                  "b": rng.standard_normal(n_out) if bias else None}
        cases.append(Case(label, _with_cache(linear_forward, inputs, rng),
                          _op_check(linear_forward, inputs, ["x", "W", "b"])))
    return cases


LINEAR_BACKWARD = Exercise(
    name="linear_backward",
    title="the backward of a linear layer y = xW + b",
    where="notebook 04b part 1; npgpt/ops/linear.py",
    reference=linear_backward,
    make_cases=_linear_cases,
    outputs=("dx", "dW", "db"),
    signature="linear_backward(dout, cache) -> (dx, dW, db)",
    statement=("Forward: y = x W + b with x (..., in), W (in, out), b (out,) or None; the cache is (x, W, has_bias).\n"
               "Given dout = dL/dy (..., out), return dL/dx (shape of x), dL/dW (in, out) and dL/db (out,), "
               "db None when the layer has no bias. The leading axes (batch, time) are all rows."),
    hints=(('Write one output entry as a sum over x and W, and ask which entries of x, W and b each '
            'dL/dy_rc reaches.'),
           ("dx is dout times a matrix of W's shape turned around; dW is a matrix of x's with dout, "
            'summed over every row (batch and time are all rows); db is dout summed over the rows.'),
           ("y_rc = sum_k x_rk W_kc + b_c. Each weight meets every row, so dW = x^T dout and db sum over "
          "the rows; flatten x and dout to 2-D first (x.reshape(-1, x.shape[-1])).")),
)


# ---------------------------------------------------------------------- embedding
def _embedding_cases(rng):
    cases = []
    for label, idx, V in (("ids (2, 5) in a vocabulary of 4: every id repeats", rng.integers(0, 4, (2, 5)), 4),
                          ("ids [[3, 3, 3, 1]]: id 3 three times, ids 0 and 2 never", np.array([[3, 3, 3, 1]]), 4),
                          ("one id: [[2]], vocabulary 6", np.array([[2]]), 6)):
        inputs = {"idx": idx, "W": rng.standard_normal((V, 3))}
        cases.append(Case(label, _with_cache(embedding_forward, inputs, rng),
                          _op_check(embedding_forward, inputs, ["W"])))
    return cases


EMBEDDING_BACKWARD = Exercise(
    name="embedding_backward",
    title="the backward of the embedding lookup: a scatter-add",
    where="notebook 04b part 2; npgpt/ops/embedding.py",
    reference=embedding_backward,
    make_cases=_embedding_cases,
    outputs=("dW",),
    signature="embedding_backward(dout, cache) -> dW",
    statement=("Forward: out[b, t] = W[idx[b, t]] for a table W (V, C); the cache is (idx, W.shape).\n"
               "Given dout (..., C), return dL/dW (V, C). Ids may repeat, and rows of W no id picked get zero."),
    hints=(("The forward copies rows of W; the backward sends each position's gradient back to the row it"
            ' copied.'),
           ('dW starts at zero (V, C); each (b, t) adds dout[b, t] into row idx[b, t], and an id that '
            'occurs twice adds twice.'),
           ("Every position that read row v adds its gradient to dW[v]. dW[idx] += dout keeps only one of "
          "the repeats (fancy-index assignment does not accumulate); np.add.at does.")),
)


# ---------------------------------------------------------------------- LayerNorm
def _layernorm_cases(rng):
    cases = []
    for label, shape, bias in (("x (2, 3, 5), with bias", (2, 3, 5), True),
                               ("x (4, 6), no bias", (4, 6), False),
                               ("x (1, 1, 2): width 2", (1, 1, 2), True)):
        C = shape[-1]
        inputs = {"x": rng.standard_normal(shape), "w": 1.0 + 0.5 * rng.standard_normal(C),
                  "b": rng.standard_normal(C) if bias else None}
        cases.append(Case(label, _with_cache(layernorm_forward, inputs, rng),
                          _op_check(layernorm_forward, inputs, ["x", "w", "b"])))
    return cases


LAYERNORM_BACKWARD = Exercise(
    name="layernorm_backward",
    title="the backward of LayerNorm",
    where="notebook 04b part 3; npgpt/ops/layernorm.py",
    reference=layernorm_backward,
    make_cases=_layernorm_cases,
    outputs=("dx", "dw", "db"),
    signature="layernorm_backward(dout, cache) -> (dx, dw, db)",
    statement=("Forward over the last axis: xhat = (x - mean) / sqrt(var + eps), y = w * xhat + b; the cache is "
               "(xhat, rstd, w, has_bias) with rstd = 1 / sqrt(var + eps) of shape (..., 1).\n"
               "Given dout, return dL/dx, dL/dw (C,), dL/db (C,) (None without a bias)."),
    hints=(('Go through the affine part first (w, b), then through the normalisation: the mean and the '
            'variance are functions of every entry of the row.'),
           ('With g = dout * w: dx = rstd * (g - [a mean of g] - xhat * [a mean of g times xhat]); dw and'
            ' db sum over every axis but the last.'),
           ("Let g = dout * w. The mean and the variance depend on every x_c, which subtracts two averages: "
          "dx = rstd * (g - mean(g) - xhat * mean(g * xhat)), the means over the last axis.")),
)


# ---------------------------------------------------------------------- GELU
def _gelu_cases(rng):
    cases = []
    for label, x in (("x (3, 4), standard normal", rng.standard_normal((3, 4))),
                     ("x from -5 to 5 in 11 steps, 0 included", np.linspace(-5.0, 5.0, 11))):
        cases.append(Case(label, _with_cache(gelu_forward, {"x": x}, rng), _op_check(gelu_forward, {"x": x}, ["x"])))
    return cases


GELU_BACKWARD = Exercise(
    name="gelu_backward",
    title="the backward of GELU, tanh approximation",
    where="notebook 04b part 4; npgpt/ops/gelu.py",
    reference=gelu_backward,
    make_cases=_gelu_cases,
    outputs=("dx",),
    signature="gelu_backward(dout, cache) -> dx",
    statement=("Forward: GELU(x) = 0.5 x (1 + tanh u), u = sqrt(2/pi) (x + 0.044715 x^3); the cache is (x, t) "
               "with t = tanh u.\nGiven dout, return dL/dx = dout * GELU'(x)."),
    hints=(('GELU is x times a function of x: differentiate it with the product rule and the chain rule '
            'through tanh.'),
           ("GELU'(x) = 0.5 (1 + t) + 0.5 x (1 - t^2) du/dx with t = tanh u; du/dx is the derivative of "
            'the cubic inside u.'),
           ("Product rule: d/dx [0.5 x (1 + t)] = 0.5 (1 + t) + 0.5 x (1 - t^2) du/dx, with "
          "du/dx = sqrt(2/pi) (1 + 3 * 0.044715 x^2).")),
)


# ---------------------------------------------------------------------- dropout
def _dropout_forward_seeded(x, p, seed):
    """Dropout with a fresh generator from ``seed``: the same mask at every call (for the check)."""
    return dropout_forward(x, p, np.random.default_rng(seed))


def _dropout_cases(rng):
    cases = []
    for label, shape, p, seed in (("x (4, 5), p = 0.5", (4, 5), 0.5, 7),
                                  ("x (2, 3, 4), p = 0.1", (2, 3, 4), 0.1, 8),
                                  ("evaluation mode: the cache is None", (3, 2), 0.5, None)):
        x = rng.standard_normal(shape)
        if seed is None:
            cases.append(Case(label, _with_cache(dropout_forward, {"x": x, "p": p, "rng": None}, rng),
                              _op_check(dropout_forward, {"x": x, "p": p, "rng": None}, ["x"])))
        else:
            inputs = {"x": x, "p": p, "seed": seed}
            cases.append(Case(label, _with_cache(_dropout_forward_seeded, inputs, rng),
                              _op_check(_dropout_forward_seeded, inputs, ["x"])))
    return cases


DROPOUT_BACKWARD = Exercise(
    name="dropout_backward",
    title="the backward of inverted dropout",
    where="notebook 04b part 6; npgpt/ops/dropout.py",
    reference=dropout_backward,
    make_cases=_dropout_cases,
    outputs=("dx",),
    signature="dropout_backward(dout, cache) -> dx",
    statement=("Forward: y = x * m / (1 - p) with a 0/1 mask m; the cache is the scaled mask m / (1 - p), "
               "or None in evaluation mode (then y = x).\nGiven dout, return dL/dx."),
    hints=(('The forward is an element-wise product with a fixed array: what is the derivative of a * x '
            'in x?'),
           'dx = dout * (the cached array), and dout itself when nothing was dropped (evaluation mode).',
           ("The forward multiplies by a constant array, so the backward multiplies by the same array; "
          "mind the None cache.")),
)


# ---------------------------------------------------------------------- softmax
def _softmax_cases(rng):
    cases = []
    for label, z in (("z (3, 5)", rng.standard_normal((3, 5))),
                     ("z (2, 2, 4) with a masked (-inf) entry per row", np.where(np.eye(4, dtype=bool)[None, :2], -np.inf,
                                                                               rng.standard_normal((2, 2, 4)))),
                     ("one entry per row: z (4, 1)", rng.standard_normal((4, 1)))):
        cases.append(Case(label, _with_cache(softmax_forward, {"z": z}, rng),
                          _op_check(softmax_forward, {"z": z}, ["z"])))
    return cases


SOFTMAX_BACKWARD = Exercise(
    name="softmax_backward",
    title="the backward of the softmax over the last axis",
    where="notebook 04b part 7; npgpt/ops/softmax.py",
    reference=softmax_backward,
    make_cases=_softmax_cases,
    outputs=("dz",),
    signature="softmax_backward(dout, cache) -> dz",
    statement="Forward: s = softmax(z) over the last axis; the cache is s.\nGiven dout = dL/ds, return dL/dz.",
    hints=(('Each output s_j depends on every input z_k, not only on z_j: write the Jacobian ds_j/dz_k, '
            'then multiply it by dout.'),
           'dz = s * (dout - [one number per row: dout weighted by s, summed over the last axis]).',
           ("Every s_j depends on every z_k: ds_j/dz_k = s_j (1[j = k] - s_k). Multiply out: "
          "dz = s * (dout - sum(dout * s)) with the sum over the last axis (keepdims). Keeping only the "
          "diagonal, s * dout, is the usual mistake.")),
)


# ---------------------------------------------------------------------- cross-entropy
def _cross_entropy_cases(rng):
    cases = []
    for label, N, V, targets, ignore, dloss in (
            ("logits (4, 6), dloss = 1", 4, 6, [0, 5, 2, 2], None, 1.0),
            ("logits (6, 5), two targets ignored (-1), dloss = 2.5", 6, 5, [0, 4, -1, 2, 2, -1], -1, 2.5),
            ("one row: logits (1, 3)", 1, 3, [1], None, 1.0)):
        inputs = {"logits": rng.standard_normal((N, V)), "targets": np.array(targets), "ignore_index": ignore}
        _, cache = cross_entropy_forward(**inputs)
        cases.append(Case(label, (dloss, cache), _op_check(cross_entropy_forward, inputs, ["logits"])))
    return cases


CROSS_ENTROPY_BACKWARD = Exercise(
    name="cross_entropy_backward",
    title="the backward of softmax + cross-entropy (the mean NLL)",
    where="notebook 04b part 8, notebook 04 part 5; npgpt/ops/cross_entropy.py",
    reference=cross_entropy_backward,
    make_cases=_cross_entropy_cases,
    outputs=("dlogits",),
    signature="cross_entropy_backward(dloss, cache) -> dlogits",
    statement=("Forward: L = -(1/N) sum over the scored rows n of log softmax(z_n)[y_n], rows whose target is "
               "ignore_index skipped; the cache is (probs, rows, targets, n_scored) with probs = softmax(z) "
               "(N, V) and rows the indices of the scored rows.\nGiven the scalar dloss = dL_total/dL, return "
               "dL_total/dlogits (N, V)."),
    hints=(("Softmax and the log of the target's probability together have a simple gradient; the loss is"
            ' a mean over the scored rows only.'),
           ('dlogits = dloss * (probs - [a one-hot of the target]) / [the number of scored rows], zero on'
            ' ignored rows.'),
           ("On a scored row the gradient is (probs - onehot(y)) / N; an ignored row gets zeros; scale by "
          "dloss. N is n_scored, not the number of rows.")),
)


# ---------------------------------------------------------------------- attention
def _attention_cases(rng):
    cases = []
    for label, shape, n_query in (("q, k, v (1, 2, 5, 4): 2 heads, 5 positions, causal", (1, 2, 5, 4), 5),
                                  ("q, k, v (2, 1, 3, 2): batch 2, 1 head, causal", (2, 1, 3, 2), 3),
                                  ("one new query against 4 keys (a cached step): q (1, 2, 1, 3)", (1, 2, 4, 3), 1)):
        B, nh, T, hs = shape
        inputs = {"q": rng.standard_normal((B, nh, n_query, hs)), "k": rng.standard_normal(shape),
                  "v": rng.standard_normal(shape), "mask": np.array(causal_mask(n_query, T))}
        cases.append(Case(label, _with_cache(attention_forward, inputs, rng),
                          _op_check(attention_forward, inputs, ["q", "k", "v"])))
    return cases


ATTENTION_BACKWARD = Exercise(
    name="attention_backward",
    title="the backward of causal scaled dot-product attention",
    where="notebook 04b part 9, notebook 04 part 5; npgpt/ops/attention.py",
    reference=attention_backward,
    make_cases=_attention_cases,
    outputs=("dq", "dk", "dv"),
    signature="attention_backward(dy, cache) -> (dq, dk, dv)",
    statement=("Forward: S = q k^T * scale + M (M the causal mask), A = softmax(S), y = A v, for q (..., Tq, d), "
               "k and v (..., Tk, d). The cache is an AttentionCache: cache.q, cache.k, cache.v, cache.scale "
               "(1/sqrt(d)), and cache.softmax = A (dropout is off here: cache.att_dropped is A too and "
               "cache.dropout is None).\nGiven dy (..., Tq, d), return dq, dk, dv."),
    hints=(('The forward is three steps: scores, softmax, weighted sum. Go back through them in reverse '
            'order, one product at a time.'),
           ('dv = (A transposed) dy; dA = dy (v transposed); dS is the softmax backward of dA; dq and dk '
            'are dS times k and (dS transposed) times q, each scaled.'),
           ("Go back one product at a time: dv = A^T dy, dA = dy v^T, then the softmax's backward "
          "dS = A * (dA - rowsum(dA * A)), then dq = dS k * scale and dk = dS^T q * scale. The mask is a "
          "constant and masked entries have A = 0. Use swapaxes(-1, -2) for the transposes (4-D arrays).")),
)


# ---------------------------------------------------------------------- a block: the residuals
def _block_params(rng, C, bias=True):
    p = {"ln_1.weight": 1.0 + 0.3 * rng.standard_normal(C), "ln_2.weight": 1.0 + 0.3 * rng.standard_normal(C),
         "attn.c_attn.weight": 0.5 * rng.standard_normal((C, 3 * C)), "attn.c_proj.weight": 0.5 * rng.standard_normal((C, C)),
         "mlp.c_fc.weight": 0.5 * rng.standard_normal((C, 4 * C)), "mlp.c_proj.weight": 0.5 * rng.standard_normal((4 * C, C))}
    if bias:
        p.update({"ln_1.bias": 0.2 * rng.standard_normal(C), "ln_2.bias": 0.2 * rng.standard_normal(C),
                  "attn.c_attn.bias": 0.2 * rng.standard_normal(3 * C), "attn.c_proj.bias": 0.2 * rng.standard_normal(C),
                  "mlp.c_fc.bias": 0.2 * rng.standard_normal(4 * C), "mlp.c_proj.bias": 0.2 * rng.standard_normal(C)})
    return p


def _block_check(x, p, n_head, G):
    """Gradient check of a whole block: every parameter and the input x."""
    def run(fn):
        params = {"x": x.copy(), **{k: v.copy() for k, v in p.items()}}
        block_p = {k: v for k, v in params.items() if k != "x"}
        _, cache, _ = block_forward(params["x"], block_p, n_head)
        dx, grads = fn(G, cache)
        return gradcheck(lambda: float(np.sum(block_forward(params["x"], block_p, n_head)[0] * G)), params,
                         {"x": dx, **grads}, max_entries=24)
    return run


def _block_cases(rng):
    cases = []
    for label, (B, T, C), n_head, bias in (("x (2, 3, 4), 2 heads, with biases", (2, 3, 4), 2, True),
                                           ("x (1, 4, 6), 3 heads, no biases", (1, 4, 6), 3, False)):
        x, p = rng.standard_normal((B, T, C)), _block_params(rng, C, bias)
        y, cache, _ = block_forward(x, p, n_head)
        G = rng.standard_normal(y.shape)
        cases.append(Case(label, (G, cache), _block_check(x, p, n_head, G)))
    return cases


def _block_reference(dy, cache):
    return block_backward(dy, cache)


BLOCK_BACKWARD = Exercise(
    name="block_backward",
    title="the backward of a GPT block: two residual connections",
    where="notebook 04b part 5; npgpt/ops/block.py",
    reference=_block_reference,
    make_cases=_block_cases,
    outputs=("dx", "grads"),
    signature="block_backward(dy, cache) -> (dx, grads)",
    statement=("Forward (pre-LayerNorm, dropout off): h = x + Attn(LN1(x)), y = h + MLP(LN2(h)). The cache is a "
               "BlockCache of the sub-ops' caches: cache.ln_1, cache.attn, cache.drop_1, cache.ln_2, cache.mlp, "
               "cache.drop_2. Use the library's backward passes for the parts (npgpt.ops.layernorm_backward, "
               "self_attention_backward, mlp_backward, dropout_backward); the exercise is the residual wiring.\n"
               "Return dx and a dict of the parameters' gradients keyed like the block's parameters "
               "('ln_1.weight', 'ln_1.bias', 'attn.c_attn.weight', 'attn.c_attn.bias', 'attn.c_proj.weight', "
               "'attn.c_proj.bias', 'ln_2.weight', 'ln_2.bias', 'mlp.c_fc.weight', 'mlp.c_fc.bias', "
               "'mlp.c_proj.weight', 'mlp.c_proj.bias'), leaving out the biases the block does not have "
               "(their backward returns None)."),
    hints=(('A residual connection y = h + f(h) sends the gradient two ways: straight through, and '
            'through f.'),
           ('dh = dy + [dy through dropout, MLP and LN2 backward]; dx = dh + [dh through dropout, '
            'attention and LN1 backward].'),
           ("A residual y = h + f(h) copies dy to both roads: dh = dy + (the gradient that comes back "
          "through f). Walk the block in reverse: MLP branch, add, attention branch, add.")),
)


# ---------------------------------------------------------------------- LSTM cell
def _lstm_stacked_forward(**inputs):
    (h, c), cache = lstm_cell_forward(**inputs)
    return np.stack([h, c]), cache


def _lstm_adapt(fn):
    """check_op's backward(G, cache) for a student's lstm_cell_backward(dh_new, dc_new, cache)."""
    return lambda G, cache: fn(G[0], G[1], cache)


def _lstm_cases(rng):
    cases = []
    for label, B, n_in, H, bias in (("batch 3, input 4, hidden 5, with biases", 3, 4, 5, True),
                                    ("batch 1, input 2, hidden 3, no biases", 1, 2, 3, False)):
        inputs = {"x": rng.standard_normal((B, n_in)), "h": rng.standard_normal((B, H)),
                  "c": rng.standard_normal((B, H)), "w_ih": 0.5 * rng.standard_normal((4 * H, n_in)),
                  "w_hh": 0.5 * rng.standard_normal((4 * H, H)),
                  "b_ih": rng.standard_normal(4 * H) if bias else None,
                  "b_hh": rng.standard_normal(4 * H) if bias else None}
        _, cache = lstm_cell_forward(**inputs)
        wrt = ["x", "h", "c", "w_ih", "w_hh", "b_ih", "b_hh"]
        cases.append(Case(label, (rng.standard_normal((B, H)), rng.standard_normal((B, H)), cache),
                          _op_check(_lstm_stacked_forward, inputs, wrt, adapt=_lstm_adapt)))
    return cases


LSTM_CELL_BACKWARD = Exercise(
    name="lstm_cell_backward",
    title="the backward of one LSTM cell step",
    where="notebook 03 part 2; npgpt/ops/recurrent_cells.py",
    reference=lstm_cell_backward,
    make_cases=_lstm_cases,
    outputs=("dx", "dh", "dc", "dw_ih", "dw_hh", "db_ih", "db_hh"),
    signature="lstm_cell_backward(dh_new, dc_new, cache) -> (dx, dh, dc, dw_ih, dw_hh, db_ih, db_hh)",
    statement=("Forward (PyTorch's layout and gate order i, f, g, o): a = x W_ih^T + b_ih + h W_hh^T + b_hh "
               "(B, 4H), i, f, o = sigmoid of their quarters, g = tanh of its quarter, c' = f*c + i*g, "
               "h' = o * tanh(c'). The cache is (x, h, c, w_ih, w_hh, i, f, g, o, tc, has_bias) with "
               "tc = tanh(c').\nGiven dL/dh' and dL/dc', return the gradients of x, h, c, w_ih, w_hh, b_ih, b_hh "
               "(the biases None when has_bias is False)."),
    hints=(("The new cell state c' reaches the loss two ways: directly (dc_new) and through h' = o * "
            "tanh(c'). Add both, then go back through each gate."),
           ("dc_total = dc_new + dh_new * o * tanh'(c'); each gate's gradient is dc_total (or dh_new) "
            'times its partner in the product; then through sigmoid or tanh, in the order i, f, g, o, and'
            ' back through both projections.'),
           ("c' reaches the loss directly and through h': dc_total = dc_new + dh_new * o * (1 - tc^2). Then "
          "each gate: do = dh_new * tc, di = dc_total * g, df = dc_total * c, dg = dc_total * i; through the "
          "activations (sigmoid' = s(1-s), tanh' = 1 - g^2), concatenated in the order i, f, g, o, and "
          "back through both projections.")),
)


# ---------------------------------------------------------------------- BPE
def _bpe_step_cases(rng):
    def ids(*words):
        return [list(w.encode("utf-8")) for w in words]
    return [
        Case('words "low", "lower", "newest", "widest" seen 5, 2, 6, 3 times (pairs e s and s t tie at 9)',
             (ids("low", "lower", "newest", "widest"), [5, 2, 6, 3])),
        Case('"aaa" (overlapping pairs: a a a becomes aa a) and "ab"', (ids("aaa", "ab"), [1, 2])),
        Case('a tie: "ab" and "cd" both seen 3 times (the smaller pair wins)', (ids("cd", "ab"), [3, 3])),
        Case('Chinese: "模型" and "模块" (3 UTF-8 bytes per character)', (ids("模型", "模块", "a"), [2, 1, 4])),
    ]


_BPE_TEXT = ("the theatre then thought that the thin thief threw three things through the thick thorns; "
             "这是一个分词的例子，分词器把文字切成小块。") * 3


def _bpe_encode_cases(rng):
    pieces = [p.encode("utf-8") for p in _BPE_TEXT.split()]
    counts = {}
    for p in pieces:
        counts[p] = counts.get(p, 0) + 1
    tokens, _ = train_bpe(list(counts), list(counts.values()), 300)
    ranks = {t: r for r, t in enumerate(tokens)}
    trained = [Case(f"the piece {word!r} with a {len(ranks)}-token vocabulary", (ranks, word.encode("utf-8")))
               for word in ("thorough", "the", "x", "分词器", "zzz", "theatre")]
    return _bpe_order_cases() + trained


def _bpe_order_cases():
    """Small vocabularies on which the plausible wrong orders of merging give other ids: leftmost
    first, rightmost on ties, stopping too early (on the trained vocabulary above, leftmost first
    gives the right ids for every graded word)."""
    def ranks(*learned):
        table = {bytes([b]): b for b in range(256)}
        table.update({token: 256 + r for r, token in enumerate(learned)})
        return table
    return [
        Case('ranks bc: 256, ab: 257 and the piece "abc": the lowest rank merges first (bc), not the leftmost '
             'pair (ab): [97, 256]', (ranks(b"bc", b"ab"), b"abc")),
        Case('ranks aa: 256 and the piece "aaa": two equal candidates, the leftmost merges: [256, 97]',
             (ranks(b"aa"), b"aaa")),
        Case('ranks ab: 256, cd: 257, abcd: 258 and the piece "abcd": merged tokens merge again, until no '
             'adjacent pair is a token: [258]', (ranks(b"ab", b"cd", b"abcd"), b"abcd")),
    ]


BPE_MERGE_STEP = Exercise(
    name="bpe_merge_step",
    title="one step of BPE training",
    where="notebook 02 part 2; npgpt/text/bpe_train.py",
    reference=bpe_merge_step,
    make_cases=_bpe_step_cases,
    outputs=("pair", "count", "merged"),
    exact=True,
    signature="bpe_merge_step(words, counts) -> ((a, b), count, merged)",
    statement=("words is a list of words, each a list of byte values 0..255; counts[i] is how often word i "
               "occurs. Find the adjacent pair (a, b) with the largest total count, summed over the words and "
               "weighted by counts (ties: the smallest (a, b)), and return it, its count, and the words with "
               "every occurrence of a b replaced by the new token 256, scanning each word left to right."),
    hints=(('Count every adjacent pair in every word, each word weighted by how often it occurs; then '
            'replace the winning pair, scanning left to right.'),
           ('pairs[(a, b)] += counts[i] for each adjacent a b of word i; the winner has the largest count'
            ' (the smallest pair on ties); after a merge, skip both bytes.'),
           ("Count with a dict {(a, b): count}; pick max by (count, then the smallest pair): "
          "min(pairs, key=lambda ab: (-pairs[ab], ab)). When merging, a b a b becomes 256 256 and a a a "
          "becomes 256 a.")),
)


BPE_ENCODE_PIECE = Exercise(
    name="bpe_encode_piece",
    title="encoding one pre-token with learned merges",
    where="notebook 02 part 2; npgpt/text/bpe.py",
    reference=bpe_merge,
    make_cases=_bpe_encode_cases,
    outputs=("ids",),
    exact=True,
    signature="bpe_encode_piece(ranks, piece) -> list of ids",
    statement=("ranks maps a token's bytes to its id (the 256 single bytes are 0..255, learned tokens follow in "
               "the order they were learned); piece is bytes. Start from single bytes and repeatedly merge the "
               "adjacent pair whose concatenation has the lowest rank (the leftmost on ties), until no adjacent "
               "pair is a token. Return the ids."),
    hints=(('Merges are applied in the order they were learned (lowest rank first), not in the order they'
            ' occur in the piece.'),
           ('Loop: among all adjacent pairs that are tokens, merge the one with the lowest rank (the '
            'leftmost if two are equal); stop when no adjacent pair is a token.'),
           ("Keep a list of byte strings, parts = [piece[i:i + 1] for i in range(len(piece))]; in a loop find "
          "the i with the smallest ranks.get(parts[i] + parts[i + 1]), join it, stop when there is none.")),
)


# ---------------------------------------------------------------------- top-p
def _top_p_cases(rng):
    def dist(*p):
        return np.array(p, dtype=np.float64) / np.sum(p)
    return [
        Case("p = 0.9 over 10 random probabilities", (dist(*rng.random(10) ** 3), 0.9)),
        Case("p = 0.5 and the top token alone has 0.6", (dist(0.1, 0.6, 0.2, 0.1), 0.5)),
        Case("p = 0.75 reached exactly by the first two (0.5 + 0.25)", (dist(0.25, 0.5, 0.125, 0.125), 0.75)),
        Case("ties: p = 0.6 over [0.3, 0.3, 0.3, 0.1] (lower id first among equals)", (dist(0.3, 0.3, 0.3, 0.1), 0.6)),
        Case("p = 1.0 keeps every token with probability > 0", (dist(0.5, 0.0, 0.3, 0.2), 1.0)),
    ]


TOP_P_FILTER = Exercise(
    name="top_p_filter",
    title="the nucleus (top-p) filter",
    where="notebook 06 part 5; npgpt/decoding/strategies.py",
    reference=top_p_filter,
    make_cases=_top_p_cases,
    outputs=("probs",),
    signature="top_p_filter(probs, p) -> probs",
    statement=("probs is a distribution (V,). Sort the tokens by probability (ties: lower id first), keep the "
               "smallest prefix whose probabilities add up to at least p (the top token always), set the "
               "others to 0 and renormalise. Do not change probs in place."),
    hints=(('Keep the most probable tokens until together they hold at least p of the probability, then '
            'renormalise.'),
           ('Sort by probability (descending, stable); the running sum tells how many to keep: up to and '
            'including the first token where it reaches p.'),
           ("np.argsort(-probs, kind='stable'), np.cumsum, then keep up to and including the first token "
          "where the running sum reaches p: that token is what carries the sum over p. A sum that misses p "
          "only by rounding (1e-12) counts as reaching it.")),
)


# ---------------------------------------------------------------------- KV cache
def _kv_cases(rng):
    cases = []
    for label, B, C, n_head, T_past, T_new in (("batch 2, width 4, 2 heads, 3 cached positions, 1 new", 2, 4, 2, 3, 1),
                                               ("batch 1, width 6, 3 heads, empty cache, 2 new", 1, 6, 3, 0, 2),
                                               ("batch 1, width 4, 1 head, 5 cached positions, 2 new", 1, 4, 1, 5, 2)):
        hs = C // n_head
        cases.append(Case(label, (rng.standard_normal((B, T_new, C)), rng.standard_normal((C, 3 * C)),
                                  rng.standard_normal(3 * C), rng.standard_normal((C, C)), rng.standard_normal(C),
                                  n_head, rng.standard_normal((B, n_head, T_past, hs)),
                                  rng.standard_normal((B, n_head, T_past, hs)))))
    return cases


KV_ATTENTION_STEP = Exercise(
    name="kv_attention_step",
    title="one step of attention with a KV cache",
    where="notebook 06 part 6; npgpt/ops/attention.py (past_kv), npgpt/models/cache.py",
    reference=kv_attention_step,
    make_cases=_kv_cases,
    outputs=("out", "k", "v"),
    signature="kv_attention_step(x, w_attn, b_attn, w_proj, b_proj, n_head, past_k, past_v) -> (out, k, v)",
    statement=("x (B, T_new, C) are new positions that come after T_past cached ones, whose keys and values are "
               "past_k, past_v (B, n_head, T_past, hs). Project qkv = x w_attn + b_attn (C to 3C: q, k, v side "
               "by side), split each into heads (B, n_head, T_new, hs), append the new k and v to the cache "
               "along the positions axis, attend causally (new position i sees every cached position and the "
               "new ones up to itself), merge the heads and project with w_proj, b_proj. Return out "
               "(B, T_new, C) and the extended k, v (B, n_head, T_past + T_new, hs)."),
    hints=(('Only the new positions need queries; their keys and values join the cached ones, and each '
            'new position attends to every cached position and the new ones up to itself.'),
           ('q, k, v from x; k = concat(past_k, k_new), v likewise, along the positions axis; the causal '
            'mask is (T_new, T_past + T_new) with the queries at the end; then softmax(q k^T / sqrt(hs) +'
            ' mask) v, merge heads, project.'),
           ("npgpt.ops.split_heads, merge_heads and causal_mask(T_new, T_past + T_new) do the bookkeeping; "
          "the mask for queries that come last is the one causal_mask(n_query, n_key) builds.")),
)


# ====================================================================== the forward formula, metrics, costs
# Each reference below is a library function called with the exercise's arguments, so that the
# exercise and npgpt agree; the wrappers only translate arguments.

# ---------------------------------------------------------------------- attention, forward (§4.2)
def scaled_dot_product_attention(q, k, v, mask):
    """softmax(q k^T / sqrt(d_k) + mask) v: :func:`npgpt.ops.attention_forward` without its cache."""
    return attention_forward(q, k, v, mask)[0]


def _attention_forward_cases(rng):
    def qkv(batch, Tq, Tk, d_k, d_v, spread=1.0):
        return (spread * rng.standard_normal((*batch, Tq, d_k)), spread * rng.standard_normal((*batch, Tk, d_k)),
                rng.standard_normal((*batch, Tk, d_v)))
    return [
        Case("q, k (1, 2, 4, 16), v (1, 2, 4, 3), causal: d_k = 16, so the scale 1/sqrt(d_k) is 1/4",
             (*qkv((1, 2), 4, 4, 16, 3), np.array(causal_mask(4, 4)))),
        Case("no mask: q (2, 3, 4), k (2, 5, 4), v (2, 5, 2): 3 queries, 5 keys, d_v != d_k",
             (*qkv((2,), 3, 5, 4, 2), None)),
        Case("2 new queries after 3 cached keys: q (1, 2, 4), k, v (1, 5, 4), mask causal_mask(2, 5)",
             (*qkv((1,), 2, 5, 4, 4), np.array(causal_mask(2, 5)))),
    ]


ATTENTION_FORWARD = Exercise(
    name="scaled_dot_product_attention",
    title="scaled dot-product attention, the forward formula of §4.2",
    where="notebook 04 part 2, notebook 04b part 9; npgpt/ops/attention.py",
    reference=scaled_dot_product_attention,
    make_cases=_attention_forward_cases,
    outputs=("y",),
    signature="scaled_dot_product_attention(q, k, v, mask) -> y",
    statement=("Attention(Q, K, V) = softmax(Q K^T / sqrt(d_k) + M) V for q (..., Tq, d_k), k (..., Tk, d_k) and "
               "v (..., Tk, d_v), the softmax over the keys (the last axis). mask M is an additive (Tq, Tk) "
               "array (0 where a query may look, -inf elsewhere) or None. Return y (..., Tq, d_v)."),
    hints=("Each query scores every key with a dot product; the scores, scaled, become weights by a softmax "
           "over the keys; the output is the weighted sum of the values.",
           ("S = q (k transposed over its last two axes) times a scale that depends on d_k, plus the mask; "
            "A = softmax of S along the last axis; y = A v."),
           ("S = q @ k.swapaxes(-1, -2) / np.sqrt(q.shape[-1]) (+ mask); A = exp(S - S.max(-1, keepdims=True)) "
            "normalised over the last axis; y = A @ v.")),
)


# ---------------------------------------------------------------------- sinusoidal positions
def _sinusoidal_cases(rng):
    return [Case("8 positions, width 6", (8, 6)),
            Case("50 positions, width 16: the slow frequencies", (50, 16)),
            Case("odd width: 4 positions, width 5 (the last column is a sine)", (4, 5))]


SINUSOIDAL_TABLE = Exercise(
    name="sinusoidal_table",
    title="the sinusoidal position table",
    where="notebook 04 part 3.1; npgpt/ops/positional.py",
    reference=sinusoidal_table,
    make_cases=_sinusoidal_cases,
    outputs=("table",),
    signature="sinusoidal_table(n_positions, n_embd) -> table",
    statement=("Return the (n_positions, n_embd) table PE[p, 2i] = sin(p / 10000^(2i / C)), "
               "PE[p, 2i + 1] = cos(p / 10000^(2i / C)), C = n_embd, positions p = 0, 1, ..., as float64. "
               "For an odd C the last column is a sine."),
    hints=("Each pair of columns is one frequency: a sine and a cosine of the position times that frequency, "
           "the frequencies falling geometrically from 1 to about 1/10000.",
           ("The frequency of columns 2i and 2i + 1 is 10000^(-2i / C): the exponent uses the even column "
            "index 2i for both columns of the pair. Sines on even columns, cosines on odd ones."),
           ("angle = np.arange(P)[:, None] * 10000.0 ** (-np.arange(0, C, 2) / C); pe[:, 0::2] = sin(angle); "
            "pe[:, 1::2] = cos(angle[:, :C // 2]).")),
)


# ---------------------------------------------------------------------- perplexity
def perplexity_from_losses(nlls):
    """exp of the mean per-token NLL: :func:`npgpt.evaluation.perplexity` of the mean."""
    return perplexity(float(np.mean(nlls)))


def _perplexity_cases(rng):
    return [Case("losses 0.1, 4.0, 1.3, 2.2 nats: unequal, so the mean of exponentials differs",
                 (np.array([0.1, 4.0, 1.3, 2.2]),)),
            Case("200 losses drawn between 0 and 6 nats", (rng.uniform(0.0, 6.0, 200),)),
            Case("a perfect model: every loss 0 (perplexity 1)", (np.zeros(5),))]


PERPLEXITY = Exercise(
    name="perplexity_from_losses",
    title="perplexity from per-token losses",
    where="notebook 09 part 1; npgpt/evaluation/perplexity.py",
    reference=perplexity_from_losses,
    make_cases=_perplexity_cases,
    outputs=("ppl",),
    signature="perplexity_from_losses(nlls) -> ppl",
    statement=("nlls are per-token negative log-likelihoods, -ln p(token | context), in nats. Return the "
               "perplexity of the text: the exponential of the average loss per token, a float."),
    hints=("Perplexity is the inverse of the geometric mean of the probabilities the model gave the tokens: "
           "the number of equally likely choices it is as unsure as.",
           "Average first, exponentiate last, with the base that matches the units of the losses (nats).",
           "math.exp(np.mean(nlls)): not the mean of exp(nll), not exp of the sum, not 2 ** mean."),
)


# ---------------------------------------------------------------------- BLEU
def _tokens(text):
    return text.split()


def clipped_precision(hyp, refs, n):
    """(clipped matches, total) of the n-grams of ``hyp`` against ``refs`` (token lists):
    :func:`npgpt.evaluation.bleu.segment_statistics`."""
    _, _, matches, totals = segment_statistics(hyp, refs, max_order=n)
    return matches[n - 1], totals[n - 1]


def _clipped_cases(rng):
    t = _tokens
    return [
        Case('hyp "the the the the the the the", refs "the cat is on the mat", "there is a cat on the mat", '
             'unigrams: "the" counts at most as often as in one reference (2)',
             (t("the the the the the the the"), [t("the cat is on the mat"), t("there is a cat on the mat")], 1)),
        Case('hyp "a a a", refs "a b", "a a": the clip is the largest count in any one reference (2), '
             'not their sum (3)', (t("a a a"), [t("a b"), t("a a")], 1)),
        Case('hyp "the cat sat", ref "the cat sat on", bigrams: a hypothesis of 3 tokens has 2 of them',
             (t("the cat sat"), [t("the cat sat on")], 2)),
        Case('hyp "the cat the cat", ref "the cat sat", bigrams', (t("the cat the cat"), [t("the cat sat")], 2)),
    ]


CLIPPED_PRECISION = Exercise(
    name="clipped_precision",
    title="BLEU's clipped n-gram precision",
    where="notebook 09 part 2; npgpt/evaluation/bleu.py",
    reference=clipped_precision,
    make_cases=_clipped_cases,
    outputs=("matches", "total"),
    exact=True,
    signature="clipped_precision(hyp, refs, n) -> (matches, total)",
    statement=("hyp is a list of tokens, refs a list of token lists. Count the n-grams of hyp (total) and how "
               "many of them match (matches), each distinct n-gram counting at most as many times as it occurs "
               "in a single reference. Return the two integers; BLEU's p_n is matches / total."),
    hints=("A hypothesis that repeats a common word should not score: each n-gram gets credit at most as often "
           "as a reference uses it.",
           ("matches = sum over the hypothesis' distinct n-grams g of min(count_hyp(g), max over references of "
            "count_ref(g)); total = the number of n-grams of hyp, len(hyp) - n + 1."),
           ("Counter(tuple(hyp[i:i + n]) for i in range(len(hyp) - n + 1)); clip with the | (max) of the "
            "references' Counters: sum(min(c, clip[g]) for g, c in hyp_counts.items()).")),
)


def brevity_penalty(hyp_len, ref_lens):
    """BLEU's BP for one hypothesis: :func:`npgpt.evaluation.bleu.closest_ref_len` and
    :func:`~npgpt.evaluation.bleu.compute_bleu`'s formula."""
    return compute_bleu([1], [1], hyp_len, closest_ref_len(hyp_len, ref_lens)).bp


def _brevity_cases(rng):
    return [Case("hypothesis of 6 tokens, references of 3 and 7: the closest (7) is longer", (6, [3, 7])),
            Case("hypothesis of 4 tokens, one reference of 6", (4, [6])),
            Case("hypothesis of 8 tokens, one reference of 6: longer, no penalty", (8, [6])),
            Case("hypothesis of 5 tokens, references of 3 and 7: a tie, the shorter wins", (5, [7, 3])),
            Case("hypothesis of 6 tokens, references of 12, 8 and 9", (6, [12, 8, 9]))]


BREVITY_PENALTY = Exercise(
    name="brevity_penalty",
    title="BLEU's brevity penalty",
    where="notebook 09 part 2; npgpt/evaluation/bleu.py",
    reference=brevity_penalty,
    make_cases=_brevity_cases,
    outputs=("bp",),
    signature="brevity_penalty(hyp_len, ref_lens) -> bp",
    statement=("A hypothesis of c = hyp_len tokens has references of lengths ref_lens. Let r be the reference "
               "length closest to c (the shorter on a tie). Return BP = 1 if c >= r, else exp(1 - r / c) "
               "(0 for an empty hypothesis)."),
    hints=("Precision alone rewards saying little; BP punishes a hypothesis shorter than its reference, and "
           "never rewards one that is longer.",
           ("r = the reference length with the smallest |length - c| (ties: the shorter); BP is 1 at or above r "
            "and an exponential in r / c below it."),
           "r = min(ref_lens, key=lambda L: (abs(L - c), L)); bp = 1.0 if c >= r else math.exp(1 - r / c)."),
)


# ---------------------------------------------------------------------- ROUGE-L
def _rouge_l_cases(rng):
    t = _tokens
    return [
        Case('target "the cat sat on the mat", prediction "the cat lay on a big mat": in order, not '
             'contiguous, the common part is "the cat on mat" (4)',
             (t("the cat sat on the mat"), t("the cat lay on a big mat"))),
        Case('target "a b c d", prediction "d c b a": the same words, reversed (LCS 1)',
             (t("a b c d"), t("d c b a"))),
        Case('target "police killed the gunman", prediction "the gunman police killed" (LCS 2)',
             (t("police killed the gunman"), t("the gunman police killed"))),
        Case("an empty prediction scores 0", (t("a b"), [])),
    ]


ROUGE_L = Exercise(
    name="rouge_l",
    title="ROUGE-L: the longest common subsequence",
    where="notebook 09 part 3; npgpt/evaluation/rouge.py",
    reference=rouge_l,
    make_cases=_rouge_l_cases,
    outputs=("precision", "recall", "fmeasure"),
    signature="rouge_l(target_tokens, prediction_tokens) -> (precision, recall, fmeasure)",
    statement=("Let L be the length of the longest common subsequence of the two token lists (tokens in the "
               "same order, gaps allowed). Return precision L / len(prediction), recall L / len(target) and "
               "their harmonic mean 2PR / (P + R), all 0 when either list is empty or L = 0."),
    hints=("A subsequence keeps the order but may skip tokens, so it rewards a prediction that says things in "
           "the target's order without copying it word for word. Dynamic programming finds its length.",
           ("T[i][j] = the LCS of the first i target tokens and the first j predicted ones: one more than "
            "T[i-1][j-1] when those tokens are equal, else the larger of T[i-1][j] and T[i][j-1]."),
           ("T = [[0] * (len(p) + 1) for _ in range(len(t) + 1)]; fill it row by row; L = T[-1][-1]; "
            "P = L / len(p), R = L / len(t).")),
)


# ---------------------------------------------------------------------- int8 quantization
def quantize_int8(w, axis):
    """Symmetric absmax int8 quantization, one scale per channel along ``axis``:
    :func:`npgpt.ops.quantize.quantize_tensor` with 8 bits."""
    return quantize_tensor(w, 8, axis)


def _quantize_cases(rng):
    w = rng.standard_normal((6, 4)) * np.array([0.01, 1.0, 5.0, 0.2])     # channels of different ranges
    return [Case("w (6, 4), axis 1 (output columns of npgpt's (in, out) layout), channels of very different "
                 "ranges", (w, 1)),
            Case("w (3, 5), axis 0: one scale per row", (rng.standard_normal((3, 5)), 0)),
            Case("w (4, 3), axis 1, with a column of zeros", (np.concatenate([rng.standard_normal((4, 2)),
                                                                              np.zeros((4, 1))], axis=1), 1))]


QUANTIZE_INT8 = Exercise(
    name="quantize_int8",
    title="int8 per-channel quantization",
    where="notebook 08 part 2.1; npgpt/ops/quantize.py",
    reference=quantize_int8,
    make_cases=_quantize_cases,
    outputs=("q", "scale"),
    signature="quantize_int8(w, axis) -> (q, scale)",
    statement=("w is a float64 matrix; a channel is one slice along axis (axis=1: a column). Give each channel "
               "the scale s = max|w| over the channel / 127 (at least np.finfo(w.dtype).tiny, so a zero channel "
               "gets a tiny scale and q = 0), and q = rint(w / s) as int8. Return q (w's shape, int8) and scale "
               "(w's shape with the other axis of size 1: (1, out) for axis=1)."),
    hints=("One scale per channel maps that channel's largest magnitude to the largest int8 value, so nothing "
           "is clipped and a channel of small weights keeps its precision.",
           ("scale = (the absolute maximum over the other axis, keepdims) / 127, floored at a tiny number; "
            "q = w / scale, rounded to the nearest integer (half to even), as int8."),
           ("scale = np.maximum(np.abs(w).max(axis=1 - axis, keepdims=True) / 127, np.finfo(w.dtype).tiny); "
            "q = np.rint(w / scale).astype(np.int8).")),
)


# ---------------------------------------------------------------------- magnitude pruning
class _OneMatrix:
    """What :func:`npgpt.allocation.prune.prune_magnitude` reads of a model: its ``params``."""

    def __init__(self, w):
        self.params = {"w": np.array(w, dtype=np.float64)}


def magnitude_prune(w, sparsity):
    """The keep mask of magnitude pruning: :func:`npgpt.allocation.prune.prune_magnitude` on a model
    of one matrix."""
    return prune_magnitude(_OneMatrix(w), sparsity, names=["w"])["w"]


def _prune_cases(rng):
    return [
        Case("w (4, 5) with large negative entries, sparsity 0.5", (rng.standard_normal((4, 5)) * 3, 0.5)),
        Case("10 entries, sparsity 0.35: round(3.5) = 4 entries go", (rng.standard_normal((2, 5)), 0.35)),
        Case("ties: |w| = 1, 1, 1, 2, 3, 1 and sparsity 0.5: among equals the earlier entry goes",
             (np.array([[1.0, -1.0, 1.0], [2.0, -3.0, 1.0]]), 0.5)),
        Case("sparsity 0: everything is kept", (rng.standard_normal((3, 3)), 0.0)),
    ]


MAGNITUDE_PRUNE = Exercise(
    name="magnitude_prune",
    title="magnitude pruning",
    where="notebook 08 part 2.2; npgpt/allocation/prune.py",
    reference=magnitude_prune,
    make_cases=_prune_cases,
    outputs=("keep",),
    exact=True,
    signature="magnitude_prune(w, sparsity) -> keep",
    statement=("Remove the round(sparsity * w.size) entries of w with the smallest magnitude |w| (ties: the "
               "earlier entry in row-major order goes first). Return the keep mask: a bool array of w's shape, "
               "True where the weight stays."),
    hints=("A weight near zero changes the output least when it is set to zero: rank the weights by size, "
           "whatever their sign.",
           ("Sort the entries by |w| (a stable sort keeps ties in order), drop the first round(sparsity * n), "
            "keep the rest; reshape the mask to w's shape."),
           ("drop = np.argsort(np.abs(w).ravel(), kind='stable')[:round(sparsity * w.size)]; "
            "keep = np.ones(w.size, bool); keep[drop] = False; keep.reshape(w.shape).")),
)


# ---------------------------------------------------------------------- FLOPs of a block
def block_flops(n_embd, rows, keys):
    """Forward FLOPs of one block's matrix products: :func:`npgpt.allocation.costs.forward_flops_by_part`
    of a one-layer model without its head."""
    parts = forward_flops_by_part(SimpleNamespace(n_embd=n_embd, n_layer=1, vocab_size=0), rows, keys)
    return float(sum(flops for part, flops in parts.items() if part != "lm head"))


def _flops_cases(rng):
    return [Case("width 768, one new token attending to 1000 cached positions: attention's products count",
                 (768, 1, 1000)),
            Case("width 64, 256 rows attending to 256 keys (training, T = 256)", (64, 256, 256)),
            Case("width 8, 4 rows, 4 keys", (8, 4, 4))]


BLOCK_FLOPS = Exercise(
    name="block_flops",
    title="the FLOPs of a transformer block",
    where="notebook 08 part 1, notebook 01 part 4; npgpt/allocation/costs.py",
    reference=block_flops,
    make_cases=_flops_cases,
    outputs=("flops",),
    signature="block_flops(n_embd, rows, keys) -> flops",
    statement=("Count the floating-point operations of one GPT block's forward matrix products for `rows` "
               "tokens, each attending to `keys` positions, width C = n_embd: the qkv projection (C to 3C), "
               "the scores Q K^T and the weighted sum A V (all heads together), the output projection (C to C) "
               "and the MLP (C to 4C to C). A product of (m, k) by (k, n) costs 2 m k n FLOPs (a multiply and "
               "an add). Ignore LayerNorm, softmax, GELU and biases. Return a number."),
    hints=("Every product of an (m, k) and a (k, n) matrix is m n dot products of length k: 2 m k n FLOPs. "
           "Walk through the block's products one by one.",
           ("The weights give 2 * rows * (C*3C + C*C + C*4C + 4C*C) FLOPs; attention adds two products of "
            "rows x C x keys each, which grow with the context, not with the weights."),
           "flops = 24 * rows * C**2 + 4 * rows * keys * C."),
)


# ---------------------------------------------------------------------- KV-cache memory
def kv_cache_bytes(n_layer, n_embd, batch_size, context, itemsize):
    """Bytes of the keys and values of ``context`` positions: :func:`npgpt.allocation.costs.inference_memory`'s
    "KV cache, in use" part."""
    config = GPTConfig(vocab_size=2, block_size=context, n_layer=n_layer, n_head=1, n_embd=n_embd)
    dtype = {4: np.float32, 8: np.float64}[itemsize]
    return float(inference_memory(config, batch_size, context, dtype).by_part["KV cache, in use"])


def _kv_memory_cases(rng):
    return [Case("12 layers, width 768, batch 4, 1024 positions, float32 (4 bytes)", (12, 768, 4, 1024, 4)),
            Case("2 layers, width 64, batch 1, 256 positions, float64 (8 bytes)", (2, 64, 1, 256, 8)),
            Case("6 layers, width 384, batch 16, 64 positions, float32", (6, 384, 16, 64, 4))]


KV_CACHE_BYTES = Exercise(
    name="kv_cache_bytes",
    title="the memory of the KV cache",
    where="notebook 06 part 6, notebook 01 part 4; npgpt/allocation/costs.py",
    reference=kv_cache_bytes,
    make_cases=_kv_memory_cases,
    outputs=("n_bytes",),
    signature="kv_cache_bytes(n_layer, n_embd, batch_size, context, itemsize) -> n_bytes",
    statement=("While generating, every layer keeps the keys and the values of every position seen so far, for "
               "every sequence of the batch. Return the bytes they take at `context` positions, with numbers "
               "of `itemsize` bytes (4: float32, 8: float64)."),
    hints=("Count the numbers one position adds to the cache in one layer, then multiply by everything that "
           "repeats them.",
           "One position of one sequence in one layer stores a key and a value of width C (all heads together).",
           "n_bytes = 2 * n_layer * batch_size * context * n_embd * itemsize."),
)


# ---------------------------------------------------------------------- the ring all-reduce
def ring_allreduce_seconds(n_bytes, ranks, latency_s, bandwidth):
    """The ring all-reduce time: :func:`npgpt.allocation.network.allreduce_seconds` (one message)."""
    return allreduce_seconds(n_bytes, ranks, Network("exercise", latency_s, bandwidth))


def _allreduce_cases(rng):
    return [Case("400 MB on 4 ranks over 10 Gb/s Ethernet (30 us, 1.1e9 B/s): bandwidth-bound",
                 (4e8, 4, 30e-6, 1.1e9)),
            Case("1 kB on 8 ranks, 30 us per message: latency-bound", (1e3, 8, 30e-6, 1.1e9)),
            Case("2 ranks, 1 MB, InfiniBand (1.5 us, 23e9 B/s)", (1e6, 2, 1.5e-6, 23e9)),
            Case("one rank: nothing to send", (1e6, 1, 30e-6, 1.1e9))]


RING_ALLREDUCE = Exercise(
    name="ring_allreduce_seconds",
    title="the time of a ring all-reduce",
    where="notebook 08 part 5; npgpt/allocation/network.py",
    reference=ring_allreduce_seconds,
    make_cases=_allreduce_cases,
    outputs=("seconds",),
    signature="ring_allreduce_seconds(n_bytes, ranks, latency_s, bandwidth) -> seconds",
    statement=("p = ranks processes each hold a buffer of n_bytes and must all end with the sum. In a ring, the "
               "buffer is cut into p chunks: a reduce-scatter (each rank ends with the sum of one chunk) then an "
               "all-gather (every rank gets every summed chunk). Each step sends one chunk to the next rank, "
               "costing latency_s + chunk / bandwidth. Return the seconds."),
    hints=("Count the steps of each of the two phases and the size of what one step sends; every rank sends at "
           "the same time, so a step costs one message.",
           ("Each phase has p - 1 steps of one chunk (n / p bytes): the time is 2 (p - 1) times the cost of one "
            "chunk."),
           "seconds = 2 * (p - 1) * (latency_s + n_bytes / (p * bandwidth))."),
)


# ---------------------------------------------------------------------- the IsoFLOP vertex
def isoflop_vertex(log_n, loss):
    """The vertex of the least-squares parabola of loss against ln N:
    :func:`npgpt.allocation.scaling.fit_parabola`."""
    fit = fit_parabola(log_n, loss)
    return fit.x_min, fit.y_min


def _isoflop_cases(rng):
    x = np.log([1e5, 2e5, 4e5, 8e5, 1.6e6])
    exact = 3.1 + 0.08 * (x - np.log(3e5)) ** 2
    return [Case("five sizes on one budget, losses on a parabola whose minimum (N = 300,000) lies between "
                 "two sampled sizes", (x, exact)),
            Case("seven sizes, noisy losses", (np.log(np.geomspace(1e6, 6.4e7, 7)),
                                                2.9 + 0.05 * (np.log(np.geomspace(1e6, 6.4e7, 7)) - 15.8) ** 2
                                                + 0.004 * rng.standard_normal(7))),
            Case("three sizes, the fewest a parabola needs", (np.log([1e4, 1e5, 1e6]), np.array([4.0, 3.5, 3.8])))]


ISOFLOP_VERTEX = Exercise(
    name="isoflop_vertex",
    title="the compute-optimal size on an IsoFLOP curve",
    where="notebook 08 part 6; npgpt/allocation/scaling.py",
    reference=isoflop_vertex,
    make_cases=_isoflop_cases,
    outputs=("log_n_opt", "loss_min"),
    signature="isoflop_vertex(log_n, loss) -> (log_n_opt, loss_min)",
    statement=("Models of sizes N trained on the same FLOP budget reached the losses `loss`; log_n = ln N. Fit "
               "loss = c0 + c1 x + c2 x^2 (x = ln N) by least squares and return the x of its minimum and the "
               "fitted loss there."),
    hints=("The best size usually falls between two trained sizes: fit a curve through the points and take its "
           "minimum, rather than the best point.",
           ("np.polyfit(log_n, loss, 2) gives (c2, c1, c0); the minimum of c0 + c1 x + c2 x^2 is where its "
            "derivative c1 + 2 c2 x vanishes."),
           "c2, c1, c0 = np.polyfit(log_n, loss, 2); x = -c1 / (2 * c2); return x, c0 + c1 * x + c2 * x**2."),
)


# ---------------------------------------------------------------------- temperature and top-k
def top_k_distribution(logits, temperature, k):
    """The distribution of temperature-then-top-k sampling:
    :func:`npgpt.decoding.strategies.next_token_distribution`."""
    return next_token_distribution(logits, temperature, top_k=k)


def _top_k_cases(rng):
    return [Case("10 logits, temperature 0.7, k = 3", (rng.standard_normal(10) * 2, 0.7, 3)),
            Case("logits 1, 3, 2, 3, 0 with temperature 2 and k = 2: a tie at the top, both kept",
                 (np.array([1.0, 3.0, 2.0, 3.0, 0.0]), 2.0, 2)),
            Case("a tie at the boundary: logits 2, 1, 1, 1 with k = 2 keeps the lower id (1)",
                 (np.array([2.0, 1.0, 1.0, 1.0]), 1.0, 2)),
            Case("k larger than the vocabulary keeps everything", (np.array([0.5, -1.0, 2.0]), 1.5, 10))]


TOP_K_DISTRIBUTION = Exercise(
    name="top_k_distribution",
    title="temperature and top-k sampling's distribution",
    where="notebook 06 part 5; npgpt/decoding/strategies.py",
    reference=top_k_distribution,
    make_cases=_top_k_cases,
    outputs=("probs",),
    signature="top_k_distribution(logits, temperature, k) -> probs",
    statement=("logits (V,) are a model's scores for the next token. Divide them by the temperature, keep the k "
               "largest (ties: the lower id), and return the softmax over the kept ones: probabilities (V,) that "
               "are 0 outside the top k and sum to 1."),
    hints=("Temperature reshapes the scores before they become probabilities; top-k then removes all but the "
           "k most likely tokens and renormalises.",
           ("z = logits / temperature; set every logit outside the k largest to -inf (a stable sort of -z picks "
            "them, lower ids first among equals); softmax."),
           ("z = logits / temperature; keep = np.argsort(-z, kind='stable')[:k]; e = np.exp(z[keep] - "
            "z[keep].max()); probs = zeros, probs[keep] = e / e.sum().")),
)


# ====================================================================== the catalogue, in the notebook's order
# EXERCISES: the exercises notebooks/exercises.ipynb has a cell for, in its order (its summary cell
# grades every name in EXERCISES with the function of that name, so a name it has no cell for would
# break it). ALL_EXERCISES: those and any whose cell is still to be written (none now); check(),
# hint() and solution() take every name of ALL_EXERCISES. An exercise moves up when its cell lands.
EXERCISES = {exercise.name: exercise for exercise in (
    LINEAR_BACKWARD,
    EMBEDDING_BACKWARD,
    LAYERNORM_BACKWARD,
    GELU_BACKWARD,
    DROPOUT_BACKWARD,
    SOFTMAX_BACKWARD,
    CROSS_ENTROPY_BACKWARD,
    ATTENTION_BACKWARD,
    BLOCK_BACKWARD,
    LSTM_CELL_BACKWARD,
    BPE_MERGE_STEP,
    BPE_ENCODE_PIECE,
    TOP_P_FILTER,
    KV_ATTENTION_STEP,
    TOP_K_DISTRIBUTION,
    ATTENTION_FORWARD,
    SINUSOIDAL_TABLE,
    PERPLEXITY,
    CLIPPED_PRECISION,
    BREVITY_PENALTY,
    ROUGE_L,
    QUANTIZE_INT8,
    MAGNITUDE_PRUNE,
    BLOCK_FLOPS,
    KV_CACHE_BYTES,
    RING_ALLREDUCE,
    ISOFLOP_VERTEX,
)}
ALL_EXERCISES = {**EXERCISES}
