"""What npgpt changes in its process, and when: nothing on import, everything in :func:`configure`.

    with npgpt.runtime.configure():      # the command line around each command, Trainer.train()
        ...                              # around its loop, StepThreads around a loop of steps

| setting | why | undone on exit? |
|---|---|---|
| numba's threading layer: OpenMP with a bounded spin (``GOMP_SPINCOUNT=20000``, about 0.1-0.2 ms), or ``workqueue`` where numba has no OpenMP, unless ``NUMBA_THREADING_LAYER`` is set (and the spin unless ``GOMP_SPINCOUNT`` or ``OMP_WAIT_POLICY`` is) | OpenMP's default spin (300,000 rounds) starves the BLAS threads of the matrix products in between (a baby step took 284 ms instead of 46); the ``workqueue`` pool sleeps at once and costs 0.1-0.2 ms to wake per parallel region, which made a parallel matrix-vector product of a decoding step slower than the serial one. Bounded, the spin ends before the next matrix product needs the core, and back-to-back regions start in microseconds: a GPT-2 decoding step's 48 products, split over 2 threads, read 31 GB/s instead of 14 (``workqueue``) | no: numba reads the layer, and OpenMP the spin, once, when the first parallel region starts (:func:`use_sleeping_threads` is also called when the numba backend's kernels are first fetched, and before any thread count is set) |
| ``malloc`` keeps freed memory (:func:`npgpt.runtime.memory.keep_freed_memory`) | a step reallocates its activations; reusing mapped pages saves the page faults | no: glibc's ``mallopt`` has no undo; once per process |
| under ``mpiexec``, this rank's share of the cores (:func:`npgpt.runtime.ranks.shares`) | $k$ ranks on $c$ cores would otherwise run $kc$ threads | yes: numba's and BLAS's thread counts go back to what they were |

Calling it again inside itself is harmless: the inner call restores what the outer one set.
"""
import importlib
import logging
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field

from . import memory, ranks

THREADING_LAYER, FALLBACK_LAYER = "omp", "workqueue"
SPIN_COUNT = "20000"           # OpenMP's spin rounds after a parallel region, before its threads sleep
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Applied:
    """What :func:`configure` applied: the threading layer it asked numba for (None: the user's
    ``NUMBA_THREADING_LAYER`` stands), whether ``malloc`` keeps freed memory, and this rank's
    thread counts ({"numba": n, "blas": n}; empty outside ``mpiexec``)."""
    threading_layer: str | None
    keeps_freed_memory: bool
    rank_threads: dict = field(default_factory=dict)


def use_sleeping_threads(environ: Mapping[str, str] | None = None) -> str | None:
    """Ask numba for threads that sleep soon after their work (the table above): OpenMP with a
    bounded spin, or ``workqueue`` where numba cannot load OpenMP. Returns the layer set, or None
    when the user chose one (``NUMBA_THREADING_LAYER``). It takes effect only if numba has not
    started its threads yet (it keeps the layer it started with)."""
    import numba
    environ = os.environ if environ is None else environ
    if "NUMBA_THREADING_LAYER" in environ:
        return None
    numba.config.THREADING_LAYER = _openmp_with_bounded_spin(environ) or FALLBACK_LAYER
    return numba.config.THREADING_LAYER


def _openmp_with_bounded_spin(environ: Mapping[str, str]) -> str | None:
    """``THREADING_LAYER`` if numba's OpenMP pool loads here, with the spin set first (libgomp reads
    it when it is loaded, and loading the pool loads it), unless the user set a spin; else None."""
    set_spin = "GOMP_SPINCOUNT" not in environ and "OMP_WAIT_POLICY" not in environ
    if set_spin:
        os.environ.setdefault("GOMP_SPINCOUNT", SPIN_COUNT)
    try:
        importlib.import_module("numba.np.ufunc.omppool")     # loads libgomp, or fails without it
    except (ImportError, OSError):
        if set_spin and os.environ.get("GOMP_SPINCOUNT") == SPIN_COUNT:
            del os.environ["GOMP_SPINCOUNT"]                 # nothing will read it
        return None
    return THREADING_LAYER


@contextmanager
def configure(environ: Mapping[str, str] | None = None) -> Iterator[Applied]:
    """Apply npgpt's process settings (the table above) for the block; thread counts are restored
    on exit. ``environ``: the environment to read (default ``os.environ``; tests pass a dict)."""
    environ = os.environ if environ is None else environ
    applied = Applied(use_sleeping_threads(environ), memory.keep_freed_memory(), ranks.shares(environ))
    log.debug("runtime: threading layer %s, malloc keeps freed memory: %s, this rank's threads: %s",
              applied.threading_layer or f"{environ.get('NUMBA_THREADING_LAYER')} (the user's)",
              applied.keeps_freed_memory, applied.rank_threads or "all (no other rank here)")
    restore = _set_thread_counts(applied.rank_threads)
    try:
        yield applied
    finally:
        restore()


def _set_thread_counts(counts: dict[str, int]):
    """Set numba's and BLAS's thread counts from ``counts``; return a function that restores them."""
    undo = []
    if "numba" in counts:
        import numba
        before = numba.get_num_threads()
        numba.set_num_threads(min(counts["numba"], numba.config.NUMBA_NUM_THREADS))
        undo.append(lambda: numba.set_num_threads(before))
    if "blas" in counts:
        from threadpoolctl import threadpool_limits
        undo.append(threadpool_limits(limits=counts["blas"], user_api="blas").restore_original_limits)

    def restore():
        for step in reversed(undo):
            step()
    return restore
