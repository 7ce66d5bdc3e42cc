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
from numba import njit, prange

from .. import ops
from ._compile import kernel
from .decode import JIT_OPTIONS
from .quantized import _dot, _nibbles

_jit = njit(**JIT_OPTIONS)
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


@_jit
def _dot_int4_pairs(x_even, x_odd, packed):
    """sum over bytes j of x_even[j] low_j + x_odd[j] high_j, the two int4 values of byte j."""
    sixteen = x_even.dtype.type(16)
    total = x_even.dtype.type(0)
    for j in range(packed.shape[0]):
        low, high = _nibbles(x_even.dtype.type(packed[j]), sixteen)
        total += x_even[j] * low + x_odd[j] * high
    return total


@kernel()
def _dot_int8_rows(x, q, scale, out):
    """out (B, V) = x (B, C) times the rows of scale * q, q (V, C) int8, scale (V, groups)."""
    group = x.shape[1] // scale.shape[1]
    for v in prange(q.shape[0]):
        for b in range(x.shape[0]):
            total = x.dtype.type(0)
            for g in range(scale.shape[1]):
                lo, hi = g * group, (g + 1) * group
                total += scale[v, g] * _dot(x[b, lo:hi], q[v, lo:hi])
            out[b, v] = total


@kernel()
def _dot_int4_rows(x, packed, scale, out):
    """As :func:`_dot_int8_rows` for int4 values two per byte along C (``packed`` viewed as int8,
    entry i in byte i // 2, the low nibble first): whole bytes at a time, over x's even and odd
    entries, when every group has an even length; entry by entry otherwise."""
    C, group = x.shape[1], x.shape[1] // scale.shape[1]
    sixteen = x.dtype.type(16)
    x_even, x_odd = np.zeros((x.shape[0], packed.shape[1]), x.dtype), np.zeros((x.shape[0], packed.shape[1]), x.dtype)
    for b in range(x.shape[0]):
        for i in range(C):
            if i % 2:
                x_odd[b, i >> 1] = x[b, i]
            else:
                x_even[b, i >> 1] = x[b, i]
    for v in prange(packed.shape[0]):
        for b in range(x.shape[0]):
            total = x.dtype.type(0)
            for g in range(scale.shape[1]):
                if group % 2 == 0:
                    lo, hi = g * group // 2, (g + 1) * group // 2
                    partial = _dot_int4_pairs(x_even[b, lo:hi], x_odd[b, lo:hi], packed[v, lo:hi])
                else:
                    partial = x.dtype.type(0)
                    for i in range(g * group, (g + 1) * group):
                        low, high = _nibbles(x.dtype.type(packed[v, i >> 1]), sixteen)
                        partial += x[b, i] * (high if i % 2 else low)
                total += scale[v, g] * partial
            out[b, v] = total


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
    if q.dtype == np.uint8:
        _dot_int4_rows(2 * q.size)(rows, q.view(np.int8), scale, out)
    else:
        _dot_int8_rows(q.size)(rows, q, scale, out)
    return out.reshape(*x.shape[:-1], q.shape[0])
