"""Threads per process when ``mpiexec`` starts several ranks on one machine.

Each rank would otherwise start one numba and one BLAS thread per core, and $k$ ranks on a
machine of $c$ cores would run $kc$ threads on $c$ cores, each rank slowed by the others'
threads. So, imported first by :mod:`npgpt` (before NumPy and numba read these variables), this
gives every rank $\\max(1, c / k)$ threads, unless the user set a thread count or the launcher
already bound the rank to fewer cores than the machine has (then those cores are its share).
A script that imports NumPy or numba before npgpt keeps whatever they started with.
"""
import os

LOCAL_RANKS_VARIABLES = ("MPI_LOCALNRANKS", "OMPI_COMM_WORLD_LOCAL_SIZE")   # MPICH (Hydra), Open MPI
THREAD_VARIABLES = ("NUMBA_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def threads_per_rank(environ):
    """The thread count each rank on this machine should use, or None when the process is alone."""
    local = next((int(environ[name]) for name in LOCAL_RANKS_VARIABLES if environ.get(name, "").isdigit()), 1)
    if local <= 1:
        return None
    machine = os.cpu_count() or 1
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else machine
    return usable if usable < machine else max(1, machine // local)


def share_cores(environ=os.environ):
    """Set each unset thread variable of ``environ`` to :func:`threads_per_rank`; return that count."""
    threads = threads_per_rank(environ)
    if threads is not None:
        for name in THREAD_VARIABLES:
            environ.setdefault(name, str(threads))
    return threads


share_cores()
