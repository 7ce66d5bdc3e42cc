"""Compile a kernel twice: serially, and with its ``prange`` loops spread over threads.

Waking the sleeping threads of numba's workqueue pool costs about 0.1 ms per parallel region here
(and a scheduler time slice on a busy machine), so small tensors run the serial build and only
large work goes parallel. Measured on the 2-core dev machine: LayerNorm forward on (768, 128)
took 42 us serial and 122 us parallel; the GELU argument pass on 393k elements 34 us serial and
141 us parallel; at 6.3M elements (the small preset) the parallel build wins, 1.2 ms to 1.8 ms.
(Under OpenMP with a bounded spin, which a generating process asks for, regions start in
microseconds: the same LayerNorm took 64 us serial and 38 us parallel. A lower threshold does not
follow for training: under OpenMP, a baby step took 50 ms at this threshold, 106 ms at 65,536
elements and 111 ms at 16,384, against 50 ms under workqueue; the regions' spinning threads take
the cores OpenBLAS's threads need. ``benchmarks/training_threads.py``, results/training_threads.json.)
``prange`` in the serial build is an ordinary ``range``.

numba's on-disk cache is keyed by each kernel's own source file: after changing the options
here, delete ``npgpt/kernels/__pycache__/*.nb[ic]`` or the old builds are reused.
"""
import types

from numba import njit

PARALLEL_MIN_WORK = 1 << 20        # elements; below this, waking threads costs more than they save

# Reassociation lets LLVM vectorise sums; the flags that assume no NaN/inf ("nnan", "ninf") are
# left out, so a diverging model still shows a NaN loss (the trainer stops on it).
FAST_MATH = {"reassoc", "contract", "arcp", "nsz", "afn"}


class Kernel:
    """``kernel(work)`` returns the build worth running for ``work`` elements."""

    def __init__(self, func, fastmath=True):
        options = dict(cache=True, fastmath=FAST_MATH if fastmath else False, error_model="numpy")
        self.serial = njit(**options)(_renamed(func, "_serial"))
        self.parallel = njit(parallel=True, **options)(func)

    def __call__(self, work):
        return self.parallel if work >= PARALLEL_MIN_WORK else self.serial


def _renamed(func, suffix):
    """A copy of ``func`` with its own qualified name, so numba caches the two builds apart."""
    copy = types.FunctionType(func.__code__, func.__globals__, func.__name__ + suffix,
                              func.__defaults__, func.__closure__)
    copy.__qualname__ = func.__qualname__ + suffix
    return copy


def kernel(fastmath=True):
    """Decorator: ``@kernel()`` over a function using ``prange`` makes it a :class:`Kernel`."""
    return lambda func: Kernel(func, fastmath)


def rebind(function, **replacements):
    """A copy of ``function`` whose global names in ``replacements`` refer to other objects.

    ``rebind(block_forward, layernorm_forward=fast_layernorm)`` runs the reference block's code,
    line for line, with the fast LayerNorm.
    """
    scope = dict(function.__globals__, **replacements)
    copy = types.FunctionType(function.__code__, scope, function.__name__, function.__defaults__,
                              function.__closure__)
    copy.__doc__, copy.__qualname__ = function.__doc__, function.__qualname__
    return copy
