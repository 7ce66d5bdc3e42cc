"""Compile a kernel twice: serially, and with its ``prange`` loops spread over threads.

Waking the threads of a parallel region costs microseconds on an idle machine and a scheduler
time slice (milliseconds) on a busy one, so small tensors run the serial build and only large work
goes parallel. ``prange`` in the serial build is an ordinary ``range``.
"""
import types

from numba import njit

PARALLEL_MIN_WORK = 1 << 16        # elements; below this, threads cost more than they save


class Kernel:
    """``kernel(work)`` returns the build worth running for ``work`` elements."""

    def __init__(self, func, fastmath=True):
        self.serial = njit(cache=True, fastmath=fastmath)(_renamed(func, "_serial"))
        self.parallel = njit(cache=True, fastmath=fastmath, parallel=True)(func)

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
