r"""Weights-only quantization: every weight matrix stored as small integers and one float scale per
channel (int8) or per group of a channel (int4), the simplest members of the LLM.int8 / GPTQ family.

A channel $c$ is one slice along ``axis`` (PyTorch's meaning: for npgpt's (in, out) weights, an
output column, ``axis=1``). Its entries along the other axis are cut into groups $g$ of
``group_size`` consecutive entries (one group, the whole channel, without a group size). With
$Q = 2^{b-1} - 1$ (127 for int8, 7 for int4), symmetric absmax quantization is

$$s_{gc} = \max\Big(\frac{\max_{i \in g} |w_{ic}|}{Q},\ \epsilon\Big),\qquad
  q_{ic} = \mathrm{rint}\big(w_{ic} / s_{g(i)c}\big) \in [-Q, Q],\qquad
  \hat w_{ic} = s_{g(i)c}\, q_{ic}.$$

rint rounds half to even. $|w_{ic}| \le Q s$, so nothing is clipped and every error is a rounding
error: $|w - \hat w| \le s/2$. $\epsilon$ is the dtype's smallest normal number: a zero channel (or
group) gets $s = \epsilon$ and $q = 0$, so nothing divides by zero and $\hat w = 0$ exactly, and a
channel of subnormal values gets a scale that is itself a normal number.

int4 values are stored two to a byte (:func:`pack_int4`): consecutive entries of a channel share
a byte, low nibble first, in two's complement.

:func:`quantized_decode_step_forward` is the one-token decoding step on quantized block weights:
dequantize, then :func:`npgpt.ops.decode_step_forward`. Its numba twin
(:func:`npgpt.kernels.quantized.quantized_decode_step_forward`) multiplies by the scales inside the
matrix-vector products and never builds the float weights.
"""
from collections.abc import Mapping

import numpy as np
from numpy.typing import ArrayLike, NDArray

from .decode import BLOCK_WEIGHTS, decode_step_forward
from .linear import head_forward

BITS = (4, 8)
QMAX = {8: 127, 4: 7}
SCALE, INTS = ".scale", ".q"       # a quantized weight's entries: name + ".q" (its integers), + ".scale"
QUANTIZED_BLOCK_WEIGHTS = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")
HEAD_ROWS = 4096     # rows of a quantized output table dequantized at a time: 12 MB of float32 at C = 768


# ----------------------------------------------------------------------------- one tensor
def quantize_tensor(w: ArrayLike, bits: int, axis: int, group_size: int | None = None
                    ) -> tuple[NDArray[np.int8], NDArray[np.floating]]:
    """``(q, scale)`` of a 2-D float matrix ``w`` (module docstring). ``q`` is int8, unpacked, of
    ``w``'s shape; ``scale`` has ``w``'s dtype and shape, except that the other axis holds one
    entry per group (1 without ``group_size``)."""
    w = _check_matrix(w)
    bits, axis = _check_bits(bits), _check_axis(axis)
    group = _check_group(group_size, w.shape[1 - axis], _entries_of_channel(w.shape, axis))
    absmax = _group_absmax(np.abs(w), axis, group)
    scale = np.maximum(absmax / w.dtype.type(QMAX[bits]), np.finfo(w.dtype).tiny)
    q = np.rint(w / _per_entry(scale, axis, group))
    return q.astype(np.int8), scale


def dequantize_tensor(q: ArrayLike, scale: ArrayLike, axis: int, group_size: int | None = None
                      ) -> NDArray[np.floating]:
    """$\\hat w = s\\, q$: the float matrix (``scale``'s dtype) that ``quantize_tensor`` encoded."""
    axis = _check_axis(axis)
    q, scale = np.asarray(q), np.asarray(scale)
    if q.ndim != 2 or q.dtype.kind not in "iu":
        raise ValueError(f"q must be a 2-D integer array, got shape {q.shape} and dtype {q.dtype}")
    if scale.dtype not in (np.float32, np.float64):
        raise ValueError(f"scale must be a float32 or float64 array, got dtype {scale.dtype}")
    group = _check_group(group_size, q.shape[1 - axis], _entries_of_channel(q.shape, axis))
    expected = list(q.shape)
    expected[1 - axis] //= group
    if scale.shape != tuple(expected):
        raise ValueError(f"scale has shape {scale.shape}, expected {tuple(expected)} for q of shape "
                         f"{q.shape}, axis={axis} and group_size={group_size}")
    if q.T.flags.c_contiguous and not q.flags.c_contiguous:   # stored transposed (a QuantizedGPT's int8):
        return dequantize_tensor(q.T, scale.T, 1 - axis, group_size).T      # in memory order, no strided pass
    return q.astype(scale.dtype) * _per_entry(scale, axis, group)


def _group_absmax(a: NDArray[np.floating], axis: int, group: int) -> NDArray[np.floating]:
    """max of |w| over each group of ``group`` consecutive entries of each channel."""
    other = 1 - axis
    shape = list(a.shape)
    shape[other:other + 1] = [a.shape[other] // group, group]
    return a.reshape(shape).max(axis=other + 1)


def _per_entry(scale: NDArray[np.floating], axis: int, group: int) -> NDArray[np.floating]:
    """Each group's scale repeated over its entries: an array of the matrix's shape."""
    return np.repeat(scale, group, axis=1 - axis)


# ----------------------------------------------------------------------------- two int4 per byte
def pack_int4(q: ArrayLike, axis: int = -1) -> NDArray[np.uint8]:
    """int4 values ``q`` (integers in [-8, 7]) two per byte along ``axis``: entry 2j in the low
    nibble of byte j, entry 2j+1 in the high one (an odd length is padded with a zero). uint8."""
    q = np.asarray(q)
    if q.dtype.kind not in "iu" or q.ndim == 0:
        raise ValueError(f"q must be an integer array with at least one axis, got dtype {q.dtype} and shape {q.shape}")
    if q.size and (q.min() < -8 or q.max() > 7):
        raise ValueError(f"int4 values must lie in [-8, 7], got values from {q.min()} to {q.max()}")
    nibbles = np.moveaxis(q.astype(np.uint8) & 0x0F, axis, -1)
    if nibbles.shape[-1] % 2:
        nibbles = np.concatenate([nibbles, np.zeros_like(nibbles[..., :1])], axis=-1)
    packed = nibbles[..., 0::2] | (nibbles[..., 1::2] << 4)
    return np.ascontiguousarray(np.moveaxis(packed, -1, axis))


def unpack_int4(packed: ArrayLike, length: int, axis: int = -1) -> NDArray[np.int8]:
    """The int8 values :func:`pack_int4` stored, ``length`` of them along ``axis``."""
    packed = np.asarray(packed)
    if packed.dtype != np.uint8 or packed.ndim == 0:
        raise ValueError(f"packed must be a uint8 array with at least one axis, got dtype {packed.dtype} "
                         f"and shape {packed.shape}")
    n = packed.shape[axis]
    if isinstance(length, bool) or not isinstance(length, (int, np.integer)) or length < 0:
        raise ValueError(f"length must be an integer >= 0, got {length!r}")
    if (length + 1) // 2 != n:
        raise ValueError(f"length must be {2 * n - 1} or {2 * n} for {n} packed bytes along axis {axis}, got {length}")
    q = np.empty((*packed.shape[:axis % packed.ndim], 2 * n, *packed.shape[axis % packed.ndim + 1:]), np.int8)
    along = np.moveaxis(q, axis, 0)               # a view: entry 2j and 2j+1 of the axis come from byte j
    along[0::2] = np.moveaxis((packed << 4).view(np.int8) >> 4, axis, 0)     # arithmetic shifts: the sign
    along[1::2] = np.moveaxis(packed.view(np.int8) >> 4, axis, 0)            # bit spreads
    return q if length == 2 * n else np.ascontiguousarray(np.moveaxis(along[:length], 0, axis))


# ----------------------------------------------------------------------------- the one-token step
def dequantize_blocks(blocks: Mapping[str, np.ndarray], n_embd: int) -> dict[str, np.ndarray]:
    """The float stacks (``GPT.stacked_block_weights``) of quantized stacks: each name of
    :data:`QUANTIZED_BLOCK_WEIGHTS` holds (n_layer, rows, out) integers -- int8, or uint8 with two
    int4 values per byte along the rows -- and ``name + ".scale"`` (n_layer, groups, out)."""
    layers = [dequantize_layer(blocks, i, n_embd) for i in range(len(blocks["ln_1.weight"]))]
    return {name: np.stack([p[name] for p in layers]) if name in QUANTIZED_BLOCK_WEIGHTS else blocks[name]
            for name in BLOCK_WEIGHTS}


def dequantize_layer(blocks: Mapping[str, np.ndarray], layer: int, n_embd: int) -> dict[str, np.ndarray]:
    """Block ``layer``'s parameters (:func:`npgpt.ops.block_forward`'s names) as floats, from the
    quantized stacks :func:`dequantize_blocks` reads: one block's float matrices at a time, so a
    prompt's forward never holds every block's (:meth:`npgpt.allocation.quantize.QuantizedGPT.forward`)."""
    rows = dict.fromkeys(QUANTIZED_BLOCK_WEIGHTS, n_embd)
    rows["mlp.c_proj.weight"] = blocks["mlp.c_fc.weight" + SCALE].shape[-1]      # the hidden width
    p = {name: blocks[name][layer] for name in BLOCK_WEIGHTS if name not in rows}
    for name, n in rows.items():
        q, scale = blocks[name][layer], blocks[name + SCALE][layer]
        if q.dtype == np.uint8:
            q = unpack_int4(q, n, axis=0)
        p[name] = dequantize_tensor(q, scale, 1, n // scale.shape[0])
    return p


def quantized_decode_step_forward(x: NDArray[np.floating], pos: int, blocks: Mapping[str, np.ndarray],
                                  keys: NDArray[np.floating], values: NDArray[np.floating], n_head: int,
                                  eps: float = 1e-5) -> NDArray[np.floating]:
    """:func:`npgpt.ops.decode_step_forward` on quantized stacks (:func:`dequantize_blocks`): the
    weights are dequantized, then the float step runs. The readable twin of the numba kernel."""
    floats = dequantize_blocks(blocks, x.shape[1])
    return decode_step_forward(x, pos, floats, keys, values, n_head, eps)


def quantized_head_forward(x: NDArray[np.floating], q: np.ndarray, scale: NDArray[np.floating]
                           ) -> NDArray[np.floating]:
    r"""The output layer over a (V, C) table stored quantized per row (channel axis 0): logits
    $z_v = x \cdot \hat E_v$, $\hat E$ dequantized (int8, or uint8 with two int4 values per byte
    along C, ``x``'s last axis), one scale per group of a row: ``scale`` (V, groups).
    :data:`HEAD_ROWS` rows of the table at a time: a prompt's logits never need the whole float
    table (GPT-2 small's is 154 MB in float32, four times its int8)."""
    out = np.empty((*x.shape[:-1], q.shape[0]), dtype=np.result_type(x, scale))
    for lo in range(0, q.shape[0], HEAD_ROWS):
        rows = q[lo:lo + HEAD_ROWS]
        if rows.dtype == np.uint8:
            rows = unpack_int4(rows, x.shape[-1], axis=1)
        table = dequantize_tensor(rows, scale[lo:lo + HEAD_ROWS], 0, x.shape[-1] // scale.shape[1])
        out[..., lo:lo + HEAD_ROWS] = head_forward(x, table)[0]
    return out


# ----------------------------------------------------------------------------- input checks
def _check_bits(bits: object) -> int:
    if isinstance(bits, bool) or not isinstance(bits, (int, np.integer)) or bits not in BITS:
        raise ValueError(f"bits must be one of {BITS}, got {bits!r}")
    return int(bits)


def _check_axis(axis: int) -> int:
    if isinstance(axis, bool) or axis not in (0, 1, -1, -2):
        raise ValueError(f"axis must be the channel axis of a 2-D matrix (0 or 1), got {axis!r}")
    return int(axis) % 2


def _check_matrix(w: ArrayLike) -> NDArray[np.floating]:
    w = np.asarray(w)
    if w.ndim != 2 or w.dtype not in (np.float32, np.float64) or 0 in w.shape:
        raise ValueError(f"w must be a non-empty 2-D float32 or float64 matrix, got shape {w.shape} "
                         f"and dtype {w.dtype}")
    if not np.isfinite(w).all():
        raise ValueError("w holds NaN or infinite values: they have no scale")
    return w


def _entries_of_channel(shape: tuple[int, ...], axis: int) -> str:
    return f"{shape[1 - axis]} entries of each channel (axis {1 - axis} of shape {shape})"


def _check_group(group_size: int | None, rows: int, where: str) -> int:
    """The group length: ``group_size``, which must divide ``rows``, or ``rows`` when it is None."""
    if group_size is None:
        return rows
    ok = not isinstance(group_size, bool) and isinstance(group_size, (int, np.integer))
    if not ok or group_size < 1 or rows % group_size:
        raise ValueError(f"group_size must be None or a positive integer dividing the {where}, got {group_size!r}")
    return int(group_size)
