"""Run the README's commands as a newcomer does and record what they print and how long they take.

    python benchmarks/readme_commands.py            # all of them (about 12 minutes on 2 cores)
    python benchmarks/readme_commands.py --no-tests # only the training and evaluation commands

Runs, each in its own process:
1. the main command, ``python -m npgpt train --preset baby --data shakespeare``, in a fresh folder
   (Tiny Shakespeare must be findable: ``$NPGPT_DATA_DIR`` or the cache), and its final line;
2. the same recipe on the built-in corpus (``--data fallback``: the text an offline machine gets);
3. ``python -m npgpt eval --ckpt runs/baby/ckpt.npz --data shakespeare --stride 32`` on (1)'s checkpoint;
4. the README's test command, ``python -m pytest``, and the quick loop, ``python -m pytest -m "not slow"``,
   from the repository root (without the three tests that compare the README with this file's numbers,
   which cannot pass before it is written).

Writes ``benchmarks/results/readme_commands.json`` (or ``--out``), with the machine (CPU model, cores,
AVX2/AVX-512) and the load average around each command: the README quotes these numbers, and
``tests/test_readme.py`` checks that it does so faithfully. Run it on a quiet machine.
"""
import argparse
import importlib.util
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MAIN = ["-m", "npgpt", "train", "--preset", "baby", "--data", "shakespeare"]
FALLBACK = ["-m", "npgpt", "train", "--preset", "baby", "--data", "fallback", "--out-dir", "runs/fallback"]
EVAL = ["-m", "npgpt", "eval", "--ckpt", "runs/baby/ckpt.npz", "--data", "shakespeare", "--stride", "32"]
FINAL = re.compile(r"^final: step=(\d+) train_loss=(\S+) val_loss=(\S+) corpus=(\S+) wall_s=(\S+)$", re.M)
EVAL_LINE = re.compile(r"^val: loss=(\S+) perplexity=(\S+) bits_per_char=(\S+) bits_per_byte=(\S+) tokens=(\d+)", re.M)
PYTEST_SUMMARY = re.compile(r"^=+ (.*(?:passed|failed).*) in [\d.]+s.*=+$", re.M)
# The README quotes this run's times, so the tests that compare the README with this file cannot pass
# while it runs; they are left out of the timed runs (they take well under a second).
SELF_CHECKS = ["--deselect", "tests/test_readme.py::test_every_table_and_fact_of_the_results_is_in_the_readme",
               "--deselect", "tests/test_readme.py::test_no_number_in_the_readme_prose_is_unaccounted_for",
               "--deselect", "tests/test_readme.py::test_every_path_the_readme_names_exists"]
REFERENCES = ("torch", "tiktoken", "sacrebleu", "rouge_score", "transformers", "mpi4py")


def machine() -> dict:
    """The CPU this ran on, read from /proc/cpuinfo (Linux)."""
    info = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    model = re.search(r"^model name\s*:\s*(.+)$", info, re.M)
    flags = set(re.search(r"^flags\s*:\s*(.+)$", info, re.M).group(1).split()) if "flags" in info else set()
    name = model.group(1).strip() if model else "unknown CPU"
    name = re.sub(r"\s+\d+-Core Processor$", "", name)
    return {"model_name": name, "cpus": os.cpu_count(), "avx2": "avx2" in flags, "avx512f": "avx512f" in flags}


def timed(args: list[str], cwd: Path, env: dict) -> tuple[float, str, list[float]]:
    """(seconds, stdout, load averages before and after) of one command; raises if it fails."""
    load = os.getloadavg()[0]
    start = time.perf_counter()
    done = subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(args)} exited {done.returncode}:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    print(f"{' '.join(args)}: {seconds:.1f} s", flush=True)
    return seconds, done.stdout, [round(load, 2), round(os.getloadavg()[0], 2)]


def training_run(args: list[str], cwd: Path, env: dict) -> dict:
    seconds, out, load = timed(args, cwd, env)
    step, train, val, corpus, wall = FINAL.search(out).groups()
    return {"command": "python " + " ".join(args), "seconds": round(seconds, 1), "step": int(step),
            "train_loss": float(train), "val_loss": float(val), "corpus": corpus, "wall_s": float(wall),
            "load_average": load}


def evaluation_run(cwd: Path, env: dict) -> dict:
    seconds, out, load = timed(EVAL, cwd, env)
    loss, ppl, bpc, bpb, tokens = EVAL_LINE.search(out).groups()
    return {"command": "python " + " ".join(EVAL), "seconds": round(seconds, 1), "loss": float(loss),
            "perplexity": float(ppl), "bits_per_char": float(bpc), "bits_per_byte": float(bpb),
            "tokens": int(tokens), "load_average": load}


def test_run(args: list[str], env: dict) -> dict:
    seconds, out, load = timed(args, ROOT, env)
    return {"command": "python " + " ".join(args), "seconds": round(seconds, 1),
            "summary": PYTEST_SUMMARY.search(out).group(1), "load_average": load}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--no-tests", action="store_true", help="skip the two test commands")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "readme_commands.json"),
                        help="where the JSON goes")
    args = parser.parse_args(argv)
    env = dict(os.environ)
    record = {"machine": machine(),
              "references_installed": [m for m in REFERENCES if importlib.util.find_spec(m) is not None]}
    with tempfile.TemporaryDirectory(prefix="npgpt-readme-") as folder:
        cwd = Path(folder)
        record["main_command"] = training_run(MAIN, cwd, env)
        if record["main_command"]["corpus"] != "tinyshakespeare":
            raise SystemExit("the main command did not find Tiny Shakespeare: set NPGPT_DATA_DIR")
        record["fallback_command"] = training_run(FALLBACK, cwd, env)
        record["eval_command"] = evaluation_run(cwd, env)
    if args.no_tests:           # keep the test timings of the last full run
        earlier = json.loads(Path(args.out).read_text(encoding="utf-8")) if Path(args.out).exists() else {}
        record.update({k: earlier[k] for k in ("test_command", "quick_loop") if k in earlier})
    else:
        record["test_command"] = test_run(["-m", "pytest", *SELF_CHECKS], env)
        record["quick_loop"] = test_run(["-m", "pytest", "-m", "not slow", *SELF_CHECKS], env)
    Path(args.out).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
