"""The compute-optimal study (npgpt/allocation/scaling.py): the fits recover laws they are given,
refuse what they cannot fit, the committed law predicts sensibly, and the study runs end to end.

Synthetic data come from known laws plus Gaussian noise of a fixed seed; each tolerance is several
standard deviations of the estimate over noise seeds (measured for each test, and given there)."""
import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from npgpt import Dataset
from npgpt.allocation import scaling
from npgpt.allocation.costs import count_flops, matmul_params
from npgpt.allocation.scaling import (
    FAST_STUDY,
    ScalingLaw,
    StudyDesign,
    fit_loss_law,
    fit_parabola,
    fit_power_law,
    fit_scaling_law,
    ladder,
    load_law,
    shape_for,
    split_loss,
)

TRUE_LAW = {"E": 1.3, "A": 40.0, "alpha": 0.4, "B": 300.0, "beta": 0.35}
ROOT = Path(__file__).resolve().parents[1]
STUDY = ROOT / "benchmarks" / "scaling.py"          # the study's command line, run as a command
COMMITTED = {ROOT / "benchmarks" / "results" / "scaling.json", scaling.LAW_PATH, ROOT / "figures" / "isoflop.png",
             ROOT / "figures" / "compute_optimal.png"}


def law_loss(N, D, E, A, alpha, B, beta):
    return E + A * np.asarray(N, float) ** -alpha + B * np.asarray(D, float) ** -beta


def small_text(n_chars=24_000, seed=0):
    """A made-up corpus with some structure: words of a small vocabulary in sentences."""
    rng = np.random.default_rng(seed)
    words = ["the", "king", "queen", "my", "lord", "doth", "speak", "thou", "art", "noble", "and", "fair"]
    out, size = [], 0
    while size < n_chars:
        sentence = " ".join(rng.choice(words, rng.integers(3, 9))).capitalize() + ".\n"
        out.append(sentence)
        size += len(sentence)
    return "".join(out)


# ----------------------------------------------------------------------------- the parabola
def test_fit_parabola_recovers_the_vertex():
    # 6 sizes over a decade around N = 3e4, noise 0.003 nats; over 200 noise seeds the vertex's
    # ln N has a standard deviation of about 0.03, so 0.1 is over 3 of them.
    x = np.log(np.geomspace(1e4, 1e5, 6))
    x0 = math.log(3e4)
    y = 2.0 + 0.3 * (x - x0) ** 2 + np.random.default_rng(0).normal(0, 0.003, x.size)
    fit = fit_parabola(x, y)
    assert abs(fit.x_min - x0) < 0.1
    assert abs(fit.y_min - 2.0) < 0.01
    assert fit.coef[2] == pytest.approx(0.3, rel=0.2)
    exact = fit_parabola(x, 2.0 + 0.3 * (x - x0) ** 2)
    assert exact.x_min == pytest.approx(x0, abs=1e-9) and exact(x0) == pytest.approx(2.0, abs=1e-12)


def test_fit_parabola_refuses_a_parabola_that_opens_downward():
    x = np.log([1e4, 2e4, 4e4, 8e4])
    with pytest.raises(ValueError, match="opens downward"):
        fit_parabola(x, 2.0 - 0.1 * (x - x.mean()) ** 2)


def test_fit_parabola_refuses_to_extrapolate_a_minimum_outside_the_sizes():
    x = np.log([1e4, 2e4, 4e4, 8e4])
    with pytest.raises(ValueError, match="outside the sampled range.*add larger sizes"):
        fit_parabola(x, 2.0 + 0.1 * (x - math.log(3e5)) ** 2)          # still falling at the largest size
    with pytest.raises(ValueError, match="add smaller sizes"):
        fit_parabola(x, 2.0 + 0.1 * (x - math.log(2e3)) ** 2)


@pytest.mark.parametrize("x, y, message", [
    ([1.0, 2.0], [2.0, 1.0], "at least 3 values, got 2"),
    ([1.0, 2.0, 3.0], [2.0, float("nan"), 2.0], "loss must be finite"),
    ([1.0, 1.0, 2.0], [2.0, 1.0, 2.0], "3 distinct values"),
    ([1.0, 2.0, 3.0, 4.0], [2.0, 1.0, 2.0], "one value per run"),
    ("abc", [1.0, 2.0, 3.0], "log_n must be numbers"),
])
def test_fit_parabola_bad_input(x, y, message):
    with pytest.raises(ValueError, match=message):
        fit_parabola(x, y)


# ----------------------------------------------------------------------------- power laws
def test_fit_power_law_recovers_coefficient_and_exponent():
    # y = 0.05 C^0.47 with 5% lognormal noise over 3 decades (6 points): the slope's standard
    # error is 0.05 / sqrt(sum (ln C - mean)^2) = 0.009; tolerance 0.04 is over 4 of them.
    C = np.geomspace(1e11, 1e14, 6)
    y = 0.05 * C**0.47 * np.exp(np.random.default_rng(1).normal(0, 0.05, C.size))
    k, e = fit_power_law(C, y)
    assert abs(e - 0.47) < 0.04
    assert k * 1e12**e == pytest.approx(0.05 * 1e12**0.47, rel=0.1)      # the line in the middle of the data
    assert fit_power_law([1e12, 1e13], [2e4, 2e5]) == pytest.approx((2e-8, 1.0))


@pytest.mark.parametrize("c, y, message", [
    ([1e12, 0.0], [1.0, 2.0], "c must be positive numbers, got 0 in"),
    ([1e12, 1e13], [1.0, -2.0], "y must be positive numbers, got -2 in"),
    ([1e12], [1.0], "c needs at least 2 values, got 1"),
    ([1e12, 1e13], [1.0, float("nan")], "y must be finite"),
    ([1e12, 1e12], [1.0, 2.0], "2 distinct values"),
])
def test_fit_power_law_bad_input(c, y, message):
    with pytest.raises(ValueError, match=message):
        fit_power_law(c, y)


# ----------------------------------------------------------------------------- the loss law
@pytest.mark.slow
def test_fit_loss_law_recovers_the_law():
    # 36 runs on a 6 x 6 grid of N (1e4-1e6) and D (1e6-1e8), noise 0.005 nats. Over 20 noise
    # seeds the estimates' standard deviations were E 0.008, alpha 0.005, beta 0.002, A 4%, B 2%;
    # the tolerances are 3 to 6 of them.
    N = np.repeat(np.geomspace(1e4, 1e6, 6), 6)
    D = np.tile(np.geomspace(1e6, 1e8, 6), 6)
    loss = law_loss(N, D, **TRUE_LAW) + np.random.default_rng(2).normal(0, 0.005, N.size)
    fit, true = fit_loss_law(N, D, loss), TRUE_LAW
    assert abs(fit.E - true["E"]) < 0.05
    assert fit.alpha == pytest.approx(true["alpha"], abs=0.03)
    assert fit.beta == pytest.approx(true["beta"], abs=0.02)
    assert abs(fit.A / true["A"] - 1) < 0.2 and abs(fit.B / true["B"] - 1) < 0.15
    assert 0.003 < fit.rms < 0.007                          # the noise put in, not more
    exact = fit_loss_law(N, D, law_loss(N, D, **TRUE_LAW))
    assert exact.rms < 1e-3 and exact.alpha == pytest.approx(0.4, abs=0.01)


def test_fit_loss_law_bad_input():
    N, D = [1e4, 2e4, 4e4, 8e4, 1.6e5], [1e6, 2e6, 4e6, 8e6, 1.6e7]
    with pytest.raises(ValueError, match="loss must be finite"):
        fit_loss_law(N, D, [2.0, 1.9, float("nan"), 1.8, 1.7])
    with pytest.raises(ValueError, match="n_params must be positive numbers, got -1 in"):
        fit_loss_law([-1.0, *N[1:]], D, [2.0] * 5)
    with pytest.raises(ValueError, match="at least 5 values, got 3"):
        fit_loss_law(N[:3], D[:3], [2.0] * 3)


def isoflop_runs(budgets, law, sizes=6, spread=10.0, noise=0.0, seeds=1, seed=0):
    """Runs on IsoFLOP lines of a known law (D = C / 6N), each budget's sizes centred on the law's
    optimum N = G (C/6)^(beta / (alpha + beta)), G = (alpha A / beta B)^(1 / (alpha + beta))."""
    rng = np.random.default_rng(seed)
    a = law["beta"] / (law["alpha"] + law["beta"])
    G = (law["alpha"] * law["A"] / (law["beta"] * law["B"])) ** (1 / (law["alpha"] + law["beta"]))
    runs = []
    for C in budgets:
        for i, N in enumerate(G * (C / 6) ** a * spread ** np.linspace(-0.5, 0.5, sizes)):
            D = C / (6 * N)
            for seed in range(seeds):
                loss = float(law_loss(N, D, **law) + rng.normal(0, noise))
                runs.append({"budget": C, "n_layer": 2, "n_embd": i, "n_params": N, "tokens": D, "flops": C,
                             "val_loss": loss, "train_loss": loss, "seed": seed})
    return runs, a


def test_fit_scaling_law_recovers_the_compute_optimal_exponents():
    # With D = C / 6N the law's optimum is N_opt ~ C^(beta / (alpha + beta)) = C^0.467 here. Each
    # budget's curve in ln N is the same shape, scaled, so the parabola's bias is the same at every
    # budget and leaves the exponent alone; the noise (0.003 nats) moves it by about 0.01.
    runs, a = isoflop_runs([1e11, 3e11, 1e12, 3e12], TRUE_LAW, noise=0.004, seeds=2)
    law, fits = fit_scaling_law(runs)
    assert law.a == pytest.approx(a, abs=0.04) and law.b == pytest.approx(1 - a, abs=0.04)
    for f in fits:
        assert f["d_opt"] * f["n_opt"] * 6 == pytest.approx(f["budget"], rel=0.05)
    assert law.alpha == pytest.approx(TRUE_LAW["alpha"], abs=0.1) and law.beta == pytest.approx(TRUE_LAW["beta"], abs=0.1)
    assert law.fitted_range["flops"] == [1e11, 3e12]
    N, D = law.optimal(1e12)
    assert law.predict_loss(N, D) == pytest.approx(min(r["val_loss"] for r in runs if r["budget"] == 1e12), abs=0.01)


@pytest.mark.slow
def test_exponent_spread_matches_how_far_the_exponent_really_moves():
    # Eight noisy studies of one law (4 budgets, 6 sizes, noise 0.01): the bootstrap's a_std of each
    # should be about the standard deviation of their fitted a's (0.006 here). Eight samples give
    # that deviation to about +-25%, so a factor of 2 either way fails only a broken bootstrap.
    fitted, spreads = [], []
    for seed in range(8):
        runs, a = isoflop_runs([1e11, 3e11, 1e12, 3e12], TRUE_LAW, noise=0.01, seed=seed)
        fitted.append(fit_scaling_law(runs)[0].a)
        spread = scaling.exponent_spread(runs, draws=200, seed=seed)
        spreads.append(spread["a_std"])
        assert spread["a_16_84"][0] < spread["a_16_84"][1] and spread["failed_share"] < 0.2
    assert 0.5 < np.std(fitted, ddof=1) / np.mean(spreads) < 2.0
    assert abs(np.mean(fitted) - a) < 0.01


def test_fit_scaling_law_refuses_a_budget_without_an_interior_minimum():
    runs, _ = isoflop_runs([1e11, 1e12], TRUE_LAW)
    shifted = [dict(r, n_params=r["n_params"] * 30) if r["budget"] == 1e12 else r for r in runs]
    shifted = [dict(r, val_loss=float(law_loss(r["n_params"], r["budget"] / (6 * r["n_params"]), **TRUE_LAW)))
               for r in shifted]                                    # the 1e12 sizes all past the optimum
    with pytest.raises(ValueError, match="budget 1e\\+12: .*add smaller sizes"):
        fit_scaling_law(shifted)
    with pytest.raises(ValueError, match="at least 2 budgets"):
        fit_scaling_law([r for r in runs if r["budget"] == 1e11])


def test_seed_means_average_the_seeds_and_seed_noise_pools_them():
    runs, _ = isoflop_runs([1e11, 1e12], TRUE_LAW, sizes=3, noise=0.01, seeds=3)
    points = scaling.seed_means(runs)
    assert len(points) == 6 and all(p["seeds"] == 3 for p in points)
    first = [r["val_loss"] for r in runs[:3]]
    assert points[0]["val_loss"] == pytest.approx(np.mean(first)) and points[0]["val_losses"] == first
    noise = scaling.seed_noise(runs)
    assert noise["points"] == 6 and 0.005 < noise["pooled_std"] < 0.015      # 12 degrees of freedom around 0.01
    assert scaling.seed_noise([r for r in runs if r["seed"] == 0]) is None


# ----------------------------------------------------------------------------- the law object
def example_law():
    return ScalingLaw(E=1.3, A=40.0, alpha=0.4, B=300.0, beta=0.35, k_n=0.02, a=0.5, k_d=8.0, b=0.5,
                      fitted_range={"n_params": [1e4, 4e5], "tokens": [1e5, 4e7], "flops": [3e11, 1e13]},
                      meta={"corpus": "test"})


def test_scaling_law_round_trips_through_a_dict_and_json():
    law = example_law()
    again = ScalingLaw.from_dict(json.loads(json.dumps(law.to_dict())))
    assert again == law
    assert again.predict_loss(1e5, 1e7) == law.predict_loss(1e5, 1e7)
    assert law.optimal(1e12) == pytest.approx((0.02 * 1e6, 8.0 * 1e6))
    assert law.tokens_per_param(1e12) == pytest.approx(400.0)
    assert law.in_range(n_params=1e5, flops=1e12) and not law.in_range(tokens=1e9)
    n, d = law.optimal(np.array([1e12, 4e12]))
    np.testing.assert_allclose(n, [2e4, 4e4])


@pytest.mark.parametrize("call, message", [
    (lambda law: law.predict_loss(0, 1e6), "n_params must be positive numbers, got 0 in"),
    (lambda law: law.predict_loss(1e5, -5), "tokens must be positive numbers, got -5 in"),
    (lambda law: law.predict_loss(float("nan"), 1e6), "n_params must be finite"),
    (lambda law: law.optimal(0), r"flops \(the compute budget\) must be positive numbers, got 0 in"),
    (lambda law: law.optimal(-1e12), "must be positive numbers, got -1e\\+12"),
    (lambda law: ScalingLaw.from_dict({"E": 1.0}), "missing A, alpha"),
    (lambda law: ScalingLaw.from_dict([1, 2]), "must be a dict, got list"),
    (lambda law: ScalingLaw.from_dict(dict(law.to_dict(), alpha=float("nan"))), "ScalingLaw.alpha must be a finite"),
    (lambda law: ScalingLaw.from_dict(dict(law.to_dict(), A=-1.0)), "ScalingLaw.A must be a finite number >= 0"),
])
def test_scaling_law_bad_input(call, message):
    with pytest.raises(ValueError, match=message):
        call(example_law())


def test_load_law_names_a_missing_or_broken_file(tmp_path):
    with pytest.raises(ValueError, match="no scaling law at .*run benchmarks/scaling.py"):
        load_law(tmp_path / "none.json")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ValueError, match="is not valid JSON"):
        load_law(tmp_path / "bad.json")


def test_the_committed_law_predicts_a_finite_loss_that_falls_with_size():
    law = load_law()
    N = np.geomspace(*law.fitted_range["n_params"], 8)
    loss = law.predict_loss(N, np.full(N.size, 1e7))
    assert np.isfinite(loss).all() and (np.diff(loss) < 0).all()
    assert 0.5 < law.minimum_loss(1e12) < 4.2                      # below uniform guessing, ln 65 = 4.17
    lo, hi = law.fitted_range["flops"]
    (n1, d1), (n2, d2) = law.optimal(lo), law.optimal(hi)
    assert n1 < n2 and d1 < d2 and law.minimum_loss(hi) < law.minimum_loss(lo)
    assert 0.2 < law.a < 0.8 and 0.2 < law.b < 0.8


# ----------------------------------------------------------------------------- shapes and runs
@pytest.mark.parametrize("target", [2e4, 1e5, 4e5, 1.5e6])
def test_shape_for_comes_near_the_target(target):
    config = shape_for(target)
    assert matmul_params(config) == pytest.approx(target, rel=0.15)
    assert config.n_head == 4 and config.n_layer >= 2 and config.vocab_size == 65 and config.block_size == 64
    assert config.n_embd % 4 == 0 and config.n_embd <= 64 * config.n_layer


def test_ladder_spans_the_spread_around_the_guess():
    C = 1e13
    for centre, expected in ((None, math.sqrt(C / 120)), (1e5, 1e5)):          # Chinchilla's guess, or given
        shapes = ladder(C, n_sizes=5, spread=10.0, centre=centre)
        N = np.array([matmul_params(c) for c in shapes], float)
        assert len({(c.n_layer, c.n_embd) for c in shapes}) == 5 and (np.diff(N) > 0).all()
        assert 7 < N[-1] / N[0] < 14
        assert math.exp(np.log(N).mean()) == pytest.approx(expected, rel=0.15)


@pytest.mark.parametrize("call, message", [
    (lambda: ladder(0), r"flops \(the compute budget\) must be a finite number > 0, got 0"),
    (lambda: ladder(-1e12), "must be a finite number > 0, got -1000000000000.0"),
    (lambda: ladder(float("nan")), "must be a finite number > 0, got nan"),
    (lambda: ladder(1e12, n_sizes=0), "n_sizes must be a positive integer, got 0"),
    (lambda: ladder(1e12, n_sizes=6, spread=1.2), "holds only .* distinct shapes"),
    (lambda: scaling.tokens_for_budget(shape_for(1e5), 0.0), "must be a finite number > 0"),
    (lambda: shape_for(-3), "n_target .* must be a finite number > 0"),
    (lambda: ladder(1e12, centre=0), r"centre \(parameters\) must be a finite number > 0, got 0"),
])
def test_study_bad_input(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_split_loss_is_the_mean_over_every_window():
    from npgpt import GPT, GPTConfig
    config = GPTConfig(vocab_size=7, block_size=5, n_layer=1, n_head=1, n_embd=8)
    model = GPT(config, seed=0, dtype=np.float64)
    ids = np.random.default_rng(0).integers(0, 7, 58).astype(np.uint16)      # 11 windows of 5 (+1)
    each = [model.forward(ids[None, s:s + 5].astype(np.int64), ids[None, s + 1:s + 6].astype(np.int64))[1]
            for s in range(0, 55, 5)]
    assert split_loss(model, ids, batch_size=4) == pytest.approx(np.mean(each), rel=1e-12)
    assert split_loss(model, ids, batch_size=4, max_windows=3) == pytest.approx(np.mean([each[0], each[5], each[10]]))
    with pytest.raises(ValueError, match="too few for one window"):
        split_loss(model, ids[:5])


def test_train_point_spends_the_budget(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    data = Dataset(small_text(6000))
    config = shape_for(3e3, vocab_size=data.vocab_size, block_size=16)
    recipe = scaling.Recipe(batch_size=4)
    flops = 40 * count_flops(config, 4).total                          # 40 steps' worth
    steps = []
    run = scaling.train_point(config, flops, data, recipe, on_step=lambda step, loss: steps.append(step))
    assert run["steps"] == 40 and steps == list(range(1, 41)) and run["flops"] == flops
    assert run["tokens"] == 40 * 4 * 16 and run["flops_6nd"] < run["flops"]
    assert math.isfinite(run["val_loss"]) and run["val_loss"] < math.log(data.vocab_size)
    assert run["warmup_steps"] == 2 and run["n_params"] == matmul_params(config)


# ----------------------------------------------------------------------------- the study and its command line
def test_the_study_plan_runs_every_size_and_the_noise_seeds():
    plan = StudyDesign().plan(65)                      # the committed study: 3 budgets x 6 sizes, 2 more seeds
    assert len(plan) == 24 and [C for C, _, _ in plan] == sorted(C for C, _, _ in plan)
    for C in (1e12, 3e12, 1e13):
        runs = [(config, seed) for budget, config, seed in plan if budget == C]
        shapes = list(dict.fromkeys((c.n_layer, c.n_embd) for c, _ in runs))
        assert len(shapes) == 6 and [seed for _, seed in runs] == [0, 0, 0, 1, 2, 0, 0, 0]   # the third size thrice
    assert [(C, seed) for C, _, seed in FAST_STUDY.plan(65)] == [(5e9, 0), (5e9, 0)]


def run_study_script(tmp_path, *args):
    """``python benchmarks/scaling.py args``, single-threaded, its corpus cache in the test's folder."""
    env = dict(os.environ, XDG_CACHE_HOME=str(tmp_path / "cache"), OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1",
               NUMBA_NUM_THREADS="1")
    return subprocess.run([sys.executable, str(STUDY), *map(str, args)], capture_output=True, text=True,
                          timeout=600, env=env)


def small_corpus(tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(small_text(), encoding="utf-8")
    return corpus


@pytest.mark.slow
def test_the_fast_study_runs_end_to_end(tmp_path):
    out = tmp_path / "out"
    done = run_study_script(tmp_path, "--fast", "--data", small_corpus(tmp_path), "--out-dir", out, "--no-progress")
    assert done.returncode == 0, done.stderr
    result = json.loads((out / "scaling.json").read_text())
    assert result["complete"] and len(result["runs"]) == 2
    for run in result["runs"]:
        assert math.isfinite(run["val_loss"]) and run["budget"] == 5e9
        assert abs(run["flops"] - 5e9) <= count_flops(shape_for(run["n_params"], result["design"]["vocab_size"]), 16).total
    assert "at least 3 values" in result["isoflop_fits"][0]["error"]        # two sizes: points, no parabola
    assert not (out / "scaling_law.json").exists()
    assert result["machine"]["numba_threads"] >= 1 and "model_name" in result["machine"]
    for figure in ("isoflop.png", "compute_optimal.png"):
        (out / figure).unlink()
    assert run_study_script(tmp_path, "--replot", "--out-dir", out).returncode == 0
    assert (out / "isoflop.png").stat().st_size > 0 and (out / "compute_optimal.png").stat().st_size > 0


@pytest.mark.slow
def test_refit_redoes_the_analysis_from_the_runs_alone(tmp_path):
    runs, a = isoflop_runs([1e11, 3e11, 1e12], TRUE_LAW, noise=0.004, seeds=2)
    result = {"corpus": "synthetic", "runs": runs, "wall_seconds": 1.0,
              "design": {"recipe": {}, "shape_rule": "none", "block_size": 64, "vocab_size": 65}}
    (tmp_path / "scaling.json").write_text(json.dumps(result))
    done = run_study_script(tmp_path, "--refit", "--out-dir", tmp_path)
    assert done.returncode == 0, done.stderr
    again = json.loads((tmp_path / "scaling.json").read_text())
    assert again["runs"] == runs and again["notes"] == scaling.STUDY_NOTES and "refit" in again["analysis"]
    assert again["exponents"]["a"] == pytest.approx(a, abs=0.05) and again["exponents"]["spread"]["a_std"] > 0
    law = load_law(tmp_path / "scaling_law.json")
    assert law.a == again["exponents"]["a"] and law.meta["corpus"] == "synthetic"
    assert (tmp_path / "isoflop.png").stat().st_size > 0


@pytest.mark.slow
def test_fast_mode_never_writes_over_the_committed_results(tmp_path):
    done = run_study_script(tmp_path, "--fast", "--data", small_corpus(tmp_path), "--no-progress")
    assert done.returncode == 0, done.stderr
    written = [Path(p) for p in done.stdout.strip().splitlines()[-1].split("; wrote ")[1].split(", ")]
    assert not set(written) & COMMITTED
    folder = written[0].parent                                  # the temporary folder it made
    assert folder.name.startswith("npgpt-scaling-") and all(p.parent == folder for p in written)
    design = json.loads(written[0].read_text())["design"]
    assert design["budgets"] == [5e9] and design["sizes_per_budget"] == 2 and design["seeds"] == 1 \
        and design["noise_seeds"] == 0
    shutil.rmtree(folder)


@pytest.mark.slow          # a process each (0.6 s)
@pytest.mark.parametrize("flag, bad", [("--budgets", "0"), ("--budgets", "-1e12"), ("--budgets", "eight"),
                                       ("--centre", "4e4"), ("--centre", "0@1e12"), ("--seeds", "0")])
def test_the_command_line_refuses_bad_values(tmp_path, flag, bad):
    done = run_study_script(tmp_path, flag, bad)
    assert done.returncode == 2
    assert flag in done.stderr


# ----------------------------------------------------------------------------- bounded shape search
def test_the_whole_family_is_listed_at_once_and_stops_at_the_widest_shape():
    from zip_craft import capped
    with capped(256 << 20, 10):            # listing every width of 10**6 depths ran for minutes
        shapes = scaling.family(1e30)
    assert shapes[-1] == (105_540_236_017_404, 2048, 65532)
    assert all(n_embd < scaling.MAX_WIDTH for _, _, n_embd in shapes)
    assert scaling.family(3e8) == [s for s in shapes if s[0] <= 3e8]


@pytest.mark.parametrize("vocab_size", [65, 50257])
def test_shape_for_finds_the_nearest_shape_as_a_search_of_the_list_does(vocab_size):
    def listed(n_target):                  # the definition: the nearest in ratio of family(2 N + 1e4)
        shapes = scaling.family(2 * n_target + 1e4, vocab_size)
        _, n_layer, n_embd = min(shapes, key=lambda s: abs(math.log(s[0] / n_target)))
        return n_layer, n_embd

    sizes = [n for n, _, _ in scaling.family(3e7, vocab_size)]
    targets = [*np.exp(np.random.default_rng(0).uniform(np.log(1e3), np.log(1e7), 300)),
               *sizes[::5], *(n * (1 + 1e-9) for n in sizes[::7]), *(n * (1 - 1e-9) for n in sizes[::7])]
    for n_target in (t for t in targets if 2 * t + 1e4 >= sizes[0]):     # a list with a shape in it
        config = shape_for(n_target, vocab_size)
        assert (config.n_layer, config.n_embd) == listed(n_target), n_target
