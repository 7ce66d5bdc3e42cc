"""The compute-optimal study, drawn (``benchmarks/scaling.py``; notebook 08): the IsoFLOP profiles and
N_opt, D_opt against compute, from a study's results (:func:`npgpt.allocation.scaling.run_study`
and :func:`~npgpt.allocation.scaling.analyse_study`). Each helper returns a Figure and saves it when
given ``path`` (:func:`npgpt.plots.save.finish`). Their text is Chinese in the Chinese notebooks
(:func:`npgpt.plots.labels.label`).
"""
import math
from collections.abc import Mapping
from typing import Any

import numpy as np
from matplotlib import colormaps
from matplotlib.figure import Figure
from matplotlib.ticker import NullFormatter

from ..allocation.scaling import CHINCHILLA, ParabolaFit, seed_means
from .save import FigurePath, finish
from .labels import label

__all__ = ["plot_compute_optimal", "plot_isoflop"]


def plot_isoflop(result: Mapping[str, Any], path: FigurePath = None) -> Figure:
    """Val loss against N at each budget (points: the seed means, bars: the seeds' range), each
    budget's parabola in ln N and its minimum, and the loss law at every run when there is one."""
    fig = Figure(figsize=(8.5, 5.5), layout="constrained")
    ax = fig.subplots()
    points = seed_means(result["runs"])
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
            ax.plot(np.exp(x), ParabolaFit(0.0, 0.0, tuple(fit["coef_log_n"]))(x), "-", color=color, lw=1.5)
            ax.plot(fit["n_opt"], fit["loss_min"], "*", color=color, ms=16, mec="black", zorder=4)
    ax.plot([], [], "*", color="grey", mec="black", ms=12,
            label=label("parabola minimum, N_opt(C)", "抛物线最低点 N_opt(C)"))
    if result.get("loss_law"):
        ax.plot([], [], ":", color="grey", label=label("loss law E + A/N^alpha + B/D^beta at each run",
                                                       "各次运行处的损失定律 E + A/N^alpha + B/D^beta"))
    ax.set_xscale("log")
    ax.set_xlabel(label("N, weights of the matrix products (log scale)", "N：矩阵乘法的权重数（对数坐标）"))
    several = [p for p in points if p["seeds"] > 1]
    if not several:
        what = label("one seed", "单个种子")
    elif len(several) == len(points):
        what = label(f"mean of {seeds} seeds, bars: their range", f"{seeds} 个种子的均值，误差条为其范围")
    else:
        what = label(f"one seed; {seeds} at one size per budget, bars: their range",
                     f"单个种子；每个预算有一个规模跑 {seeds} 个种子，误差条为其范围")
    ax.set_ylabel(label("val loss (nats per character, whole val split)", "验证损失（奈特/字符，整个验证集）"))
    ax.set_title(label("IsoFLOP profiles: val loss against model size at fixed compute\n"
                       f"(Tiny Shakespeare characters; a parabola in ln N per budget; {what})",
                       "IsoFLOP 曲线：固定算力下验证损失随模型规模的变化\n"
                       f"（Tiny Shakespeare 字符级；每个预算对 ln N 拟合一条抛物线；{what}）"))
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=9)
    if "fit_error" in result:
        ax.text(0.02, 0.02, label("no law: ", "未拟合出损失定律：") + result['fit_error'][:110],
                transform=ax.transAxes, fontsize=7, color="C3")
    return finish(fig, path)


def plot_compute_optimal(result: Mapping[str, Any], path: FigurePath = None) -> Figure:
    """N_opt and D_opt of each budget against C, the fitted power laws, Chinchilla's slope through
    their middle and its 20 tokens per parameter."""
    fig = Figure(figsize=(11, 4.8), layout="constrained")
    axes = fig.subplots(1, 2)
    fits = [f for f in result.get("isoflop_fits", []) if "n_opt" in f]
    exps = result.get("exponents")
    for ax, key, name, k_key, e_key in ((axes[0], "n_opt", "N_opt", "k_n", "a"), (axes[1], "d_opt", "D_opt", "k_d", "b")):
        if fits:
            C = np.array([f["budget"] for f in fits])
            y = np.array([f[key] for f in fits])
            ax.plot(C, y, "o", color="C0", ms=8, label=label(f"{name} of each IsoFLOP parabola", f"各 IsoFLOP 抛物线的 {name}"))
            grid = np.geomspace(C.min() / 2, C.max() * 2, 50)
            if exps:
                ax.plot(grid, exps[k_key] * grid ** exps[e_key], "-", color="C0",
                        label=label("fit: ", "拟合：") + f"{name} = {exps[k_key]:.3g} C^{exps[e_key]:.2f}")
                middle = math.exp(np.mean(np.log(C)))
                through = exps[k_key] * middle ** exps[e_key]
                ax.plot(grid, through * (grid / middle) ** 0.5, "--", color="grey",
                        label=label("Chinchilla's slope, C^0.5, through the fit's middle",
                                    "Chinchilla 的斜率 C^0.5，过拟合线的中点"))
            r = CHINCHILLA["tokens_per_param"]
            chin = np.sqrt(grid / (6 * r)) if key == "n_opt" else np.sqrt(grid * r / 6)
            ax.plot(grid, chin, ":", color="C3", label=label(f"Chinchilla's {r:g} tokens per parameter (C = 6ND)",
                                                              f"Chinchilla 的每参数 {r:g} 个词元（C = 6ND）"))
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel(label("C, training FLOPs (exact count)", "C：训练 FLOPs（精确计数）"))
        ax.set_ylabel(label(f"{name} ({'weights' if key == 'n_opt' else 'characters'})",
                            f"{name}（{'权重数' if key == 'n_opt' else '字符数'}）"))
        ax.grid(alpha=0.3, which="both")
        if fits:
            ax.legend(fontsize=8)
        else:
            ax.text(0.5, 0.5, label("no IsoFLOP minimum to show\n(each budget needs 3 sizes or more)",
                                    "没有可显示的 IsoFLOP 最低点\n（每个预算至少需要 3 种规模）"),
                    transform=ax.transAxes, ha="center", va="center")
    ratio = result.get("tokens_per_param")
    extra = label(f"; about {ratio['geometric_mean']:.0f} characters per weight",
                  f"；约每个权重 {ratio['geometric_mean']:.0f} 个字符") if ratio else ""
    fig.suptitle(label("Compute-optimal model size and data against compute",
                       "算力最优的模型规模与数据量随算力的变化") + extra)
    return finish(fig, path)
