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
each matrix as a tuple (integers, scales, packed, by output) for which this module registers the
multiply (:func:`_matvec_quantized`). numba caches the compiled loop under decode.py's source: after
editing a multiply here, delete ``npgpt/kernels/__pycache__/*.nb[ic]``.

Per-channel int8 (one scale per output) is read the other way round: a
:class:`~npgpt.models.quantized.QuantizedGPT` stores those integers by output, (out, in) in memory
(:func:`npgpt.models.gpt.stack_blocks`), and each $y_o = b_o + s_o\,(x \cdot q_{:,o})$ is one dot
product along a contiguous row (:func:`_outputs_of_int8`). Each int8 costs three instructions either
way (sign-extend, convert, multiply-add), and those, not the memory, bound the product; but the dot
product keeps its sum in registers, where adding rows loads and stores the outputs for every eight
rows. GPT-2 small's blocks, the whole one-token kernel, alternating processes, three runs: 6.7-10.8
ms against 9.7-12.7 on one thread, 5.0-6.5 against 6.0-8.5 on two (1.2-1.5x; the machine's speed
moved between the runs, not within them). The groups of int4 (and of grouped int8) stay by rows: dot
products over 64 entries spend their time on each group's horizontal sum, and a dot-product kernel
for them measured 34 ms against 16 (int4 in groups of 64, one thread).

Tried and not landed: integer dot products over int16 activations (x rounded to 1/32766 of its
largest entry; numba widens integers to int64, but with the int32 sum truncated explicitly LLVM
emits ``vpmaddwd``, sixteen multiply-adds an instruction). The 48 block matrices from memory read
at 14.3 GB/s on one thread and 24.3 on two, against 11-13 and 20-22 for the float dot products;
but the rounded activations would part the kernel from its float twin by far more than float
rounding, and the token-by-token path from the batched prompt's, which multiplies floats.

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
from .decode import JIT_OPTIONS, add_parts, matvec, one_run, part_rows

_jit = njit(**JIT_OPTIONS)


@_jit
def _group_int8(x, q, start, stop, acc):
    """acc = sum over rows i in [start, stop) of x_i q_i (int8 rows), eight rows at a time."""
    acc[:] = 0
    whole = start + (stop - start) // 8 * 8
    for i in range(start, whole, 8):
        x0, x1, x2, x3, x4, x5, x6, x7 = x[i], x[i + 1], x[i + 2], x[i + 3], x[i + 4], x[i + 5], x[i + 6], x[i + 7]
        for o in range(acc.shape[0]):
            acc[o] += (x0 * q[i, o] + x1 * q[i + 1, o] + x2 * q[i + 2, o] + x3 * q[i + 3, o]
                       + x4 * q[i + 4, o] + x5 * q[i + 5, o] + x6 * q[i + 6, o] + x7 * q[i + 7, o])
    for i in range(whole, stop):
        for o in range(acc.shape[0]):
            acc[o] += x[i] * q[i, o]


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
def _add_int4_row(x, packed, i, acc):
    """acc += x_i q_i for the one row i of a byte the group shares with its neighbour."""
    sixteen = acc.dtype.type(16)
    for o in range(acc.shape[0]):
        low, high = _nibbles(acc.dtype.type(packed[i >> 1, o]), sixteen)
        acc[o] += x[i] * (high if i % 2 else low)


@_jit
def _group_int4(x, packed, start, stop, acc):
    """acc = sum over rows i in [start, stop) of x_i q_i, row i being the low (i even) or high
    (i odd) nibble of packed row i // 2 (``packed`` viewed as int8): whole bytes (two rows) at a
    time, then the half byte at an end that falls inside a byte."""
    acc[:] = 0
    f = acc.dtype.type
    sixteen = f(16)
    for i in range(start + start % 2, stop - stop % 2, 2):
        x0, x1 = x[i], x[i + 1]
        for o in range(acc.shape[0]):
            low, high = _nibbles(f(packed[i >> 1, o]), sixteen)
            acc[o] += x0 * low + x1 * high
    if start % 2:
        _add_int4_row(x, packed, start, acc)
    if stop % 2:
        _add_int4_row(x, packed, stop - 1, acc)


@_jit
def _rows_of_quantized(x, q, scale, packed, start, stop, partial):
    """partial = sum over rows i in [start, stop) of x_i (scale * q)_i, W = scale * q never built:
    per group of rows (or the part of one in the run), the integer rows' sum, then one multiply by
    the group's scales; ``packed``: q holds two int4 rows per byte."""
    group = x.shape[0] // scale.shape[0]
    sums = np.empty_like(partial)
    partial[:] = 0
    for g in range(start // group, (stop + group - 1) // group):
        lo, hi = max(start, g * group), min(stop, (g + 1) * group)
        if packed:
            _group_int4(x, q, lo, hi, sums)
        else:
            _group_int8(x, q, lo, hi, sums)
        for o in range(partial.shape[0]):
            partial[o] += scale[g, o] * sums[o]


@_jit
def _dot(x, q):
    """x . q over their common length (the slices start at 0: numba then needs no check for
    negative indices, which would stop the loop from vectorising)."""
    total = x.dtype.type(0)
    for i in range(x.shape[0]):
        total += x[i] * q[i]
    return total


@_jit
def _outputs_of_int8(x, q_t, scale, b, out, start, stop):
    """out[o] = b[o] + s_o (x . q[:, o]) for outputs o in [start, stop), per-channel int8 stored by
    output (q_t (out, in)): each a dot product along a contiguous row, its sum in registers."""
    for o in range(start, stop):
        out[o] = b[o] + scale[0, o] * _dot(x, q_t[o])


@_jit
def _weights(q, packed):
    """How many weights the integers q hold (two per byte when packed)."""
    return 2 * q.size if packed else q.size


@overload(matvec, jit_options=JIT_OPTIONS, inline="always")
def _matvec_quantized(x, matrices, layer, b, out, acc, min_split):
    """Quantized matrices: (integers, scales (n_layer, groups, out), whether the integers are packed
    int4, whether they are stored by output): the integers (n_layer, rows, out), or, by output,
    per-channel int8 (n_layer, out, rows) (:func:`matrix_form`)."""
    if isinstance(matrices, types.BaseTuple):
        def quantized_matvec(x, matrices, layer, b, out, acc, min_split):
            q, scale, packed, by_output = matrices[0][layer], matrices[1][layer], matrices[2], matrices[3]
            if one_run(acc.shape[0], _weights(q, packed), min_split):          # as for floats
                _quantized_run(x, q, scale, packed, by_output, b, out, acc, 0, 1)
            else:
                for c in prange(acc.shape[0]):           # each thread streams its own slab of q
                    _quantized_run(x, q, scale, packed, by_output, b, out, acc, c, acc.shape[0])
            if not by_output:
                add_parts(b, acc, out)
        return quantized_matvec
    return None


@_jit
def _quantized_run(x, q, scale, packed, by_output, b, out, acc, c, runs):
    """Run c of ``runs`` of a product: by output, outputs of its run, written to out; by rows, the
    rows of its run summed into acc[c] (the caller adds the runs). One prange loop over this, not
    one per storage: a second loop made numba's parallel build compile 1.5x longer."""
    if by_output:
        start, stop = part_rows(out.shape[0], runs, c)
        _outputs_of_int8(x, q, scale, b, out, start, stop)
    else:
        start, stop = part_rows(x.shape[0], runs, c)
        _rows_of_quantized(x, q, scale, packed, start, stop, acc[c][:out.shape[0]])


def matrix_form(q: np.ndarray, scale: np.ndarray, packed: bool) -> tuple[np.ndarray, bool]:
    """(the integers as the kernel reads them, whether by output), for a stack of (n_layer, rows,
    out) integers. Per-channel int8 stored by output (a QuantizedGPT's stacks) is read as (n_layer,
    out, rows), a view; anything else by rows, as a C-contiguous (n_layer, rows, out) array."""
    q_t = q.transpose(0, 2, 1)
    if not packed and scale.shape[1] == 1 and q_t.flags.c_contiguous:
        return q_t, True
    return np.ascontiguousarray(q), False


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
            scale = blocks[name + SCALE].astype(rows.dtype, copy=False)
            ints = blocks[name].view(np.int8)            # packed int4 read as signed bytes (see _nibbles)
            q, by_output = matrix_form(ints, scale, packed)
            arrays.append((q, scale, packed, by_output))
        else:
            arrays.append(blocks[name])
    fc = blocks["mlp.c_fc.weight"][0]
    build, runs = decode.blocks_build(_weights(fc, packed))
    build(rows, pos, *arrays, keys, values, n_head, float(eps), runs, decode.SPLIT_MIN_WEIGHTS)
    return rows
