"""Keep freed memory for reuse: a training step should not pay the operating system for its pages.

Every step allocates the same activations again (a baby step about 30 MB in arrays of 0.1-2 MB)
and frees them in the backward pass. glibc's ``malloc`` hands freed space at the top of its heap
back to the kernel once more than twice the largest recent block is free, so the next step
touches fresh pages, and each first touch is a page fault. Measured here: a (768, 128) @ (128, 512)
float32 product writing into fresh pages took 0.92 ms instead of 0.50 ms.

:func:`keep_freed_memory` asks ``malloc`` to serve blocks up to 32 MB from its heap and never to
trim it, so after the first step every allocation reuses pages already mapped. The cost is that
the process keeps its peak heap until it exits. PyTorch does the same on purpose with its caching
allocators. It only applies on Linux with glibc; elsewhere it does nothing and says so.

It is a process-wide setting, applied once, by :func:`npgpt.runtime.process.configure` (the command
line, ``Trainer.train()``, a loop of steps under ``StepThreads``), never on import or when a model
is built. ``NPGPT_KEEP_FREED_MEMORY=0`` leaves ``malloc`` as it is, and so do glibc's own
``MALLOC_*_`` environment variables when a user has set any of them.

:func:`require_memory` is the other half: a size a user gives (a model, a batch, a table) is checked
against the memory available before it is allocated, and refused in one line naming what it would
need and what there is, instead of a ``MemoryError`` traceback or minutes of swapping.
"""
import ctypes
import os
import sys

from ..checks import UsageError
from . import settings

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3        # glibc's mallopt parameter numbers (malloc.h)
LARGEST_HEAP_BLOCK = 32 << 20    # glibc's ceiling for the mmap threshold on 64-bit machines
NEVER_TRIM = 1 << 30             # bytes of free heap top that may stay mapped (an int, so < 2 GiB)
USER_SETTINGS = ("MALLOC_TRIM_THRESHOLD_", "MALLOC_MMAP_THRESHOLD_", "MALLOC_TOP_PAD_")
SWITCH = "NPGPT_KEEP_FREED_MEMORY"   # "0" turns the setting off

_applied = None


def keep_freed_memory() -> bool:
    """Make glibc's malloc keep freed blocks (up to 32 MB) for reuse; once per process.

    Returns True when the settings took effect, False when they could not (not Linux/glibc) or were
    left alone: ``NPGPT_KEEP_FREED_MEMORY=0``, or the user set glibc's own ``MALLOC_*_`` variables.
    """
    global _applied
    if _applied is None:
        _applied = _apply()
    return _applied


def _apply():
    if not settings.keep_freed_memory():
        return False
    if not sys.platform.startswith("linux") or any(name in os.environ for name in USER_SETTINGS):
        return False
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):       # musl and other C libraries
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    return bool(mallopt(M_MMAP_THRESHOLD, LARGEST_HEAP_BLOCK) and mallopt(M_TRIM_THRESHOLD, NEVER_TRIM))


# ----------------------------------------------------------------------------- sizes that fit
MEMINFO = "/proc/meminfo"         # Linux: MemAvailable, the kernel's estimate of what can be allocated
SELF_STATUS = "/proc/self/status"  # Linux: VmSize, the address space this process already holds


def available_memory() -> int | None:
    """Bytes this process can still allocate: the kernel's ``MemAvailable``, and below it the room
    left under ``RLIMIT_AS`` when one is set. None when the system does not say (no ``/proc``)."""
    free = _meminfo_bytes(MEMINFO, "MemAvailable")
    if free is None:
        return None
    room = _address_space_left()
    return free if room is None else min(free, room)


def require_memory(nbytes: int, what: str) -> None:
    """Refuse, before allocating, work that cannot fit: raises :class:`UsageError` naming ``what``,
    ``nbytes`` and the memory available when ``nbytes`` exceeds it. Does nothing where the system
    does not report its memory, so that a size is never refused on a guess."""
    available = available_memory()
    if available is not None and nbytes > available:
        raise UsageError(f"{what} needs about {_gib(nbytes)} of memory; "
                         f"this machine has {_gib(available)} available")


def _gib(nbytes: int) -> str:
    # Two significant digits at least, so a small remainder under a limit does not read "0.0 GiB".
    gib = nbytes / 2**30
    return f"{gib:,.1f} GiB" if gib >= 1 else f"{gib:.2g} GiB"


def _meminfo_bytes(path: str, key: str) -> int | None:
    """The ``key:  N kB`` line of a /proc file, in bytes; None when the file or line is absent."""
    try:
        with open(path) as f:
            for line in f:
                name, _, rest = line.partition(":")
                if name == key:
                    return int(rest.split()[0]) * 1024
    except OSError:
        return None
    return None


def _address_space_left() -> int | None:
    """Bytes of address space left under ``RLIMIT_AS`` (its soft limit less what the process maps
    now); None without a limit. A limit is what ``ulimit -v`` and the tests' memory caps set."""
    try:
        import resource
    except ImportError:              # not a Unix
        return None
    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    if soft == resource.RLIM_INFINITY:
        return None
    held = _meminfo_bytes(SELF_STATUS, "VmSize") or 0
    return max(0, soft - held)
