r"""The one-token decoding step on quantized weights, in one numba call: the twin of
:func:`npgpt.ops.quantize.quantized_decode_step_forward`, which dequantizes and then runs
the float step.

Each weight matrix arrives as integers $q$ (in, out) and scales $s$ (groups, out), one row of scales
per group of consecutive input rows (one group for per-channel int8). A matrix-vector product never
builds the float matrix $\hat W = s \odot q$: within a group the scale is the same for every row,
so it comes out of the sum,

$$y_o = b_o + \sum_g s_{go} \sum_{i \in g} x_i\, q_{io},$$

and the inner loop reads one byte per weight (half a byte for int4) instead of four. When the
float32 weights no longer fit the last-level cache, that is what a token costs: the weights read
from memory. The rest of the block (LayerNorm, attention over the cached keys and values, GELU) is
the float kernel's own code: the block loop is :func:`npgpt.kernels.decode.decode_blocks`, given
each matrix as a tuple (integers, scales, packed) for which this module registers the multiply
(:func:`_matvec_quantized`). numba caches the compiled loop under decode.py's source: after
editing a multiply here, delete ``npgpt/kernels/__pycache__/*.nb[ic]``.

Unlike the float kernel, which adds scaled rows of $W$ (in, out), this one reads the integers
transposed, (out, in), and computes each $y_o$ as dot products along a contiguous row: every
integer is converted to a float once either way (sign-extend, convert, multiply-add: those three
instructions, not the memory, bound an int8 product), but the dot products keep their sums in
registers where the row form loads and stores its accumulators for every eight rows. GPT-2 small's
48 block matrices in int8, from memory, one thread: 12-13 GB/s against 8.5-9.6 in the row form;
two threads 20-22 against 13-17 (the machine reads 28-34). A
:class:`~npgpt.models.quantized.QuantizedGPT` stores its integer stacks so
(:class:`~npgpt.models.gpt.BlockStacks`), so a step reads them without a copy (:func:`by_output`).

The stacks are named as :data:`npgpt.ops.BLOCK_WEIGHTS`, each of the four matrices holding
(n_layer, rows, out) integers -- int8, or uint8 with two int4 values per byte along the rows, low
nibble first -- beside ``name + ".scale"``, (n_layer, groups, out) floats.
"""
import numpy as np
from numba import njit, prange, types
from numba.extending import overload

from ..ops.decode import BLOCK_WEIGHTS
from ..ops.quantize import SCALE
from . import decode
from .decode import JIT_OPTIONS, matvec, one_run, part_rows

_jit = njit(**JIT_OPTIONS)


@_jit
def _nibbles(byte, sixteen):
    """The two int4 values of a packed byte, as floats, from the byte read as a signed int8:
    s = 16 q_high + n (n the unsigned low nibble), so q_high = floor(s / 16), and q_low = n, less
    16 when n >= 8 (two's complement). Float arithmetic in the byte's own dtype (``sixteen`` is 16
    in it) vectorises 16 lanes wide; numba would widen integer arithmetic to int64."""
    high = np.floor(byte / sixteen)
    low = byte - sixteen * high
    return (low - sixteen if low + low >= sixteen else low), high


@_jit
def _dot(x, q):
    """x . q over their common length (the slices start at 0: numba then needs no check for
    negative indices, which would stop the loop from vectorising)."""
    total = x.dtype.type(0)
    for i in range(x.shape[0]):
        total += x[i] * q[i]
    return total


@_jit
def _dot_int4_pairs(x_even, x_odd, packed):
    """sum over bytes j of x_even[j] low_j + x_odd[j] high_j, the two int4 values of byte j."""
    sixteen = x_even.dtype.type(16)
    total = x_even.dtype.type(0)
    for j in range(packed.shape[0]):
        low, high = _nibbles(x_even.dtype.type(packed[j]), sixteen)
        total += x_even[j] * low + x_odd[j] * high
    return total


@_jit
def _dot_int4_entries(x, packed, lo, hi):
    """sum over i in [lo, hi) of x_i q_i, entry i the low (i even) or high nibble of byte i // 2:
    a group of odd length, whose ends fall inside bytes."""
    sixteen = x.dtype.type(16)
    total = x.dtype.type(0)
    for i in range(lo, hi):
        low, high = _nibbles(x.dtype.type(packed[i >> 1]), sixteen)
        total += x[i] * (high if i % 2 else low)
    return total


@_jit
def evens_and_odds_into(x, x_even, x_odd):
    """x_even, x_odd (each ceil(n / 2) long) = x's entries 0, 2, 4, ... and 1, 3, 5, ... (the odd
    ones zero-padded), so an int4 byte's two values meet their inputs at the same index."""
    if x.shape[0] % 2:
        x_odd[x_odd.shape[0] - 1] = 0
    for i in range(x.shape[0]):
        if i % 2:
            x_odd[i >> 1] = x[i]
        else:
            x_even[i >> 1] = x[i]


@_jit
def evens_and_odds(x):
    """(x_even, x_odd) of :func:`evens_and_odds_into`, new arrays."""
    x_even, x_odd = np.empty((x.shape[0] + 1) // 2, x.dtype), np.empty((x.shape[0] + 1) // 2, x.dtype)
    evens_and_odds_into(x, x_even, x_odd)
    return x_even, x_odd


@_jit
def _halves(x, packed):
    """:func:`evens_and_odds` of x when the integers are packed int4, else x twice (unread). (A
    function rather than a conditional expression in the inlined multiply: numba's SSA pass warned
    about the expression's variables.)"""
    if packed:
        return evens_and_odds(x)
    return x, x


@_jit
def quantized_row_dot(x, x_even, x_odd, q_row, scales, packed):
    """sum_g scales[g] sum_{i in g} x_i q_i: x times one row of W^T = s q, whose integers ``q_row``
    (int8, or int4 two to a byte when ``packed``) are contiguous, ``scales`` one per group of
    consecutive entries; x_even/x_odd from :func:`evens_and_odds` (read only when packed)."""
    group = x.shape[0] // scales.shape[0]
    total = x.dtype.type(0)
    for g in range(scales.shape[0]):
        lo, hi = g * group, (g + 1) * group
        if not packed:
            part = _dot(x[lo:hi], q_row[lo:hi])
        elif group % 2 == 0:
            part = _dot_int4_pairs(x_even[lo >> 1:hi >> 1], x_odd[lo >> 1:hi >> 1], q_row[lo >> 1:hi >> 1])
        else:
            part = _dot_int4_entries(x, q_row, lo, hi)
        total += scales[g] * part
    return total


@_jit
def _outputs_of_quantized(x, x_even, x_odd, q_t, scale, packed, b, out, start, stop):
    """out[o] = b[o] + x . (s q)[:, o] for outputs o in [start, stop): each a dot product along the
    contiguous row o of q_t, the integers stored transposed (out, in)."""
    for o in range(start, stop):
        out[o] = b[o] + quantized_row_dot(x, x_even, x_odd, q_t[o], scale[:, o], packed)


@_jit
def _weights(q, packed):
    """How many weights the integers q hold (two per byte when packed)."""
    return 2 * q.size if packed else q.size


@overload(matvec, jit_options=JIT_OPTIONS, inline="always")
def _matvec_quantized(x, matrices, layer, b, out, acc, min_split):
    """Quantized matrices: (integers stored transposed, (n_layer, out, rows) as int8, scales
    (n_layer, groups, out), whether the integers are packed int4). ``acc`` only counts the threads:
    each output is one thread's whole dot product, so there are no partial sums to add."""
    if isinstance(matrices, types.BaseTuple):
        def quantized_matvec(x, matrices, layer, b, out, acc, min_split):
            q_t, scale, packed = matrices[0][layer], matrices[1][layer], matrices[2]
            x_even, x_odd = _halves(x, packed)
            if one_run(acc.shape[0], _weights(q_t, packed), min_split):          # as for floats
                _outputs_of_quantized(x, x_even, x_odd, q_t, scale, packed, b, out, 0, out.shape[0])
            else:
                for c in prange(acc.shape[0]):           # each thread streams its own rows of q_t
                    start, stop = part_rows(out.shape[0], acc.shape[0], c)
                    _outputs_of_quantized(x, x_even, x_odd, q_t, scale, packed, b, out, start, stop)
        return quantized_matvec
    return None


def by_output(q: np.ndarray) -> np.ndarray:
    """The (n_layer, out, rows) C-contiguous array of a stack of (n_layer, rows, out) integers: a
    view when the stack is already stored so (a QuantizedGPT's, :class:`npgpt.models.gpt.BlockStacks`),
    else a transposed copy."""
    q_t = q.transpose(0, 2, 1)
    return q_t if q_t.flags.c_contiguous else np.ascontiguousarray(q_t)


def quantized_decode_step_forward(x: np.ndarray, pos: int, blocks: dict[str, np.ndarray], keys: np.ndarray,
                                  values: np.ndarray, n_head: int, eps: float = 1e-5) -> np.ndarray:
    """Same signature and results as the readable
    :func:`npgpt.ops.quantize.quantized_decode_step_forward`, in one numba call."""
    rows = np.array(x, order="C")                  # the kernel writes its output here: x is left alone
    kinds = {blocks[name].dtype for name in BLOCK_WEIGHTS if name + SCALE in blocks}
    if kinds - {np.dtype(np.int8), np.dtype(np.uint8)} or len(kinds) != 1:
        raise ValueError(f"the quantized matrices must all be int8 or all packed int4 (uint8), got {sorted(map(str, kinds))}")
    packed = kinds == {np.dtype(np.uint8)}
    arrays = []
    for name in BLOCK_WEIGHTS:
        if name + SCALE in blocks:
            q = by_output(blocks[name].view(np.int8))      # packed int4 read as signed bytes (see _nibbles)
            arrays.append((q, blocks[name + SCALE].astype(rows.dtype, copy=False), packed))
        else:
            arrays.append(blocks[name])
    fc = blocks["mlp.c_fc.weight"][0]
    build, runs = decode.blocks_build(_weights(fc, packed))
    build(rows, pos, *arrays, keys, values, n_head, float(eps), runs, decode.SPLIT_MIN_WEIGHTS)
    return rows
