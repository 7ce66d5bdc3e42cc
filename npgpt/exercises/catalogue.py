r"""The exercises, as data: one :class:`Exercise` entry per function to write, beside the cases it
is graded on. An entry names the function (``name``), the library function it is graded against
(``reference``: the library's own, or a two-line wrapper around it, so an exercise cannot drift from
the library), how to build its cases (``make_cases(rng)``: each :class:`Case` holds the arguments
and, for a backward pass, a gradient check against the op's forward), what is graded (the names of
its ``outputs``; ``exact`` for ids and lists), and the text a student reads (``signature``,
``statement``, ``hints`` in three tiers, and ``where`` it is taught). :data:`EXERCISES` lists them in the order the
notebook asks them; :mod:`npgpt.exercises.grading` grades an answer against an entry.
"""
import copy
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from ..checks import UsageError
from ..decoding.strategies import top_p_filter
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
    softmax_backward,
    softmax_forward,
)
from ..text.bpe import bpe_merge
from ..text.bpe_train import train_bpe
from ..verify.gradcheck import check_op, gradcheck

__all__ = ["EXERCISES", "HINT_LEVELS", "Case", "Exercise", "bpe_merge_step", "kv_attention_step"]

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


# ====================================================================== the catalogue, in the notebook's order
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
)}
