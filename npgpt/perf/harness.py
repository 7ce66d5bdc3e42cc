"""Timing contenders fairly: each in a worker process of its own, in alternating rounds, medians.

A contender is any object with a ``name`` and zero-argument methods to time (``step`` for the
training benches, ``forward`` and ``generate`` for GPT-2 inference); a *maker* is a zero-argument,
picklable callable that builds one (``functools.partial(NpgptContender, cfg, ...)``), so the
contender is built inside its worker. :func:`time_tasks` and :func:`time_training` run the whole
protocol; :class:`Workers` exposes its steps (warm-up, rounds, questions) for a benchmark that
changes the machine between them (:mod:`npgpt.perf.contention`).

Why worker processes: NumPy's BLAS, numba and PyTorch each keep a pool of threads that spin for a
while after their work ends, and in one process they starve each other (npgpt ran 3-5x slower once
PyTorch's pools existed beside it). So every contender lives in a process of its own; the parent
runs the rounds in turn, pausing at each switch so the idle pools go to sleep, and reverses the
order every other round so neither contender always follows the other.

Stopping: the parent alone decides when a worker ends. Workers (and any helper process a bench
starts, :func:`children_ignore_ctrl_c`) ignore SIGINT, which a terminal's Ctrl-C sends to every
process of the group: otherwise each would print its KeyboardInterrupt traceback over the parent's
one line. When the parent stops on an exception (Ctrl-C, SIGTERM, a failed worker), it ends its
workers at once (SIGTERM, which kills a worker silently) instead of waiting for their current
request; a worker whose parent is gone ends quietly.
"""
import contextlib
import signal
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np

SWITCH_PAUSE_S = 0.5
STOP_WAIT_S = 10      # how long a worker asked to stop may take to finish its request before it is killed


class BenchmarkError(RuntimeError):
    """A contender's worker process failed; the message carries its error."""


def torch_unavailable() -> str | None:
    """Why the PyTorch contender cannot run here, or None when it can."""
    try:
        import torch  # noqa: F401
    except ImportError as e:
        return f"PyTorch reference skipped: {e} (pip install torch==2.13.0)"
    return None


@contextlib.contextmanager
def children_ignore_ctrl_c() -> Iterator[None]:
    """Processes started in the block ignore SIGINT from their first instruction: an ignored signal
    stays ignored across exec, and only the parent should answer a terminal's Ctrl-C (see the
    module's docstring). The parent ignores it too while the block runs (keep the block to the
    starting of processes: a Ctrl-C in it is lost). Off the main thread, where Python cannot set
    handlers, it does nothing; the workers still ignore SIGINT once they run."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _worker(connection, make_contender):
    """A worker process's life (:func:`_serve`). When the parent is gone, it ends quietly."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)     # the parent ends us (module docstring)
    with contextlib.suppress(EOFError, BrokenPipeError, ConnectionResetError):   # no one left to tell
        _serve(connection, make_contender)


def _serve(connection, make_contender):
    """Build a contender, then answer the parent's requests until told to stop (None): ``n`` (time
    n calls of ``step``), ``("time", method, n)`` (time n calls of that method) or ``("call",
    method)`` (its return value). Every reply is ("ok", value) or ("error", what went wrong), so a
    failure reaches the parent. A parent that died (kill -9) leaves no one to ask us to stop: the
    worker checks between two timed calls, outside the timing."""
    import multiprocessing
    parent = multiprocessing.parent_process()
    try:
        contender = make_contender()
        connection.send(("ok", contender.name))
        while (request := connection.recv()) is not None:
            kind, method, *n = ("time", "step", request) if isinstance(request, int) else request
            run = getattr(contender, method)
            if kind == "call":
                connection.send(("ok", run()))
                continue
            times = []
            for _ in range(n[0]):
                if parent is not None and not parent.is_alive():
                    return
                start = time.perf_counter()
                run()
                times.append(time.perf_counter() - start)
            connection.send(("ok", times))
    except Exception as e:
        connection.send(("error", f"{type(e).__name__}: {e}"))


def _reply(connection, process, who):
    """The worker's next reply, or a BenchmarkError when it failed or died."""
    try:
        status, value = connection.recv()
    except EOFError:
        process.join(timeout=5)
        raise BenchmarkError(f"the {who} worker died (exit code {process.exitcode})") from None
    if status == "error":
        raise BenchmarkError(f"the {who} worker failed: {value}")
    return value


def time_training(makers: Sequence[Callable[[], Any]], warmup: int, rounds: int, steps_per_round: int,
                  pause_s: float = SWITCH_PAUSE_S) -> dict[str, float]:
    """Median seconds per step of each contender (built by the zero-argument callables ``makers``
    in worker processes), timed in alternating rounds after ``warmup`` untimed steps each. A worker
    that fails raises :class:`BenchmarkError` with its error; none is left waiting."""
    tasks = [("step",)] * len(makers)
    medians, _ = time_tasks(makers, tasks, warmup, rounds, steps_per_round, pause_s)
    return {name: by_task["step"] for name, by_task in medians.items()}


def time_tasks(makers: Sequence[Callable[[], Any]], tasks: Sequence[Sequence[str]], warmup: int, rounds: int,
               repeats: int, pause_s: float = SWITCH_PAUSE_S, ask: Sequence[str] = ()
               ) -> tuple[dict[str, dict[str, float]], dict[str, dict[str, Any]]]:
    """Median seconds of each task of each contender, ``{name: {task: s}}``, and the answers of
    each contender's methods named in ``ask``, ``{name: {method: value}}``. Contender i is built by
    ``makers[i]`` in a worker process of its own and runs the methods named in ``tasks[i]``:
    ``warmup`` untimed calls of each, then ``rounds`` alternating rounds of ``repeats`` timed calls
    of each. A worker that fails raises :class:`BenchmarkError` with its error; none is left waiting."""
    with Workers(makers, tasks, pause_s) as workers:
        workers.warm_up(warmup)
        medians = workers.time_rounds(rounds, repeats)
        return medians, workers.ask(ask)


class Workers:
    """``with Workers(makers, tasks) as w:`` one worker process per contender (see
    :func:`time_tasks`), stopped on exit even when one of them failed."""

    def __init__(self, makers: Sequence[Callable[[], Any]], tasks: Sequence[Sequence[str]],
                 pause_s: float = SWITCH_PAUSE_S) -> None:
        self.makers, self.tasks, self.pause_s = makers, tasks, pause_s
        self.workers = []

    def __enter__(self) -> "Workers":
        import multiprocessing
        context = multiprocessing.get_context("spawn")
        starting = []                    # (parent end, process) of workers started, not yet answered
        try:
            for i, make in enumerate(self.makers):
                parent, child = context.Pipe()
                process = context.Process(target=_worker, args=(child, make), daemon=True)
                with children_ignore_ctrl_c():
                    process.start()
                starting.append((parent, process))
                child.close()            # the worker holds the only other end: its death ends recv()
                self.workers.append((_reply(parent, process, f"contender {i + 1}"), parent, process,
                                     self.tasks[i]))
                starting.pop()
        except BaseException:
            unanswered = [(None, parent, process, None) for parent, process in starting]
            self._end([*self.workers, *unanswered], at_once=True)
            raise
        return self

    def _request(self, name, connection, process, request):
        connection.send(request)
        return _reply(connection, process, name)

    def warm_up(self, calls: int) -> None:
        """``calls`` untimed calls of each contender's tasks."""
        for name, connection, process, names in self.workers:
            time.sleep(self.pause_s)
            for task in names:
                self._request(name, connection, process, ("time", task, calls))

    def time_rounds(self, rounds: int, repeats: int) -> dict[str, dict[str, float]]:
        """Median seconds per call, ``{name: {task: s}}``, over ``rounds`` alternating rounds of
        ``repeats`` timed calls of each task."""
        times = {name: {task: [] for task in names} for name, _, _, names in self.workers}
        for r in range(rounds):
            for name, connection, process, names in (self.workers if r % 2 == 0 else self.workers[::-1]):
                time.sleep(self.pause_s)
                for task in names:
                    times[name][task] += self._request(name, connection, process, ("time", task, repeats))
        return {name: {task: float(np.median(t)) for task, t in by_task.items()} for name, by_task in times.items()}

    def ask(self, methods: Sequence[str]) -> dict[str, dict[str, Any]]:
        """Each contender's answers to the zero-argument ``methods``, ``{name: {method: value}}``."""
        return {name: {method: self._request(name, connection, process, ("call", method)) for method in methods}
                for name, connection, process, _ in self.workers}

    def __exit__(self, exc_type: type[BaseException] | None, *exc: object) -> None:
        # after an exception (Ctrl-C, SIGTERM, a failed worker) a worker's current request is of no use
        self._end(self.workers, at_once=exc_type is not None)

    @staticmethod
    def _end(workers: Sequence[tuple], at_once: bool) -> None:
        """Stop every worker: ask (None) and wait for it to finish its request, or, ``at_once``,
        terminate it; kill one that is still there after :data:`STOP_WAIT_S` seconds."""
        for _, connection, process, _ in workers:
            if process.is_alive():
                if at_once:
                    process.terminate()
                else:
                    with contextlib.suppress(OSError):       # the worker may end as we ask it to
                        connection.send(None)
        for _, connection, process, _ in workers:
            process.join(timeout=STOP_WAIT_S)
            if process.is_alive():
                process.kill()
                process.join()
            connection.close()


def run_isolated(function: Callable[..., Any], *args: Any) -> Any:
    """``function(*args)`` run in a fresh process (same reasons as :func:`time_training`): its
    thread pools neither disturb nor are disturbed by those of this process."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor
    with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(function, *args).result()
