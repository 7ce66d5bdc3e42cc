"""GPT-2 small inference, npgpt beside the PyTorch twin: ``python -m npgpt bench --preset gpt2``.

GPT-2 small (124M parameters, random weights: the speed does not depend on their values): a forward
pass over 256 tokens, greedy generation with the KV cache, and the same generation from quantized
weights (:func:`npgpt.allocation.quantize.quantize_model`: int8 in the blocks; int8 and int4 in groups
of 64 everywhere, the token table and so the output layer too; :data:`QUANTIZED`), beside the PyTorch twin (eager, its own
KV cache) on the same threads; and the memory a generation takes against the parameters plus the
KV cache. Each contender runs in its own process, in alternating rounds (:mod:`npgpt.perf.harness`).

The roofline of generation: a new token reads every weight once (the tied token embedding in full,
as the output layer; one row of the position table) and the KV cache of its context, so no
implementation can generate faster than the machine's memory bandwidth divided by those bytes.
The bandwidth is measured in the same run with every core reading (:func:`read_bandwidth`): it is
the memory system's limit, which one thread does not reach, so a contender on one thread is held to
the same roofline as one on two; each contender's tokens per second are reported as a fraction of
its roofline (quantized weights read fewer bytes, so theirs is higher). A quantized contender also
reports how far its logits after the prompt are from the float model's.
"""
import os
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np

from ..decoding import generate
from ..kernels import backend
from ..models import GPT
from ..models.config import GPTConfig
from .harness import time_tasks, torch_unavailable

GPT2_FORWARD_TOKENS, GPT2_PROMPT_TOKENS, GPT2_NEW_TOKENS = 256, 16, 50
READ_BYTES = 1 << 30        # the bandwidth's buffer: far larger than any cache, so every pass reads memory


def read_bandwidth(threads: int, nbytes: int = READ_BYTES, passes: int = 5) -> float:
    """Bytes per second this machine reads from memory on ``threads`` threads: a float32 vector of
    ``nbytes``, one slice per thread, each slice dotted with itself (BLAS reads each element once and
    writes nothing; one BLAS thread per slice, since OpenBLAS's dot of one vector stays on one
    thread), the best of ``passes`` passes, as a physical limit is (STREAM reports its best too)."""
    import time
    from concurrent.futures import ThreadPoolExecutor
    from contextlib import nullcontext
    vector = np.ones(nbytes // 4, dtype=np.float32)             # written once: its pages are real
    slices = np.array_split(vector, threads)
    try:
        from threadpoolctl import threadpool_limits
        one_blas_thread = threadpool_limits(1)
    except ImportError:
        one_blas_thread = nullcontext()
    best = float("inf")
    with one_blas_thread, ThreadPoolExecutor(threads) as pool:   # NumPy lets go of the GIL in BLAS
        for _ in range(passes):
            start = time.perf_counter()
            list(pool.map(lambda part: np.dot(part, part), slices))
            best = min(best, time.perf_counter() - start)
    return vector.nbytes / best


def weight_bytes_read(model) -> int:
    """Bytes of weights one generated token reads: every stored array once (the integers and
    scales of a quantized model), except the learned position table, of which it reads one row
    (of its integers and of its scales, when it is quantized too)."""
    stored = model.num_bytes() if hasattr(model, "num_bytes") else sum(p.nbytes for p in model.params.values())
    name = "transformer.wpe.weight"
    table = [model.params[name]] if name in model.params else getattr(model, "quantized", {}).get(name, [])
    return stored - sum(a.nbytes - a[0].nbytes for a in table)


def mean_kv_bytes_read(cfg: GPTConfig, itemsize: int) -> float:
    """Bytes of KV cache a token of the benchmark's generation reads, on average: the keys and
    values of every layer at each of its context lengths, prompt + 1 to prompt + new tokens."""
    mean_context = GPT2_PROMPT_TOKENS + (GPT2_NEW_TOKENS + 1) / 2
    return 2 * cfg.n_layer * cfg.n_embd * mean_context * itemsize


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


@dataclass(frozen=True)
class Weights:
    """How a contender stores GPT-2's weights: float32, or ``bits`` (8 or 4) per weight with one scale
    per channel or per ``group_size`` rows, the token/position tables and the output layer too when
    ``embeddings`` (:func:`npgpt.allocation.quantize.quantize_model`)."""
    name: str
    bits: int | None = None
    group_size: int | None = None
    embeddings: bool = False


FLOAT32 = Weights("npgpt-numba")
QUANTIZED = (Weights("npgpt-int8", 8), Weights("npgpt-int8-all", 8, embeddings=True),
             Weights("npgpt-int4-all", 4, 64, embeddings=True))


class NpgptInference:
    """GPT-2 small's inference tasks in npgpt (float32, numba backend), or generation from a
    quantized twin (``weights``). numba and, through threadpoolctl when it is installed, BLAS run on
    ``threads`` threads, as PyTorch does."""

    def __init__(self, cfg: GPTConfig, threads: int, weights: Weights = FLOAT32) -> None:
        import numba

        from ..runtime.process import use_generating_threads
        use_generating_threads()                      # this worker only generates (and runs one forward)
        numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
        try:
            from threadpoolctl import threadpool_limits
            self._blas_limit = threadpool_limits(threads)       # held for the worker's life
        except ImportError:
            self._blas_limit = None
        backend.set_backend("numba")                  # this worker process is the contender's own
        self.name = weights.name
        self.model = GPT(cfg, seed=0).eval()
        self.x, self.prompt = _inference_inputs(cfg)
        self.error = None
        if weights.bits:
            from ..allocation.quantize import quantize_model
            exact = self.next_logits()
            self.model = quantize_model(self.model, weights.bits, weights.group_size, weights.embeddings)
            self.error = float(np.abs(self.next_logits() - exact).max() / np.abs(exact).max())   # the float model is let go

    def next_logits(self) -> np.ndarray:
        """The logits after the prompt, from the cached steps generation runs."""
        logits, _ = self.model.forward(self.prompt[None], cache=self.model.new_cache())
        return logits[0, -1]

    def logits_error(self) -> float | None:
        """max |z_quantized - z| / max |z| of the logits after the prompt (None in float32)."""
        return self.error

    def forward(self) -> None:
        self.model.forward(self.x)

    def generate(self) -> None:
        generate(self.model, self.prompt, GPT2_NEW_TOKENS)

    def memory(self) -> dict[str, int | None]:
        model, c = self.model, self.model.config
        params = model.num_bytes() if hasattr(model, "num_bytes") else sum(p.nbytes for p in model.params.values())
        kv = 2 * c.n_layer * c.n_embd * max(c.block_size, 16) * model.dtype.itemsize   # new_cache reserves block_size
        return _measure_generation(self.generate, params, kv)

    def read_bytes(self) -> float:
        """Bytes one generated token reads, on average (see the module's docstring)."""
        return weight_bytes_read(self.model) + mean_kv_bytes_read(self.model.config, self.model.dtype.itemsize)


class TorchInference:
    """The same tasks in the PyTorch twin, eager, with its own KV cache
    (:func:`npgpt.verify.twins.generate_greedy`)."""

    def __init__(self, cfg: GPTConfig, threads: int) -> None:
        import torch

        from ..verify.twins import TorchGPT
        torch.set_num_threads(threads)
        self.name, self.torch = "torch-eager", torch
        self.model = TorchGPT(cfg).eval()
        x, self.prompt = _inference_inputs(cfg)
        self.x = torch.from_numpy(x)

    def forward(self) -> None:
        with self.torch.no_grad():
            self.model(self.x)

    def generate(self) -> None:
        from ..verify.twins import generate_greedy
        generate_greedy(self.model, self.prompt, GPT2_NEW_TOKENS)

    def memory(self) -> dict[str, int | None]:
        c = self.model.cfg
        params = sum(p.numel() * p.element_size() for p in self.model.parameters())
        kv = 2 * c.n_layer * c.n_embd * (GPT2_PROMPT_TOKENS + GPT2_NEW_TOKENS) * 4      # grown as it goes
        return _measure_generation(self.generate, params, kv, traced=False)

    def logits_error(self) -> None:
        return None                                   # float32: the reference itself

    def read_bytes(self) -> float:
        """Bytes one generated token reads: float32 weights (one row of the position table) and the cache."""
        c = self.model.cfg
        stored = sum(p.numel() * p.element_size() for p in self.model.parameters())     # tied: counted once
        unread = (c.block_size - 1) * c.n_embd * 4 if c.pos_encoding == "learned" else 0
        return stored - unread + mean_kv_bytes_read(c, 4)


def bench_gpt2(threads: int, rounds: int, repeats: int, with_torch: bool = True,
               log: Callable[..., Any] = print, cfg: GPTConfig | None = None,
               bandwidth_bytes: int = READ_BYTES) -> dict[str, Any]:
    """GPT-2 small (124M, random weights; or ``cfg``) inference, npgpt and its quantized twins beside the
    PyTorch twin: medians of forward and generation times, the memory of a generation, and each
    generation's fraction of the memory-bandwidth roofline (bandwidth read on a vector of ``bandwidth_bytes``)."""
    from ..verify.counting import gpt_num_params
    cfg = GPTConfig.preset("gpt2") if cfg is None else cfg
    makers = [partial(NpgptInference, cfg, threads)] + [partial(NpgptInference, cfg, threads, w) for w in QUANTIZED]
    tasks = [("forward", "generate")] + [("generate",)] * len(QUANTIZED)
    if with_torch:
        note = torch_unavailable()
        if note:
            log(note)
        else:
            makers.append(partial(TorchInference, cfg, threads))
            tasks.append(("forward", "generate"))
    log(f"gpt2: {len(makers)} contenders, each in its own process building a random {gpt_num_params(cfg):,}-parameter model "
        f"(1 warm-up call of each task, {rounds} alternating rounds x {repeats})")
    medians, answers = time_tasks(makers, tasks, 1, rounds, repeats, ask=("memory", "read_bytes", "logits_error"))
    # the limit is the memory system's, reached with every core reading (one thread reads less:
    # 16-21 GB/s against 31-34 on two cores here), so each contender is held to the same roofline
    cores = os.cpu_count() or 1
    bandwidth = read_bandwidth(cores, bandwidth_bytes)              # after the contenders, alone
    log(f"memory read bandwidth, {cores} threads reading: {bandwidth / 1e9:.1f} GB/s")
    rows = {}
    for name, by_task in medians.items():
        row = {"memory": answers[name]["memory"], "read_bytes_per_token": answers[name]["read_bytes"],
               "logits_error": answers[name]["logits_error"]}
        row["roofline_tokens_per_s"] = bandwidth / row["read_bytes_per_token"]
        if "forward" in by_task:
            row["forward_ms"] = 1e3 * by_task["forward"]
            row["forward_tokens_per_s"] = GPT2_FORWARD_TOKENS / by_task["forward"]
        row["generate_s"] = by_task["generate"]
        row["generate_tokens_per_s"] = GPT2_NEW_TOKENS / by_task["generate"]
        row["roofline_fraction"] = row["generate_tokens_per_s"] / row["roofline_tokens_per_s"]
        rows[name] = row
    if "torch-eager" in rows:
        torch_row = rows["torch-eager"]
        for row in rows.values():
            row["generate_vs_torch"] = row["generate_tokens_per_s"] / torch_row["generate_tokens_per_s"]
            if "forward_ms" in row:
                row["forward_vs_torch"] = torch_row["forward_ms"] / row["forward_ms"]
    return {"config": cfg.to_dict(), "num_params": gpt_num_params(cfg), "threads": threads, "rounds": rounds,
            "read_bandwidth_bytes_per_s": bandwidth, "read_bandwidth_threads": cores,
            "repeats_per_round": repeats, "forward_tokens": GPT2_FORWARD_TOKENS,
            "prompt_tokens": GPT2_PROMPT_TOKENS, "new_tokens": GPT2_NEW_TOKENS, "contenders": rows}


def format_gpt2_table(r: dict[str, Any]) -> str:
    """The table ``npgpt bench --preset gpt2`` prints, from what :func:`bench_gpt2` returns."""
    mb = lambda b: "-" if b is None else f"{b / 1e6:,.0f} MB"
    lines = [f"gpt2 inference ({r['num_params']:,} parameters, random weights, float32; threads: {r['threads']} "
             f"(numba, BLAS, PyTorch); medians of {r['rounds']} alternating rounds)",
             f"  {'contender':<14} {'forward 1x' + str(r['forward_tokens']):>14} {'vs torch':>9} "
             f"{'generate ' + str(r['new_tokens']) + ' (KV cache)':>24} {'vs torch':>9}"]
    for name, row in r["contenders"].items():
        forward = f"{row['forward_ms']:,.0f} ms" if "forward_ms" in row else "-"
        ratio_f = f"{row['forward_vs_torch']:.2f}x" if "forward_vs_torch" in row else "-"
        gen = f"{row['generate_tokens_per_s']:.1f} tok/s"
        ratio_g = f"{row['generate_vs_torch']:.2f}x" if "generate_vs_torch" in row else "-"
        lines.append(f"  {name:<14} {forward:>14} {ratio_f:>9} {gen:>24} {ratio_g:>9}")
    lines.append(f"  roofline of generation: memory read at {r['read_bandwidth_bytes_per_s'] / 1e9:.1f} GB/s "
                 f"({r['read_bandwidth_threads']} threads, measured in this run), divided by the bytes a token "
                 f"reads (weights once, KV cache)")
    for name, row in r["contenders"].items():
        error = "" if row.get("logits_error") is None else \
            f" (logits after the prompt off by {row['logits_error']:.2%} of the largest)"
        lines.append(f"  {name:<14} {row['read_bytes_per_token'] / 1e6:,.0f} MB a token -> at most "
                     f"{row['roofline_tokens_per_s']:.1f} tok/s; reached {row['roofline_fraction']:.0%}{error}")
    lines.append("  memory while generating (prompt "
                 f"{r['prompt_tokens']} + {r['new_tokens']} tokens):")
    for name, row in r["contenders"].items():
        m = row["memory"]
        expected = m["param_bytes"] + m["kv_cache_bytes"]
        traced = "" if m["traced_peak_bytes"] is None else \
            f", measured {mb(m['traced_peak_bytes'])} (tracemalloc: parameters + what the generation allocated)"
        lines.append(f"  {name:<14} parameters {mb(m['param_bytes'])} + KV cache {mb(m['kv_cache_bytes'])} = "
                     f"{mb(expected)}{traced}; process resident {mb(m['rss_before_bytes'])} before, "
                     f"{mb(m['peak_rss_bytes'])} at the peak")
    return "\n".join(lines)

