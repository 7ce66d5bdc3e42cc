r"""One new token through every block in a single numba call: the KV-cached decoding step.

With a KV cache each generated token is one row through the network, so the arithmetic is small
(about $12\,C^2$ multiply-adds per block) and a step made of ~100 NumPy calls spends most of its
time in Python between them. This kernel runs the same formulas as :func:`npgpt.ops.decode_step_forward`
(:func:`npgpt.ops.block_forward` for that one row), for all blocks, with no Python in between:

$$h = x + W_o\,\mathrm{Attn}(\mathrm{LN}_1(x)),\qquad
  y = h + \mathrm{MLP}(\mathrm{LN}_2(h)),$$

where the attention of the new position $t$ reads the cached keys and values of positions
$0..t$ (its own key and value are written into the cache first):

$$a_j = \frac{e^{\,c\,(q\cdot k_j - m)}}{\sum_{j' \le t} e^{\,c\,(q\cdot k_{j'} - m)}},\qquad
  \mathrm{Attn} = \sum_{j\le t} a_j v_j,\qquad c = 1/\sqrt{d}.$$

The matrix-vector products loop over the input and add scaled rows of $W$ (stored (in, out), as
GPT-2 does), so the inner loop runs along contiguous memory and vectorises. With more than one
thread each takes a run of the rows, $y = b + \sum_c \sum_{i \in c} x_i W_i$ (:func:`_matvec_float`):
every thread streams its own slab of the matrix from memory, which is what a token costs once the
weights no longer fit the cache (GPT-2 small, 2 threads: 31 GB/s against 20 on one, the machine's
read bandwidth being 28-34).

The weights come stacked per kind into (n_layer, ...) arrays, the model's own
(:meth:`npgpt.GPT.stacked_block_weights`): the kernel takes a dozen arrays rather than one per block.

:func:`decode_blocks` is the one block loop of both one-token kernels: what it does not fix is how
a layer's matrix multiplies a row, :func:`matvec`, which numba picks from the type of the matrices
when it compiles the loop. A float stack (n_layer, in, out) is multiplied here (:func:`_matvec_float`);
the quantized kernel (:mod:`npgpt.kernels.quantized`) registers its own multiply for its matrices,
a tuple (integers, scales, packed, by output). numba's on-disk cache is keyed by each kernel's own
source file: after changing a multiply in another file, delete ``npgpt/kernels/__pycache__/*.nb[ic]``.
"""
import numba
import numpy as np
from numba import njit, prange, types
from numba.extending import overload

from ..ops.decode import BLOCK_WEIGHTS
from ..ops.gelu import GELU_COEF, SQRT_2_OVER_PI
from ._compile import FAST_MATH, _renamed
from .layernorm import _forward_rows

JIT_OPTIONS = dict(cache=True, fastmath=FAST_MATH, error_model="numpy")
# decode_blocks runs its prange loops (the matrix-vector products', inlined: a cached function cannot
# call a parallel one) on threads, and nothing else: its array expressions stay serial loops.
# A matrix smaller than this is multiplied on one thread: starting a parallel region costs more than
# half its work saves (the baby model's 128 x 512 matrices generated 3,400 tokens/s on one thread and
# 600 split over two; GPT-2 small's smallest, 768 x 768, gains).
SPLIT_MIN_WEIGHTS = 1 << 17
PRANGE_ONLY = dict(prange=True, comprehension=False, reduction=False, inplace_binop=False, setitem=False,
                   numpy=False, stencil=False, fusion=False)
_jit = njit(**JIT_OPTIONS)
_layernorm_rows = _forward_rows.serial   # the LayerNorm twin's own row kernel, called from numba


@_jit
def part_rows(n, parts, c):
    """Rows [start, stop) of run c of ``parts`` runs of n rows, whole eights (an int4 byte and a
    vector's worth of rows never straddle two runs)."""
    step = ((n + parts - 1) // parts + 7) // 8 * 8
    return min(n, c * step), min(n, (c + 1) * step)


@_jit
def one_run(threads, weights, min_split):
    """Whether a matrix of ``weights`` weights is multiplied on one thread. (A function rather than
    an ``or`` in the inlined multiply: numba's SSA pass warned about the short-circuit's variables.)"""
    return threads == 1 or weights < min_split


@_jit
def add_parts(b, partial, out):
    """out = b + the runs' partial sums, partial (runs, >= out)."""
    for o in range(out.shape[0]):
        total = b[o]
        for c in range(partial.shape[0]):
            total += partial[c, o]
        out[o] = total


@_jit
def _rows_of_affine(x, W, start, stop, acc):
    """acc = sum over rows i in [start, stop) of x_i W_i: rows of W scaled and added, four at a time
    (so ``acc`` is read and written a quarter as often; 20-25% faster at these sizes)."""
    acc[:] = 0
    whole = start + (stop - start) // 4 * 4
    for i in range(start, whole, 4):
        x0, x1, x2, x3 = x[i], x[i + 1], x[i + 2], x[i + 3]
        for o in range(acc.shape[0]):
            acc[o] += x0 * W[i, o] + x1 * W[i + 1, o] + x2 * W[i + 2, o] + x3 * W[i + 3, o]
    for i in range(whole, stop):
        for o in range(acc.shape[0]):
            acc[o] += x[i] * W[i, o]


@_jit
def _attend(qkv, keys, values, pos, n_head, out):
    """Write this position's key and value (from qkv) at ``pos`` of keys/values (nh, cap, hs) and
    put the attention of its query over positions 0..pos into out (C,), heads side by side."""
    C = out.shape[0]
    hs = C // n_head
    scale = qkv.dtype.type(1 / np.sqrt(hs))
    scores = np.empty(pos + 1, dtype=qkv.dtype)
    for h in range(n_head):
        q, k, v = h * hs, C + h * hs, 2 * C + h * hs           # offsets of this head in qkv
        for d in range(hs):
            keys[h, pos, d] = qkv[k + d]
            values[h, pos, d] = qkv[v + d]
        for j in range(pos + 1):
            s = qkv[0] * 0
            for d in range(hs):
                s += qkv[q + d] * keys[h, j, d]
            scores[j] = s * scale
        top = scores.max()
        total = qkv[0] * 0
        for j in range(pos + 1):
            scores[j] = np.exp(scores[j] - top)
            total += scores[j]
        out[q:q + hs] = 0
        for j in range(pos + 1):
            a = scores[j] / total
            for d in range(hs):
                out[q + d] += a * values[h, j, d]


@_jit
def _add_into(y, x):
    """y += x, element by element: ``y += x`` on whole arrays makes numba compile its shape-mismatch
    message (int-to-string and string code: 2.4-2.8 s in each training kernel that had one)."""
    for i in range(y.shape[0]):
        y[i] += x[i]


@_jit
def _gelu_inplace(u):
    k, c = u.dtype.type(SQRT_2_OVER_PI), u.dtype.type(GELU_COEF)
    for i in range(u.shape[0]):
        x = u[i]
        u[i] = 0.5 * x * (1 + np.tanh(k * (x + c * x * x * x)))


def matvec(x, matrices, layer, b, out, acc, min_split):
    """out = x W + b for a row x, W being layer ``layer`` of ``matrices``; ``acc`` is scratch,
    (threads, at least ``out``'s length); a W of fewer than ``min_split`` weights runs on one
    thread. Compiled only: each kind of matrices registers its implementation
    (``@overload(matvec)``) and numba picks it when it compiles :func:`decode_blocks`."""
    raise NotImplementedError("matvec runs inside numba only: its implementations are registered with @overload")


@overload(matvec, jit_options=JIT_OPTIONS, inline="always")
def _matvec_float(x, matrices, layer, b, out, acc, min_split):
    """Float matrices: one (n_layer, in, out) stack."""
    if isinstance(matrices, types.Array):
        def float_matvec(x, matrices, layer, b, out, acc, min_split):
            W = matrices[layer]
            if one_run(acc.shape[0], W.size, min_split):           # no parallel region to start
                _rows_of_affine(x, W, 0, x.shape[0], acc[0][:out.shape[0]])
            else:
                for c in prange(acc.shape[0]):           # each thread streams its own slab of W
                    start, stop = part_rows(x.shape[0], acc.shape[0], c)
                    _rows_of_affine(x, W, start, stop, acc[c][:out.shape[0]])
            add_parts(b, acc, out)
        return float_matvec
    return None


def decode_blocks(x, pos, ln1_w, ln1_b, attn, b_attn, proj, b_proj,
                  ln2_w, ln2_b, fc, b_fc, out, b_out, keys, values, n_head, ln_eps, threads, min_split):
    """x (B, C) <- the blocks' output for one new token per row at position ``pos``; keys and
    values (n_layer, B, n_head, capacity, head_size) gain that position; ``ln_eps``: the LayerNorms'
    epsilon. ``attn``, ``proj``, ``fc`` and ``out`` are the four matrices of every layer, of a kind
    :func:`matvec` knows (module docstring); the biases give the widths. Each matrix of at least
    ``min_split`` weights is split into ``threads`` runs of rows."""
    B, C = x.shape
    normed = np.empty((1, C), dtype=x.dtype)
    xhat, rstd = np.empty((1, C), dtype=x.dtype), np.empty(1, dtype=x.dtype)   # LayerNorm's cache
    eps = x.dtype.type(ln_eps)
    D = b_attn.shape[1] // 3                    # attention width: C, unless heads were pruned
    qkv = np.empty(3 * D, dtype=x.dtype)
    attended = np.empty(D, dtype=x.dtype)
    branch = np.empty(C, dtype=x.dtype)
    hidden = np.empty(b_fc.shape[1], dtype=x.dtype)
    acc = np.empty((threads, max(3 * D, hidden.shape[0], C)), dtype=x.dtype)
    for layer in range(ln1_w.shape[0]):
        for b in range(B):
            row = x[b:b + 1]
            _layernorm_rows(row, ln1_w[layer], ln1_b[layer], eps, normed, xhat, rstd)
            matvec(normed[0], attn, layer, b_attn[layer], qkv, acc, min_split)
            _attend(qkv, keys[layer, b], values[layer, b], pos, n_head, attended)
            matvec(attended, proj, layer, b_proj[layer], branch, acc, min_split)
            _add_into(row[0], branch)
            _layernorm_rows(row, ln2_w[layer], ln2_b[layer], eps, normed, xhat, rstd)
            matvec(normed[0], fc, layer, b_fc[layer], hidden, acc, min_split)
            _gelu_inplace(hidden)
            matvec(hidden, out, layer, b_out[layer], branch, acc, min_split)
            _add_into(row[0], branch)


# Two builds, as every kernel (npgpt.kernels._compile): one whose prange loops run on threads, and one
# with none, for one thread or matrices too small to split. Loading the parallel build readies numba's
# thread pool, and a small model's generation on 2 threads ran 3-5x slower with it, though it never
# split a matrix (the baby model, 200 tokens: 700-2,300 tokens/s against 3,600-4,200).
decode_blocks_serial = njit(**JIT_OPTIONS)(_renamed(decode_blocks, "_serial"))
decode_blocks = njit(parallel=dict(PRANGE_ONLY), **JIT_OPTIONS)(decode_blocks)


def run_threads() -> int:
    """How many runs the rows of each matrix are cut into: one per thread numba runs on."""
    return numba.get_num_threads()


def regions_are_cheap() -> bool:
    """Whether numba's threads start a parallel region in microseconds: OpenMP's (or TBB's), which
    spin a little after their work, and not ``workqueue``'s, which sleep at once and cost 0.1-0.2 ms
    to wake, more than splitting a decoding step's matrix saves (:mod:`npgpt.runtime.process`)."""
    try:
        layer = numba.threading_layer()               # the pool numba started
    except ValueError:                                # none yet: the one it will start
        layer = numba.config.THREADING_LAYER
    return layer in ("omp", "tbb")


def blocks_build(weights: int):
    """(build of :func:`decode_blocks`, runs) for blocks whose largest matrix has ``weights`` weights:
    split over the threads when there are several, the matrices are large and regions are cheap."""
    threads = run_threads()
    if threads > 1 and weights >= SPLIT_MIN_WEIGHTS and regions_are_cheap():
        return decode_blocks, threads
    return decode_blocks_serial, 1


def decode_step_forward(x: np.ndarray, pos: int, blocks: dict[str, np.ndarray], keys: np.ndarray,
                        values: np.ndarray, n_head: int, eps: float = 1e-5) -> np.ndarray:
    """Same signature and results as :func:`npgpt.ops.decode_step_forward`, in one numba call."""
    rows = np.ascontiguousarray(x)
    build, runs = blocks_build(blocks["mlp.c_fc.weight"][0].size)
    build(rows, pos, *(blocks[name] for name in BLOCK_WEIGHTS), keys, values, n_head, float(eps), runs,
          SPLIT_MIN_WEIGHTS)
    return rows
