r"""The output layer of a decoding step in numba: the twins of :func:`npgpt.ops.head_forward` and
:func:`npgpt.ops.quantize.quantized_head_forward` for a few rows of x.

Each logit is a dot product with one row of the (V, C) table,

$$z_{bv} = x_b \cdot E_v = \sum_i x_{bi} E_{vi},\qquad\text{or, quantized,}\qquad
  z_{bv} = \sum_g s_{vg} \sum_{i \in g} x_{bi}\, q_{vi},$$

so the table is read once, row after row, and the vocabulary is split over the threads (``prange``;
a table under a million weights runs the serial build, :mod:`npgpt.kernels._compile`):
for one new token that read is the whole cost (GPT-2 small's table is 154 MB in float32, 39 MB in
int8). BLAS does the same product, but its threads spin for a while after each call and, between
the decoding kernel's parallel regions, took the cores numba's threads needed (a GPT-2 step on 2
threads went from 11 ms to 35). With more rows (a prompt, training) the op is BLAS's matrix product.
"""
import numpy as np
from numba import prange

from .. import ops
from ._compile import kernel
from .quantized import evens_and_odds_into, quantized_row_dot

MAX_ROWS = 8         # above this many rows of x, BLAS's matrix product reuses each row of the table better


@kernel()
def _dot_rows(x, table, out):
    """out (B, V) = x (B, C) table (V, C)^T, a dot product per row of the table."""
    for v in prange(table.shape[0]):
        for b in range(x.shape[0]):
            total = x.dtype.type(0)
            for i in range(x.shape[1]):
                total += x[b, i] * table[v, i]
            out[b, v] = total


@kernel()
def _dot_quantized_rows(x, q, scale, packed, out):
    """out (B, V) = x (B, C) times the rows of scale * q, q (V, C) int8 (or, ``packed``, (V, C / 2)
    int4 two per byte along C, low nibble first, viewed as int8), scale (V, groups)."""
    half = (x.shape[1] + 1) // 2
    x_even, x_odd = np.empty((x.shape[0], half), x.dtype), np.empty((x.shape[0], half), x.dtype)
    for b in range(x.shape[0]):
        evens_and_odds_into(x[b], x_even[b], x_odd[b])
    for v in prange(q.shape[0]):
        for b in range(x.shape[0]):
            out[b, v] = quantized_row_dot(x[b], x_even[b], x_odd[b], q[v], scale[v], packed)


def _few_rows(x: np.ndarray) -> np.ndarray | None:
    """x as a contiguous (rows, C) matrix when it has at most MAX_ROWS rows, else None."""
    rows = x.reshape(-1, x.shape[-1])
    return np.ascontiguousarray(rows) if rows.shape[0] <= MAX_ROWS else None


def head_forward(x: np.ndarray, table: np.ndarray) -> tuple[np.ndarray, tuple]:
    """Same signature and results as :func:`npgpt.ops.head_forward`."""
    rows = _few_rows(x)
    if rows is None or not table.flags.c_contiguous or table.dtype != x.dtype:
        return ops.head_forward(x, table)
    out = np.empty((rows.shape[0], table.shape[0]), dtype=x.dtype)
    _dot_rows(table.size)(rows, table, out)           # a small table runs the serial build
    return out.reshape(*x.shape[:-1], table.shape[0]), (x, table.T, False)


def quantized_head_forward(x: np.ndarray, q: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """Same signature and results as :func:`npgpt.ops.quantize.quantized_head_forward`."""
    rows = _few_rows(x)
    if rows is None:
        return ops.quantized_head_forward(x, q, scale)
    out = np.empty((rows.shape[0], q.shape[0]), dtype=x.dtype)
    scale = scale.astype(x.dtype, copy=False)
    packed = q.dtype == np.uint8
    _dot_quantized_rows(2 * q.size if packed else q.size)(rows, q.view(np.int8), scale, packed, out)
    return out.reshape(*x.shape[:-1], q.shape[0])
