r"""The exercises, as data: one :class:`Exercise` entry per function to write, beside the cases it
is graded on. An entry names the function (``name``), the library function it is graded against
(``reference``: the library's own, or a two-line wrapper around it, so an exercise cannot drift from
the library), how to build its cases (``make_cases(rng)``: each :class:`Case` holds the arguments
and, for a backward pass, a gradient check against the op's forward), what is graded (the names of
its ``outputs``; ``exact`` for ids and lists), and the text a student reads (``signature``, and in
each language, English ``en=`` and Chinese ``zh=``, the ``title``, the ``statement``, ``hints`` in
three tiers, ``where`` it is taught and, in Chinese, the cases' labels). :data:`EXERCISES` lists those
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
from .messages import speaker

__all__ = ["ALL_EXERCISES", "EXERCISES", "HINT_LEVELS", "Case", "Exercise", "Texts", "block_flops", "bpe_merge_step",
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
class Texts:
    """What a student reads of an exercise, in one language: its ``title``, ``where`` it is taught,
    the ``statement``, the ``hints`` in tiers (:data:`HINT_LEVELS`), and, in a language other than
    English, ``cases``: each case's English label mapped to its label in this language."""
    title: str
    where: str
    statement: str
    hints: tuple
    cases: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Exercise:
    """One exercise: the function to write (``name``, ``signature``), what a student reads of it in
    English (``en``) and in Chinese (``zh``), the library's ``reference``, the names of its
    ``outputs`` and the graded cases (``make_cases(rng)``). ``title``, ``where``, ``statement``,
    ``hints`` and ``hint`` are those of the language npgpt speaks now
    (:func:`npgpt.runtime.language.language`); :meth:`texts` takes a language."""
    name: str
    signature: str
    en: Texts
    zh: Texts
    reference: Callable
    outputs: tuple
    make_cases: Callable = field(repr=False)
    exact: bool = False            # outputs are ids or lists, compared exactly

    def __post_init__(self):
        for texts in (self.en, self.zh):
            if len(texts.hints) != len(HINT_LEVELS):
                raise ValueError(f"exercise {self.name!r} has {len(texts.hints)} hints, expected {len(HINT_LEVELS)}")

    def texts(self, lang: str | None = None) -> Texts:
        """The texts in ``lang`` ("en" or "zh"; None: the language npgpt speaks now)."""
        return self.zh if speaker(lang).lang == "zh" else self.en

    def label(self, case: "Case", lang: str | None = None) -> str:
        """How ``case`` is described in ``lang``."""
        return case.label if speaker(lang).lang == "en" else self.texts(lang).cases[case.label]

    @property
    def title(self) -> str:
        return self.texts().title

    @property
    def where(self) -> str:
        return self.texts().where

    @property
    def statement(self) -> str:
        return self.texts().statement

    @property
    def hints(self) -> tuple:
        return self.texts().hints

    @property
    def hint(self) -> str:
        """The first tier: the idea (the formula stays for ``hints[-1]``)."""
        return self.hints[0]

    def describe(self, lang: str | None = None) -> str:
        """The exercise as a student reads it first: the statement and the idea, never the formula."""
        texts, say = self.texts(lang), speaker(lang)
        return say("exercise", name=self.name, title=texts.title, where=texts.where, signature=self.signature,
                   statement=texts.statement, hint=texts.hints[0])

    def __str__(self):
        return self.describe()


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
    signature="linear_backward(dout, cache) -> (dx, dW, db)",
    en=Texts(
        title="the backward of a linear layer y = xW + b",
        where="notebook 04b part 1; npgpt/ops/linear.py",
        statement=("Forward: y = x W + b with x (..., in), W (in, out), b (out,) or None; the cache is (x, W, has_bias).\n"
                   "Given dout = dL/dy (..., out), return dL/dx (shape of x), dL/dW (in, out) and dL/db (out,), "
                   "db None when the layer has no bias. The leading axes (batch, time) are all rows."),
        hints=(('Write one output entry as a sum over x and W, and ask which entries of x, W and b each '
                'dL/dy_rc reaches.'),
               ("dx is dout times a matrix of W's shape turned around; dW is a matrix of x's with dout, "
                'summed over every row (batch and time are all rows); db is dout summed over the rows.'),
               ("y_rc = sum_k x_rk W_kc + b_c. Each weight meets every row, so dW = x^T dout and db sum over "
              "the rows; flatten x and dout to 2-D first (x.reshape(-1, x.shape[-1]))."))),
    zh=Texts(
        title="线性层 y = xW + b 的反向传播",
        where="笔记本 04b 第 1 部分；npgpt/ops/linear.py",
        statement=("前向：y = x W + b，其中 x 的形状为 (..., in)，W 为 (in, out)，b 为 (out,) 或 None；缓存是 "
                   "(x, W, has_bias)。\n给定 dout = dL/dy（形状 (..., out)），返回 dL/dx（与 x 同形状）、dL/dW (in, out) "
                   "和 dL/db (out,)；层没有偏置时 db 为 None。前面的各轴（批量、时间）都算作行。"),
        hints=("把输出的一个元素写成 x 与 W 的求和，再想一想每个 dL/dy_rc 会传到 x、W、b 的哪些元素。",
               ("dx 是 dout 乘以一个把 W 的形状倒过来的矩阵；dW 是 x 的矩阵与 dout 的乘积，对所有行求和（批量和时间"
                "都算行）；db 是 dout 对各行求和。"),
               ("y_rc = sum_k x_rk W_kc + b_c。每个权重都与每一行相遇，所以 dW = x^T dout，db 对各行求和；先把 x 和 "
                "dout 展平成二维（x.reshape(-1, x.shape[-1])）。")),
        cases={"x (2, 3, 4) @ W (4, 5) + b": "x (2, 3, 4) @ W (4, 5) + b",
               "x (6, 4) @ W (4, 3), no bias": "x (6, 4) @ W (4, 3)，无偏置",
               "one row: x (1, 1, 4) @ W (4, 2) + b": "只有一行：x (1, 1, 4) @ W (4, 2) + b",
               "square W: x (5, 3) @ W (3, 3) + b": "方阵 W：x (5, 3) @ W (3, 3) + b"}),
    reference=linear_backward,
    make_cases=_linear_cases,
    outputs=("dx", "dW", "db"),
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
    signature="embedding_backward(dout, cache) -> dW",
    en=Texts(
        title="the backward of the embedding lookup: a scatter-add",
        where="notebook 04b part 2; npgpt/ops/embedding.py",
        statement=("Forward: out[b, t] = W[idx[b, t]] for a table W (V, C); the cache is (idx, W.shape).\n"
                   "Given dout (..., C), return dL/dW (V, C). Ids may repeat, and rows of W no id picked get zero."),
        hints=(("The forward copies rows of W; the backward sends each position's gradient back to the row it"
                ' copied.'),
               ('dW starts at zero (V, C); each (b, t) adds dout[b, t] into row idx[b, t], and an id that '
                'occurs twice adds twice.'),
               ("Every position that read row v adds its gradient to dW[v]. dW[idx] += dout keeps only one of "
              "the repeats (fancy-index assignment does not accumulate); np.add.at does."))),
    zh=Texts(
        title="嵌入查表的反向传播：一次散射累加（scatter-add）",
        where="笔记本 04b 第 2 部分；npgpt/ops/embedding.py",
        statement=("前向：out[b, t] = W[idx[b, t]]，查的是表 W (V, C)；缓存是 (idx, W.shape)。\n给定 dout (..., C)，"
                   "返回 dL/dW (V, C)。词元 id 可能重复；没有被任何 id 选中的行梯度为零。"),
        hints=("前向复制了 W 的若干行；反向则把每个位置的梯度送回它复制的那一行。",
               "dW 从全零 (V, C) 开始；每个 (b, t) 把 dout[b, t] 加到第 idx[b, t] 行，出现两次的 id 就加两次。",
               ("读过第 v 行的每个位置都把自己的梯度加到 dW[v]。dW[idx] += dout 在重复时只保留一次（花式索引赋值不会"
                "累加）；np.add.at 才会累加。")),
        cases={"ids (2, 5) in a vocabulary of 4: every id repeats": "ids (2, 5)，词表大小 4：每个 id 都有重复",
               "ids [[3, 3, 3, 1]]: id 3 three times, ids 0 and 2 never":
                   "ids [[3, 3, 3, 1]]：id 3 出现 3 次，id 0 和 2 从未出现",
               "one id: [[2]], vocabulary 6": "只有一个 id：[[2]]，词表大小 6"}),
    reference=embedding_backward,
    make_cases=_embedding_cases,
    outputs=("dW",),
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
    signature="layernorm_backward(dout, cache) -> (dx, dw, db)",
    en=Texts(
        title="the backward of LayerNorm",
        where="notebook 04b part 3; npgpt/ops/layernorm.py",
        statement=("Forward over the last axis: xhat = (x - mean) / sqrt(var + eps), y = w * xhat + b; the cache is "
                   "(xhat, rstd, w, has_bias) with rstd = 1 / sqrt(var + eps) of shape (..., 1).\n"
                   "Given dout, return dL/dx, dL/dw (C,), dL/db (C,) (None without a bias)."),
        hints=(('Go through the affine part first (w, b), then through the normalisation: the mean and the '
                'variance are functions of every entry of the row.'),
               ('With g = dout * w: dx = rstd * (g - [a mean of g] - xhat * [a mean of g times xhat]); dw and'
                ' db sum over every axis but the last.'),
               ("Let g = dout * w. The mean and the variance depend on every x_c, which subtracts two averages: "
              "dx = rstd * (g - mean(g) - xhat * mean(g * xhat)), the means over the last axis."))),
    zh=Texts(
        title="层归一化（LayerNorm）的反向传播",
        where="笔记本 04b 第 3 部分；npgpt/ops/layernorm.py",
        statement=("沿最后一个轴做前向：xhat = (x - mean) / sqrt(var + eps)，y = w * xhat + b；缓存是 "
                   "(xhat, rstd, w, has_bias)，其中 rstd = 1 / sqrt(var + eps)，形状为 (..., 1)。\n给定 dout，返回 dL/dx、"
                   "dL/dw (C,)、dL/db (C,)（没有偏置时为 None）。"),
        hints=("先穿过仿射部分（w、b），再穿过归一化：均值和方差都是这一行每个元素的函数。",
               ("记 g = dout * w：dx = rstd * (g - [g 的某个均值] - xhat * [g 与 xhat 乘积的某个均值])；dw 和 db "
                "对除最后一个轴外的所有轴求和。"),
               ("记 g = dout * w。均值和方差依赖于每个 x_c，这会减去两个平均值："
                "dx = rstd * (g - mean(g) - xhat * mean(g * xhat))，均值都沿最后一个轴求。")),
        cases={"x (2, 3, 5), with bias": "x (2, 3, 5)，有偏置",
               "x (4, 6), no bias": "x (4, 6)，无偏置",
               "x (1, 1, 2): width 2": "x (1, 1, 2)：宽度为 2"}),
    reference=layernorm_backward,
    make_cases=_layernorm_cases,
    outputs=("dx", "dw", "db"),
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
    signature="gelu_backward(dout, cache) -> dx",
    en=Texts(
        title="the backward of GELU, tanh approximation",
        where="notebook 04b part 4; npgpt/ops/gelu.py",
        statement=("Forward: GELU(x) = 0.5 x (1 + tanh u), u = sqrt(2/pi) (x + 0.044715 x^3); the cache is (x, t) "
                   "with t = tanh u.\nGiven dout, return dL/dx = dout * GELU'(x)."),
        hints=(('GELU is x times a function of x: differentiate it with the product rule and the chain rule '
                'through tanh.'),
               ("GELU'(x) = 0.5 (1 + t) + 0.5 x (1 - t^2) du/dx with t = tanh u; du/dx is the derivative of "
                'the cubic inside u.'),
               ("Product rule: d/dx [0.5 x (1 + t)] = 0.5 (1 + t) + 0.5 x (1 - t^2) du/dx, with "
              "du/dx = sqrt(2/pi) (1 + 3 * 0.044715 x^2)."))),
    zh=Texts(
        title="GELU（tanh 近似）的反向传播",
        where="笔记本 04b 第 4 部分；npgpt/ops/gelu.py",
        statement=("前向：GELU(x) = 0.5 x (1 + tanh u)，u = sqrt(2/pi) (x + 0.044715 x^3)；缓存是 (x, t)，其中 "
                   "t = tanh u。\n给定 dout，返回 dL/dx = dout * GELU'(x)。"),
        hints=("GELU 是 x 乘以 x 的一个函数：用乘积法则求导，再用链式法则穿过 tanh。",
               "GELU'(x) = 0.5 (1 + t) + 0.5 x (1 - t^2) du/dx，其中 t = tanh u；du/dx 是 u 里那个三次式的导数。",
               ("乘积法则：d/dx [0.5 x (1 + t)] = 0.5 (1 + t) + 0.5 x (1 - t^2) du/dx，其中 "
                "du/dx = sqrt(2/pi) (1 + 3 * 0.044715 x^2)。")),
        cases={"x (3, 4), standard normal": "x (3, 4)，标准正态分布",
               "x from -5 to 5 in 11 steps, 0 included": "x 从 -5 到 5 取 11 个点，包含 0"}),
    reference=gelu_backward,
    make_cases=_gelu_cases,
    outputs=("dx",),
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
    signature="dropout_backward(dout, cache) -> dx",
    en=Texts(
        title="the backward of inverted dropout",
        where="notebook 04b part 6; npgpt/ops/dropout.py",
        statement=("Forward: y = x * m / (1 - p) with a 0/1 mask m; the cache is the scaled mask m / (1 - p), "
                   "or None in evaluation mode (then y = x).\nGiven dout, return dL/dx."),
        hints=(('The forward is an element-wise product with a fixed array: what is the derivative of a * x '
                'in x?'),
               'dx = dout * (the cached array), and dout itself when nothing was dropped (evaluation mode).',
               ("The forward multiplies by a constant array, so the backward multiplies by the same array; "
              "mind the None cache."))),
    zh=Texts(
        title="inverted dropout（倒置暂退法）的反向传播",
        where="笔记本 04b 第 6 部分；npgpt/ops/dropout.py",
        statement=("前向：y = x * m / (1 - p)，m 是由 0 和 1 组成的掩码；缓存是缩放后的掩码 m / (1 - p)，评估模式下为 "
                   "None（此时 y = x）。\n给定 dout，返回 dL/dx。"),
        hints=("前向是与一个固定数组的逐元素乘积：a * x 对 x 的导数是什么？",
               "dx = dout * （缓存的数组）；什么都没丢弃时（评估模式）就是 dout 本身。",
               "前向乘以一个常数数组，所以反向乘以同一个数组；注意缓存为 None 的情形。"),
        cases={"x (4, 5), p = 0.5": "x (4, 5)，p = 0.5",
               "x (2, 3, 4), p = 0.1": "x (2, 3, 4)，p = 0.1",
               "evaluation mode: the cache is None": "评估模式：缓存为 None"}),
    reference=dropout_backward,
    make_cases=_dropout_cases,
    outputs=("dx",),
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
    signature="softmax_backward(dout, cache) -> dz",
    en=Texts(
        title="the backward of the softmax over the last axis",
        where="notebook 04b part 7; npgpt/ops/softmax.py",
        statement="Forward: s = softmax(z) over the last axis; the cache is s.\nGiven dout = dL/ds, return dL/dz.",
        hints=(('Each output s_j depends on every input z_k, not only on z_j: write the Jacobian ds_j/dz_k, '
                'then multiply it by dout.'),
               'dz = s * (dout - [one number per row: dout weighted by s, summed over the last axis]).',
               ("Every s_j depends on every z_k: ds_j/dz_k = s_j (1[j = k] - s_k). Multiply out: "
              "dz = s * (dout - sum(dout * s)) with the sum over the last axis (keepdims). Keeping only the "
              "diagonal, s * dout, is the usual mistake."))),
    zh=Texts(
        title="沿最后一个轴的 softmax 的反向传播",
        where="笔记本 04b 第 7 部分；npgpt/ops/softmax.py",
        statement="前向：沿最后一个轴 s = softmax(z)；缓存是 s。\n给定 dout = dL/ds，返回 dL/dz。",
        hints=("每个输出 s_j 都依赖于每个输入 z_k，而不只是 z_j：先写出雅可比矩阵 ds_j/dz_k，再把它乘以 dout。",
               "dz = s * (dout - [每行一个数：以 s 为权对 dout 沿最后一个轴求和])。",
               ("每个 s_j 都依赖于每个 z_k：ds_j/dz_k = s_j (1[j = k] - s_k)。乘开得 dz = s * (dout - sum(dout * s))，"
                "求和沿最后一个轴（keepdims）。只保留对角线、写成 s * dout，是最常见的错误。")),
        cases={"z (3, 5)": "z (3, 5)",
               "z (2, 2, 4) with a masked (-inf) entry per row": "z (2, 2, 4)，每行有一个被掩蔽（-inf）的元素",
               "one entry per row: z (4, 1)": "每行只有一个元素：z (4, 1)"}),
    reference=softmax_backward,
    make_cases=_softmax_cases,
    outputs=("dz",),
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
    signature="cross_entropy_backward(dloss, cache) -> dlogits",
    en=Texts(
        title="the backward of softmax + cross-entropy (the mean NLL)",
        where="notebook 04b part 8, notebook 04 part 5; npgpt/ops/cross_entropy.py",
        statement=("Forward: L = -(1/N) sum over the scored rows n of log softmax(z_n)[y_n], rows whose target is "
                   "ignore_index skipped; the cache is (probs, rows, targets, n_scored) with probs = softmax(z) "
                   "(N, V) and rows the indices of the scored rows.\nGiven the scalar dloss = dL_total/dL, return "
                   "dL_total/dlogits (N, V)."),
        hints=(("Softmax and the log of the target's probability together have a simple gradient; the loss is"
                ' a mean over the scored rows only.'),
               ('dlogits = dloss * (probs - [a one-hot of the target]) / [the number of scored rows], zero on'
                ' ignored rows.'),
               ("On a scored row the gradient is (probs - onehot(y)) / N; an ignored row gets zeros; scale by "
              "dloss. N is n_scored, not the number of rows."))),
    zh=Texts(
        title="softmax 加交叉熵（平均负对数似然）的反向传播",
        where="笔记本 04b 第 8 部分、笔记本 04 第 5 部分；npgpt/ops/cross_entropy.py",
        statement=("前向：L = -(1/N) sum_n log softmax(z_n)[y_n]，对参与计分的行 n 求和（目标等于 ignore_index "
                   "的行跳过）；缓存是 (probs, rows, targets, n_scored)，其中 probs = softmax(z) "
                   "(N, V)，rows 是参与计分的行的下标。\n给定标量 dloss = dL_total/dL，返回 dL_total/dlogits (N, V)。"),
        hints=("softmax 与目标概率的对数合在一起，梯度很简单；损失只是参与计分的那些行的平均。",
               "dlogits = dloss * (probs - [目标的独热向量]) / [参与计分的行数]，被忽略的行为零。",
               ("参与计分的行上，梯度是 (probs - onehot(y)) / N；被忽略的行为零；再乘以 dloss。N 是 n_scored，"
                "不是总行数。")),
        cases={"logits (4, 6), dloss = 1": "logits (4, 6)，dloss = 1",
               "logits (6, 5), two targets ignored (-1), dloss = 2.5":
                   "logits (6, 5)，两个目标被忽略（-1），dloss = 2.5",
               "one row: logits (1, 3)": "只有一行：logits (1, 3)"}),
    reference=cross_entropy_backward,
    make_cases=_cross_entropy_cases,
    outputs=("dlogits",),
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
    signature="attention_backward(dy, cache) -> (dq, dk, dv)",
    en=Texts(
        title="the backward of causal scaled dot-product attention",
        where="notebook 04b part 9, notebook 04 part 5; npgpt/ops/attention.py",
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
              "constant and masked entries have A = 0. Use swapaxes(-1, -2) for the transposes (4-D arrays)."))),
    zh=Texts(
        title="因果缩放点积注意力的反向传播",
        where="笔记本 04b 第 9 部分、笔记本 04 第 5 部分；npgpt/ops/attention.py",
        statement=("前向：S = q k^T * scale + M（M 为因果掩码），A = softmax(S)，y = A v，其中 q 为 (..., Tq, d)，"
                   "k 和 v 为 (..., Tk, d)。缓存是一个 AttentionCache：cache.q、cache.k、cache.v、cache.scale"
                   "（1/sqrt(d)）以及 cache.softmax = A（这里关闭了 dropout：cache.att_dropped 也是 A，cache.dropout "
                   "为 None）。\n给定 dy (..., Tq, d)，返回 dq、dk、dv。"),
        hints=("前向分三步：打分、softmax、加权求和。按相反的顺序逐个乘积往回走。",
               ("dv = （A 的转置）dy；dA = dy （v 的转置）；dS 是 dA 经过 softmax 的反向传播；dq 和 dk 分别是 dS 乘 k "
                "和（dS 的转置）乘 q，各自再乘缩放因子。"),
               ("逐个乘积往回走：dv = A^T dy，dA = dy v^T，然后是 softmax 的反向 dS = A * (dA - rowsum(dA * A))，"
                "再得 dq = dS k * scale 和 dk = dS^T q * scale。掩码是常数，被掩蔽的元素 A = 0。转置用 "
                "swapaxes(-1, -2)（数组是四维的）。")),
        cases={"q, k, v (1, 2, 5, 4): 2 heads, 5 positions, causal": "q, k, v (1, 2, 5, 4)：2 个头，5 个位置，因果",
               "q, k, v (2, 1, 3, 2): batch 2, 1 head, causal": "q, k, v (2, 1, 3, 2)：批量 2，1 个头，因果",
               "one new query against 4 keys (a cached step): q (1, 2, 1, 3)":
                   "一个新查询对 4 个键（带缓存的一步）：q (1, 2, 1, 3)"}),
    reference=attention_backward,
    make_cases=_attention_cases,
    outputs=("dq", "dk", "dv"),
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
    signature="block_backward(dy, cache) -> (dx, grads)",
    en=Texts(
        title="the backward of a GPT block: two residual connections",
        where="notebook 04b part 5; npgpt/ops/block.py",
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
              "through f). Walk the block in reverse: MLP branch, add, attention branch, add."))),
    zh=Texts(
        title="GPT 块的反向传播：两条残差连接",
        where="笔记本 04b 第 5 部分；npgpt/ops/block.py",
        statement=("前向（前置层归一化，关闭 dropout）：h = x + Attn(LN1(x))，y = h + MLP(LN2(h))。缓存是由各子运算"
                   "缓存组成的 BlockCache：cache.ln_1、cache.attn、cache.drop_1、cache.ln_2、cache.mlp、cache.drop_2。"
                   "各部分直接用库里的反向传播（npgpt.ops.layernorm_backward、self_attention_backward、mlp_backward、"
                   "dropout_backward）；这道练习考的是残差的连线。\n返回 dx，以及一个参数梯度的 dict，键与块的参数相同"
                   "（'ln_1.weight'、'ln_1.bias'、'attn.c_attn.weight'、'attn.c_attn.bias'、'attn.c_proj.weight'、"
                   "'attn.c_proj.bias'、'ln_2.weight'、'ln_2.bias'、'mlp.c_fc.weight'、'mlp.c_fc.bias'、"
                   "'mlp.c_proj.weight'、'mlp.c_proj.bias'），块中没有的偏置不要放进去（它们的反向传播返回 None）。"),
        hints=("残差连接 y = h + f(h) 把梯度分两路送回：一路直通，一路穿过 f。",
               "dh = dy + [dy 依次穿过 dropout、MLP、LN2 的反向]；dx = dh + [dh 依次穿过 dropout、注意力、LN1 的反向]。",
               ("残差 y = h + f(h) 把 dy 复制到两条路上：dh = dy + （穿过 f 传回来的梯度）。倒着走一遍块：MLP 分支、"
                "相加、注意力分支、相加。")),
        cases={"x (2, 3, 4), 2 heads, with biases": "x (2, 3, 4)，2 个头，有偏置",
               "x (1, 4, 6), 3 heads, no biases": "x (1, 4, 6)，3 个头，无偏置"}),
    reference=_block_reference,
    make_cases=_block_cases,
    outputs=("dx", "grads"),
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
    signature="lstm_cell_backward(dh_new, dc_new, cache) -> (dx, dh, dc, dw_ih, dw_hh, db_ih, db_hh)",
    en=Texts(
        title="the backward of one LSTM cell step",
        where="notebook 03 part 2; npgpt/ops/recurrent_cells.py",
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
              "back through both projections."))),
    zh=Texts(
        title="LSTM 单元一步的反向传播",
        where="笔记本 03 第 2 部分；npgpt/ops/recurrent_cells.py",
        statement=("前向（PyTorch 的布局，门的顺序为 i, f, g, o）：a = x W_ih^T + b_ih + h W_hh^T + b_hh (B, 4H)，"
                   "i, f, o 为各自四分之一的 sigmoid，g 为其四分之一的 tanh，c' = f*c + i*g，h' = o * tanh(c')。缓存是 "
                   "(x, h, c, w_ih, w_hh, i, f, g, o, tc, has_bias)，其中 tc = tanh(c')。\n给定 dL/dh' 和 dL/dc'，返回 "
                   "x、h、c、w_ih、w_hh、b_ih、b_hh 的梯度（has_bias 为 False 时偏置的梯度为 None）。"),
        hints=("新的单元状态 c' 通过两条路影响损失：直接（dc_new），以及经由 h' = o * tanh(c')。先把两者相加，再逐个"
               "门往回走。",
               ("dc_total = dc_new + dh_new * o * tanh'(c')；每个门的梯度是 dc_total（或 dh_new）乘以它在乘积中的"
                "搭档；然后按 i, f, g, o 的顺序穿过 sigmoid 或 tanh，再穿过两个投影。"),
               ("c' 直接、也经由 h' 影响损失：dc_total = dc_new + dh_new * o * (1 - tc^2)。然后各个门："
                "do = dh_new * tc，di = dc_total * g，df = dc_total * c，dg = dc_total * i；穿过激活函数"
                "（sigmoid' = s(1-s)，tanh' = 1 - g^2），按 i, f, g, o 的顺序拼接，再穿过两个投影。")),
        cases={"batch 3, input 4, hidden 5, with biases": "批量 3，输入 4，隐藏 5，有偏置",
               "batch 1, input 2, hidden 3, no biases": "批量 1，输入 2，隐藏 3，无偏置"}),
    reference=lstm_cell_backward,
    make_cases=_lstm_cases,
    outputs=("dx", "dh", "dc", "dw_ih", "dw_hh", "db_ih", "db_hh"),
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
    signature="bpe_merge_step(words, counts) -> ((a, b), count, merged)",
    en=Texts(
        title="one step of BPE training",
        where="notebook 02 part 2; npgpt/text/bpe_train.py",
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
              "becomes 256 a."))),
    zh=Texts(
        title="BPE 训练的一步",
        where="笔记本 02 第 2 部分；npgpt/text/bpe_train.py",
        statement=("words 是一个单词列表，每个单词是 0..255 的字节值列表；counts[i] 是单词 i 出现的次数。找出总计数最大的"
                   "相邻对 (a, b)：在所有单词上求和并以 counts 加权（并列时取最小的 (a, b)）。返回这一对、它的计数，以及"
                   "把每处 a b 替换为新词元 256 之后的单词，每个单词从左到右扫描。"),
        hints=("统计每个单词里的每个相邻对，按单词出现的次数加权；然后从左到右替换胜出的那一对。",
               ("对单词 i 的每个相邻 a b 执行 pairs[(a, b)] += counts[i]；计数最大者胜出（并列取最小的对）；合并之后，"
                "两个字节都要跳过。"),
               ("用 dict {(a, b): count} 计数；按（计数，然后最小的对）选出：min(pairs, key=lambda ab: (-pairs[ab], ab))。"
                "合并时 a b a b 变成 256 256，a a a 变成 256 a。")),
        cases={'words "low", "lower", "newest", "widest" seen 5, 2, 6, 3 times (pairs e s and s t tie at 9)':
                   '单词 "low"、"lower"、"newest"、"widest" 分别出现 5、2、6、3 次（e s 与 s t 两对以 9 并列）',
               '"aaa" (overlapping pairs: a a a becomes aa a) and "ab"':
                   '"aaa"（重叠的对：a a a 变成 aa a）和 "ab"',
               'a tie: "ab" and "cd" both seen 3 times (the smaller pair wins)':
                   '并列："ab" 和 "cd" 都出现 3 次（较小的对胜出）',
               'Chinese: "模型" and "模块" (3 UTF-8 bytes per character)':
                   '中文："模型" 和 "模块"（每个汉字 3 个 UTF-8 字节）'}),
    reference=bpe_merge_step,
    make_cases=_bpe_step_cases,
    outputs=("pair", "count", "merged"),
    exact=True,
)


BPE_ENCODE_PIECE = Exercise(
    name="bpe_encode_piece",
    signature="bpe_encode_piece(ranks, piece) -> list of ids",
    en=Texts(
        title="encoding one pre-token with learned merges",
        where="notebook 02 part 2; npgpt/text/bpe.py",
        statement=("ranks maps a token's bytes to its id (the 256 single bytes are 0..255, learned tokens follow in "
                   "the order they were learned); piece is bytes. Start from single bytes and repeatedly merge the "
                   "adjacent pair whose concatenation has the lowest rank (the leftmost on ties), until no adjacent "
                   "pair is a token. Return the ids."),
        hints=(('Merges are applied in the order they were learned (lowest rank first), not in the order they'
                ' occur in the piece.'),
               ('Loop: among all adjacent pairs that are tokens, merge the one with the lowest rank (the '
                'leftmost if two are equal); stop when no adjacent pair is a token.'),
               ("Keep a list of byte strings, parts = [piece[i:i + 1] for i in range(len(piece))]; in a loop find "
              "the i with the smallest ranks.get(parts[i] + parts[i + 1]), join it, stop when there is none."))),
    zh=Texts(
        title="用学到的合并规则编码一个预分词片段",
        where="笔记本 02 第 2 部分；npgpt/text/bpe.py",
        statement=("ranks 把词元的字节串映射到它的 id（256 个单字节为 0..255，学到的词元按学习顺序接在后面）；piece 是 "
                   "bytes。从单个字节出发，反复合并这样一对相邻片段：它们拼接后的序号（rank）最小（并列时取最左边的），"
                   "直到没有相邻的一对是词元为止。返回这些 id。"),
        hints=("合并按学到的顺序（序号最小的先合并）进行，而不是按它们在片段中出现的顺序。",
               ("循环：在所有是词元的相邻对中，合并序号最小的那一对（两者相等时取最左边的）；没有相邻对是词元时停止。"),
               ("维护一个字节串列表 parts = [piece[i:i + 1] for i in range(len(piece))]；在循环中找出使 "
                "ranks.get(parts[i] + parts[i + 1]) 最小的 i，把它们拼起来，找不到时停止。")),
        cases={'ranks bc: 256, ab: 257 and the piece "abc": the lowest rank merges first (bc), not the leftmost pair '
               '(ab): [97, 256]':
                   'ranks bc: 256, ab: 257，片段 "abc"：序号最小的先合并（bc），而不是最左边的对（ab）：[97, 256]',
               'ranks aa: 256 and the piece "aaa": two equal candidates, the leftmost merges: [256, 97]':
                   'ranks aa: 256，片段 "aaa"：两个候选相同，最左边的合并：[256, 97]',
               'ranks ab: 256, cd: 257, abcd: 258 and the piece "abcd": merged tokens merge again, until no adjacent '
               'pair is a token: [258]':
                   'ranks ab: 256, cd: 257, abcd: 258，片段 "abcd"：合并出的词元会再次合并，直到没有相邻对是词元：[258]',
               "the piece 'thorough' with a 300-token vocabulary": "片段 'thorough'，词表含 300 个词元",
               "the piece 'the' with a 300-token vocabulary": "片段 'the'，词表含 300 个词元",
               "the piece 'x' with a 300-token vocabulary": "片段 'x'，词表含 300 个词元",
               "the piece '分词器' with a 300-token vocabulary": "片段 '分词器'，词表含 300 个词元",
               "the piece 'zzz' with a 300-token vocabulary": "片段 'zzz'，词表含 300 个词元",
               "the piece 'theatre' with a 300-token vocabulary": "片段 'theatre'，词表含 300 个词元"}),
    reference=bpe_merge,
    make_cases=_bpe_encode_cases,
    outputs=("ids",),
    exact=True,
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
    signature="top_p_filter(probs, p) -> probs",
    en=Texts(
        title="the nucleus (top-p) filter",
        where="notebook 06 part 5; npgpt/decoding/strategies.py",
        statement=("probs is a distribution (V,). Sort the tokens by probability (ties: lower id first), keep the "
                   "smallest prefix whose probabilities add up to at least p (the top token always), set the "
                   "others to 0 and renormalise. Do not change probs in place."),
        hints=(('Keep the most probable tokens until together they hold at least p of the probability, then '
                'renormalise.'),
               ('Sort by probability (descending, stable); the running sum tells how many to keep: up to and '
                'including the first token where it reaches p.'),
               ("np.argsort(-probs, kind='stable'), np.cumsum, then keep up to and including the first token "
              "where the running sum reaches p: that token is what carries the sum over p. A sum that misses p "
              "only by rounding (1e-12) counts as reaching it."))),
    zh=Texts(
        title="核采样（top-p）过滤",
        where="笔记本 06 第 5 部分；npgpt/decoding/strategies.py",
        statement=("probs 是一个分布 (V,)。按概率给词元排序（并列时 id 小的在前），保留概率之和至少达到 p 的最短前缀"
                   "（概率最大的词元总是保留），其余置 0，再重新归一化。不要原地修改 probs。"),
        hints=("保留最可能的那些词元，直到它们合起来至少占 p 的概率，再重新归一化。",
               "按概率降序稳定排序；累加和告诉你保留几个：保留到累加和首次达到 p 的那个词元为止（含该词元）。",
               ("np.argsort(-probs, kind='stable')，np.cumsum，然后保留到累加和首次达到 p 的词元为止（含该词元）："
                "正是这个词元让和越过了 p。只因舍入误差（1e-12）而差一点达到 p 的和，算作已达到。")),
        cases={"p = 0.9 over 10 random probabilities": "p = 0.9，10 个随机概率",
               "p = 0.5 and the top token alone has 0.6": "p = 0.5，概率最大的词元单独就有 0.6",
               "p = 0.75 reached exactly by the first two (0.5 + 0.25)": "p = 0.75，前两个恰好达到（0.5 + 0.25）",
               "ties: p = 0.6 over [0.3, 0.3, 0.3, 0.1] (lower id first among equals)":
                   "并列：p = 0.6，概率为 [0.3, 0.3, 0.3, 0.1]（相等时 id 小的在前）",
               "p = 1.0 keeps every token with probability > 0": "p = 1.0 保留所有概率 > 0 的词元"}),
    reference=top_p_filter,
    make_cases=_top_p_cases,
    outputs=("probs",),
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
    signature="kv_attention_step(x, w_attn, b_attn, w_proj, b_proj, n_head, past_k, past_v) -> (out, k, v)",
    en=Texts(
        title="one step of attention with a KV cache",
        where="notebook 06 part 6; npgpt/ops/attention.py (past_kv), npgpt/models/cache.py",
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
              "the mask for queries that come last is the one causal_mask(n_query, n_key) builds."))),
    zh=Texts(
        title="带 KV 缓存的注意力的一步",
        where="笔记本 06 第 6 部分；npgpt/ops/attention.py（past_kv）、npgpt/models/cache.py",
        statement=("x (B, T_new, C) 是排在 T_past 个已缓存位置之后的新位置，已缓存位置的键和值是 past_k、past_v "
                   "(B, n_head, T_past, hs)。先投影 qkv = x w_attn + b_attn（C 到 3C：q、k、v 并排），把每个切分成多头 "
                   "(B, n_head, T_new, hs)，把新的 k 和 v 沿位置轴接到缓存后面，做因果注意力（新位置 i 能看到所有已缓存"
                   "位置以及直到它自己的新位置），合并各头，再用 w_proj、b_proj 投影。返回 out (B, T_new, C) 以及扩展后的 "
                   "k、v (B, n_head, T_past + T_new, hs)。"),
        hints=("只有新位置需要查询；它们的键和值并入缓存，每个新位置关注所有已缓存的位置以及直到它自己的新位置。",
               ("由 x 得到 q、k、v；沿位置轴 k = concat(past_k, k_new)，v 同理；因果掩码的形状是 "
                "(T_new, T_past + T_new)，查询排在末尾；然后 softmax(q k^T / sqrt(hs) + mask) v，合并各头，投影。"),
               ("npgpt.ops.split_heads、merge_heads 和 causal_mask(T_new, T_past + T_new) 负责这些簿记；查询排在最后时"
                "所需的掩码，正是 causal_mask(n_query, n_key) 构造的那个。")),
        cases={"batch 2, width 4, 2 heads, 3 cached positions, 1 new": "批量 2，宽度 4，2 个头，3 个已缓存位置，1 个新位置",
               "batch 1, width 6, 3 heads, empty cache, 2 new": "批量 1，宽度 6，3 个头，缓存为空，2 个新位置",
               "batch 1, width 4, 1 head, 5 cached positions, 2 new": "批量 1，宽度 4，1 个头，5 个已缓存位置，2 个新位置"}),
    reference=kv_attention_step,
    make_cases=_kv_cases,
    outputs=("out", "k", "v"),
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
    signature="scaled_dot_product_attention(q, k, v, mask) -> y",
    en=Texts(
        title="scaled dot-product attention, the forward formula of §4.2",
        where="notebook 04 part 2, notebook 04b part 9; npgpt/ops/attention.py",
        statement=("Attention(Q, K, V) = softmax(Q K^T / sqrt(d_k) + M) V for q (..., Tq, d_k), k (..., Tk, d_k) and "
                   "v (..., Tk, d_v), the softmax over the keys (the last axis). mask M is an additive (Tq, Tk) "
                   "array (0 where a query may look, -inf elsewhere) or None. Return y (..., Tq, d_v)."),
        hints=("Each query scores every key with a dot product; the scores, scaled, become weights by a softmax "
               "over the keys; the output is the weighted sum of the values.",
               ("S = q (k transposed over its last two axes) times a scale that depends on d_k, plus the mask; "
                "A = softmax of S along the last axis; y = A v."),
               ("S = q @ k.swapaxes(-1, -2) / np.sqrt(q.shape[-1]) (+ mask); A = exp(S - S.max(-1, keepdims=True)) "
                "normalised over the last axis; y = A @ v."))),
    zh=Texts(
        title="缩放点积注意力：§4.2 的前向公式",
        where="笔记本 04 第 2 部分、笔记本 04b 第 9 部分；npgpt/ops/attention.py",
        statement=("Attention(Q, K, V) = softmax(Q K^T / sqrt(d_k) + M) V，其中 q 为 (..., Tq, d_k)，k 为 "
                   "(..., Tk, d_k)，v 为 (..., Tk, d_v)，softmax 沿键所在的轴（最后一个轴）。掩码 M 是加到打分上的 "
                   "(Tq, Tk) 数组（查询可以看的位置为 0，其余为 -inf），或为 None。返回 y (..., Tq, d_v)。"),
        hints=("每个查询用点积给每个键打分；打分经缩放后，沿键做 softmax 变成权重；输出是值的加权和。",
               "S = q 乘（k 的最后两个轴转置），再乘一个取决于 d_k 的缩放因子，加上掩码；A = 沿最后一个轴的 softmax(S)；"
               "y = A v。",
               ("S = q @ k.swapaxes(-1, -2) / np.sqrt(q.shape[-1])（+ mask）；A = exp(S - S.max(-1, keepdims=True)) "
                "沿最后一个轴归一化；y = A @ v。")),
        cases={"q, k (1, 2, 4, 16), v (1, 2, 4, 3), causal: d_k = 16, so the scale 1/sqrt(d_k) is 1/4":
                   "q, k (1, 2, 4, 16)，v (1, 2, 4, 3)，因果：d_k = 16，所以缩放因子 1/sqrt(d_k) 为 1/4",
               "no mask: q (2, 3, 4), k (2, 5, 4), v (2, 5, 2): 3 queries, 5 keys, d_v != d_k":
                   "无掩码：q (2, 3, 4)，k (2, 5, 4)，v (2, 5, 2)：3 个查询，5 个键，d_v != d_k",
               "2 new queries after 3 cached keys: q (1, 2, 4), k, v (1, 5, 4), mask causal_mask(2, 5)":
                   "3 个已缓存的键之后的 2 个新查询：q (1, 2, 4)，k, v (1, 5, 4)，掩码 causal_mask(2, 5)"}),
    reference=scaled_dot_product_attention,
    make_cases=_attention_forward_cases,
    outputs=("y",),
)


# ---------------------------------------------------------------------- sinusoidal positions
def _sinusoidal_cases(rng):
    return [Case("8 positions, width 6", (8, 6)),
            Case("50 positions, width 16: the slow frequencies", (50, 16)),
            Case("odd width: 4 positions, width 5 (the last column is a sine)", (4, 5))]


SINUSOIDAL_TABLE = Exercise(
    name="sinusoidal_table",
    signature="sinusoidal_table(n_positions, n_embd) -> table",
    en=Texts(
        title="the sinusoidal position table",
        where="notebook 04 part 3.1; npgpt/ops/positional.py",
        statement=("Return the (n_positions, n_embd) table PE[p, 2i] = sin(p / 10000^(2i / C)), "
                   "PE[p, 2i + 1] = cos(p / 10000^(2i / C)), C = n_embd, positions p = 0, 1, ..., as float64. "
                   "For an odd C the last column is a sine."),
        hints=("Each pair of columns is one frequency: a sine and a cosine of the position times that frequency, "
               "the frequencies falling geometrically from 1 to about 1/10000.",
               ("The frequency of columns 2i and 2i + 1 is 10000^(-2i / C): the exponent uses the even column "
                "index 2i for both columns of the pair. Sines on even columns, cosines on odd ones."),
               ("angle = np.arange(P)[:, None] * 10000.0 ** (-np.arange(0, C, 2) / C); pe[:, 0::2] = sin(angle); "
                "pe[:, 1::2] = cos(angle[:, :C // 2])."))),
    zh=Texts(
        title="正弦位置编码表",
        where="笔记本 04 第 3.1 部分；npgpt/ops/positional.py",
        statement=("返回 (n_positions, n_embd) 的表 PE[p, 2i] = sin(p / 10000^(2i / C))，"
                   "PE[p, 2i + 1] = cos(p / 10000^(2i / C))，C = n_embd，位置 p = 0, 1, ...，类型为 float64。"
                   "C 为奇数时最后一列是正弦。"),
        hints=("每一对列对应一个频率：位置乘以该频率后的正弦和余弦，频率从 1 按几何级数降到约 1/10000。",
               ("第 2i 列和第 2i + 1 列的频率是 10000^(-2i / C)：这一对的两列在指数里都用偶数列号 2i。正弦在偶数列，"
                "余弦在奇数列。"),
               ("angle = np.arange(P)[:, None] * 10000.0 ** (-np.arange(0, C, 2) / C)；pe[:, 0::2] = sin(angle)；"
                "pe[:, 1::2] = cos(angle[:, :C // 2])。")),
        cases={"8 positions, width 6": "8 个位置，宽度 6",
               "50 positions, width 16: the slow frequencies": "50 个位置，宽度 16：低频部分",
               "odd width: 4 positions, width 5 (the last column is a sine)": "奇数宽度：4 个位置，宽度 5（最后一列是正弦）"}),
    reference=sinusoidal_table,
    make_cases=_sinusoidal_cases,
    outputs=("table",),
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
    signature="perplexity_from_losses(nlls) -> ppl",
    en=Texts(
        title="perplexity from per-token losses",
        where="notebook 09 part 1; npgpt/evaluation/perplexity.py",
        statement=("nlls are per-token negative log-likelihoods, -ln p(token | context), in nats. Return the "
                   "perplexity of the text: the exponential of the average loss per token, a float."),
        hints=("Perplexity is the inverse of the geometric mean of the probabilities the model gave the tokens: "
               "the number of equally likely choices it is as unsure as.",
               "Average first, exponentiate last, with the base that matches the units of the losses (nats).",
               "math.exp(np.mean(nlls)): not the mean of exp(nll), not exp of the sum, not 2 ** mean.")),
    zh=Texts(
        title="由逐词元损失求困惑度",
        where="笔记本 09 第 1 部分；npgpt/evaluation/perplexity.py",
        statement=("nlls 是逐词元的负对数似然 -ln p(token | context)，单位为奈特（nat）。返回文本的困惑度：每个词元平均"
                   "损失的指数，一个 float。"),
        hints=("困惑度是模型给各词元的概率的几何平均的倒数：模型的不确定程度，相当于在多少个等可能的选项中挑一个。",
               "先求平均，最后取指数，底数要与损失的单位（奈特）一致。",
               "math.exp(np.mean(nlls))：不是 exp(nll) 的平均，不是总和的 exp，也不是 2 ** mean。"),
        cases={"losses 0.1, 4.0, 1.3, 2.2 nats: unequal, so the mean of exponentials differs":
                   "损失 0.1、4.0、1.3、2.2 奈特：彼此不等，所以指数的平均会不同",
               "200 losses drawn between 0 and 6 nats": "200 个损失，取自 0 到 6 奈特之间",
               "a perfect model: every loss 0 (perplexity 1)": "完美的模型：每个损失都是 0（困惑度为 1）"}),
    reference=perplexity_from_losses,
    make_cases=_perplexity_cases,
    outputs=("ppl",),
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
    signature="clipped_precision(hyp, refs, n) -> (matches, total)",
    en=Texts(
        title="BLEU's clipped n-gram precision",
        where="notebook 09 part 2; npgpt/evaluation/bleu.py",
        statement=("hyp is a list of tokens, refs a list of token lists. Count the n-grams of hyp (total) and how "
                   "many of them match (matches), each distinct n-gram counting at most as many times as it occurs "
                   "in a single reference. Return the two integers; BLEU's p_n is matches / total."),
        hints=("A hypothesis that repeats a common word should not score: each n-gram gets credit at most as often "
               "as a reference uses it.",
               ("matches = sum over the hypothesis' distinct n-grams g of min(count_hyp(g), max over references of "
                "count_ref(g)); total = the number of n-grams of hyp, len(hyp) - n + 1."),
               ("Counter(tuple(hyp[i:i + n]) for i in range(len(hyp) - n + 1)); clip with the | (max) of the "
                "references' Counters: sum(min(c, clip[g]) for g, c in hyp_counts.items())."))),
    zh=Texts(
        title="BLEU 的截断 n 元语法精确率",
        where="笔记本 09 第 2 部分；npgpt/evaluation/bleu.py",
        statement=("hyp 是一个词元列表，refs 是若干词元列表。统计 hyp 的 n 元语法数（total），以及其中有多少匹配"
                   "（matches）：每个不同的 n 元语法最多计入它在单个参考中出现的次数。返回这两个整数；BLEU 的 p_n 就是 "
                   "matches / total。"),
        hints=("重复一个常见词的候选不该得分：每个 n 元语法被计入的次数，最多等于某个参考用到它的次数。",
               ("matches = 对候选中每个不同的 n 元语法 g，求 min(count_hyp(g), 各参考中 count_ref(g) 的最大值) 之和；"
                "total = hyp 的 n 元语法个数，即 len(hyp) - n + 1。"),
               ("Counter(tuple(hyp[i:i + n]) for i in range(len(hyp) - n + 1))；用各参考 Counter 的 |（取最大）作为截断："
                "sum(min(c, clip[g]) for g, c in hyp_counts.items())。")),
        cases={'hyp "the the the the the the the", refs "the cat is on the mat", "there is a cat on the mat", '
               'unigrams: "the" counts at most as often as in one reference (2)':
                   'hyp "the the the the the the the"，refs "the cat is on the mat"、"there is a cat on the mat"，'
                   '一元语法："the" 最多计入它在单个参考中出现的次数（2）',
               'hyp "a a a", refs "a b", "a a": the clip is the largest count in any one reference (2), not their sum (3)':
                   'hyp "a a a"，refs "a b"、"a a"：截断值是单个参考中的最大计数（2），而不是它们的和（3）',
               'hyp "the cat sat", ref "the cat sat on", bigrams: a hypothesis of 3 tokens has 2 of them':
                   'hyp "the cat sat"，ref "the cat sat on"，二元语法：3 个词元的候选有 2 个二元语法',
               'hyp "the cat the cat", ref "the cat sat", bigrams': 'hyp "the cat the cat"，ref "the cat sat"，二元语法'}),
    reference=clipped_precision,
    make_cases=_clipped_cases,
    outputs=("matches", "total"),
    exact=True,
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
    signature="brevity_penalty(hyp_len, ref_lens) -> bp",
    en=Texts(
        title="BLEU's brevity penalty",
        where="notebook 09 part 2; npgpt/evaluation/bleu.py",
        statement=("A hypothesis of c = hyp_len tokens has references of lengths ref_lens. Let r be the reference "
                   "length closest to c (the shorter on a tie). Return BP = 1 if c >= r, else exp(1 - r / c) "
                   "(0 for an empty hypothesis)."),
        hints=("Precision alone rewards saying little; BP punishes a hypothesis shorter than its reference, and "
               "never rewards one that is longer.",
               ("r = the reference length with the smallest |length - c| (ties: the shorter); BP is 1 at or above r "
                "and an exponential in r / c below it."),
               "r = min(ref_lens, key=lambda L: (abs(L - c), L)); bp = 1.0 if c >= r else math.exp(1 - r / c).")),
    zh=Texts(
        title="BLEU 的简短惩罚",
        where="笔记本 09 第 2 部分；npgpt/evaluation/bleu.py",
        statement=("一个 c = hyp_len 个词元的候选，其参考的长度为 ref_lens。设 r 为与 c 最接近的参考长度（并列时取较短"
                   "者）。c >= r 时返回 BP = 1，否则返回 exp(1 - r / c)（候选为空时为 0）。"),
        hints=("只看精确率会鼓励少说话；BP 惩罚比参考短的候选，但从不奖励更长的候选。",
               "r = 与 c 之差 |length - c| 最小的参考长度（并列取较短者）；在 r 及以上 BP 为 1，低于 r 时是 r / c 的指数函数。",
               "r = min(ref_lens, key=lambda L: (abs(L - c), L))；bp = 1.0 if c >= r else math.exp(1 - r / c)。"),
        cases={"hypothesis of 6 tokens, references of 3 and 7: the closest (7) is longer":
                   "候选 6 个词元，参考长 3 和 7：最接近的（7）更长",
               "hypothesis of 4 tokens, one reference of 6": "候选 4 个词元，一个长 6 的参考",
               "hypothesis of 8 tokens, one reference of 6: longer, no penalty": "候选 8 个词元，一个长 6 的参考：更长，不惩罚",
               "hypothesis of 5 tokens, references of 3 and 7: a tie, the shorter wins":
                   "候选 5 个词元，参考长 3 和 7：并列，取较短者",
               "hypothesis of 6 tokens, references of 12, 8 and 9": "候选 6 个词元，参考长 12、8 和 9"}),
    reference=brevity_penalty,
    make_cases=_brevity_cases,
    outputs=("bp",),
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
    signature="rouge_l(target_tokens, prediction_tokens) -> (precision, recall, fmeasure)",
    en=Texts(
        title="ROUGE-L: the longest common subsequence",
        where="notebook 09 part 3; npgpt/evaluation/rouge.py",
        statement=("Let L be the length of the longest common subsequence of the two token lists (tokens in the "
                   "same order, gaps allowed). Return precision L / len(prediction), recall L / len(target) and "
                   "their harmonic mean 2PR / (P + R), all 0 when either list is empty or L = 0."),
        hints=("A subsequence keeps the order but may skip tokens, so it rewards a prediction that says things in "
               "the target's order without copying it word for word. Dynamic programming finds its length.",
               ("T[i][j] = the LCS of the first i target tokens and the first j predicted ones: one more than "
                "T[i-1][j-1] when those tokens are equal, else the larger of T[i-1][j] and T[i][j-1]."),
               ("T = [[0] * (len(p) + 1) for _ in range(len(t) + 1)]; fill it row by row; L = T[-1][-1]; "
                "P = L / len(p), R = L / len(t)."))),
    zh=Texts(
        title="ROUGE-L：最长公共子序列",
        where="笔记本 09 第 3 部分；npgpt/evaluation/rouge.py",
        statement=("设 L 为两个词元列表的最长公共子序列的长度（词元顺序相同，允许有间隔）。返回精确率 L / len(prediction)、"
                   "召回率 L / len(target) 以及二者的调和平均 2PR / (P + R)；任一列表为空或 L = 0 时都为 0。"),
        hints=("子序列保持顺序但可以跳过词元，所以它奖励按目标的顺序说出内容、又不逐字照抄的预测。用动态规划求它的长度。",
               ("T[i][j] = 目标前 i 个词元与预测前 j 个词元的最长公共子序列长度：这两个词元相等时为 T[i-1][j-1] 加一，"
                "否则取 T[i-1][j] 与 T[i][j-1] 中较大者。"),
               ("T = [[0] * (len(p) + 1) for _ in range(len(t) + 1)]；逐行填表；L = T[-1][-1]；"
                "P = L / len(p)，R = L / len(t)。")),
        cases={'target "the cat sat on the mat", prediction "the cat lay on a big mat": in order, not contiguous, the '
               'common part is "the cat on mat" (4)':
                   '目标 "the cat sat on the mat"，预测 "the cat lay on a big mat"：顺序一致但不连续，公共部分是 '
                   '"the cat on mat"（4）',
               'target "a b c d", prediction "d c b a": the same words, reversed (LCS 1)':
                   '目标 "a b c d"，预测 "d c b a"：同样的词，顺序颠倒（LCS 为 1）',
               'target "police killed the gunman", prediction "the gunman police killed" (LCS 2)':
                   '目标 "police killed the gunman"，预测 "the gunman police killed"（LCS 为 2）',
               "an empty prediction scores 0": "空预测得 0 分"}),
    reference=rouge_l,
    make_cases=_rouge_l_cases,
    outputs=("precision", "recall", "fmeasure"),
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
    signature="quantize_int8(w, axis) -> (q, scale)",
    en=Texts(
        title="int8 per-channel quantization",
        where="notebook 08 part 2.1; npgpt/ops/quantize.py",
        statement=("w is a float64 matrix; a channel is one slice along axis (axis=1: a column). Give each channel "
                   "the scale s = max|w| over the channel / 127 (at least np.finfo(w.dtype).tiny, so a zero channel "
                   "gets a tiny scale and q = 0), and q = rint(w / s) as int8. Return q (w's shape, int8) and scale "
                   "(w's shape with the other axis of size 1: (1, out) for axis=1)."),
        hints=("One scale per channel maps that channel's largest magnitude to the largest int8 value, so nothing "
               "is clipped and a channel of small weights keeps its precision.",
               ("scale = (the absolute maximum over the other axis, keepdims) / 127, floored at a tiny number; "
                "q = w / scale, rounded to the nearest integer (half to even), as int8."),
               ("scale = np.maximum(np.abs(w).max(axis=1 - axis, keepdims=True) / 127, np.finfo(w.dtype).tiny); "
                "q = np.rint(w / scale).astype(np.int8)."))),
    zh=Texts(
        title="int8 逐通道量化",
        where="笔记本 08 第 2.1 部分；npgpt/ops/quantize.py",
        statement=("w 是 float64 矩阵；一个通道是沿 axis 的一个切片（axis=1 时是一列）。每个通道的缩放因子 "
                   "s = 该通道的 max|w| / 127（至少为 np.finfo(w.dtype).tiny，这样全零通道得到一个极小的缩放因子，"
                   "q = 0），q = rint(w / s)，类型为 int8。返回 q（与 w 同形状，int8）和 scale（形状同 w，但另一个轴"
                   "长度为 1：axis=1 时为 (1, out)）。"),
        hints=("每个通道一个缩放因子，把该通道绝对值最大的元素映射到 int8 的最大值，于是没有元素被截断，小权重的通道也能"
               "保住精度。",
               ("scale = （沿另一个轴的绝对值最大值，keepdims）/ 127，下限是一个极小的数；q = w / scale，舍入到最接近的"
                "整数（恰好一半时取偶数），转成 int8。"),
               ("scale = np.maximum(np.abs(w).max(axis=1 - axis, keepdims=True) / 127, np.finfo(w.dtype).tiny)；"
                "q = np.rint(w / scale).astype(np.int8)。")),
        cases={"w (6, 4), axis 1 (output columns of npgpt's (in, out) layout), channels of very different ranges":
                   "w (6, 4)，axis 1（npgpt 的 (in, out) 布局中的输出列），各通道的取值范围相差很大",
               "w (3, 5), axis 0: one scale per row": "w (3, 5)，axis 0：每行一个缩放因子",
               "w (4, 3), axis 1, with a column of zeros": "w (4, 3)，axis 1，有一列全为零"}),
    reference=quantize_int8,
    make_cases=_quantize_cases,
    outputs=("q", "scale"),
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
    signature="magnitude_prune(w, sparsity) -> keep",
    en=Texts(
        title="magnitude pruning",
        where="notebook 08 part 2.2; npgpt/allocation/prune.py",
        statement=("Remove the round(sparsity * w.size) entries of w with the smallest magnitude |w| (ties: the "
                   "earlier entry in row-major order goes first). Return the keep mask: a bool array of w's shape, "
                   "True where the weight stays."),
        hints=("A weight near zero changes the output least when it is set to zero: rank the weights by size, "
               "whatever their sign.",
               ("Sort the entries by |w| (a stable sort keeps ties in order), drop the first round(sparsity * n), "
                "keep the rest; reshape the mask to w's shape."),
               ("drop = np.argsort(np.abs(w).ravel(), kind='stable')[:round(sparsity * w.size)]; "
                "keep = np.ones(w.size, bool); keep[drop] = False; keep.reshape(w.shape)."))),
    zh=Texts(
        title="幅值剪枝",
        where="笔记本 08 第 2.2 部分；npgpt/allocation/prune.py",
        statement=("去掉 w 中幅值 |w| 最小的 round(sparsity * w.size) 个元素（并列时按行优先顺序靠前的先去掉）。返回保留"
                   "掩码：与 w 同形状的 bool 数组，权重保留处为 True。"),
        hints=("接近零的权重被置零时对输出的改变最小：按大小给权重排序，不管它们的符号。",
               "按 |w| 给元素排序（稳定排序保持并列者的顺序），去掉前 round(sparsity * n) 个，保留其余；把掩码变回 w 的形状。",
               ("drop = np.argsort(np.abs(w).ravel(), kind='stable')[:round(sparsity * w.size)]；"
                "keep = np.ones(w.size, bool)；keep[drop] = False；keep.reshape(w.shape)。")),
        cases={"w (4, 5) with large negative entries, sparsity 0.5": "w (4, 5)，含绝对值很大的负元素，稀疏度 0.5",
               "10 entries, sparsity 0.35: round(3.5) = 4 entries go": "10 个元素，稀疏度 0.35：round(3.5) = 4 个元素被去掉",
               "ties: |w| = 1, 1, 1, 2, 3, 1 and sparsity 0.5: among equals the earlier entry goes":
                   "并列：|w| = 1, 1, 1, 2, 3, 1，稀疏度 0.5：相等时靠前的元素先去掉",
               "sparsity 0: everything is kept": "稀疏度 0：全部保留"}),
    reference=magnitude_prune,
    make_cases=_prune_cases,
    outputs=("keep",),
    exact=True,
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
    signature="block_flops(n_embd, rows, keys) -> flops",
    en=Texts(
        title="the FLOPs of a transformer block",
        where="notebook 08 part 1, notebook 01 part 4; npgpt/allocation/costs.py",
        statement=("Count the floating-point operations of one GPT block's forward matrix products for `rows` "
                   "tokens, each attending to `keys` positions, width C = n_embd: the qkv projection (C to 3C), "
                   "the scores Q K^T and the weighted sum A V (all heads together), the output projection (C to C) "
                   "and the MLP (C to 4C to C). A product of (m, k) by (k, n) costs 2 m k n FLOPs (a multiply and "
                   "an add). Ignore LayerNorm, softmax, GELU and biases. Return a number."),
        hints=("Every product of an (m, k) and a (k, n) matrix is m n dot products of length k: 2 m k n FLOPs. "
               "Walk through the block's products one by one.",
               ("The weights give 2 * rows * (C*3C + C*C + C*4C + 4C*C) FLOPs; attention adds two products of "
                "rows x C x keys each, which grow with the context, not with the weights."),
               "flops = 24 * rows * C**2 + 4 * rows * keys * C.")),
    zh=Texts(
        title="一个 Transformer 块的浮点运算量（FLOPs）",
        where="笔记本 08 第 1 部分、笔记本 01 第 4 部分；npgpt/allocation/costs.py",
        statement=("统计一个 GPT 块前向中矩阵乘法的浮点运算次数：共 `rows` 个词元，每个关注 `keys` 个位置，宽度 "
                   "C = n_embd；包括 qkv 投影（C 到 3C）、打分 Q K^T 与加权和 A V（所有头合在一起）、输出投影（C 到 C）"
                   "以及 MLP（C 到 4C 再到 C）。(m, k) 乘 (k, n) 的乘积需要 2 m k n 次浮点运算（一次乘法和一次加法）。"
                   "忽略层归一化、softmax、GELU 和偏置。返回一个数。"),
        hints=("(m, k) 与 (k, n) 矩阵的乘积是 m n 个长度为 k 的点积：2 m k n 次浮点运算。把块里的乘积逐个过一遍。",
               ("权重带来 2 * rows * (C*3C + C*C + C*4C + 4C*C) 次浮点运算；注意力另有两个 rows x C x keys 的乘积，"
                "它们随上下文长度增长，而不随权重增长。"),
               "flops = 24 * rows * C**2 + 4 * rows * keys * C。"),
        cases={"width 768, one new token attending to 1000 cached positions: attention's products count":
                   "宽度 768，一个新词元关注 1000 个已缓存位置：注意力的乘积不可忽略",
               "width 64, 256 rows attending to 256 keys (training, T = 256)": "宽度 64，256 行关注 256 个键（训练，T = 256）",
               "width 8, 4 rows, 4 keys": "宽度 8，4 行，4 个键"}),
    reference=block_flops,
    make_cases=_flops_cases,
    outputs=("flops",),
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
    signature="kv_cache_bytes(n_layer, n_embd, batch_size, context, itemsize) -> n_bytes",
    en=Texts(
        title="the memory of the KV cache",
        where="notebook 06 part 6, notebook 01 part 4; npgpt/allocation/costs.py",
        statement=("While generating, every layer keeps the keys and the values of every position seen so far, for "
                   "every sequence of the batch. Return the bytes they take at `context` positions, with numbers "
                   "of `itemsize` bytes (4: float32, 8: float64)."),
        hints=("Count the numbers one position adds to the cache in one layer, then multiply by everything that "
               "repeats them.",
               "One position of one sequence in one layer stores a key and a value of width C (all heads together).",
               "n_bytes = 2 * n_layer * batch_size * context * n_embd * itemsize.")),
    zh=Texts(
        title="KV 缓存的内存",
        where="笔记本 06 第 6 部分、笔记本 01 第 4 部分；npgpt/allocation/costs.py",
        statement=("生成时，每一层为批量中的每个序列保存迄今见过的每个位置的键和值。返回在 `context` 个位置时它们占用的"
                   "字节数，每个数占 `itemsize` 字节（4：float32，8：float64）。"),
        hints=("数一数一个位置在一层中往缓存里添了多少个数，再乘以所有让它重复的因素。",
               "一个序列的一个位置在一层中存一个键和一个值，宽度都是 C（所有头合在一起）。",
               "n_bytes = 2 * n_layer * batch_size * context * n_embd * itemsize。"),
        cases={"12 layers, width 768, batch 4, 1024 positions, float32 (4 bytes)":
                   "12 层，宽度 768，批量 4，1024 个位置，float32（4 字节）",
               "2 layers, width 64, batch 1, 256 positions, float64 (8 bytes)":
                   "2 层，宽度 64，批量 1，256 个位置，float64（8 字节）",
               "6 layers, width 384, batch 16, 64 positions, float32": "6 层，宽度 384，批量 16，64 个位置，float32"}),
    reference=kv_cache_bytes,
    make_cases=_kv_memory_cases,
    outputs=("n_bytes",),
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
    signature="ring_allreduce_seconds(n_bytes, ranks, latency_s, bandwidth) -> seconds",
    en=Texts(
        title="the time of a ring all-reduce",
        where="notebook 08 part 5; npgpt/allocation/network.py",
        statement=("p = ranks processes each hold a buffer of n_bytes and must all end with the sum. In a ring, the "
                   "buffer is cut into p chunks: a reduce-scatter (each rank ends with the sum of one chunk) then an "
                   "all-gather (every rank gets every summed chunk). Each step sends one chunk to the next rank, "
                   "costing latency_s + chunk / bandwidth. Return the seconds."),
        hints=("Count the steps of each of the two phases and the size of what one step sends; every rank sends at "
               "the same time, so a step costs one message.",
               ("Each phase has p - 1 steps of one chunk (n / p bytes): the time is 2 (p - 1) times the cost of one "
                "chunk."),
               "seconds = 2 * (p - 1) * (latency_s + n_bytes / (p * bandwidth)).")),
    zh=Texts(
        title="环形全归约（ring all-reduce）的时间",
        where="笔记本 08 第 5 部分；npgpt/allocation/network.py",
        statement=("p = ranks 个进程各持有一个 n_bytes 字节的缓冲区，最后都要得到它们的和。在环中，缓冲区被切成 p 块："
                   "先做归约-散播（reduce-scatter，每个进程得到一块的和），再做全收集（all-gather，每个进程拿到所有求和后"
                   "的块）。每一步把一块发给下一个进程，耗时 latency_s + chunk / bandwidth。返回秒数。"),
        hints=("数一数两个阶段各有多少步、每步发送多大的数据；所有进程同时发送，所以一步只花一条消息的时间。",
               "每个阶段有 p - 1 步，每步一块（n / p 字节）：总时间是一块耗时的 2 (p - 1) 倍。",
               "seconds = 2 * (p - 1) * (latency_s + n_bytes / (p * bandwidth))。"),
        cases={"400 MB on 4 ranks over 10 Gb/s Ethernet (30 us, 1.1e9 B/s): bandwidth-bound":
                   "400 MB，4 个进程，10 Gb/s 以太网（30 us，1.1e9 B/s）：受带宽限制",
               "1 kB on 8 ranks, 30 us per message: latency-bound": "1 kB，8 个进程，每条消息 30 us：受延迟限制",
               "2 ranks, 1 MB, InfiniBand (1.5 us, 23e9 B/s)": "2 个进程，1 MB，InfiniBand（1.5 us，23e9 B/s）",
               "one rank: nothing to send": "只有一个进程：无需发送"}),
    reference=ring_allreduce_seconds,
    make_cases=_allreduce_cases,
    outputs=("seconds",),
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
    signature="isoflop_vertex(log_n, loss) -> (log_n_opt, loss_min)",
    en=Texts(
        title="the compute-optimal size on an IsoFLOP curve",
        where="notebook 08 part 6; npgpt/allocation/scaling.py",
        statement=("Models of sizes N trained on the same FLOP budget reached the losses `loss`; log_n = ln N. Fit "
                   "loss = c0 + c1 x + c2 x^2 (x = ln N) by least squares and return the x of its minimum and the "
                   "fitted loss there."),
        hints=("The best size usually falls between two trained sizes: fit a curve through the points and take its "
               "minimum, rather than the best point.",
               ("np.polyfit(log_n, loss, 2) gives (c2, c1, c0); the minimum of c0 + c1 x + c2 x^2 is where its "
                "derivative c1 + 2 c2 x vanishes."),
               "c2, c1, c0 = np.polyfit(log_n, loss, 2); x = -c1 / (2 * c2); return x, c0 + c1 * x + c2 * x**2.")),
    zh=Texts(
        title="等算力（IsoFLOP）曲线上的计算最优规模",
        where="笔记本 08 第 6 部分；npgpt/allocation/scaling.py",
        statement=("规模为 N 的若干模型用相同的浮点运算预算训练，分别达到损失 `loss`；log_n = ln N。用最小二乘拟合 "
                   "loss = c0 + c1 x + c2 x^2（x = ln N），返回其最小值处的 x 以及该处拟合的损失。"),
        hints=("最佳规模通常落在两个训练过的规模之间：用一条曲线拟合这些点，取曲线的最小值，而不是最好的那个点。",
               "np.polyfit(log_n, loss, 2) 给出 (c2, c1, c0)；c0 + c1 x + c2 x^2 的最小值在其导数 c1 + 2 c2 x 为零处。",
               "c2, c1, c0 = np.polyfit(log_n, loss, 2)；x = -c1 / (2 * c2)；return x, c0 + c1 * x + c2 * x**2。"),
        cases={"five sizes on one budget, losses on a parabola whose minimum (N = 300,000) lies between two sampled sizes":
                   "同一预算下的五个规模，损失落在一条抛物线上，其最小值（N = 300,000）位于两个采样规模之间",
               "seven sizes, noisy losses": "七个规模，损失带噪声",
               "three sizes, the fewest a parabola needs": "三个规模，拟合抛物线所需的最少点数"}),
    reference=isoflop_vertex,
    make_cases=_isoflop_cases,
    outputs=("log_n_opt", "loss_min"),
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
    signature="top_k_distribution(logits, temperature, k) -> probs",
    en=Texts(
        title="temperature and top-k sampling's distribution",
        where="notebook 06 part 5; npgpt/decoding/strategies.py",
        statement=("logits (V,) are a model's scores for the next token. Divide them by the temperature, keep the k "
                   "largest (ties: the lower id), and return the softmax over the kept ones: probabilities (V,) that "
                   "are 0 outside the top k and sum to 1."),
        hints=("Temperature reshapes the scores before they become probabilities; top-k then removes all but the "
               "k most likely tokens and renormalises.",
               ("z = logits / temperature; set every logit outside the k largest to -inf (a stable sort of -z picks "
                "them, lower ids first among equals); softmax."),
               ("z = logits / temperature; keep = np.argsort(-z, kind='stable')[:k]; e = np.exp(z[keep] - "
                "z[keep].max()); probs = zeros, probs[keep] = e / e.sum()."))),
    zh=Texts(
        title="温度与 top-k 采样的分布",
        where="笔记本 06 第 5 部分；npgpt/decoding/strategies.py",
        statement=("logits (V,) 是模型给下一个词元的打分。先除以温度，保留最大的 k 个（并列时取 id 小的），返回在保留的"
                   "词元上做 softmax 得到的概率 (V,)：前 k 个之外为 0，总和为 1。"),
        hints=("温度在打分变成概率之前重塑它们；top-k 随后只留下最可能的 k 个词元，再重新归一化。",
               ("z = logits / temperature；把最大的 k 个之外的 logit 都设为 -inf（对 -z 稳定排序即可选出它们，相等时 id "
                "小的在前）；再做 softmax。"),
               ("z = logits / temperature；keep = np.argsort(-z, kind='stable')[:k]；e = np.exp(z[keep] - "
                "z[keep].max())；probs 全零，probs[keep] = e / e.sum()。")),
        cases={"10 logits, temperature 0.7, k = 3": "10 个 logit，温度 0.7，k = 3",
               "logits 1, 3, 2, 3, 0 with temperature 2 and k = 2: a tie at the top, both kept":
                   "logits 1, 3, 2, 3, 0，温度 2，k = 2：最高处并列，两个都保留",
               "a tie at the boundary: logits 2, 1, 1, 1 with k = 2 keeps the lower id (1)":
                   "边界上并列：logits 2, 1, 1, 1，k = 2 时保留 id 较小者（1）",
               "k larger than the vocabulary keeps everything": "k 大于词表时全部保留"}),
    reference=top_k_distribution,
    make_cases=_top_k_cases,
    outputs=("probs",),
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
