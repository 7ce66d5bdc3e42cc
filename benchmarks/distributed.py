"""Data parallel on one machine, and what it would cost on many (issue 13, document sections 2 and 7).

1. Layouts: 1 rank x 2 numba threads against 2 MPI ranks x 1 thread, baby preset, the same global
   batch; tokens per second and the share of a step spent in the all-reduce (medians of 3 rounds,
   the layouts alternating so drift in the machine hits both alike).
2. The local all-reduce: in-place float32 Allreduce of 1 KiB ... 64 MiB between 2 ranks (median of
   repeats), fitted to the ring model's T = 2(p-1) alpha + 2(p-1)/p n / beta
   (npgpt/allocation/network.py).
3. Predictions: a step at 8, 64 and 512 ranks (weak scaling: each rank keeps its micro-batch) on the
   measured local link and on two real networks, for the baby model (compute measured here) and
   GPT-2 small (compute = its FLOPs at the FLOP rate the baby step reached here).

Writes benchmarks/results/distributed.json and figures/allreduce_model.png.

    python benchmarks/distributed.py            (launches every layout itself with mpiexec)
    python benchmarks/distributed.py --replot   (the figure from the committed JSON)
"""
import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from npgpt import GPTConfig
from npgpt.allocation.costs import count_flops, num_params
from npgpt.allocation.network import NETWORKS, Network, fit_network, predict_step
from npgpt.atomic import atomic_write_text
from npgpt.training.distributed import BUCKET_BYTES

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results" / "distributed.json"
FIGURE = ROOT / "figures" / "allreduce_model.png"
WARMUP, STEPS, BATCH, ROUNDS = 3, 20, 12, 3
RANKS = (8, 64, 512)

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
    return {"threads_per_rank": threads, **json.loads(run(WORKER, ranks, threads, WARMUP, STEPS, BATCH))}


ALLREDUCE = """
import json, sys, time
import numpy as np
from npgpt.allocation import distributed
comm = distributed.world()
sizes, repeats = [2 ** k for k in range(10, 27, 2)], int(sys.argv[1])
medians = []
for n_bytes in sizes:
    buffer = np.ones(n_bytes // 4, np.float32)
    times = []
    for i in range(repeats + 3):
        comm.barrier()
        t0 = time.perf_counter()
        comm.allreduce(buffer)
        times.append(time.perf_counter() - t0)
    medians.append(float(np.median(times[3:])))
if comm.rank == 0:
    print(json.dumps({"n_bytes": sizes, "seconds": medians}))
"""


def run(code, ranks, threads, *args):
    """The last stdout line of ``code`` run on ``ranks`` ranks of ``threads`` threads each."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "NUMBA_NUM_THREADS": str(threads), "OMP_NUM_THREADS": "1",
           "OPENBLAS_NUM_THREADS": "1"}
    mpiexec = shutil.which("mpiexec") or str(Path(sys.executable).parent / "mpiexec")
    command = [sys.executable, "-c", code, *map(str, args)]
    if ranks > 1:
        command = [mpiexec, "-n", str(ranks), *command]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=900)
    if done.returncode != 0:
        sys.exit(f"benchmark worker failed on {ranks} rank(s):\n{done.stderr[-3000:]}")
    return done.stdout.strip().splitlines()[-1]


def median_layout(rounds, i):
    runs = [r[i] for r in rounds]
    return {**runs[0], **{key: statistics.median(r[key] for r in runs)
                          for key in ("step_s", "tokens_per_s", "allreduce_share")}}


def predictions(local, one_rank_step_s):
    """Predicted steps at RANKS ranks for the baby model and GPT-2 small on each network."""
    baby = GPTConfig.preset("baby")
    flop_rate = count_flops(baby, BATCH).total / one_rank_step_s        # what one core reached here
    models = {"baby": (baby, BATCH // 2), "gpt2": (GPTConfig.preset("gpt2"), 1)}
    networks = {"local (measured)": local, **{n.name: n for n in NETWORKS.values()}}
    table = []
    for model_name, (config, micro_batch) in models.items():
        grad_bytes = 4 * num_params(config)
        compute_s = count_flops(config, micro_batch).total / flop_rate
        for network_name, network in networks.items():
            for ranks in RANKS:
                for zero in (0, 1):
                    step = predict_step(compute_s, grad_bytes, ranks, network,
                                        messages=max(1, -(-grad_bytes // BUCKET_BYTES)), zero=zero)
                    table.append({"model": model_name, "micro_batch": micro_batch, "network": network_name,
                                  "ranks": ranks, "zero": zero, "grad_bytes": grad_bytes, **step})
    return {"flop_rate_per_rank": flop_rate, "table": table}


def plot(result, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from npgpt.plots.figures import save_figure
    fig, (ax_reduce, ax_eff) = plt.subplots(1, 2, figsize=(11, 4))
    sweep, local = result["allreduce"], result["local_network"]
    n = np.array(sweep["n_bytes"], float)
    ax_reduce.loglog(n, sweep["seconds"], "o", label="measured, 2 ranks")
    model = Network(**local)
    ax_reduce.loglog(n, 2 * model.latency_s + n / model.bandwidth, "-",
                     label=f"fit: alpha={model.latency_s * 1e6:.1f} us, beta={model.bandwidth / 1e9:.1f} GB/s")
    ax_reduce.set(xlabel="buffer (bytes)", ylabel="all-reduce (s)", title="The local all-reduce")
    ax_reduce.legend()
    for row_model, style in (("baby", "-"), ("gpt2", "--")):
        for network in sorted({r["network"] for r in result["predictions"]["table"]}):
            rows = [r for r in result["predictions"]["table"]
                    if r["model"] == row_model and r["network"] == network and r["zero"] == 0]
            ax_eff.plot([r["ranks"] for r in rows], [r["efficiency"] for r in rows], style, marker="o",
                        label=f"{row_model}, {network}")
    ax_eff.set(xscale="log", xlabel="ranks", ylabel="compute / step", ylim=(0, 1.05),
               title="Predicted parallel efficiency (ring all-reduce)")
    ax_eff.legend(fontsize=7)
    save_figure(fig, path)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--replot", action="store_true", help="redraw the figure from the committed JSON")
    args = parser.parse_args(argv)
    if args.replot:
        plot(json.loads(OUT.read_text()), FIGURE)
        return
    load = os.getloadavg()[0]
    rounds = []
    for _ in range(ROUNDS):
        rounds.append([layout(1, 2), layout(2, 1), layout(1, 1)])
        time.sleep(2)
    layouts = [median_layout(rounds, i) for i in range(3)]
    sweep = json.loads(run(ALLREDUCE, 2, 1, 20))
    local = fit_network(sweep["n_bytes"], sweep["seconds"], 2, name="local, 2 ranks (measured)")
    result = {"preset": "baby", "global_batch": BATCH, "steps": STEPS, "rounds": ROUNDS,
              "machine": platform.processor() or platform.machine(), "cores": os.cpu_count(),
              "load_before": load, "layouts": layouts, "all_rounds": rounds,
              "speedup_2_ranks": layouts[0]["step_s"] / layouts[1]["step_s"],
              "allreduce": sweep, "local_network": {"name": local.name, "latency_s": local.latency_s,
                                                    "bandwidth": local.bandwidth},
              "predictions": predictions(local, layouts[2]["step_s"])}
    atomic_write_text(OUT, json.dumps(result, indent=2) + "\n")
    plot(result, FIGURE)
    for r in layouts[:2]:
        print(f"{r['ranks']} rank(s) x {r['threads_per_rank']} thread(s): {r['tokens_per_s']:,.0f} tokens/s, "
              f"{r['step_s'] * 1e3:.1f} ms/step, all-reduce {100 * r['allreduce_share']:.1f}% of the step")
    print(f"2 ranks x 1 thread / 1 rank x 2 threads: {result['speedup_2_ranks']:.2f}x (medians of {ROUNDS})")
    print(f"local all-reduce: alpha = {local.latency_s * 1e6:.1f} us, beta = {local.bandwidth / 1e9:.2f} GB/s")
    print(f"{'model':6} {'network':34} {'ranks':>5} {'zero':>4} {'compute ms':>11} {'talk ms':>9} {'eff':>5}")
    for r in result["predictions"]["table"]:
        print(f"{r['model']:6} {r['network']:34} {r['ranks']:5d} {r['zero']:4d} {r['compute_s'] * 1e3:11.1f} "
              f"{r['communication_s'] * 1e3:9.1f} {r['efficiency']:5.2f}")
    print(f"-> {OUT.relative_to(ROOT)}, {FIGURE.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
