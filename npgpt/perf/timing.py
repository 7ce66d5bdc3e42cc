"""Timing inside this process, for the notebooks and the step anatomy: the seconds of one call, the
median of many, functions taking turns, and whether other programs kept the machine busy meanwhile
(so a notebook can say why a speed-up it describes did not show).

Timing two libraries against each other belongs in :mod:`npgpt.perf.harness` instead (worker
processes): in one process, their thread pools disturb each other.
"""
import os
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from ..checks import check_int


def seconds(fn: Callable[[], Any]) -> float:
    """Seconds one call of ``fn()`` takes."""
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def median_ms(fn: Callable[[], Any], repeats: int) -> float:
    """Median milliseconds of ``repeats`` calls of ``fn()``, after one untimed call."""
    fn()
    return 1e3 * float(np.median([seconds(fn) for _ in range(repeats)]))


def interleaved_ms(fns: dict[str, Callable[[], Any]], repeats: int = 10, rounds: int = 5) -> dict[str, Any]:
    """Milliseconds per call of each zero-argument function in ``fns`` (name -> function): the
    lowest of ``rounds`` medians of ``repeats`` calls. The functions take turns, round by round, so
    a burst of load from another program slows them alike, and the lowest median is the one such a
    burst disturbed least. Returns name -> ms, and name -> the list of the round medians as
    ``result["rounds"]``."""
    medians = {name: [] for name in fns}
    for _ in range(check_int("rounds", rounds)):
        for name, fn in fns.items():
            medians[name].append(median_ms(fn, repeats))
    return {**{name: min(m) for name, m in medians.items()}, "rounds": medians}


def machine_load() -> tuple[float | None, int]:
    """(load average over the last minute, logical cores): how many programs wanted a core, on
    average, against how many there are. (None, cores) where the system does not report a load."""
    try:
        load = os.getloadavg()[0]
    except (AttributeError, OSError):
        load = None
    return load, os.cpu_count() or 1


def busy_note(threshold: float = 0.5) -> str:
    """A sentence for a notebook when other programs kept this machine's cores busy (a load average
    above ``threshold`` x the cores): timings taken now can be far from an idle machine's. Empty
    when the machine is quiet or the load is unknown."""
    load, cores = machine_load()
    if load is None or load <= threshold * cores:
        return ""
    return (f"the machine was busy while this ran (load average {load:.1f} on {cores} cores: other programs "
            f"wanted the cores too), so these timings can be far from an idle machine's")


def speedup_verdict(slow_name: str, slow_ms: float, fast_name: str, fast_ms: float, margin: float = 1.1) -> str:
    """One line comparing two timings: ``fast_name`` is N x faster when it is at least ``margin`` x
    faster; otherwise it says the expected speed-up did not show, and why that may be (a busy
    machine, see :func:`busy_note`)."""
    ratio = slow_ms / fast_ms
    if ratio >= margin:
        return f"{fast_name} is {ratio:.1f}x faster than {slow_name}"
    why = busy_note() or "the machine was not busy, so this is a real result on this machine"
    return (f"{fast_name} was not clearly faster than {slow_name} here ({ratio:.2f}x); {why}; rerun this "
            f"cell on an idle machine to see the difference the text describes")
