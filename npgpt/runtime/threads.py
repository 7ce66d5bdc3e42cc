r"""How many threads a training step runs on, and how that adapts when other programs share the CPU.

A step spends most of its time in NumPy's matrix products (BLAS threads) and numba's kernels
(numba threads). Both split the work evenly and wait for the slowest part. When another program
keeps a core busy, one of the step's threads waits for a time slice while its sibling sits idle:
on a 2-core machine with one busy program, a (768, 128) @ W product took 0.86 ms alone and
8.0 ms shared, and a training step 3.1x its quiet time. On one thread the step runs at the speed
of the core it has, which is what half a machine should cost: about 2x.

So :class:`ThreadGovernor` times the steps and keeps the thread count that runs them fastest:

- it compares windows of a few steps (their median, so one slow step does not decide);
- at the start, and whenever a window at $n$ threads is ``slowdown`` x slower than the best
  window ever seen at $n$, it tries $n/2$ threads for one window and keeps them if they are faster;
- on fewer threads than it started with, it tries twice as many every ``probe_steps`` steps (an
  interval that doubles after each try that loses, up to ``max_probe_steps``), so a run goes back
  to all its threads soon after the machine is free again.

``NPGPT_THREADS=N`` (or ``--threads N``) fixes the count instead; ``auto``, the default, adapts.
"""
import logging
import math
import os
import statistics
from contextlib import ExitStack
from typing import NamedTuple

from ..checks import UsageError
from . import settings
from .process import configure, use_sleeping_threads

THREADS_VARIABLE = "NPGPT_THREADS"
log = logging.getLogger(__name__)
_noted: set[tuple[str, int]] = set()      # counts already said to be capped: said once per process


def parse_threads(value: object, what: str = THREADS_VARIABLE) -> str | int:
    """``"auto"`` (adapt to the machine) or a positive thread count, from ``value``: "auto", an int,
    or its text. Raises ValueError naming ``what`` otherwise. A count above the cores this process
    may use is capped at them (:func:`cap_threads`), with a warning."""
    if isinstance(value, str) and value.strip().lower() == "auto":
        return "auto"
    try:
        n = int(value)  # type: ignore[call-overload]      # anything else is refused just below
    except (TypeError, ValueError, OverflowError):
        n = 0
    if isinstance(value, bool) or n < 1 or str(value).strip() != str(n):
        raise UsageError(f"{what} must be 'auto' or a whole number of threads >= 1, got {value!r}")
    return cap_threads(n, what)


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity, which ``taskset`` and container limits
    narrow; the machine's count where the system does not say)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return os.cpu_count() or 1


def cap_threads(n: int, what: str = "threads") -> int:
    """``n``, or the number of usable cores when ``n`` is more: more threads than cores only wait
    for each other (and 100,000 of them would exhaust the process). The cap is logged as a warning,
    once per value."""
    cores = usable_cores()
    if n <= cores:
        return n
    if (what, n) not in _noted:
        _noted.add((what, n))
        log.warning("%s=%d is more than the %d cores this process may use; using %d", what, n, cores, cores)
    return cores


def threads_setting(environ=None):
    """The user's choice from ``NPGPT_THREADS`` (:func:`npgpt.runtime.settings.threads`, or the
    mapping ``environ`` when given): "auto" when unset."""
    return parse_threads(settings.threads() if environ is None else environ.get(THREADS_VARIABLE, "auto"))


# ----------------------------------------------------------------------------- the knobs
def _controller():
    from threadpoolctl import ThreadpoolController
    return ThreadpoolController()


def get_threads():
    """The threads NumPy's BLAS uses now (the products are most of a step)."""
    counts = [pool["num_threads"] for pool in _controller().info() if pool["user_api"] == "blas"]
    return max(counts, default=1)


def set_threads(n: int) -> int:
    """Run BLAS and numba's parallel kernels on ``n`` threads from now on (numba: at most the pool
    it started with; both at most the usable cores, :func:`cap_threads`). Returns the count set."""
    import numba
    count = parse_threads(n, "threads")
    if count == "auto":
        raise UsageError("set_threads needs a number of threads; 'auto' is the governor's job")
    use_sleeping_threads()            # numba starts its threads now, if it has not yet: the sleeping kind
    _controller().limit(limits=count, user_api="blas")
    numba.set_num_threads(min(count, numba.config.NUMBA_NUM_THREADS))
    return count


# ----------------------------------------------------------------------------- the governor
class Change(NamedTuple):
    """A thread count the governor kept: a window of steps took ``before_ms`` (median) on
    ``before`` threads and ``after_ms`` on ``after``."""
    before: int
    after: int
    before_ms: float
    after_ms: float

    def message(self):
        why = ("another program is using the cores" if self.after < self.before
               else "the cores are free again")
        return (f"threads {self.before} -> {self.after}: a step took {self.before_ms:.0f} ms on {self.before}, "
                f"{self.after_ms:.0f} ms on {self.after} ({why})")


class ThreadGovernor:
    """Chooses, step by step, the thread count that runs the steps fastest now.

    After each step call :meth:`record` with its wall time; it returns a :class:`Change` when the
    governor settles on a new count (trials that lose are not reported). ``apply(n)`` sets the
    count (default :func:`set_threads`); tests pass a recorder and simulated step times.
    """

    def __init__(self, max_threads, window=3, slowdown=1.3, margin=0.9, probe_steps=16,
                 max_probe_steps=256, apply=set_threads):
        self.max_threads = max(1, int(max_threads))
        self.window, self.slowdown, self.margin = window, slowdown, margin
        self.first_probe, self.max_probe = probe_steps, max_probe_steps
        self._apply = apply
        self.threads = self.max_threads
        self.best, self.last = {}, {}          # thread count -> fastest and latest window median (s)
        self._times = []
        self._trial_from = None                # during a trial: the count it may replace
        self._probe_every = {"up": probe_steps, "down": 0}
        self._steps_since = {"up": 0, "down": 0}

    @property
    def active(self):
        return self.max_threads > 1

    def record(self, seconds):
        """Note one step's wall time; maybe change the thread count. Returns a Change or None."""
        if not self.active or not math.isfinite(seconds):
            return None
        self._times.append(seconds)
        for way in self._steps_since:
            self._steps_since[way] += 1
        if len(self._times) < self.window:
            return None
        median = statistics.median(self._times)
        self._times.clear()
        n = self.threads
        self.best[n] = min(self.best.get(n, math.inf), median)
        self.last[n] = median
        if self._trial_from is not None:
            return self._end_trial(n, median)
        self._maybe_start_trial(n, median)
        return None

    def _end_trial(self, n, median):
        before = self._trial_from
        self._trial_from = None
        way = "down" if n < before else "up"
        if median < self.margin * self.last[before]:
            self._probe_every = {"up": self.first_probe, "down": 0}
            self._steps_since = {"up": 0, "down": 0}
            return Change(before, n, 1e3 * float(self.last[before]), 1e3 * float(median))
        self._set(before)                      # the trial lost: back, and wait longer to try again
        self._probe_every[way] = min(max(2 * self._probe_every[way], self.first_probe), self.max_probe)
        return None

    def _maybe_start_trial(self, n, median):
        slower = median > self.slowdown * self.best[n]
        if (n > 1 and (n // 2 not in self.best or slower)
                and self._steps_since["down"] >= self._probe_every["down"]):
            self._trial(n // 2, "down")
        elif n < self.max_threads and self._steps_since["up"] >= self._probe_every["up"]:
            self._trial(min(2 * n, self.max_threads), "up")
        elif not slower and median <= 1.1 * self.best[n]:
            self._probe_every["down"] = 0      # quiet again at this count: react at once next time

    def _trial(self, n, way):
        self._trial_from = self.threads
        self._steps_since[way] = 0
        self._set(n)

    def _set(self, n):
        self.threads = n
        self._apply(n)


class StepThreads:
    """``with StepThreads(setting) as threads:`` the thread policy for a training loop: a fixed
    count, or a :class:`ThreadGovernor` when ``setting`` is "auto" (None: ``NPGPT_THREADS``).
    ``threads.record(seconds)`` after each step returns a :class:`Change` or None; on exit the
    thread counts the loop started with are restored. Entering it applies npgpt's process settings
    (:func:`npgpt.runtime.process.configure`: a loop of steps is what they are for), so under
    ``mpiexec`` the governor starts from this rank's share of the cores."""

    def __init__(self, setting=None):
        self.setting = threads_setting() if setting is None else parse_threads(setting, "threads")
        self.governor = None

    def __enter__(self):
        import numba
        self._runtime = ExitStack()
        self._runtime.enter_context(configure())
        self._started_with = (get_threads(), numba.get_num_threads())
        if self.setting == "auto":
            self.governor = ThreadGovernor(self._started_with[0])
        else:
            set_threads(self.setting)
        return self

    @property
    def count(self):
        return self.governor.threads if self.governor else self.setting

    def record(self, seconds):
        return self.governor.record(seconds) if self.governor else None

    def __exit__(self, *exc):
        import numba
        _controller().limit(limits=self._started_with[0], user_api="blas")
        numba.set_num_threads(self._started_with[1])
        self._runtime.close()
