"""Training speed when the CPU is shared: ``python -m npgpt bench --contention``.

Users train beside other work (a second notebook kernel, a browser, a build). This benchmark
times the training step of npgpt (numba backend, on a fixed thread count and with the adaptive
:class:`~npgpt.runtime.threads.ThreadGovernor`) beside PyTorch eager, first on the quiet machine, then
with one busy process it starts itself (a Python loop that keeps one core at 100%), in the same
worker processes, taking turns as :func:`npgpt.perf.harness.time_training` does. It reports each
contender's median step, quiet and busy, the slowdown (busy / quiet: half of a 2-core machine
should cost about 2x) and the speed against PyTorch under the same load.
"""
import contextlib
import subprocess
import sys
from collections.abc import Callable, Iterator
from functools import partial
from typing import Any

from ..models.config import GPTConfig
from .contenders import BENCH_PRESETS, NpgptContender, TorchContender, random_batch
from .harness import Workers, children_ignore_ctrl_c, torch_unavailable

BUSY_LOOP = "while True: pass"
BUSY_WARMUP = 12        # steps under load before timing: enough for the governor's first trial


@contextlib.contextmanager
def busy_process() -> Iterator[subprocess.Popen]:
    """One process keeping one core busy for the duration of the block (ending with it, even on
    Ctrl-C, which the process ignores: its traceback would only hide the command's one line)."""
    with children_ignore_ctrl_c():
        process = subprocess.Popen([sys.executable, "-c", BUSY_LOOP])
    try:
        yield process
    finally:
        process.kill()
        process.wait()


def contention_makers(cfg: GPTConfig, batch_size: int, threads: int, with_torch: bool,
                      log: Callable[..., Any]) -> list[Callable[[], Any]]:
    """The contenders: npgpt (numba) on ``threads`` threads and adapting them, and PyTorch."""
    x, y = random_batch(cfg, batch_size)
    makers = [partial(NpgptContender, cfg, "numba", x, y, threads),
              partial(NpgptContender, cfg, "numba", x, y, "auto")]
    note = torch_unavailable() if with_torch else "PyTorch reference skipped (--no-torch)"
    if note:
        log(note)
    else:
        makers.append(partial(TorchContender, cfg, x, y, threads))
    return makers


def bench_contention(name: str = "baby", threads: int = 2, warmup: int = BUSY_WARMUP, rounds: int = 6,
                     steps_per_round: int = 5, with_torch: bool = True,
                     log: Callable[..., Any] = print) -> dict[str, Any]:
    """Median ms per training step of each contender, on the quiet machine and beside one busy
    process: ``quiet_ms`` and ``busy_ms`` ({contender: ms}), ``threads_busy`` (the threads each ran
    on at the end) and the settings (``preset``, ``threads``, ``warmup_steps``)."""
    cfg = GPTConfig.preset(name)
    makers = contention_makers(cfg, BENCH_PRESETS[name]["batch_size"], threads, with_torch, log)
    log(f"{name}: {len(makers)} contenders, {rounds} alternating rounds x {steps_per_round} steps, "
        f"quiet, then beside one busy process")
    with Workers(makers, [("step",)] * len(makers)) as workers:
        workers.warm_up(warmup)
        quiet = workers.time_rounds(rounds, steps_per_round)
        with busy_process():
            workers.warm_up(warmup)
            busy = workers.time_rounds(rounds, steps_per_round)
            counts = workers.ask(["thread_count"])
    return {"preset": name, "threads": threads, "warmup_steps": warmup,
            "quiet_ms": {c: 1e3 * t["step"] for c, t in quiet.items()},
            "busy_ms": {c: 1e3 * t["step"] for c, t in busy.items()},
            "threads_busy": {c: a["thread_count"] for c, a in counts.items()}}


def format_contention_table(result: dict[str, Any]) -> str:
    """The table ``npgpt bench --contention`` prints, from what :func:`bench_contention` returns."""
    quiet, busy = result["quiet_ms"], result["busy_ms"]
    torch_quiet, torch_busy = quiet.get("torch-eager"), busy.get("torch-eager")
    lines = [f"{result['preset']}, quiet, then beside one busy process (threads: {result['threads']}, 'auto' "
             f"adapts; {result['warmup_steps']} untimed steps after the load starts)",
             f"  {'contender':<18} {'quiet ms':>9} {'busy ms':>9} {'busy/quiet':>11} {'threads busy':>13} "
             f"{'vs torch quiet':>15} {'vs torch busy':>14}"]
    for c in quiet:
        vs = [f"{ref / mine[c]:.2f}x" if ref else "-" for ref, mine in ((torch_quiet, quiet), (torch_busy, busy))]
        lines.append(f"  {c:<18} {quiet[c]:>9.1f} {busy[c]:>9.1f} {busy[c] / quiet[c]:>10.2f}x "
                     f"{result['threads_busy'][c]:>13} {vs[0]:>15} {vs[1]:>14}")
    return "\n".join(lines)
