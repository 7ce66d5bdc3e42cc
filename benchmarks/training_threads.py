"""A training step under each of numba's thread pools, and with a lower threshold for parallel kernels.

    python benchmarks/training_threads.py [--preset baby] [--rounds 6] [--steps 40]

Training runs numba's ``workqueue`` pool, whose sleeping threads take 0.1-0.2 ms to wake for each
parallel region, so kernels on fewer than ``PARALLEL_MIN_WORK`` elements (npgpt/kernels/_compile.py)
run their serial build. Under OpenMP with a bounded spin (what a generating process gets) a region
starts in microseconds, which suggests a lower threshold. This times it: each variant is a fresh
process (the threading layer is chosen once a process) that warms up, then times ``--steps``
training steps (numba backend, AdamW, 2 threads); the variants alternate, round after round, and the
medians are of all steps. Writes ``benchmarks/results/training_threads.json``.

Variants: ``workqueue`` (the default), ``omp`` (OpenMP, ``GOMP_SPINCOUNT=20000``), and ``omp-N``
(OpenMP with ``PARALLEL_MIN_WORK = N``).
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULT = ROOT / "benchmarks" / "results" / "training_threads.json"
VARIANTS = ("workqueue", "omp", "omp-65536", "omp-16384")


def worker(variant: str, preset: str, steps: int) -> None:
    """In a fresh process: time ``steps`` training steps under ``variant``; print them as JSON."""
    if variant != "workqueue":
        os.environ.update(NUMBA_THREADING_LAYER="omp", GOMP_SPINCOUNT="20000")
    sys.path.insert(0, str(ROOT))
    import numba

    import npgpt.kernels._compile as compile_options
    from npgpt.models.config import GPTConfig
    from npgpt.perf.contenders import BENCH_PRESETS, NpgptContender, random_batch
    if variant.startswith("omp-"):
        compile_options.PARALLEL_MIN_WORK = int(variant.split("-")[1])
    cfg = GPTConfig.preset(preset)
    contender = NpgptContender(cfg, "numba", *random_batch(cfg, BENCH_PRESETS[preset]["batch_size"]), threads=2)
    for _ in range(5):
        contender.step()
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        contender.step()
        times.append(time.perf_counter() - start)
    print(json.dumps({"layer": numba.threading_layer(), "times": times}))


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="baby", choices=["baby", "small"])
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--steps", type=int, default=40, help="timed steps per process")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker(args.worker, args.preset, args.steps)
        return
    times = {v: [] for v in VARIANTS}
    layers = {}
    for r in range(args.rounds):
        for variant in VARIANTS if r % 2 == 0 else VARIANTS[::-1]:
            out = subprocess.run([sys.executable, __file__, "--worker", variant, "--preset", args.preset,
                                  "--steps", str(args.steps)], capture_output=True, text=True, check=True)
            run = json.loads(out.stdout.splitlines()[-1])
            times[variant] += run["times"]
            layers[variant] = run["layer"]
    sys.path.insert(0, str(ROOT))
    from benchmarks.quantized_decode import machine
    result = {"preset": args.preset, "rounds": args.rounds, "steps_per_process": args.steps,
              "machine": machine(),
              "median_ms": {v: 1e3 * statistics.median(t) for v, t in times.items()},
              "threading_layer": layers}
    RESULT.write_text(json.dumps(result, indent=2) + "\n")
    for variant, ms in result["median_ms"].items():
        print(f"{variant:12s} ({layers[variant]}): {ms:6.1f} ms a step (median of {len(times[variant])})")


if __name__ == "__main__":
    main()
