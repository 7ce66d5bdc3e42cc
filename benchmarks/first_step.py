"""How long the README's main command takes to finish its first training step, and where that time goes.

    python benchmarks/first_step.py [--rounds 5] [--before REV] [--label after]

Each run is a fresh process of ``python -m npgpt train --preset baby --data shakespeare`` (into a
temporary ``--out-dir``), timed from just before it is spawned to the end of its first training step,
where it stops. numba's cache is either empty (``NUMBA_CACHE_DIR`` a new temporary folder: what a
fresh clone meets) or filled (a folder one untimed run filled first). The two kinds alternate, round
after round, and the figures are medians: the machine may be shared.

With ``--before REV`` the same runs also start from a git worktree of ``REV`` (its own npgpt on
``PYTHONPATH``), alternating with this tree's, so a change is compared with what it replaced under
the same load.

Each run also reports its breakdown: the interpreter's start, the imports (numba, then npgpt's
command line), the set-up before step 1 (corpus, model), and inside the step every numba function
it compiled or loaded from the cache, with the seconds each took (a timing wrapper around numba's
``Dispatcher.compile``, which both paths go through; nested compiles, such as the library code a
kernel calls, are counted inside their kernel and listed when they took 0.1 s or more).

Writes ``benchmarks/results/first_step.json`` (one entry per ``--label``, other labels kept), with
the machine's ``lscpu`` flags.
"""
import argparse
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULT = ROOT / "benchmarks" / "results" / "first_step.json"
COMMAND = ["train", "--preset", "baby", "--data", "shakespeare"]
NESTED_SHOWN_S = 0.1        # a nested compile at least this long is listed under its kernel


# ----------------------------------------------------------------------------- the child process
def child(out_path: str, run_dir: str) -> None:
    """Run the README's command in this process, record the timeline, and exit after step 1."""
    marks = {"probe_start": time.monotonic()}
    compiles: list[dict] = []
    import numba  # noqa: F401  (npgpt imports it anyway; here first, to be timed alone)
    marks["numba_imported"] = time.monotonic()
    _time_numba_compiles(compiles)
    import npgpt.cli  # noqa: F401
    from npgpt.training import trainer
    marks["cli_imported"] = time.monotonic()
    first_step = trainer.Trainer.train_step

    def timed_first_step(self):
        marks["step_start"] = time.monotonic()
        first_step(self)
        marks["step_end"] = time.monotonic()
        Path(out_path).write_text(json.dumps({"marks": marks, "compiles": compiles}))
        sys.stdout.flush()
        _end_own_children()                          # a process it started must not slow the next run
        os._exit(0)                                  # the rest of the command is not measured

    trainer.Trainer.train_step = timed_first_step
    import runpy
    sys.argv = ["npgpt", *COMMAND, "--out-dir", run_dir]
    runpy.run_module("npgpt", run_name="__main__", alter_sys=True)
    raise SystemExit("the command ended without a training step")


def _end_own_children() -> None:
    """Terminate the processes this one started (Linux: /proc lists them), and wait for them."""
    pid = os.getpid()
    listing = Path(f"/proc/{pid}/task/{pid}/children")
    children = [int(p) for p in listing.read_text().split()] if listing.exists() else []
    for child_pid in children:
        os.kill(child_pid, signal.SIGTERM)
    for child_pid in children:
        os.waitpid(child_pid, 0)


def _time_numba_compiles(compiles: list[dict]) -> None:
    """Wrap numba's Dispatcher.compile (compiles and cache loads both go through it) to append
    {name, signature, seconds, compiled, depth} to ``compiles`` for every call."""
    from numba.core import dispatcher
    original = dispatcher.Dispatcher.compile
    depth = [0]

    def compile(self, sig):
        misses = sum(self._cache_misses.values())
        start = time.monotonic()
        depth[0] += 1
        try:
            return original(self, sig)
        finally:
            depth[0] -= 1
            compiles.append({"name": self.py_func.__qualname__, "signature": str(sig), "start": start,
                             "seconds": time.monotonic() - start, "depth": depth[0],
                             "compiled": sum(self._cache_misses.values()) > misses})

    dispatcher.Dispatcher.compile = compile


# ----------------------------------------------------------------------------- the parent
def one_run(source: Path, cache_dir: str) -> dict:
    """Spawn the command from ``source`` (a tree with npgpt in it) with numba's cache in ``cache_dir``."""
    with tempfile.TemporaryDirectory(prefix="npgpt-first-step-") as scratch:
        out = Path(scratch) / "timeline.json"
        env = dict(os.environ, NUMBA_CACHE_DIR=cache_dir, PYTHONPATH=str(source))
        load = os.getloadavg()[0]
        spawned = time.monotonic()
        done = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--child", str(out),
                               str(Path(scratch) / "run")], cwd=source, env=env, capture_output=True, text=True)
        if done.returncode != 0 or not out.exists():
            raise SystemExit(f"the run from {source} failed ({done.returncode}):\n{done.stdout[-2000:]}\n"
                             f"{done.stderr[-2000:]}")
        if "Tiny Shakespeare" not in done.stdout:
            raise SystemExit(f"the run did not train on Tiny Shakespeare (set NPGPT_DATA_DIR):\n{done.stdout}")
        timeline = json.loads(out.read_text())
    return breakdown(timeline, spawned) | {"load_average_before": round(load, 2)}


def breakdown(timeline: dict, spawned: float) -> dict:
    """The run's phases in seconds and its numba functions, from the child's timeline."""
    m = timeline["marks"]
    kernels = []
    top = [c for c in timeline["compiles"] if c["depth"] == 0]
    for c in top:
        nested = [n for n in timeline["compiles"] if n["depth"] > 0 and n["compiled"]
                  and c["start"] <= n["start"] <= c["start"] + c["seconds"]]
        kernels.append({"name": c["name"], "signature": c["signature"], "seconds": round(c["seconds"], 3),
                        "compiled": c["compiled"], "nested_compiled": len(nested),
                        "nested_slow": {n["name"]: round(n["seconds"], 3) for n in nested
                                        if n["seconds"] >= NESTED_SHOWN_S}})
    return {"first_step_s": m["step_end"] - spawned,
            "interpreter_s": m["probe_start"] - spawned,
            "import_numba_s": m["numba_imported"] - m["probe_start"],
            "import_npgpt_cli_s": m["cli_imported"] - m["numba_imported"],
            "setup_s": m["step_start"] - m["cli_imported"],
            "step_s": m["step_end"] - m["step_start"],
            "numba_s": sum(c["seconds"] for c in top),
            "functions_compiled": sum(c["compiled"] for c in timeline["compiles"]),
            "kernels": kernels}


PHASES = ["first_step_s", "interpreter_s", "import_numba_s", "import_npgpt_cli_s", "setup_s", "step_s",
          "numba_s", "functions_compiled"]


def summary(runs: list[dict]) -> dict:
    """Medians of the phases over ``runs``, each run's first-step time, and the kernels' median seconds."""
    out = {k: round(statistics.median(r[k] for r in runs), 3) for k in PHASES}
    out["first_step_s_each"] = [round(r["first_step_s"], 2) for r in runs]
    out["load_average_before_each"] = [r["load_average_before"] for r in runs]
    names = [k["name"] for k in runs[0]["kernels"]]
    out["kernels"] = []
    for name in names:
        seen = [k for r in runs for k in r["kernels"] if k["name"] == name]
        first = seen[0]
        out["kernels"].append({"name": name, "signature": first["signature"], "compiled": first["compiled"],
                               "median_s": round(statistics.median(k["seconds"] for k in seen), 3),
                               "nested_compiled": first["nested_compiled"], "nested_slow": first["nested_slow"]})
    out["kernel_builds"] = {
        "serial": sum(k["name"].endswith("_serial") for k in out["kernels"]),
        "parallel_or_single": sum(not k["name"].endswith("_serial") for k in out["kernels"]),
        "float_arrays": dict(Counter(_float_dtype(k["signature"]) for k in out["kernels"]))}
    return out


def _float_dtype(signature: str) -> str | None:
    """The dtype of a signature's first float array (its kernel's working precision), or None."""
    found = re.search(r"Array\((float\d+)", signature)
    return found.group(1) if found else None


def worktree(rev: str) -> Path:
    where = Path(tempfile.mkdtemp(prefix="npgpt-first-step-rev-")) / "tree"
    subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(where), rev],
                   check=True, capture_output=True)
    return where


def commit(tree: Path) -> str:
    return subprocess.run(["git", "-C", str(tree), "rev-parse", "--short", "HEAD"], capture_output=True,
                          text=True).stdout.strip()


def machine() -> dict:
    """quantized_decode's record of the CPU, with every flag ``lscpu`` lists."""
    sys.path.insert(0, str(ROOT))
    from benchmarks.quantized_decode import machine as cpu
    info = cpu()
    try:
        text = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        info["flags"] = next((line.split(":", 1)[1].split() for line in text.splitlines()
                              if line.startswith("Flags:")), [])
    except (OSError, subprocess.CalledProcessError):
        info["flags"] = "unavailable"
    return info


def measure(trees: dict[str, Path], rounds: int) -> dict[str, dict]:
    """Alternate, round after round, an empty-cache and a filled-cache run of every tree."""
    with tempfile.TemporaryDirectory(prefix="npgpt-numba-cache-") as filled_root:
        filled = {}
        for name, tree in trees.items():
            filled[name] = os.path.join(filled_root, name)
            one_run(tree, filled[name])                      # untimed: fills the cache
        runs = {name: {"empty_cache": [], "filled_cache": []} for name in trees}
        for r in range(rounds):
            for name, tree in trees.items():
                with tempfile.TemporaryDirectory(prefix="npgpt-numba-cache-empty-") as empty:
                    runs[name]["empty_cache"].append(one_run(tree, empty))
                runs[name]["filled_cache"].append(one_run(tree, filled[name]))
                print(f"round {r + 1}/{rounds} {name}: empty {runs[name]['empty_cache'][-1]['first_step_s']:.2f} s, "
                      f"filled {runs[name]['filled_cache'][-1]['first_step_s']:.2f} s", flush=True)
    return {name: {kind: summary(rs) for kind, rs in kinds.items()} for name, kinds in runs.items()}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5, help="timed rounds (each: every tree, empty and filled cache)")
    parser.add_argument("--before", help="also time this git revision, from a worktree, alternating")
    parser.add_argument("--label", default="current", help="the entry of the result file these runs fill")
    parser.add_argument("--no-write", action="store_true", help=f"do not write {RESULT.relative_to(ROOT)}")
    parser.add_argument("--child", nargs=2, metavar=("OUT", "RUN_DIR"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(*args.child)
    if args.rounds < 1:
        parser.error(f"--rounds must be at least 1, got {args.rounds}")
    trees = {f"{args.label} ({commit(ROOT)}, working tree)": ROOT}
    old = worktree(args.before) if args.before else None
    try:
        if old is not None:
            trees = {f"before ({commit(old)})": old, **trees}
        results = measure(trees, args.rounds)
    finally:
        if old is not None:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(old)], capture_output=True)
    record = {"command": "python -m npgpt " + " ".join(COMMAND), "rounds": args.rounds,
              "measured_at": time.strftime("%Y-%m-%d %H:%M"), "machine": machine(), "trees": results}
    print(json.dumps({name: {kind: {k: v for k, v in s.items() if k != "kernels"} for kind, s in kinds.items()}
                      for name, kinds in results.items()}, indent=1))
    if not args.no_write:
        existing = json.loads(RESULT.read_text()) if RESULT.exists() else {}
        existing[args.label] = record
        RESULT.write_text(json.dumps(existing, indent=1) + "\n")
        print(f"wrote {RESULT.relative_to(ROOT)} [{args.label!r}]")


if __name__ == "__main__":
    main()
