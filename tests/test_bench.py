"""The benchmark command runs and reports every figure (its numbers are measured, not tested), and
stops cleanly on Ctrl-C or SIGTERM: one line, exit 130/143, its worker processes ended, no tracebacks."""
import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from functools import partial
from pathlib import Path

import numpy as np
import pytest
from references import optional_reference

from npgpt.models.config import GPTConfig
from npgpt.perf.bench import flops_per_step
from npgpt.perf.contenders import NpgptContender, random_batch
from npgpt.perf.contention import BUSY_LOOP
from npgpt.perf.harness import Workers

ROOT = Path(__file__).resolve().parents[1]
# A GPT-2-shaped model small enough for a test; its block holds the benchmark's 256-token forward.
GPT2_STAND_IN = GPTConfig(vocab_size=300, block_size=256, n_layer=2, n_head=4, n_embd=64)


@pytest.mark.slow
def test_bench_json_has_every_figure():
    out = subprocess.run(
        [sys.executable, "-m", "npgpt", "bench", "--preset", "baby", "--rounds", "1", "--steps", "1",
         "--warmup", "1", "--gen-tokens", "4", "--no-torch", "--no-compile", "--json"],
        capture_output=True, text=True, check=True, cwd=ROOT).stdout
    result = json.loads(out)
    assert result["matmul_peak_gflops"] > 0
    rows = result["presets"]["baby"]["training"]
    assert set(rows) == {"npgpt-numba", "npgpt-numpy"}
    for row in rows.values():
        assert row["ms_per_step"] > 0 and row["tokens_per_s"] > 0
        assert row["mfu"] is None or 0 < row["mfu"] <= 1      # None: the peak was measured while busy
    assert result["generation_baby"]["tokens_per_s_with_cache"] > 0


def test_flops_per_step_counts_six_per_weight_per_token_plus_attention():
    cfg = GPTConfig(vocab_size=10, block_size=4, n_layer=1, n_head=1, n_embd=2)
    per_token = 6 * (12 * 2 * 2 + 10 * 2) + 12 * 1 * 4 * 2
    assert flops_per_step(cfg, batch_size=3) == per_token * 3 * 4


@pytest.mark.slow
def test_gpt2_inference_bench_reports_speed_and_memory():
    """The figures of ``bench --preset gpt2``, on a small model so the test is quick."""
    from npgpt.perf.bench import format_table
    from npgpt.perf.gpt2_inference import GPT2_FORWARD_TOKENS, GPT2_NEW_TOKENS, GPT2_PROMPT_TOKENS, bench_gpt2
    cfg = GPT2_STAND_IN
    result = bench_gpt2(threads=1, rounds=1, repeats=1, with_torch=False, log=lambda *a: None, cfg=cfg,
                        bandwidth_bytes=1 << 26)
    rows = result["contenders"]
    assert set(rows) == {"npgpt-numba", "npgpt-int8", "npgpt-int8-all", "npgpt-int4-all"}
    # the roofline: every weight once (one row of the position table) and the mean KV cache of the generation
    mean_context = GPT2_PROMPT_TOKENS + (GPT2_NEW_TOKENS + 1) / 2
    kv_read = 2 * cfg.n_layer * cfg.n_embd * mean_context * 4
    params_read = (sum(np.prod(s) for s in npgpt_shapes(cfg)) - (cfg.block_size - 1) * cfg.n_embd) * 4
    assert rows["npgpt-numba"]["read_bytes_per_token"] == pytest.approx(params_read + kv_read, rel=1e-12)
    assert kv_read < rows["npgpt-int8"]["read_bytes_per_token"] < 0.5 * params_read + kv_read
    # the token table (the output layer) quantized too: a quarter of float32's bytes, plus a float scale per
    # channel (a 64th of its int8 bytes here, n_embd = 64) and the float biases and LayerNorms; int4 less
    assert kv_read < rows["npgpt-int4-all"]["read_bytes_per_token"] < rows["npgpt-int8-all"]["read_bytes_per_token"] \
        < min(0.3 * params_read + kv_read, rows["npgpt-int8"]["read_bytes_per_token"])
    # each one's logits against the float model's (tests/test_quantize.py: int8 <= 2%, int4 in groups <= 30%)
    assert rows["npgpt-numba"]["logits_error"] is None
    assert 0 < rows["npgpt-int8"]["logits_error"] <= 0.02 and 0 < rows["npgpt-int8-all"]["logits_error"] <= 0.02
    assert 0.01 < rows["npgpt-int4-all"]["logits_error"] <= 0.3
    bandwidth = result["read_bandwidth_bytes_per_s"]
    assert 1e8 < bandwidth < 1e13                    # 0.1 GB/s to 10 TB/s: a measurement, not a unit slip
    for row in rows.values():
        assert row["roofline_tokens_per_s"] == pytest.approx(bandwidth / row["read_bytes_per_token"])
        assert row["roofline_fraction"] == pytest.approx(row["generate_tokens_per_s"] / row["roofline_tokens_per_s"])
    assert rows["npgpt-numba"]["forward_ms"] > 0 and "forward_ms" not in rows["npgpt-int8"]
    params = sum(np.prod(s) for s in npgpt_shapes(cfg)) * 4
    npgpt_memory = rows["npgpt-numba"]["memory"]
    assert npgpt_memory["param_bytes"] == params
    assert npgpt_memory["kv_cache_bytes"] == 2 * 2 * 64 * GPT2_FORWARD_TOKENS * 4
    # what a generation allocates beyond the parameters is the KV cache and little else
    assert npgpt_memory["param_bytes"] + npgpt_memory["kv_cache_bytes"] <= npgpt_memory["traced_peak_bytes"] \
        <= 1.3 * (npgpt_memory["param_bytes"] + npgpt_memory["kv_cache_bytes"])
    assert rows["npgpt-int8"]["memory"]["param_bytes"] < params
    table = format_table({"gpt2": result})
    assert "npgpt-int8" in table and "tok/s" in table and "KV cache" in table
    assert re.search(r"roofline of generation: memory read at [\d.]+ GB/s", table), table
    assert re.search(r"npgpt-int8 +[\d,]+ MB a token -> at most [\d.]+ tok/s; reached \d+% "
                     r"\(logits after the prompt off by [\d.]+% of the largest\)", table), table


@pytest.mark.slow
def test_gpt2_inference_bench_runs_pytorch_beside_npgpt():
    optional_reference("torch", "the inference benchmark's reference")
    from npgpt.perf.gpt2_inference import GPT2_NEW_TOKENS, GPT2_PROMPT_TOKENS, bench_gpt2
    result = bench_gpt2(threads=1, rounds=1, repeats=1, with_torch=True, log=lambda *a: None, cfg=GPT2_STAND_IN,
                        bandwidth_bytes=1 << 26)
    rows = result["contenders"]
    assert set(rows) == {"npgpt-numba", "npgpt-int8", "npgpt-int8-all", "npgpt-int4-all", "torch-eager"}
    # the twin stores the same float32 weights (the tied embedding once): it reads the same bytes a token
    assert rows["torch-eager"]["read_bytes_per_token"] == pytest.approx(rows["npgpt-numba"]["read_bytes_per_token"])
    assert rows["torch-eager"]["memory"]["kv_cache_bytes"] == 2 * 2 * 64 * (GPT2_PROMPT_TOKENS + GPT2_NEW_TOKENS) * 4
    assert rows["npgpt-numba"]["generate_vs_torch"] > 0 and rows["npgpt-numba"]["forward_vs_torch"] > 0


def test_the_bytes_a_token_reads_are_the_weights_once_and_one_row_of_positions():
    from npgpt import GPT
    from npgpt.allocation.quantize import quantize_model
    from npgpt.perf.gpt2_inference import read_bandwidth, weight_bytes_read
    cfg = GPTConfig(vocab_size=11, block_size=8, n_layer=1, n_head=2, n_embd=8)
    model = GPT(cfg, seed=0)
    every = sum(int(np.prod(s)) for s in npgpt_shapes(cfg)) * 4
    assert weight_bytes_read(model) == every - 7 * 8 * 4           # 7 of the 8 position rows are not read
    int8 = quantize_model(model, 8)
    assert weight_bytes_read(int8) == int8.num_bytes() - 7 * 8 * 4 < every
    everything = quantize_model(model, 8, quantize_embeddings=True)   # one row of 8 int8 and its scale is read
    assert weight_bytes_read(everything) == everything.num_bytes() - 7 * 8 - 7 * 4 < weight_bytes_read(int8)
    sinusoidal = GPT(GPTConfig(vocab_size=11, block_size=8, n_layer=1, n_head=2, n_embd=8, pos_encoding="sinusoidal"))
    assert weight_bytes_read(sinusoidal) == sum(p.nbytes for p in sinusoidal.params.values())   # no table stored
    assert 1e8 < read_bandwidth(1, nbytes=1 << 22, passes=2) < 1e13


def npgpt_shapes(cfg):
    from npgpt import GPT
    return GPT.param_shapes(cfg).values()


def test_interleaved_timings_and_verdicts(monkeypatch):
    from npgpt.perf import timing
    calls = []
    result = timing.interleaved_ms({"a": lambda: calls.append("a"), "b": lambda: calls.append("b")},
                                  repeats=2, rounds=3)
    assert calls == ["a"] * 3 + ["b"] * 3 + ["a"] * 3 + ["b"] * 3 + ["a"] * 3 + ["b"] * 3   # turns, warm-up included
    assert set(result) == {"a", "b", "rounds"} and len(result["rounds"]["a"]) == 3
    assert result["a"] == min(result["rounds"]["a"]) >= 0

    monkeypatch.setattr(timing.os, "getloadavg", lambda: (7.5, 7.0, 6.0))
    monkeypatch.setattr(timing.os, "cpu_count", lambda: 2)
    assert timing.machine_load() == (7.5, 2)
    assert "load average 7.5 on 2 cores" in timing.busy_note()
    assert timing.speedup_verdict("a stack", 0.5, "one product", 0.4) == "one product is 1.2x faster than a stack"
    slower = timing.speedup_verdict("a stack", 3.0, "one product", 9.45)
    assert slower.startswith("one product was not clearly faster than a stack here (0.32x); the machine was busy")
    monkeypatch.setattr(timing.os, "getloadavg", lambda: (0.2, 0.2, 0.2))
    assert timing.busy_note() == ""
    assert "not busy, so this is a real result" in timing.speedup_verdict("x", 1.0, "y", 1.0)


@pytest.mark.slow
def test_contention_bench_times_quiet_and_busy():
    out = subprocess.run(
        [sys.executable, "-m", "npgpt", "bench", "--contention", "--preset", "baby", "--rounds", "1", "--steps", "2",
         "--warmup", "1", "--no-torch", "--json"],
        capture_output=True, text=True, check=True, cwd=ROOT).stdout
    [result] = json.loads(out)
    assert set(result["quiet_ms"]) == set(result["busy_ms"]) == {"npgpt-numba", "npgpt-numba-auto"}
    assert all(ms > 0 for ms in [*result["quiet_ms"].values(), *result["busy_ms"].values()])
    assert result["threads_busy"]["npgpt-numba"] == result["threads"] == 2      # fixed: it keeps its count
    assert result["threads_busy"]["npgpt-numba-auto"] in (1, 2)
    assert result["warmup_steps"] == 12                 # under load, the governor gets its first trial


def test_busy_process_runs_for_the_block_only():
    from npgpt.perf.contention import busy_process, format_contention_table
    with busy_process() as process:
        assert process.poll() is None
    assert process.poll() is not None
    table = format_contention_table({"preset": "baby", "threads": 2, "warmup_steps": 12,
                                     "quiet_ms": {"npgpt-numba": 30.0, "torch-eager": 36.0},
                                     "busy_ms": {"npgpt-numba": 60.0, "torch-eager": 150.0},
                                     "threads_busy": {"npgpt-numba": 1, "torch-eager": 2}})
    assert "2.00x" in table and "2.50x" in table and "1.20x" in table      # busy/quiet, vs torch busy, quiet


@pytest.mark.slow
def test_the_benches_import_neither_torch_nor_its_twins():
    """torch is optional: the perf/ modules load the PyTorch twins only when a torch contender is built."""
    code = ("import pkgutil, sys, importlib, npgpt.perf\n"
            "for m in pkgutil.iter_modules(npgpt.perf.__path__): importlib.import_module('npgpt.perf.' + m.name)\n"
            "print(sorted({'torch', 'npgpt.verify.twins', 'npgpt.verify.torch_rnn'} & set(sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


# ---------------------------------------------------------------------- stopping (issue 28)
SMALLEST = [sys.executable, "-m", "npgpt", "bench", "--preset", "baby", "--rounds", "1", "--steps", "1",
            "--gen-tokens", "1", "--no-torch", "--no-compile", "--threads", "1"]
SINGLE_THREADED = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "NUMBA_NUM_THREADS": "1"}
EXIT = {signal.SIGINT: 130, signal.SIGTERM: 143}


def session_processes(sid: int) -> list[tuple[int, str, str]]:
    """(pid, state, command line) of every process of session ``sid``, from /proc."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:                     # it ended while we looked
            continue
        state, _ppid, _pgrp, session = stat[stat.rindex(")") + 2:].split()[:4]
        if int(session) == sid:
            found.append((int(entry.name), state, command))
    return found


def wait_until(condition, what: str, limit_s: float = 300) -> None:
    """Poll ``condition`` until it holds (``limit_s`` only bounds a broken run: the machine is shared)."""
    end = time.monotonic() + limit_s
    while not condition():
        assert time.monotonic() < end, f"waited {limit_s} s for {what}"
        time.sleep(0.05)


def alive(sid: int, needle: str = "") -> list[str]:
    return [command for _, state, command in session_processes(sid) if state != "Z" and needle in command]


def start_bench(extra: list[str]) -> subprocess.Popen:
    """``npgpt bench`` in a session of its own, so a signal can go to its whole process group (as a
    terminal's Ctrl-C does) without reaching pytest."""
    return subprocess.Popen(SMALLEST + extra, cwd=ROOT, env={**os.environ, **SINGLE_THREADED}, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)


def stop_and_check(process: subprocess.Popen, signum: int, to_group: bool) -> str:
    """Send ``signum``; the bench must exit 130/143 with one line and leave no process alive."""
    try:
        if to_group:
            os.killpg(process.pid, signum)
        else:
            process.send_signal(signum)
        # The workers are ended at once, not waited for: a bench that waits for a busy worker's request
        # to finish (up to harness.STOP_WAIT_S = 10 s, then kills it) is still running after 8 s.
        out, err = process.communicate(timeout=8)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)      # whatever a failed run left
    assert process.returncode == EXIT[signum], err
    line = "npgpt bench: interrupted" + (" (SIGTERM)" if signum == signal.SIGTERM else "")
    assert err.splitlines() == [line], err
    wait_until(lambda: not alive(process.pid), "the workers to end", limit_s=30)
    return out


@pytest.mark.parametrize("signum, to_group, delay", [
    (signal.SIGINT, True, 3), (signal.SIGTERM, False, 3),
    pytest.param(signal.SIGINT, True, 0, marks=pytest.mark.slow),        # the workers are still importing
    pytest.param(signal.SIGTERM, True, 3, marks=pytest.mark.slow),
    pytest.param(signal.SIGINT, False, 3, marks=pytest.mark.slow)])
def test_a_signal_stops_bench_with_one_line_and_ends_its_workers(signum, to_group, delay):
    process = start_bench(["--warmup", "1000000"])       # the workers never finish on their own
    wait_until(lambda: len(alive(process.pid, "multiprocessing.spawn")) >= 2, "the two workers to start")
    time.sleep(delay)
    out = stop_and_check(process, signum, to_group)
    assert "Traceback" not in out and "interrupted" not in out


@pytest.mark.slow
def test_the_workers_of_a_killed_bench_end():
    process = start_bench(["--warmup", "1000000"])
    try:
        wait_until(lambda: len(alive(process.pid, "multiprocessing.spawn")) >= 2, "the two workers to start")
        time.sleep(3)
        process.kill()                   # no handler runs: the workers must notice on their own
        process.wait()                   # (not communicate: the workers hold its stdout and stderr)
        wait_until(lambda: not alive(process.pid), "the workers to end", limit_s=60)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.stdout.close()
        process.stderr.close()


@pytest.mark.slow
def test_ctrl_c_during_the_contention_bench_ends_the_busy_process_quietly():
    process = start_bench(["--contention", "--warmup", "1"])
    wait_until(lambda: alive(process.pid, BUSY_LOOP), "the busy process to start")
    time.sleep(1)      # past Python's start-up, which SIGINT would end silently, into the loop
    [busy] = [pid for pid, state, command in session_processes(process.pid) if BUSY_LOOP in command]
    # Ctrl-C reaches the busy process too; sent to it alone first, so that its answer does not race
    # with the bench killing it on the way out
    os.kill(busy, signal.SIGINT)
    time.sleep(1)
    assert alive(process.pid, BUSY_LOOP), "the busy process ended on SIGINT (and printed its traceback)"
    stop_and_check(process, signal.SIGINT, to_group=True)


def test_workers_ignore_ctrl_c_and_are_ended_at_once_when_the_parent_stops():
    cfg = GPTConfig.preset("baby")
    x, y = random_batch(cfg, 2)
    with pytest.raises(KeyboardInterrupt), Workers([partial(NpgptContender, cfg, "numpy", x, y, 1)],
                                                   [("step",)]) as workers:
        name, connection, process, _ = workers.workers[0]
        os.kill(process.pid, signal.SIGINT)       # a terminal's Ctrl-C reaches every process of its group
        assert workers.ask(["thread_count"]) == {name: {"thread_count": 1}}    # still there, still answers
        connection.send(("time", "step", 10**6))  # busy for good
        raise KeyboardInterrupt
    assert process.exitcode == -signal.SIGTERM    # terminated, not asked, waited for and then killed


def test_the_compile_probe_reports_its_seconds_and_its_failure(monkeypatch):
    from npgpt.perf import bench
    from npgpt.perf.harness import BenchmarkError
    monkeypatch.setattr(bench, "COMPILE_PROBE", "print(1.5)")
    assert bench.numba_compile_seconds() == {"cold_s": 1.5, "cached_s": 1.5}
    monkeypatch.setattr(bench, "COMPILE_PROBE", "import sys; sys.exit('no numba here')")
    with pytest.raises(BenchmarkError, match=r"the numba compile probe failed \(exit code 1\): no numba here"):
        bench.numba_compile_seconds()
