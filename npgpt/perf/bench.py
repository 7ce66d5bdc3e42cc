"""Training and generation speed, npgpt's two backends beside PyTorch eager, in one run.

Every contender trains the same model (float32, same batch, AdamW) for the same steps. Rounds
alternate between contenders, after a warm-up, so a noisy shared machine slows them alike; the
figures are medians over all timed steps, and ratios are of medians. The PyTorch twin is
:mod:`npgpt.verify.twins`: it runs when torch is installed.

``--preset gpt2`` times inference on GPT-2 small (124M parameters, random weights): a forward pass
over 256 tokens, greedy generation with the KV cache, and the same generation from int8 weights,
beside the PyTorch twin (eager, its own KV cache) on the same threads; it measures the memory a
generation takes against the parameters plus the KV cache, and the machine's memory read bandwidth,
and prints each generation's fraction of its roofline (bandwidth / bytes a new token reads).

    python -m npgpt bench                    # baby and small presets, table
    python -m npgpt bench --preset baby --json
    python -m npgpt bench --preset gpt2      # GPT-2 small inference (a few minutes)
    python -m npgpt bench --contention --preset baby   # quiet, then beside one busy process

``--contention`` is :mod:`npgpt.perf.contention`: npgpt on fixed threads, npgpt adapting them
(``auto``) and PyTorch, on the quiet machine and then sharing it with a busy process.
"""

# This module is the training bench behind ``python -m npgpt bench`` (presets, FLOPs per step,
# generation speed, the compile probe, the table). The rest of the room: perf/harness.py (worker
# processes, alternating rounds, medians), perf/contenders.py (the timed training steps),
# perf/gpt2_inference.py (``--preset gpt2``), perf/contention.py, perf/anatomy.py, perf/timing.py.
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable
from functools import partial
from typing import Any

import numpy as np

from ..allocation.costs import matmul_peak_gflops
from ..decoding import generate
from ..models import GPT
from ..models.config import GPTConfig
from ..kernels import backend
from .contenders import BENCH_PRESETS, NpgptContender, TorchContender, random_batch
from .gpt2_inference import bench_gpt2, format_gpt2_table
from .harness import BenchmarkError, children_ignore_ctrl_c, time_training, torch_unavailable
from .timing import seconds

# BENCH_PRESETS, BenchmarkError and bench_gpt2 are imported from here by the command line.
__all__ = ["BENCH_PRESETS", "COMPILE_PROBE", "BenchmarkError", "bench_gpt2", "bench_preset", "flops_per_step",
           "format_table", "generation_speed", "numba_compile_seconds", "run"]


def flops_per_step(cfg: GPTConfig, batch_size: int) -> int:
    """Training FLOPs of one step: 6 per parameter per token (forward 2, backward 4) for the matrix
    multiplies, plus attention's QK^T and AV (12 L T C per token, PaLM's appendix B estimate)."""
    C, L, T = cfg.n_embd, cfg.n_layer, cfg.block_size
    matmul_params = L * 12 * C * C + cfg.vocab_size * C          # blocks and the output layer
    per_token = 6 * matmul_params + 12 * L * T * C
    return per_token * batch_size * T


def generation_speed(cfg: GPTConfig, new_tokens: int, repeats: int = 3) -> dict[str, float]:
    """Tokens per second generating ``new_tokens`` greedily, with and without the KV cache."""
    model = GPT(cfg, seed=0)
    prompt = np.zeros(1, dtype=np.int64)
    result = {}
    for label, use_cache in (("with_cache", True), ("without_cache", False)):
        generate(model, prompt, 8, use_cache=use_cache)          # warm-up
        median = np.median([seconds(lambda c=use_cache: generate(model, prompt, new_tokens, use_cache=c))
                            for _ in range(repeats)])
        result[f"tokens_per_s_{label}"] = new_tokens / median
    result["cache_speedup"] = result["tokens_per_s_with_cache"] / result["tokens_per_s_without_cache"]
    return result


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


def numba_compile_seconds() -> dict[str, float]:
    """Seconds to import npgpt and run a first numba-backend step: with an empty numba cache
    (every kernel compiles) and again with the cache it left (kernels load from disk)."""
    with tempfile.TemporaryDirectory() as cache_dir:
        env = {**os.environ, "NUMBA_CACHE_DIR": cache_dir}
        cold, cached = _compile_probe(env), _compile_probe(env)
    return {"cold_s": cold, "cached_s": cached}


def _compile_probe(env: dict[str, str]) -> float:
    """One run of :data:`COMPILE_PROBE`: its seconds. The probe ignores Ctrl-C (the bench answers it,
    and ends the probe on the way out); a failed probe is a :class:`BenchmarkError`."""
    with children_ignore_ctrl_c():
        process = subprocess.Popen([sys.executable, "-c", COMPILE_PROBE], env=env, stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, text=True)
    with process:
        try:
            out, err = process.communicate()
        except BaseException:
            process.kill()
            raise
    if process.returncode != 0:
        last = (err.strip().splitlines() or ["no message"])[-1]
        raise BenchmarkError(f"the numba compile probe failed (exit code {process.returncode}): {last}")
    return float(out)


# ----------------------------------------------------------------------------- the benchmark
def bench_preset(name: str, threads: int, warmup: int, rounds: int, steps_per_round: int, peak: float,
                 with_torch: bool = True, log: Callable[..., Any] = print, update: bool = True) -> dict[str, Any]:
    """Training speed of every contender on preset ``name``: ms per step, tokens per second, MFU
    against the larger of ``peak`` and a fresh matmul peak, and the speed against PyTorch."""
    cfg = GPTConfig.preset(name)
    batch_size = BENCH_PRESETS[name]["batch_size"]
    x, y = random_batch(cfg, batch_size)
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
    step_s = time_training(makers, warmup, rounds, steps_per_round)
    peak = max(peak, matmul_peak_gflops())      # a peak measured at a busy moment is too low
    tokens, flops = batch_size * cfg.block_size, flops_per_step(cfg, batch_size)
    rows = {}
    for contender, s in step_s.items():
        mfu = flops / s / (peak * 1e9)
        rows[contender] = {"ms_per_step": 1e3 * s, "tokens_per_s": tokens / s,
                           "mfu": mfu if mfu <= 1.0 else None}      # > 100%: the peak was not the machine's
        if mfu > 1.0:
            log(f"{contender}: MFU would be {mfu:.0%}, so the matmul peak ({peak:.0f} GFLOP/s) was measured "
                f"while the machine was busy; MFU is left out")
    if "torch-eager" in step_s:
        for contender in rows:
            rows[contender]["speed_vs_torch"] = step_s["torch-eager"] / step_s[contender]
    return {"config": cfg.to_dict(), "batch_size": batch_size, "flops_per_step": flops, "training": rows,
            "optimizer_step": update}


def run(presets: tuple[str, ...] = ("baby", "small"), threads: int = 2, warmup: int = 5, rounds: int = 6,
        steps_per_round: int = 5, gen_tokens: int = 200, with_torch: bool = True, compile_times: bool = True,
        log: Callable[..., Any] = print, update: bool = True) -> dict[str, Any]:
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


def format_table(result: dict[str, Any]) -> str:
    """The table ``npgpt bench`` prints, from what :func:`run` returns (or ``{"gpt2": ...}`` alone)."""
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

