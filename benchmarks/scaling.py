"""The compute-optimal study (document section 7; issue 13, part 2): Chinchilla's approach 2,
reproduced small on Tiny Shakespeare characters.

For each compute budget C (exact training FLOPs) it trains several GPT sizes, each on the tokens
the budget buys it (D = C / f, f the FLOPs per trained token), with one fixed recipe, and measures
each one's loss on the whole validation split. Then, per budget, a parabola of val loss against
ln N gives the compute-optimal size N_opt(C) (and ln D gives D_opt(C)); across budgets it fits
N_opt = k_N C^a and D_opt = k_D C^b and puts a, b and D_opt / N_opt beside Chinchilla's
(a = b = 0.5, about 20 tokens per parameter). All runs also fit the loss law
L(N, D) = E + A / N^alpha + B / D^beta, which the planner uses. The method, what N and C count,
the recipe and where this departs from the paper: npgpt/allocation/scaling.py, which also holds the
study itself (its design, runs and fits); the figures are npgpt/plots/scaling.py's. This script is
the command line and the files.

    NUMBA_NUM_THREADS=1 OMP_NUM_THREADS=1 python benchmarks/scaling.py   # the full study on one core: 52 min
    python benchmarks/scaling.py --fast --out-dir /tmp/scaling           # one budget, two sizes: seconds
    python benchmarks/scaling.py --replot                                # figures from the committed JSON
    python benchmarks/scaling.py --refit                                 # fits, law, figures from its runs

Writes (atomically) benchmarks/results/scaling.json (every run: shape, N, D, FLOPs, val loss,
seconds; the fits; the machine), npgpt/allocation/scaling_law.json (the law the planner loads,
only when every budget has a minimum inside its sampled sizes), figures/isoflop.png and
figures/compute_optimal.png. The results are saved after every run, so a run that stops keeps what
it measured (with "complete": false). A budget whose parabola has no minimum inside its sizes is
reported, and no law is written: move the ladder (--centre, --centre-exponent, --spread) and run
again.
--fast writes into a temporary folder unless given --out-dir, never over the committed results.

The full study took 51 min 45 s on one core of the shared 2-core machine while other sessions kept
both cores busy (load average 4.5 to 7.5); short timings on a quieter moment ran its steps about
twice as fast.
"""
import argparse
import json
import math
import os
import re
import subprocess
import sys
import tempfile
from dataclasses import asdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from npgpt import Dataset, resolve_corpus  # noqa: E402
from npgpt.allocation import scaling  # noqa: E402
from npgpt.atomic import atomic_write_text  # noqa: E402
from npgpt.checks import at_least, in_range  # noqa: E402
from npgpt.plots.scaling import plot_compute_optimal, plot_isoflop  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "scaling.json"
ISOFLOP_FIGURE = ROOT / "figures" / "isoflop.png"
OPTIMAL_FIGURE = ROOT / "figures" / "compute_optimal.png"
FULL, FAST = scaling.StudyDesign(), scaling.FAST_STUDY


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--budgets", type=in_range(low=0.0, low_open=True), nargs="+", default=None,
                   help=f"compute budgets in FLOPs (default {' '.join(f'{c:.0e}' for c in FULL.budgets)})")
    p.add_argument("--sizes", type=at_least(1), default=None, help=f"model sizes per budget (default {FULL.sizes})")
    p.add_argument("--spread", type=in_range(low=1.0, low_open=True), default=None,
                   help=f"largest N / smallest N of each budget's sizes (default {FULL.spread:g})")
    p.add_argument("--centre", type=centre_spec, default=None, metavar="N@C",
                   help=f"the sizes of budget C0 are centred on N0 (default {FULL.centre[0]:g}@{FULL.centre[1]:g}, the "
                        f"optimum of a pilot), those of budget C on N0 (C / C0)^a")
    p.add_argument("--centre-exponent", type=in_range(low=0.0, high=1.0), default=FULL.centre_exponent, metavar="a",
                   help=f"a of the centre rule (default {FULL.centre_exponent:g})")
    p.add_argument("--seeds", type=at_least(1), default=None,
                   help=f"seeds of every point; the fits use the mean over a point's seeds (default {FULL.seeds})")
    p.add_argument("--noise-seeds", type=at_least(0), default=None,
                   help=f"more seeds at the middle size of each budget, to measure the seed-to-seed noise "
                        f"(default {FULL.noise_seeds})")
    p.add_argument("--lr", type=in_range(low=0.0, low_open=True), default=scaling.Recipe.lr,
                   help=f"peak learning rate of every run (default {scaling.Recipe.lr:g})")
    p.add_argument("--batch-size", type=at_least(1), default=scaling.Recipe.batch_size,
                   help=f"sequences of 64 characters per step (default {scaling.Recipe.batch_size})")
    p.add_argument("--data", default="shakespeare",
                   help="corpus: 'shakespeare' (looks in $NPGPT_DATA_DIR first) or a text file")
    p.add_argument("--fast", action="store_true",
                   help="a tiny study (one budget, two sizes, seconds) written to a temporary folder "
                        "unless --out-dir is given")
    p.add_argument("--replot", action="store_true", help="redraw both figures from the results JSON, training nothing")
    p.add_argument("--refit", action="store_true",
                   help="redo the fits, the law, the notes and the figures from the runs in the results JSON, "
                        "training nothing (the runs stay as measured)")
    p.add_argument("--out-dir", help="put all four outputs in this folder (scaling.json, scaling_law.json, "
                                     "isoflop.png, compute_optimal.png)")
    p.add_argument("--out", help=f"results JSON (default {RESULTS.relative_to(ROOT)})")
    p.add_argument("--law", help=f"law JSON (default {scaling.LAW_PATH.relative_to(ROOT)})")
    p.add_argument("--isoflop-figure", help=f"default {ISOFLOP_FIGURE.relative_to(ROOT)}")
    p.add_argument("--optimal-figure", help=f"default {OPTIMAL_FIGURE.relative_to(ROOT)}")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    args = p.parse_args(argv)
    for name, value in asdict(FAST if args.fast else FULL).items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    folder = Path(args.out_dir) if args.out_dir else None
    if folder is None and args.fast and not (args.replot or args.refit):
        folder = Path(tempfile.mkdtemp(prefix="npgpt-scaling-"))
    places = {"out": (RESULTS, "scaling.json"), "law": (scaling.LAW_PATH, "scaling_law.json"),
              "isoflop_figure": (ISOFLOP_FIGURE, "isoflop.png"), "optimal_figure": (OPTIMAL_FIGURE, "compute_optimal.png")}
    for name, (default, filename) in places.items():
        if getattr(args, name) is None:
            setattr(args, name, folder / filename if folder else default)
    return args


def machine():
    """The CPU (lscpu's model name, AVX-512), the cores, and the threads this run may use."""
    info = {"cores": os.cpu_count()}
    try:
        text = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        fields = dict(re.findall(r"^([^:\n]+):\s*(.*)$", text, re.M))
        info.update({"model_name": fields.get("Model name"), "avx512f": "avx512f" in fields.get("Flags", "").split()})
    except (OSError, subprocess.CalledProcessError):
        info["lscpu"] = "unavailable"
    import numba
    info["numba_threads"] = numba.get_num_threads()
    info["env"] = {k: os.environ.get(k) for k in ("NUMBA_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS")}
    try:
        from threadpoolctl import threadpool_info
        info["blas_threads"] = [pool["num_threads"] for pool in threadpool_info() if pool.get("user_api") == "blas"]
    except ImportError:
        pass
    info["load_average_at_start"] = os.getloadavg()[0]
    return info


def centre_spec(text):
    """``N@C`` -> (N, C), both positive numbers (an argparse type)."""
    try:
        n, c = (float(part) for part in text.split("@"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected N@C, two numbers such as 4e4@1e12, got {text!r}") from None
    if not (n > 0 and c > 0 and math.isfinite(n) and math.isfinite(c)):
        raise argparse.ArgumentTypeError(f"expected two positive numbers N@C, got {text!r}")
    return n, c


def design(args):
    """The study the command line asks for."""
    return scaling.StudyDesign(**{name: getattr(args, name) for name in asdict(FULL)})


def run_study(args):
    """Train the study on the corpus of ``--data``, saving the results after every run (a study that
    stops keeps what it measured, with "complete": false)."""
    text, description = resolve_corpus(args.data)
    print(f"corpus: {description}")
    return scaling.run_study(
        design(args), Dataset(text), description, scaling.Recipe(batch_size=args.batch_size, lr=args.lr),
        command=" ".join(["python", "benchmarks/scaling.py", *sys.argv[1:]]), machine=machine(),
        on_run=lambda result: atomic_write_text(args.out, json.dumps(result, indent=1) + "\n"),
        progress=not args.no_progress)


def main(argv=None):
    args = parse_args(argv)
    if args.replot:
        with open(args.out, encoding="utf-8") as f:
            result = json.load(f)
        plot_isoflop(result, args.isoflop_figure)
        plot_compute_optimal(result, args.optimal_figure)
        print(f"redrew {args.isoflop_figure} and {args.optimal_figure} from {args.out}")
        return 0
    if args.refit:
        with open(args.out, encoding="utf-8") as f:
            result = json.load(f)
        result["notes"] = scaling.STUDY_NOTES   # the runs stay as measured; the analysis is redone
        result["analysis"] = "redone from the runs by python benchmarks/scaling.py --refit"
    else:
        result = run_study(args)
    law = scaling.analyse_study(result)
    atomic_write_text(args.out, json.dumps(result, indent=1) + "\n")
    if law is not None:
        atomic_write_text(args.law, json.dumps(law.to_dict(), indent=1) + "\n")
    plot_isoflop(result, args.isoflop_figure)
    plot_compute_optimal(result, args.optimal_figure)
    print(scaling.study_report(result, law))
    written = [args.out, *([args.law] if law is not None else []), args.isoflop_figure, args.optimal_figure]
    print(f"wall time of the runs {result['wall_seconds']:.0f} s; wrote " + ", ".join(str(p) for p in written))
    return 0 if law is not None or (args.fast and not args.refit) else 1


if __name__ == "__main__":
    sys.exit(main())
