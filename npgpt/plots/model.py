"""Figures of what the model computes: the sinusoidal positional encoding and attention weights
(notebooks 04 and 11). Each helper returns a Figure and saves it when given ``path``
(:func:`npgpt.plots.save.finish`). Their text is Chinese in the Chinese notebooks
(:func:`npgpt.plots.labels.label`).
"""
from collections.abc import Sequence

import numpy as np
from matplotlib import colormaps
from matplotlib.figure import Figure

from ..checks import UsageError
from .save import FigurePath, finish
from .labels import label

MAX_TICK_LABELS = 24        # an attention panel labels at most this many positions per axis

__all__ = ["plot_attention_pattern", "plot_sinusoidal_encoding"]


def plot_sinusoidal_encoding(table: np.ndarray, path: FigurePath = None, dims: Sequence[int] | None = None) -> Figure:
    """Heatmap of a (positions, dimensions) positional-encoding table, beside a few of its columns
    drawn as curves over the positions.

    ``dims`` picks the columns to draw (default: a sine/cosine pair and two slower sines), showing
    that each pair of dimensions is a sinusoid whose wavelength grows with the dimension.
    """
    table = np.asarray(table)
    if table.ndim != 2:
        raise UsageError(f"table must be 2-D (positions, dimensions), got shape {table.shape}")
    P, C = table.shape
    if dims is None:
        dims = sorted({min(d, C - 1) for d in (2 * (C // 16), 2 * (C // 16) + 1, 2 * (C // 8), 2 * (C // 4))})
    fig = Figure(figsize=(11, 4), layout="constrained")
    heat, curves = fig.subplots(1, 2, width_ratios=[1.1, 1])

    image = heat.imshow(table, aspect="auto", cmap="RdBu_r", vmin=-1, vmax=1,
                        interpolation="nearest", origin="upper")
    heat.set(xlabel=label("dimension $i$ (even: sin, odd: cos)", "维度 $i$（偶数：sin，奇数：cos）"),
             ylabel=label("position $p$", "位置 $p$"),
             title=label(f"$PE_{{p,i}}$ for {P} positions x {C} dimensions", f"$PE_{{p,i}}$：{P} 个位置 × {C} 个维度"))
    fig.colorbar(image, ax=heat, label=label("value", "取值"))

    for i in dims:
        kind = "sin" if i % 2 == 0 else "cos"
        curves.plot(np.arange(P), table[:, i], label=label(f"dim {i} ({kind})", f"维度 {i}（{kind}）"))
    curves.set(xlabel=label("position $p$", "位置 $p$"), ylabel="$PE_{p,i}$", ylim=(-1.15, 1.15),
               title=label("Single dimensions: wavelength grows with $i$", "单个维度：波长随 $i$ 增大"))
    curves.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="small")
    fig.suptitle(label("Sinusoidal positional encoding (sin on even dimensions, cos on odd, base 10000)",
                       "正弦位置编码（偶数维用 sin，奇数维用 cos，底数 10000）"))
    return finish(fig, path)


def _attention_panel(ax, att, tokens, title):
    """One (T, T) heatmap; the strictly-future cells a causal mask zeroes are drawn grey."""
    T = att.shape[0]
    future = np.triu(np.ones((T, T), dtype=bool), k=1) & (att == 0)
    cmap = colormaps["viridis"].with_extremes(bad="0.85")
    image = ax.imshow(np.ma.masked_array(att, future), cmap=cmap, vmin=0, vmax=1,
                      interpolation="nearest")
    if T <= 12:   # small enough to print each weight in its cell
        for i, j in zip(*np.nonzero(~future)):
            ax.text(j, i, f"{att[i, j]:.2f}", ha="center", va="center", fontsize=7,
                    color="black" if att[i, j] > 0.6 else "white")
    labels = [str(i) if tokens is None else f"{i}:{tokens[i]}" for i in range(T)]
    every = -(-T // MAX_TICK_LABELS)          # past MAX_TICK_LABELS positions, label every k-th only
    ticks = range(0, T, every)
    ax.set_xticks(ticks, [labels[i] for i in ticks], rotation=90 if max(map(len, labels)) > 2 else 0)
    ax.set_yticks(ticks, [labels[i] for i in ticks])
    suffix = "" if tokens is None else label(" (position:token)", "（位置:词元）")
    ax.set(xlabel=label(f"key $j$, attended to{suffix}", f"被关注的键 $j${suffix}"),
           ylabel=label(f"query $i${suffix}", f"查询 $i${suffix}"), title=title)
    return image


def plot_attention_pattern(att: np.ndarray, tokens: Sequence | None = None, path: FigurePath = None,
                           title: str | None = None,
                           panel_titles: Sequence[str] | None = None) -> Figure:
    """Heatmap of attention weights ``att``: one (T, T) matrix, or (n_head, T, T) drawn one panel
    per head. Row $i$ is the softmax distribution of query $i$ over the keys; the future cells a
    causal mask zeroes are grey. ``tokens`` (length T) label the axes as ``position:token`` (every
    k-th position past 24); ``title`` (default "Causal self-attention weights") names the figure and
    ``panel_titles`` the panels (default "head h").
    """
    att = np.asarray(att, dtype=float)
    if att.ndim == 2:
        att = att[None]
    if att.ndim != 3 or att.shape[1] != att.shape[2]:
        raise UsageError(f"att must be (T, T) or (n_head, T, T), got shape {np.shape(att)}")
    n_head, T, _ = att.shape
    if tokens is not None and len(tokens) != T:
        raise UsageError(f"got {len(tokens)} tokens for a {T} x {T} attention matrix")
    fig = Figure(figsize=(0.5 + 4.2 * n_head, 4.2), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, n_head))
    if panel_titles is None:
        panel_titles = [label(f"head {h}", f"注意力头 {h}") if n_head > 1 else "" for h in range(n_head)]
    if len(panel_titles) != n_head:
        raise UsageError(f"got {len(panel_titles)} panel titles for {n_head} panels")
    for h, ax in enumerate(axes):
        image = _attention_panel(ax, att[h], tokens, panel_titles[h])
    fig.colorbar(image, ax=list(axes), label=label("attention weight $A_{ij}$", "注意力权重 $A_{ij}$"), shrink=0.9)
    fig.suptitle(label("Causal self-attention weights", "因果自注意力权重") if title is None else title)
    return finish(fig, path)
