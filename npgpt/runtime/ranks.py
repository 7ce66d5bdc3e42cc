"""Threads per process when ``mpiexec`` starts several ranks on one machine.

Each rank would otherwise start one numba and one BLAS thread per core, and $k$ ranks on a
machine of $c$ cores would run $kc$ threads on $c$ cores, each rank slowed by the others'
threads. So each rank's share is $\\max(1, c / k)$ threads, unless the launcher already bound the
rank to fewer cores than the machine has (then those cores are its share).

This module only computes the share; :func:`npgpt.runtime.process.configure` applies it at run time
(``numba.set_num_threads`` and threadpoolctl), and a thread count the user set in the environment
(``NUMBA_NUM_THREADS`` for numba, ``OMP_NUM_THREADS``, ``OPENBLAS_NUM_THREADS`` or ``MKL_NUM_THREADS``
for BLAS) wins over it. Importing npgpt changes no environment variable.

The launcher's variables are read here, and only here: how many ranks it started
(:func:`launched_size`), which one this process is (:func:`launched_rank`) and how many share
this machine (:func:`local_ranks`). Each is a count that Open MPI, MPICH (Hydra) and PMIx name
differently; the first name set to a number wins.
"""
import os
from collections.abc import Mapping

WORLD_SIZE_VARIABLES = ("OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_SIZE")   # Open MPI, MPICH (Hydra), PMIx
WORLD_RANK_VARIABLES = ("OMPI_COMM_WORLD_RANK", "PMI_RANK", "PMIX_RANK")
LOCAL_RANKS_VARIABLES = ("MPI_LOCALNRANKS", "OMPI_COMM_WORLD_LOCAL_SIZE")   # MPICH (Hydra), Open MPI
NUMBA_VARIABLES = ("NUMBA_NUM_THREADS",)
BLAS_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
THREAD_VARIABLES = NUMBA_VARIABLES + BLAS_VARIABLES


def _launcher_count(environ: Mapping[str, str], names: tuple[str, ...], default: int) -> int:
    """The first of the variables ``names`` that holds a whole number, else ``default`` (no launcher)."""
    return next((int(environ[name]) for name in names if environ.get(name, "").isdigit()), default)


def launched_size(environ: Mapping[str, str] | None = None) -> int:
    """The number of ranks the launcher (``mpiexec``) started; 1 without one. ``environ``: the
    process's environment by default."""
    return _launcher_count(os.environ if environ is None else environ, WORLD_SIZE_VARIABLES, 1)


def launched_rank(environ: Mapping[str, str] | None = None) -> int:
    """This process's rank according to the launcher; 0 without one."""
    return _launcher_count(os.environ if environ is None else environ, WORLD_RANK_VARIABLES, 0)


def local_ranks(environ: Mapping[str, str]) -> int:
    """How many ranks the launcher started on this machine (1 without a launcher)."""
    return _launcher_count(environ, LOCAL_RANKS_VARIABLES, 1)


def threads_per_rank(environ: Mapping[str, str]) -> int | None:
    """The thread count each rank on this machine should use, or None when the process is alone."""
    local = local_ranks(environ)
    if local <= 1:
        return None
    machine = os.cpu_count() or 1
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else machine
    return usable if usable < machine else max(1, machine // local)


def shares(environ: Mapping[str, str]) -> dict[str, int]:
    """``{"numba": n, "blas": n}``: the thread counts to apply to this rank, leaving out a library
    whose count the user set in ``environ``; empty when the process is alone."""
    threads = threads_per_rank(environ)
    if threads is None:
        return {}
    return {library: threads for library, names in (("numba", NUMBA_VARIABLES), ("blas", BLAS_VARIABLES))
            if not any(name in environ for name in names)}
