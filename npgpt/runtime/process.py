"""What npgpt changes in its process, and when: nothing on import, everything in :func:`configure`.

    with npgpt.runtime.configure():      # the command line around each command, Trainer.train()
        ...                              # around its loop, StepThreads around a loop of steps

| setting | why | undone on exit? |
|---|---|---|
| numba's threading layer: ``workqueue``, unless ``NUMBA_THREADING_LAYER`` is set; in a process that generates and does not train (``configure(generating=True)``: ``npgpt sample``, the GPT-2 benchmark), OpenMP with a bounded spin (``GOMP_SPINCOUNT=20000``, unless it or ``OMP_WAIT_POLICY`` is set; ``workqueue`` where numba cannot load OpenMP) | numba's default OpenMP threads spin between parallel regions and starve the BLAS threads of the matrix products in between (a baby step took 284 ms instead of 46); the workqueue pool sleeps. But waking it costs 0.1-0.2 ms per parallel region, more than one of a decoding step's matrix-vector products takes: GPT-2's 48 products a token, split over 2 threads, read 14 GB/s under ``workqueue`` (one thread: 20) and 31 GB/s under the bounded spin, so a generating process asks for it and the decoding step splits its matrices only when it runs (:func:`npgpt.kernels.decode.regions_are_cheap`). Training stays on ``workqueue``: with the bounded spin, alternating runs of a baby step measured a median 56 ms against 53 | no: numba reads it once, when its first parallel region starts (:func:`use_sleeping_threads` is also called when the numba backend's kernels are first fetched, and before any thread count is set) |
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

THREADING_LAYER = "workqueue"
GENERATING_LAYER = "omp"
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
    """Ask numba for the ``workqueue`` threading layer unless the user chose one; returns the layer
    set, or None. It takes effect only if numba has not started its threads yet (it keeps the
    layer it started with)."""
    import numba
    if "NUMBA_THREADING_LAYER" in (os.environ if environ is None else environ):
        return None
    numba.config.THREADING_LAYER = THREADING_LAYER
    return THREADING_LAYER


def use_generating_threads(environ: Mapping[str, str] | None = None) -> str | None:
    """For a process that generates and does not train: ask numba for OpenMP with a bounded spin
    (the table above), or ``workqueue`` where numba cannot load OpenMP. Returns the layer set, or
    None when the user chose one. Like :func:`use_sleeping_threads`, it takes effect only before
    numba starts its threads."""
    import numba
    environ = os.environ if environ is None else environ
    if "NUMBA_THREADING_LAYER" in environ:
        return None
    numba.config.THREADING_LAYER = _openmp_with_bounded_spin(environ) or THREADING_LAYER
    numba.get_num_threads()           # starts numba's threads now, so a later use_sleeping_threads changes nothing
    return numba.config.THREADING_LAYER


def _openmp_with_bounded_spin(environ: Mapping[str, str]) -> str | None:
    """``GENERATING_LAYER`` if numba's OpenMP pool loads here, with the spin set first (libgomp reads
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
    return GENERATING_LAYER


@contextmanager
def configure(environ: Mapping[str, str] | None = None, generating: bool = False) -> Iterator[Applied]:
    """Apply npgpt's process settings (the table above) for the block; thread counts are restored
    on exit. ``environ``: the environment to read (default ``os.environ``; tests pass a dict);
    ``generating``: the process generates and does not train (the threads it asks numba for)."""
    environ = os.environ if environ is None else environ
    layer = (use_generating_threads if generating else use_sleeping_threads)(environ)
    applied = Applied(layer, memory.keep_freed_memory(), ranks.shares(environ))
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
