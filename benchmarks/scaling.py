"""The compute-optimal study (document section 7; issue 13, part 2): Chinchilla's approach 2,
reproduced small on Tiny Shakespeare characters.

For each compute budget C (exact training FLOPs) it trains several GPT sizes, each on the tokens
the budget buys it (D = C / f, f the FLOPs per trained token), with one fixed recipe, and measures
each one's loss on the whole validation split. Then, per budget, a parabola of val loss against
ln N gives the compute-optimal size N_opt(C) (and ln D gives D_opt(C)); across budgets it fits
N_opt = k_N C^a and D_opt = k_D C^b and puts a, b and D_opt / N_opt beside Chinchilla's
(a = b = 0.5, about 20 tokens per parameter). All runs also fit the loss law
L(N, D) = E + A / N^alpha + B / D^beta, which the planner uses. The method, what N and C count,
the recipe and where this departs from the paper: npgpt/allocation/scaling.py.

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
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
from tqdm import tqdm

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from npgpt import Dataset, resolve_corpus  # noqa: E402
from npgpt.allocation import scaling  # noqa: E402
from npgpt.allocation.costs import count_flops, matmul_params  # noqa: E402
from npgpt.atomic import atomic_write_text  # noqa: E402
from npgpt.checks import at_least, in_range  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "scaling.json"
ISOFLOP_FIGURE = ROOT / "figures" / "isoflop.png"
OPTIMAL_FIGURE = ROOT / "figures" / "compute_optimal.png"

# The full study (sized in the notes below): three budgets a factor ~3 apart, six sizes each over a
# factor 10 of N, one seed each and two more at each budget's middle size. Each budget's sizes are
# centred on N = N0 (C / C0)^a, from a pilot.
BUDGETS = (1e12, 3e12, 1e13)
SIZES, SPREAD, SEEDS, NOISE_SEEDS, CENTRE, CENTRE_EXPONENT = 6, 10.0, 1, 2, (4e4, 1e12), 0.8
FAST = {"budgets": (5e9,), "sizes": 2, "spread": 4.0, "seeds": 1, "noise_seeds": 0, "centre": (3e3, 5e9)}

NOTES = [
    "N is matmul_params (12 L C^2 + V C, the N of 6ND: the token table counts; the position table, LayerNorms and "
    "biases do not). A budget C is the exact FLOP count of every matrix product, backward included "
    "(npgpt.allocation.costs.count_flops), so each run trains on D = C / f tokens with f = 6N + 12 L T C FLOPs "
    "per token, rounded to whole steps; flops_6nd in each run shows how far 6ND falls short of it.",
    "Approach 2 as in Chinchilla: per budget, a least-squares parabola of val loss (the mean over a point's seeds) "
    "against ln N, and one against ln D; each vertex must lie inside the sampled sizes. Then least-squares lines in "
    "log-log across budgets give a and b. exponents.spread is a parametric bootstrap: every point moved by Gaussian "
    "noise of its budget's parabola-residual standard deviation, all fits redone, 2000 times.",
    "The loss law L = E + A / N^alpha + B / D^beta is fitted to every run (all seeds) by least squares: exact in "
    "(E, A, B) >= 0 on an (alpha, beta) grid, refined by zooming. a_implied = beta / (alpha + beta) is the split "
    "the law itself prefers; it should agree with approach 2's a.",
    "The recipe is the same for every run: AdamW (0.9, 0.99, weight decay 0.1), one peak learning rate for all "
    "sizes, warmup over 5% of the steps, cosine to a tenth of the peak at the last step, clip 1, batch 16 x 64 "
    "characters. The peak rate (5e-3) comes from a pilot at C = 1e12 on three sizes (N = 27k, 102k, 396k; lr "
    "1e-3, 2e-3, 4e-3, 6e-3, 8e-3): 4e-3 to 8e-3 lay within about 0.03 nats of each other for every size, 1e-3 "
    "and 2e-3 were 0.06 to 0.25 worse; smaller models leaned to 4e-3, the shorter runs of larger ones to 8e-3.",
    "Val loss is the mean over every non-overlapping 64-character window of the validation split (the last 10% of "
    "the text), so it has no sampling noise; train_loss over as many windows spread over the training split. The "
    "val split is other plays: val loss sits 0.11 to 0.22 above train loss, 0.14 already for the 11k-weight model, "
    "far too small to memorise the text, so most of that gap is the split, not overfitting.",
    "Sizing, for one core: three budgets 3-3.3x apart, six sizes each over a factor 10 of N centred on "
    "N0 (C / C0)^0.8 (N0 = 4e4 at C0 = 1e12, the optimum of a pilot), three seeds at each budget's third size; "
    "24 runs, 1.1e14 FLOPs, every run 1,100 steps or more. A pilot at 1e11 and 3e11 FLOPs gave jagged IsoFLOP "
    "curves (neighbours out of order by up to 0.14 nats): there the models end near the plateau where a character "
    "model knows only which letter follows which (2.2-2.5 nats), and leave it earlier in some runs than others. "
    "wall_seconds is measured on a shared 2-core machine while other sessions used both cores "
    "(load_average_at_start; the load stayed between 4.5 and 7.5 through the committed run); an idle core runs "
    "these steps about twice as fast.",
    "Departures from the paper: 1e4-8e5 weights (Chinchilla: 7e7-1.6e10) and three budgets over one decade "
    "(Chinchilla: nine over 2.5), hence error bars of about 0.09 on a and b; one seed per point but three at one "
    "point of each budget (seed_noise); character tokens, each worth less than a BPE token (about four characters "
    "of English), so Chinchilla's 20 tokens per parameter is roughly 80 characters; one 1.1 MB corpus, which the "
    "optimal runs pass over 3.5 to 10 times (Chinchilla: once) and the small models up to 18 times, while the law "
    "has no term for repeated data; the token table is 12% of N for the smallest model and the position table, "
    "left out of N, as big again; one learning rate for every width; short runs.",
]


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--budgets", type=in_range(low=0.0, low_open=True), nargs="+", default=None,
                   help=f"compute budgets in FLOPs (default {' '.join(f'{c:.0e}' for c in BUDGETS)})")
    p.add_argument("--sizes", type=at_least(1), default=None, help=f"model sizes per budget (default {SIZES})")
    p.add_argument("--spread", type=in_range(low=1.0, low_open=True), default=None,
                   help=f"largest N / smallest N of each budget's sizes (default {SPREAD:g})")
    p.add_argument("--centre", type=centre_spec, default=None, metavar="N@C",
                   help=f"the sizes of budget C0 are centred on N0 (default {CENTRE[0]:g}@{CENTRE[1]:g}, the "
                        f"optimum of a pilot), those of budget C on N0 (C / C0)^a")
    p.add_argument("--centre-exponent", type=in_range(low=0.0, high=1.0), default=CENTRE_EXPONENT, metavar="a",
                   help=f"a of the centre rule (default {CENTRE_EXPONENT:g})")
    p.add_argument("--seeds", type=at_least(1), default=None,
                   help=f"seeds of every point; the fits use the mean over a point's seeds (default {SEEDS})")
    p.add_argument("--noise-seeds", type=at_least(0), default=None,
                   help=f"more seeds at the middle size of each budget, to measure the seed-to-seed noise "
                        f"(default {NOISE_SEEDS})")
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
    defaults = FAST if args.fast else {"budgets": BUDGETS, "sizes": SIZES, "spread": SPREAD, "seeds": SEEDS,
                                       "noise_seeds": NOISE_SEEDS, "centre": CENTRE}
    for name, value in defaults.items():
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


def centre(args, flops):
    """Where the sizes of budget ``flops`` are centred: N0 (C / C0)^a."""
    n0, c0 = args.centre
    return n0 * (flops / c0) ** args.centre_exponent


def plan(args, vocab_size):
    """The runs of the study, in the order they run: (budget, config, seed), smallest budget first,
    every seed of a shape one after the other; the middle size ((sizes - 1) // 2) of each budget
    has ``noise_seeds`` more."""
    runs = []
    for C in sorted(args.budgets):
        shapes = scaling.ladder(C, args.sizes, args.spread, centre(args, C), vocab_size=vocab_size)
        for i, config in enumerate(shapes):
            seeds = args.seeds + (args.noise_seeds if i == (args.sizes - 1) // 2 else 0)
            runs += [(C, config, seed) for seed in range(seeds)]
    return runs


def analyse(result):
    """Add the seed means and the fits to ``result``; returns the ScalingLaw or None, with the reason
    in result["fit_error"]."""
    runs = result["runs"]
    result["isoflop_fits"] = scaling.isoflop_fits(runs)
    result["points"] = scaling.seed_means(runs)
    result["seed_noise"] = scaling.seed_noise(runs)
    meta = {"corpus": result["corpus"], "recipe": result["design"]["recipe"], "shapes": result["design"]["shape_rule"],
            "n_counts": "matmul_params: 12 L C^2 + V C", "flops_count": "exact matrix-product FLOPs, backward included",
            "block_size": result["design"]["block_size"], "vocab_size": result["design"]["vocab_size"],
            "study": "benchmarks/results/scaling.json"}
    try:
        law, _ = scaling.fit_scaling_law(runs, meta)
    except ValueError as e:
        result["fit_error"] = str(e)
        return None
    result.pop("fit_error", None)
    fits = result["isoflop_fits"]
    ratios = [f["tokens_per_param"] for f in fits]
    result["exponents"] = {"a": law.a, "b": law.b, "k_n": law.k_n, "k_d": law.k_d, "a_plus_b": law.a + law.b,
                           "spread": scaling.exponent_spread(runs),
                           "chinchilla": {"a": scaling.CHINCHILLA["a"], "b": scaling.CHINCHILLA["b"]}}
    result["tokens_per_param"] = {"per_budget": ratios, "geometric_mean": math.exp(np.mean(np.log(ratios))),
                                  "chinchilla": scaling.CHINCHILLA["tokens_per_param"]}
    law_optimum = law.beta / (law.alpha + law.beta)
    result["loss_law"] = {"E": law.E, "A": law.A, "alpha": law.alpha, "B": law.B, "beta": law.beta,
                          "rms": law.meta["rms"], "a_implied": law_optimum, "b_implied": 1 - law_optimum,
                          "chinchilla": {k: scaling.CHINCHILLA[k] for k in ("E", "A", "alpha", "B", "beta")},
                          "predicted_minimum_loss": {f"{f['budget']:.0e}": law.minimum_loss(f["budget"]) for f in fits},
                          "measured_minimum_loss": {f"{f['budget']:.0e}": f["loss_min"] for f in fits}}
    return law


def run_study(args):
    text, description = resolve_corpus(args.data)
    print(f"corpus: {description}")
    data = Dataset(text)
    recipe = scaling.Recipe(batch_size=args.batch_size, lr=args.lr)
    todo = plan(args, data.vocab_size)
    step_flops = [count_flops(config, recipe.batch_size).total for _, config, _ in todo]
    steps = [recipe.steps(scaling.tokens_for_budget(config, C), config.block_size) for C, config, _ in todo]
    print(f"{len(todo)} runs, {sum(f * s for f, s in zip(step_flops, steps)):.3g} FLOPs in all:")
    for (C, config, seed), s in zip(todo, steps):
        print(f"  C={C:.0e}  L={config.n_layer} C={config.n_embd:<4} N={matmul_params(config):>9,}  "
              f"{s:>6,} steps" + (f"  (seed {seed})" if seed else ""))
    result = {
        "study": "compute-optimal allocation, Chinchilla's approach 2 (npgpt/allocation/scaling.py)",
        "command": " ".join(["python", "benchmarks/scaling.py", *sys.argv[1:]]),
        "complete": False, "corpus": description,
        "train_tokens": len(data.split("train")), "val_tokens": len(data.split("val")),
        "design": {"budgets": sorted(args.budgets), "sizes_per_budget": args.sizes, "spread": args.spread,
                   "seeds": args.seeds, "noise_seeds": args.noise_seeds, "centre": {"n_params": args.centre[0], "budget": args.centre[1],
                                                   "exponent": args.centre_exponent},
                   "block_size": scaling.BLOCK_SIZE, "vocab_size": data.vocab_size,
                   "shape_rule": f"{scaling.N_HEAD} heads, n_layer = max({scaling.MIN_LAYER}, round((N / (12 * "
                                 f"{scaling.ASPECT}^2))^(1/3))) of its own N, n_embd a multiple of "
                                 f"{scaling.WIDTH_STEP} (>= {scaling.MIN_WIDTH})",
                   "n_params": "matmul_params = 12 L C^2 + V C",
                   "flops": "exact count of every matrix product, forward and backward (costs.count_flops)",
                   "recipe": asdict(recipe)},
        "machine": machine(), "notes": NOTES, "runs": [],
    }
    start = time.perf_counter()
    total = sum(f * s for f, s in zip(step_flops, steps)) / 1e9
    with tqdm(total=total, unit="GFLOP", unit_scale=True, desc="study", dynamic_ncols=True,
              disable=args.no_progress, position=0) as study:
        for i, ((C, config, seed), flops) in enumerate(zip(todo, step_flops)):
            study.set_postfix_str(f"run {i + 1}/{len(todo)}: C={C:.0e} N={matmul_params(config):,}")
            with tqdm(total=steps[i], unit="step", desc=f"  L={config.n_layer} C={config.n_embd}", leave=False,
                      dynamic_ncols=True, disable=args.no_progress, position=1) as bar:
                def on_step(step, loss, bar=bar, flops=flops):
                    bar.update(1)
                    study.update(flops / 1e9)
                    if step % 50 == 0:
                        bar.set_postfix(loss=f"{loss:.3f}", refresh=False)
                run = scaling.train_point(config, C, data, recipe, seed=seed, on_step=on_step)
            result["runs"].append(run)
            study.write(f"C={C:.0e} L={run['n_layer']} C={run['n_embd']:<4} N={run['n_params']:>9,} "
                        f"D={run['tokens']:>11,} ({run['epochs']:.1f} epochs)  val {run['val_loss']:.4f}  "
                        f"train {run['train_loss']:.4f}  {run['seconds']:.0f} s" + (f"  seed {seed}" if seed else ""))
            result["wall_seconds"] = time.perf_counter() - start
            atomic_write_text(args.out, json.dumps(result, indent=1) + "\n")     # keep what is measured
    result["complete"] = True
    result["wall_seconds"] = time.perf_counter() - start
    return result


# ----------------------------------------------------------------------------- figures
def plot_isoflop(result, path):
    from matplotlib import colormaps
    from matplotlib.figure import Figure

    from npgpt.plots.figures import save_figure
    fig = Figure(figsize=(8.5, 5.5), layout="constrained")
    ax = fig.subplots()
    points = scaling.seed_means(result["runs"])
    budgets = sorted({p["budget"] for p in points})
    colors = colormaps["viridis"](np.linspace(0.0, 0.85, max(len(budgets), 2)))
    fits = {f["budget"]: f for f in result.get("isoflop_fits", [])}
    seeds = max(p["seeds"] for p in points)
    for C, color in zip(budgets, colors):
        group = [p for p in points if p["budget"] == C]
        n = np.array([p["n_params"] for p in group], dtype=float)
        mean = np.array([p["val_loss"] for p in group])
        low = mean - np.array([min(p["val_losses"]) for p in group])
        high = np.array([max(p["val_losses"]) for p in group]) - mean
        ax.errorbar(n, mean, yerr=[low, high] if seeds > 1 else None, fmt="o", color=color, capsize=3,
                    label=f"C = {C:.0e} FLOPs")
        law = result.get("loss_law")
        if law:
            d = np.array([p["tokens"] for p in group], dtype=float)
            ax.plot(n, law["E"] + law["A"] * n ** -law["alpha"] + law["B"] * d ** -law["beta"], ":", color=color, lw=1)
        fit = fits.get(C, {})
        if "coef_log_n" in fit:
            x = np.linspace(np.log(n.min()), np.log(n.max()), 100)
            ax.plot(np.exp(x), scaling.ParabolaFit(0.0, 0.0, tuple(fit["coef_log_n"]))(x), "-", color=color, lw=1.5)
            ax.plot(fit["n_opt"], fit["loss_min"], "*", color=color, ms=16, mec="black", zorder=4)
    ax.plot([], [], "*", color="grey", mec="black", ms=12, label="parabola minimum, N_opt(C)")
    if result.get("loss_law"):
        ax.plot([], [], ":", color="grey", label="loss law E + A/N^alpha + B/D^beta at each run")
    ax.set_xscale("log")
    ax.set_xlabel("N, weights of the matrix products (log scale)")
    several = [p for p in points if p["seeds"] > 1]
    if not several:
        what = "one seed"
    elif len(several) == len(points):
        what = f"mean of {seeds} seeds, bars: their range"
    else:
        what = f"one seed; {seeds} at one size per budget, bars: their range"
    ax.set_ylabel("val loss (nats per character, whole val split)")
    ax.set_title("IsoFLOP profiles: val loss against model size at fixed compute\n"
                 f"(Tiny Shakespeare characters; a parabola in ln N per budget; {what})")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=9)
    if "fit_error" in result:
        ax.text(0.02, 0.02, f"no law: {result['fit_error'][:110]}", transform=ax.transAxes, fontsize=7, color="C3")
    return save_figure(fig, path)


def plot_compute_optimal(result, path):
    from matplotlib.figure import Figure
    from matplotlib.ticker import NullFormatter

    from npgpt.plots.figures import save_figure
    fig = Figure(figsize=(11, 4.8), layout="constrained")
    axes = fig.subplots(1, 2)
    fits = [f for f in result.get("isoflop_fits", []) if "n_opt" in f]
    exps = result.get("exponents")
    for ax, key, name, k_key, e_key in ((axes[0], "n_opt", "N_opt", "k_n", "a"), (axes[1], "d_opt", "D_opt", "k_d", "b")):
        if fits:
            C = np.array([f["budget"] for f in fits])
            y = np.array([f[key] for f in fits])
            ax.plot(C, y, "o", color="C0", ms=8, label=f"{name} of each IsoFLOP parabola")
            grid = np.geomspace(C.min() / 2, C.max() * 2, 50)
            if exps:
                ax.plot(grid, exps[k_key] * grid ** exps[e_key], "-", color="C0",
                        label=f"fit: {name} = {exps[k_key]:.3g} C^{exps[e_key]:.2f}")
                middle = math.exp(np.mean(np.log(C)))
                through = exps[k_key] * middle ** exps[e_key]
                ax.plot(grid, through * (grid / middle) ** 0.5, "--", color="grey",
                        label="Chinchilla's slope, C^0.5, through the fit's middle")
            r = scaling.CHINCHILLA["tokens_per_param"]
            chin = np.sqrt(grid / (6 * r)) if key == "n_opt" else np.sqrt(grid * r / 6)
            ax.plot(grid, chin, ":", color="C3", label=f"Chinchilla's {r:g} tokens per parameter (C = 6ND)")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel("C, training FLOPs (exact count)")
        ax.set_ylabel(f"{name} ({'weights' if key == 'n_opt' else 'characters'})")
        ax.grid(alpha=0.3, which="both")
        if fits:
            ax.legend(fontsize=8)
        else:
            ax.text(0.5, 0.5, "no IsoFLOP minimum to show\n(each budget needs 3 sizes or more)",
                    transform=ax.transAxes, ha="center", va="center")
    ratio = result.get("tokens_per_param")
    extra = f"; about {ratio['geometric_mean']:.0f} characters per weight" if ratio else ""
    fig.suptitle("Compute-optimal model size and data against compute" + extra)
    return save_figure(fig, path)


def report(result, law):
    for f in result["isoflop_fits"]:
        if "error" in f:
            print(f"C={f['budget']:.0e}: no minimum: {f['error']}")
        else:
            print(f"C={f['budget']:.0e}: N_opt={f['n_opt']:,.0f}  D_opt={f['d_opt']:,.0f}  "
                  f"D/N={f['tokens_per_param']:.0f}  min val loss {f['loss_min']:.4f}")
    if result.get("seed_noise"):
        s = result["seed_noise"]
        print(f"seed noise: pooled std of val loss {s['pooled_std']:.4f} over {s['points']} points "
              f"(largest range {s['max_range']:.4f})")
    if law is not None:
        e, lw = result["exponents"], result["loss_law"]
        print(f"N_opt = {e['k_n']:.3g} C^{e['a']:.3f} (+-{e['spread']['a_std']:.3f}), D_opt = {e['k_d']:.3g} "
              f"C^{e['b']:.3f} (+-{e['spread']['b_std']:.3f}) (Chinchilla: a=0.49, b=0.51); "
              f"tokens per parameter {result['tokens_per_param']['geometric_mean']:.0f} (Chinchilla: 20)")
        print(f"L(N, D) = {lw['E']:.3f} + {lw['A']:.4g} / N^{lw['alpha']:.3f} + {lw['B']:.4g} / D^{lw['beta']:.3f} "
              f"(rms {lw['rms']:.4f})")
    elif "fit_error" in result:
        print(f"no scaling law: {result['fit_error']}")


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
        result["notes"] = NOTES             # the runs stay as measured; the analysis is redone
        result["analysis"] = "redone from the runs by python benchmarks/scaling.py --refit"
    else:
        result = run_study(args)
    law = analyse(result)
    atomic_write_text(args.out, json.dumps(result, indent=1) + "\n")
    if law is not None:
        atomic_write_text(args.law, json.dumps(law.to_dict(), indent=1) + "\n")
    plot_isoflop(result, args.isoflop_figure)
    plot_compute_optimal(result, args.optimal_figure)
    report(result, law)
    written = [args.out, *([args.law] if law is not None else []), args.isoflop_figure, args.optimal_figure]
    print(f"wall time of the runs {result['wall_seconds']:.0f} s; wrote " + ", ".join(str(p) for p in written))
    return 0 if law is not None or (args.fast and not args.refit) else 1


if __name__ == "__main__":
    sys.exit(main())
