"""Training and generation speed, npgpt's two backends beside PyTorch eager, in one run.

Every contender trains the same model (float32, same batch, AdamW) for the same steps. Rounds
alternate between contenders, after a warm-up, so a noisy shared machine slows them alike; the
figures are medians over all timed steps, and ratios are of medians. The PyTorch twin is
:mod:`npgpt.verify.twins`: it runs when torch is installed.

``--preset gpt2`` times inference on GPT-2 small (124M parameters, random weights): a forward pass
over 256 tokens, greedy generation with the KV cache, and the same generation from int8 weights,
beside the PyTorch twin (eager, its own KV cache) on the same threads; and it measures the memory a
generation takes against the parameters plus the KV cache.

    python -m npgpt bench                    # baby and small presets, table
    python -m npgpt bench --preset baby --json
    python -m npgpt bench --preset gpt2      # GPT-2 small inference (a few minutes)
    python -m npgpt bench --contention --preset baby   # quiet, then beside one busy process

``--contention`` is :mod:`npgpt.perf.contention`: npgpt on fixed threads, npgpt adapting them
(``auto``) and PyTorch, on the quiet machine and then sharing it with a busy process.
"""
import contextlib
import os
import subprocess
import sys
import tempfile
import time
import tracemalloc
from functools import partial

import numpy as np

from ..checks import check_int
from ..decoding import generate
from ..models import GPT
from ..models.config import GPTConfig
from ..runtime import backend
from ..runtime.threads import StepThreads
from ..training.optim import AdamW

BENCH_PRESETS = {"baby": dict(batch_size=12), "small": dict(batch_size=16)}


# ----------------------------------------------------------------------------- contenders
class NpgptContender:
    """One training step of npgpt on a given backend, on ``threads`` threads (BLAS and numba), or
    "auto": the training loop's :class:`~npgpt.runtime.threads.ThreadGovernor` picks them step by step."""

    def __init__(self, cfg, backend_name, x, y, threads=2, update=True):
        self.threads = StepThreads(threads).__enter__()            # for the worker's whole life
        self.name = f"npgpt-{backend_name}" + ("-auto" if threads == "auto" else "")
        self.backend_name = backend_name
        self.model = GPT(cfg, seed=0)
        self.optimizer = AdamW(self.model.params, lr=1e-4, betas=(0.9, 0.99), weight_decay=0.1) if update else None
        self.x, self.y = x, y

    def step(self):
        start = time.perf_counter()
        with backend.use_backend(self.backend_name):
            self.model.forward(self.x, self.y)
            grads = self.model.backward()
            if self.optimizer:
                self.optimizer.step(grads)
        self.threads.record(time.perf_counter() - start)

    def thread_count(self):
        return self.threads.count


class TorchContender:
    """One training step of the PyTorch twin (eager), same shapes and optimizer."""

    def __init__(self, cfg, x, y, threads, update=True):
        import torch

        from ..verify.twins import TorchGPT
        torch.set_num_threads(threads)
        self.name, self.torch, self.update = "torch-eager", torch, update
        self.model = TorchGPT(cfg)
        params = list(self.model.parameters())
        self.optimizer = torch.optim.AdamW(
            [{"params": [p for p in params if p.dim() >= 2], "weight_decay": 0.1},
             {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}],
            lr=1e-4, betas=(0.9, 0.99))
        self.x, self.y = torch.from_numpy(x), torch.from_numpy(y)

    def step(self):
        _, loss = self.model(self.x, self.y)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.update:
            self.optimizer.step()

    def thread_count(self):
        return self.torch.get_num_threads()


def torch_unavailable():
    """Why the PyTorch contender cannot run here, or None when it can."""
    try:
        import torch  # noqa: F401
    except ImportError as e:
        return f"PyTorch reference skipped: {e} (pip install torch==2.13.0)"
    return None


# ----------------------------------------------------------------------------- measurements
# NumPy's BLAS, numba and PyTorch each keep a pool of threads that spin for a while after their
# work ends, and in one process they starve each other (npgpt ran 3-5x slower once PyTorch's pools
# existed beside it). So every contender lives in a worker process of its own; the parent runs
# the rounds in turn, pausing at each switch so the idle pools go to sleep.
SWITCH_PAUSE_S = 0.5


class BenchmarkError(RuntimeError):
    """A contender's worker process failed; the message carries its error."""


def _worker(connection, make_contender):
    """Build a contender, then answer the parent's requests until told to stop (None): ``n`` (time
    n calls of ``step``), ``("time", method, n)`` (time n calls of that method) or ``("call",
    method)`` (its return value). Every reply is ("ok", value) or ("error", what went wrong), so a
    failure reaches the parent."""
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


def time_training(makers, warmup, rounds, steps_per_round, pause_s=SWITCH_PAUSE_S):
    """Median seconds per step of each contender (built by the zero-argument callables ``makers``
    in worker processes), timed in alternating rounds after ``warmup`` untimed steps each. A worker
    that fails raises :class:`BenchmarkError` with its error; none is left waiting."""
    tasks = [("step",)] * len(makers)
    medians, _ = time_tasks(makers, tasks, warmup, rounds, steps_per_round, pause_s)
    return {name: by_task["step"] for name, by_task in medians.items()}


def time_tasks(makers, tasks, warmup, rounds, repeats, pause_s=SWITCH_PAUSE_S, ask=()):
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

    def __init__(self, makers, tasks, pause_s=SWITCH_PAUSE_S):
        self.makers, self.tasks, self.pause_s = makers, tasks, pause_s
        self.workers = []

    def __enter__(self):
        import multiprocessing
        context = multiprocessing.get_context("spawn")
        try:
            for i, make in enumerate(self.makers):
                parent, child = context.Pipe()
                process = context.Process(target=_worker, args=(child, make), daemon=True)
                process.start()
                child.close()            # the worker holds the only other end: its death ends recv()
                self.workers.append((_reply(parent, process, f"contender {i + 1}"), parent, process,
                                     self.tasks[i]))
        except BaseException:
            self.__exit__()
            raise
        return self

    def _request(self, name, connection, process, request):
        connection.send(request)
        return _reply(connection, process, name)

    def warm_up(self, calls):
        """``calls`` untimed calls of each contender's tasks."""
        for name, connection, process, names in self.workers:
            time.sleep(self.pause_s)
            for task in names:
                self._request(name, connection, process, ("time", task, calls))

    def time_rounds(self, rounds, repeats):
        """Median seconds per call, ``{name: {task: s}}``, over ``rounds`` alternating rounds of
        ``repeats`` timed calls of each task."""
        times = {name: {task: [] for task in names} for name, _, _, names in self.workers}
        for r in range(rounds):
            for name, connection, process, names in (self.workers if r % 2 == 0 else self.workers[::-1]):
                time.sleep(self.pause_s)
                for task in names:
                    times[name][task] += self._request(name, connection, process, ("time", task, repeats))
        return {name: {task: float(np.median(t)) for task, t in by_task.items()} for name, by_task in times.items()}

    def ask(self, methods):
        """Each contender's answers to the zero-argument ``methods``, ``{name: {method: value}}``."""
        return {name: {method: self._request(name, connection, process, ("call", method)) for method in methods}
                for name, connection, process, _ in self.workers}

    def __exit__(self, *exc):
        for _, connection, process, _ in self.workers:
            if process.is_alive():
                with contextlib.suppress(OSError):       # the worker may end as we ask it to
                    connection.send(None)
            process.join(timeout=10)
            if process.is_alive():
                process.kill()


def run_isolated(function, *args):
    """``function(*args)`` run in a fresh process (same reasons as :func:`time_training`): its
    thread pools neither disturb nor are disturbed by those of this process."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor
    with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(function, *args).result()


def matmul_peak_gflops(n=1024, repeats=10):
    """Measured float32 matmul throughput of this machine's BLAS (GFLOP/s, best of ``repeats``)."""
    a = np.random.default_rng(0).standard_normal((n, n)).astype(np.float32)
    a @ a
    best = min(_timed(lambda: a @ a) for _ in range(repeats))
    return 2 * n ** 3 / best / 1e9


def _timed(fn):
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def flops_per_step(cfg, batch_size):
    """Training FLOPs of one step: 6 per parameter per token (forward 2, backward 4) for the matrix
    multiplies, plus attention's QK^T and AV (12 L T C per token, PaLM's appendix B estimate)."""
    C, L, T = cfg.n_embd, cfg.n_layer, cfg.block_size
    matmul_params = L * 12 * C * C + cfg.vocab_size * C          # blocks and the output layer
    per_token = 6 * matmul_params + 12 * L * T * C
    return per_token * batch_size * T


def generation_speed(cfg, new_tokens, repeats=3):
    """Tokens per second generating ``new_tokens`` greedily, with and without the KV cache."""
    model = GPT(cfg, seed=0)
    prompt = np.zeros(1, dtype=np.int64)
    result = {}
    for label, use_cache in (("with_cache", True), ("without_cache", False)):
        generate(model, prompt, 8, use_cache=use_cache)          # warm-up
        seconds = np.median([_timed(lambda c=use_cache: generate(model, prompt, new_tokens, use_cache=c))
                             for _ in range(repeats)])
        result[f"tokens_per_s_{label}"] = new_tokens / seconds
    result["cache_speedup"] = result["tokens_per_s_with_cache"] / result["tokens_per_s_without_cache"]
    return result


# ----------------------------------------------------------------------------- GPT-2 small, inference
GPT2_FORWARD_TOKENS, GPT2_PROMPT_TOKENS, GPT2_NEW_TOKENS = 256, 16, 50


def _inference_inputs(cfg):
    rng = np.random.default_rng(0)
    return (rng.integers(0, cfg.vocab_size, (1, GPT2_FORWARD_TOKENS)),
            rng.integers(0, cfg.vocab_size, GPT2_PROMPT_TOKENS))


def _proc_status_bytes(field):
    """``VmRSS`` (resident now) or ``VmHWM`` (its peak) of this process in bytes; None off Linux."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _reset_peak_rss():
    """Restart the count of this process's peak resident memory (Linux's /proc/self/clear_refs);
    False where that cannot be done."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _measure_generation(run, param_bytes, kv_bytes, traced=True):
    """Memory of one generation ``run()``: the parameters and the KV cache it fills (as given), the
    process's resident memory before and at its peak during the run, and (``traced``) the parameters
    plus tracemalloc's peak of what the run allocated (NumPy's arrays: the cache, the activations)."""
    reset = _reset_peak_rss()
    before = _proc_status_bytes("VmRSS")
    if traced:
        tracemalloc.start()
    try:
        run()
        extra = tracemalloc.get_traced_memory()[1] if traced else None
    finally:
        if traced:
            tracemalloc.stop()
    peak = _proc_status_bytes("VmHWM") if reset else None
    return {"param_bytes": param_bytes, "kv_cache_bytes": kv_bytes, "rss_before_bytes": before,
            "peak_rss_bytes": peak, "traced_peak_bytes": None if extra is None else param_bytes + extra}


class NpgptInference:
    """GPT-2 small's inference tasks in npgpt (float32, numba backend), or (``bits=8``) generation
    from its int8 twin (:func:`npgpt.allocation.quantize.quantize_model`). numba and, through
    threadpoolctl when it is installed, BLAS run on ``threads`` threads, as PyTorch does."""

    def __init__(self, cfg, threads, bits=None):
        import numba
        numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
        try:
            from threadpoolctl import threadpool_limits
            self._blas_limit = threadpool_limits(threads)       # held for the worker's life
        except ImportError:
            self._blas_limit = None
        backend.set_backend("numba")                  # this worker process is the contender's own
        self.name = "npgpt-int8" if bits else "npgpt-numba"
        self.model = GPT(cfg, seed=0).eval()
        if bits:
            from ..allocation.quantize import quantize_model
            self.model = quantize_model(self.model, bits)     # the float model is let go
        self.x, self.prompt = _inference_inputs(cfg)

    def forward(self):
        self.model.forward(self.x)

    def generate(self):
        generate(self.model, self.prompt, GPT2_NEW_TOKENS)

    def memory(self):
        model, c = self.model, self.model.config
        params = model.num_bytes() if hasattr(model, "num_bytes") else sum(p.nbytes for p in model.params.values())
        kv = 2 * c.n_layer * c.n_embd * max(c.block_size, 16) * model.dtype.itemsize   # new_cache reserves block_size
        return _measure_generation(self.generate, params, kv)


class TorchInference:
    """The same tasks in the PyTorch twin, eager, with its own KV cache
    (:func:`npgpt.verify.twins.generate_greedy`)."""

    def __init__(self, cfg, threads):
        import torch

        from ..verify.twins import TorchGPT
        torch.set_num_threads(threads)
        self.name, self.torch = "torch-eager", torch
        self.model = TorchGPT(cfg).eval()
        x, self.prompt = _inference_inputs(cfg)
        self.x = torch.from_numpy(x)

    def forward(self):
        with self.torch.no_grad():
            self.model(self.x)

    def generate(self):
        from ..verify.twins import generate_greedy
        generate_greedy(self.model, self.prompt, GPT2_NEW_TOKENS)

    def memory(self):
        c = self.model.cfg
        params = sum(p.numel() * p.element_size() for p in self.model.parameters())
        kv = 2 * c.n_layer * c.n_embd * (GPT2_PROMPT_TOKENS + GPT2_NEW_TOKENS) * 4      # grown as it goes
        return _measure_generation(self.generate, params, kv, traced=False)


def bench_gpt2(threads, rounds, repeats, with_torch=True, log=print, cfg=None):
    """GPT-2 small (124M, random weights; or ``cfg``) inference, npgpt and int8 npgpt beside the
    PyTorch twin: medians of forward and generation times, and the memory of a generation."""
    from ..verify.counting import gpt_num_params
    cfg = GPTConfig.preset("gpt2") if cfg is None else cfg
    makers = [partial(NpgptInference, cfg, threads), partial(NpgptInference, cfg, threads, 8)]
    tasks = [("forward", "generate"), ("generate",)]
    if with_torch:
        note = torch_unavailable()
        if note:
            log(note)
        else:
            makers.append(partial(TorchInference, cfg, threads))
            tasks.append(("forward", "generate"))
    log(f"gpt2: {len(makers)} contenders, each in its own process building a random {gpt_num_params(cfg):,}-parameter model "
        f"(1 warm-up call of each task, {rounds} alternating rounds x {repeats})")
    medians, answers = time_tasks(makers, tasks, 1, rounds, repeats, ask=("memory",))
    rows = {}
    for name, by_task in medians.items():
        row = {"memory": answers[name]["memory"]}
        if "forward" in by_task:
            row["forward_ms"] = 1e3 * by_task["forward"]
            row["forward_tokens_per_s"] = GPT2_FORWARD_TOKENS / by_task["forward"]
        row["generate_s"] = by_task["generate"]
        row["generate_tokens_per_s"] = GPT2_NEW_TOKENS / by_task["generate"]
        rows[name] = row
    if "torch-eager" in rows:
        torch_row = rows["torch-eager"]
        for row in rows.values():
            row["generate_vs_torch"] = row["generate_tokens_per_s"] / torch_row["generate_tokens_per_s"]
            if "forward_ms" in row:
                row["forward_vs_torch"] = torch_row["forward_ms"] / row["forward_ms"]
    return {"config": cfg.to_dict(), "num_params": gpt_num_params(cfg), "threads": threads, "rounds": rounds,
            "repeats_per_round": repeats, "forward_tokens": GPT2_FORWARD_TOKENS,
            "prompt_tokens": GPT2_PROMPT_TOKENS, "new_tokens": GPT2_NEW_TOKENS, "contenders": rows}


def format_gpt2_table(r):
    mb = lambda b: "-" if b is None else f"{b / 1e6:,.0f} MB"
    lines = [f"gpt2 inference ({r['num_params']:,} parameters, random weights, float32; threads: {r['threads']} "
             f"(numba, BLAS, PyTorch); medians of {r['rounds']} alternating rounds)",
             f"  {'contender':<12} {'forward 1x' + str(r['forward_tokens']):>14} {'vs torch':>9} "
             f"{'generate ' + str(r['new_tokens']) + ' (KV cache)':>24} {'vs torch':>9}"]
    for name, row in r["contenders"].items():
        forward = f"{row['forward_ms']:,.0f} ms" if "forward_ms" in row else "-"
        ratio_f = f"{row['forward_vs_torch']:.2f}x" if "forward_vs_torch" in row else "-"
        gen = f"{row['generate_tokens_per_s']:.1f} tok/s"
        ratio_g = f"{row['generate_vs_torch']:.2f}x" if "generate_vs_torch" in row else "-"
        lines.append(f"  {name:<12} {forward:>14} {ratio_f:>9} {gen:>24} {ratio_g:>9}")
    lines.append("  memory while generating (prompt "
                 f"{r['prompt_tokens']} + {r['new_tokens']} tokens):")
    for name, row in r["contenders"].items():
        m = row["memory"]
        expected = m["param_bytes"] + m["kv_cache_bytes"]
        traced = "" if m["traced_peak_bytes"] is None else \
            f", measured {mb(m['traced_peak_bytes'])} (tracemalloc: parameters + what the generation allocated)"
        lines.append(f"  {name:<12} parameters {mb(m['param_bytes'])} + KV cache {mb(m['kv_cache_bytes'])} = "
                     f"{mb(expected)}{traced}; process resident {mb(m['rss_before_bytes'])} before, "
                     f"{mb(m['peak_rss_bytes'])} at the peak")
    return "\n".join(lines)


COMPILE_PROBE = """
import time, numpy as np
start = time.perf_counter()
import npgpt
npgpt.set_backend("numba")
m = npgpt.GPT(npgpt.GPTConfig(vocab_size=65, block_size=16, n_layer=1, n_head=2, n_embd=32))
x = np.zeros((2, 16), dtype=np.int64)
opt = npgpt.AdamW(m.params)
m.forward(x, x); opt.step(m.backward())
print(time.perf_counter() - start)
"""


def numba_compile_seconds():
    """Seconds to import npgpt and run a first numba-backend step: with an empty numba cache
    (every kernel compiles) and again with the cache it left (kernels load from disk)."""
    with tempfile.TemporaryDirectory() as cache_dir:
        env = {**os.environ, "NUMBA_CACHE_DIR": cache_dir}
        run = [sys.executable, "-c", COMPILE_PROBE]
        cold = float(subprocess.run(run, env=env, capture_output=True, text=True, check=True).stdout)
        cached = float(subprocess.run(run, env=env, capture_output=True, text=True, check=True).stdout)
    return {"cold_s": cold, "cached_s": cached}


# ----------------------------------------------------------------------------- the benchmark
def bench_preset(name, threads, warmup, rounds, steps_per_round, peak, with_torch=True, log=print, update=True):
    cfg = GPTConfig.preset(name)
    batch_size = BENCH_PRESETS[name]["batch_size"]
    rng = np.random.default_rng(0)
    x = rng.integers(0, cfg.vocab_size, (batch_size, cfg.block_size))
    y = rng.integers(0, cfg.vocab_size, (batch_size, cfg.block_size))
    makers = [partial(NpgptContender, cfg, "numba", x, y, threads, update),
              partial(NpgptContender, cfg, "numpy", x, y, threads, update)]
    if with_torch:
        note = torch_unavailable()
        if note:
            log(note)
        else:
            makers.append(partial(TorchContender, cfg, x, y, threads, update))
    log(f"{name}: timing {len(makers)} contenders, each in its own process "
        f"({warmup} warm-up steps, {rounds} alternating rounds x {steps_per_round} steps)")
    seconds = time_training(makers, warmup, rounds, steps_per_round)
    peak = max(peak, matmul_peak_gflops())      # a peak measured at a busy moment is too low
    tokens, flops = batch_size * cfg.block_size, flops_per_step(cfg, batch_size)
    rows = {}
    for contender, s in seconds.items():
        mfu = flops / s / (peak * 1e9)
        rows[contender] = {"ms_per_step": 1e3 * s, "tokens_per_s": tokens / s,
                           "mfu": mfu if mfu <= 1.0 else None}      # > 100%: the peak was not the machine's
        if mfu > 1.0:
            log(f"{contender}: MFU would be {mfu:.0%}, so the matmul peak ({peak:.0f} GFLOP/s) was measured "
                f"while the machine was busy; MFU is left out")
    if "torch-eager" in seconds:
        for contender in rows:
            rows[contender]["speed_vs_torch"] = seconds["torch-eager"] / seconds[contender]
    return {"config": cfg.to_dict(), "batch_size": batch_size, "flops_per_step": flops, "training": rows,
            "optimizer_step": update}


def run(presets=("baby", "small"), threads=2, warmup=5, rounds=6, steps_per_round=5, gen_tokens=200,
        with_torch=True, compile_times=True, log=print, update=True):
    """Every figure of the benchmark as one dict."""
    peak = matmul_peak_gflops()
    result = {"threads": threads, "matmul_peak_gflops": peak, "presets": {}}
    for name in presets:
        result["presets"][name] = bench_preset(name, threads, warmup, rounds, steps_per_round, peak,
                                               with_torch, log, update)
    with backend.use_backend("numba"):
        result["generation_baby"] = {"new_tokens": gen_tokens, **generation_speed(GPTConfig.preset("baby"), gen_tokens)}
    if compile_times:
        result["numba_compile"] = numba_compile_seconds()
    return result


def format_table(result):
    if "presets" not in result:                                  # --preset gpt2 alone
        return format_gpt2_table(result["gpt2"])
    lines = [f"matmul peak (float32, this machine): {result['matmul_peak_gflops']:.0f} GFLOP/s, "
             f"threads: {result['threads']}"]
    for name, r in result["presets"].items():
        what = "" if r.get("optimizer_step", True) else ", forward + backward only"
        lines.append(f"\n{name} (batch {r['batch_size']}, block {r['config']['block_size']}, "
                     f"{r['flops_per_step'] / 1e9:.2f} GFLOP/step{what})")
        lines.append(f"  {'contender':<14} {'ms/step':>9} {'tokens/s':>10} {'MFU':>6} {'vs torch':>9}")
        for contender, row in r["training"].items():
            ratio = f"{row['speed_vs_torch']:.2f}x" if "speed_vs_torch" in row else "-"
            mfu = "-" if row["mfu"] is None else f"{row['mfu']:.1%}"
            lines.append(f"  {contender:<14} {row['ms_per_step']:>9.1f} {row['tokens_per_s']:>10,.0f} "
                         f"{mfu:>6} {ratio:>9}")
    g = result["generation_baby"]
    lines.append(f"\ngeneration, baby, {g['new_tokens']} new tokens: {g['tokens_per_s_with_cache']:,.0f} tok/s "
                 f"with KV cache, {g['tokens_per_s_without_cache']:,.0f} without ({g['cache_speedup']:.1f}x)")
    if "numba_compile" in result:
        c = result["numba_compile"]
        lines.append(f"numba compile + first step: {c['cold_s']:.1f} s cold, {c['cached_s']:.1f} s cached")
    if "gpt2" in result:
        lines.append("\n" + format_gpt2_table(result["gpt2"]))
    return "\n".join(lines)


# ----------------------------------------------------------------------------- anatomy of a step
PARTS = ("attention", "MLP matmuls", "GELU", "LayerNorm", "head + loss", "embedding", "AdamW")


def median_ms(fn, repeats):
    """Median milliseconds of ``repeats`` calls of ``fn()``, after one untimed call."""
    fn()
    return 1e3 * float(np.median([_timed(fn) for _ in range(repeats)]))


def interleaved_ms(fns, repeats=10, rounds=5):
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


def machine_load():
    """(load average over the last minute, logical cores): how many programs wanted a core, on
    average, against how many there are. (None, cores) where the system does not report a load."""
    try:
        load = os.getloadavg()[0]
    except (AttributeError, OSError):
        load = None
    return load, os.cpu_count() or 1


def busy_note(threshold=0.5):
    """A sentence for a notebook when other programs kept this machine's cores busy (a load average
    above ``threshold`` x the cores): timings taken now can be far from an idle machine's. Empty
    when the machine is quiet or the load is unknown."""
    load, cores = machine_load()
    if load is None or load <= threshold * cores:
        return ""
    return (f"the machine was busy while this ran (load average {load:.1f} on {cores} cores: other programs "
            f"wanted the cores too), so these timings can be far from an idle machine's")


def speedup_verdict(slow_name, slow_ms, fast_name, fast_ms, margin=1.1):
    """One line comparing two timings: ``fast_name`` is N x faster when it is at least ``margin`` x
    faster; otherwise it says the expected speed-up did not show, and why that may be (a busy
    machine, see :func:`busy_note`)."""
    ratio = slow_ms / fast_ms
    if ratio >= margin:
        return f"{fast_name} is {ratio:.1f}x faster than {slow_name}"
    why = busy_note() or "the machine was not busy, so this is a real result on this machine"
    return (f"{fast_name} was not clearly faster than {slow_name} here ({ratio:.2f}x); {why}; rerun this "
            f"cell on an idle machine to see the difference the text describes")


def step_anatomy(preset="baby", backend_name="numba", repeats=20):
    """Milliseconds per training step spent in each part (forward + backward, every layer),
    each part timed alone on the step's real shapes; "other" is the full step minus the parts
    (residual adds, reshapes, Python). Returns {part: ms} and the full step's ms."""
    cfg = GPTConfig.preset(preset)
    B, T, C, L, V = BENCH_PRESETS[preset]["batch_size"], cfg.block_size, cfg.n_embd, cfg.n_layer, cfg.vocab_size
    rng = np.random.default_rng(0)
    model = GPT(cfg, seed=0)
    p = model.block_params()[0]
    x = rng.standard_normal((B, T, C)).astype(np.float32)
    h = rng.standard_normal((B, T, 4 * C)).astype(np.float32)
    ids = rng.integers(0, V, (B, T))
    with backend.use_backend(backend_name) as F:
        def fwd_bwd(forward, backward, *args):
            out, cache = forward(*args)[:2]
            backward(np.ones_like(out) if np.ndim(out) else 1.0, cache)

        def head_and_loss():
            logits, cache = F.linear_forward(x, model.params["transformer.wte.weight"].T)
            loss, loss_cache = F.cross_entropy_forward(logits.reshape(B * T, V), ids.reshape(-1))
            F.linear_backward(F.cross_entropy_backward(1.0, loss_cache).reshape(B, T, V), cache)

        def adamw():
            grads = {k: np.full_like(v, 1e-3) for k, v in model.params.items()}
            optimizer.step(grads)

        optimizer = AdamW(model.params, lr=1e-4, betas=(0.9, 0.99), weight_decay=0.1)
        parts = {
            "attention": L * median_ms(lambda: fwd_bwd(
                F.self_attention_forward, F.self_attention_backward, x, p["attn.c_attn.weight"],
                p["attn.c_attn.bias"], p["attn.c_proj.weight"], p["attn.c_proj.bias"], cfg.n_head), repeats),
            "MLP matmuls": L * (median_ms(lambda: fwd_bwd(F.linear_forward, F.linear_backward, x,
                                                           p["mlp.c_fc.weight"], p["mlp.c_fc.bias"]), repeats)
                                + median_ms(lambda: fwd_bwd(F.linear_forward, F.linear_backward, h,
                                                             p["mlp.c_proj.weight"], p["mlp.c_proj.bias"]), repeats)),
            "GELU": L * median_ms(lambda: fwd_bwd(F.gelu_forward, F.gelu_backward, h), repeats),
            "LayerNorm": (2 * L + 1) * median_ms(lambda: fwd_bwd(
                F.layernorm_forward, F.layernorm_backward, x, p["ln_1.weight"], p["ln_1.bias"]), repeats),
            "head + loss": median_ms(head_and_loss, repeats),
            "embedding": median_ms(lambda: F.embedding_backward(x, F.embedding_forward(
                ids, model.params["transformer.wte.weight"])[1]), repeats),
            "AdamW": median_ms(adamw, repeats),
        }
        contender = NpgptContender(cfg, backend_name, ids, ids)
        for _ in range(3):
            contender.step()
        step_ms = median_ms(contender.step, repeats)
    parts["other"] = max(step_ms - sum(parts.values()), 0.0)
    return {"parts_ms": parts, "step_ms": step_ms}
