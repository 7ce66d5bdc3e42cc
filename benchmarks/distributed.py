"""Data parallel on one machine: 1 rank x 2 numba threads against 2 MPI ranks x 1 thread, baby preset,
the same global batch. Reports tokens per second and the share of a step spent in the all-reduce;
writes benchmarks/results/distributed.json.

    python benchmarks/distributed.py            (launches both layouts itself with mpiexec)
"""
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results" / "distributed.json"
WARMUP, STEPS, BATCH = 3, 20, 12

WORKER = """
import json, time, sys
import numpy as np
from npgpt import GPT, GPTConfig, TrainConfig
from npgpt.allocation import distributed
from npgpt.text import resolve_corpus
from npgpt.training import Dataset

warmup, steps, batch = map(int, sys.argv[1:4])
comm = distributed.world()
data = Dataset(resolve_corpus("shakespeare")[0])
config = GPTConfig.preset("baby", vocab_size=data.vocab_size)
trainer = distributed.DataParallelTrainer(GPT(config, seed=0), data, TrainConfig(max_iters=10**6, batch_size=batch),
                                          comm=comm)
reduce_s = [0.0]
allreduce = comm.allreduce
def timed_allreduce(buffer):
    t0 = time.perf_counter()
    allreduce(buffer)
    reduce_s[0] += time.perf_counter() - t0
    return buffer
comm.allreduce = timed_allreduce
for _ in range(warmup):
    trainer.train_step()
comm.barrier()
reduce_s[0] = 0.0
t0 = time.perf_counter()
for _ in range(steps):
    trainer.train_step()
wall = time.perf_counter() - t0
if comm.rank == 0:
    print(json.dumps({"step_s": wall / steps, "tokens_per_s": steps * batch * config.block_size / wall,
                      "allreduce_share": reduce_s[0] / wall, "ranks": comm.size}))
"""


def layout(ranks, threads):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "NUMBA_NUM_THREADS": str(threads), "OMP_NUM_THREADS": "1"}
    mpiexec = shutil.which("mpiexec") or str(Path(sys.executable).parent / "mpiexec")
    command = [sys.executable, "-c", WORKER, str(WARMUP), str(STEPS), str(BATCH)]
    if ranks > 1:
        command = [mpiexec, "-n", str(ranks), *command]
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=True, timeout=900)
    return {"threads_per_rank": threads, **json.loads(done.stdout.strip().splitlines()[-1])}


def main():
    load = os.getloadavg()[0]
    rounds = []
    for _ in range(2):                          # alternate, so drift in the machine hits both alike
        rounds.append([layout(1, 2), layout(2, 1)])
        time.sleep(2)
    best = [min((r[i] for r in rounds), key=lambda x: x["step_s"]) for i in range(2)]
    result = {"preset": "baby", "global_batch": BATCH, "steps": STEPS,
              "machine": platform.processor() or platform.machine(), "cores": os.cpu_count(), "load_before": load, "layouts": best, "all_rounds": rounds,
              "speedup_2_ranks": best[0]["step_s"] / best[1]["step_s"]}
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(result, indent=2) + "\n")
    for r in best:
        print(f"{r['ranks']} rank(s) x {r['threads_per_rank']} thread(s): {r['tokens_per_s']:,.0f} tokens/s, "
              f"{r['step_s'] * 1e3:.1f} ms/step, all-reduce {100 * r['allreduce_share']:.1f}% of the step")
    print(f"2 ranks / 1 rank: {result['speedup_2_ranks']:.2f}x   -> {OUT.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
