"""Small matplotlib helpers for the notebooks: each takes data, returns a Figure, and saves it when
given a path (``path=None``, the default, saves nothing).

Where a notebook saves its figures: :func:`figure_path` gives ``$NPGPT_FIGURES_DIR/name`` when that
variable is set and None otherwise, so a notebook run in Jupyter only shows its figures and never
writes into the repository. ``notebooks/build.py`` sets the variable to the repository's figures/,
the one step that regenerates the committed figures.

Figures are built with matplotlib's object-oriented API (:class:`matplotlib.figure.Figure`, no
pyplot), so they work under any backend, Agg on a headless machine included, and leave no global
state behind. In a notebook, run ``%matplotlib inline`` once and a returned Figure displays itself.
"""
import os

import numpy as np
from matplotlib import colormaps
from matplotlib.figure import Figure

from ..atomic import atomic_writer
from ..checks import UsageError
from ..runtime import settings

MAX_TICK_LABELS = 24        # an attention panel labels at most this many positions per axis

FIGURES_ENV = "NPGPT_FIGURES_DIR"   # the folder notebooks save figures into; unset: save nothing

__all__ = ["FIGURES_ENV", "centred_mean", "figure_path", "figures_destination", "plot_attention_pattern",
           "plot_loss_curve", "plot_sinusoidal_encoding", "plot_step_anatomy", "save_figure"]


def _figures_dir() -> str | None:
    return settings.figures_dir()                   # set but empty counts as unset


def figure_path(name: str) -> str | None:
    """Where a notebook saves figure ``name``: ``$NPGPT_FIGURES_DIR/name``, or None (save nothing)
    when the variable is unset. The fast mode (NPGPT_FAST) does not change the answer."""
    if not name or os.path.basename(name) != name or name in (".", ".."):
        raise UsageError(f"figure name must be a plain file name such as 'loss.png', got {name!r}")
    folder = _figures_dir()
    return None if folder is None else os.path.join(folder, name)


def figures_destination() -> str:
    """One line for a notebook to print: where its figures go (relative to the working directory)."""
    folder = _figures_dir()
    if folder is None:
        return f"figures shown here, not saved ({FIGURES_ENV} is not set)"
    try:
        shown = os.path.relpath(folder)
    except ValueError:                              # on Windows, another drive has no relative path
        shown = os.path.abspath(folder)
    return f"figures saved to {shown}"


def save_figure(fig: Figure, path: str | os.PathLike | None, dpi: int = 120) -> str | os.PathLike | None:
    """Write ``fig`` to ``path`` atomically (see :mod:`npgpt.atomic`) and return the path; with
    ``path=None`` (what :func:`figure_path` gives when nothing is to be saved) write nothing.

    A crashed or interrupted run never leaves a half-written image behind. The format follows the
    file's extension (png when there is none).
    """
    if path is None:
        return None
    fmt = os.path.splitext(os.fspath(path))[1].lstrip(".").lower() or "png"
    with atomic_writer(path) as f:
        fig.savefig(f, format=fmt, dpi=dpi, bbox_inches="tight")
    return path


def _finish(fig, path):
    save_figure(fig, path)
    return fig


def plot_sinusoidal_encoding(table, path=None, dims=None):
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
    heat.set(xlabel="dimension $i$ (even: sin, odd: cos)", ylabel="position $p$",
             title=f"$PE_{{p,i}}$ for {P} positions x {C} dimensions")
    fig.colorbar(image, ax=heat, label="value")

    for i in dims:
        kind = "sin" if i % 2 == 0 else "cos"
        curves.plot(np.arange(P), table[:, i], label=f"dim {i} ({kind})")
    curves.set(xlabel="position $p$", ylabel="$PE_{p,i}$", ylim=(-1.15, 1.15),
               title="Single dimensions: wavelength grows with $i$")
    curves.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="small")
    fig.suptitle("Sinusoidal positional encoding (sin on even dimensions, cos on odd, base 10000)")
    return _finish(fig, path)


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
    suffix = "" if tokens is None else " (position:token)"
    ax.set(xlabel=f"key $j$, attended to{suffix}", ylabel=f"query $i${suffix}", title=title)
    return image


def plot_attention_pattern(att, tokens=None, path=None, title="Causal self-attention weights", panel_titles=None):
    """Heatmap of attention weights ``att``: one (T, T) matrix, or (n_head, T, T) drawn one panel
    per head. Row $i$ is the softmax distribution of query $i$ over the keys; the future cells a
    causal mask zeroes are grey. ``tokens`` (length T) label the axes as ``position:token`` (every
    k-th position past 24); ``panel_titles`` name the panels (default "head h").
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
        panel_titles = [f"head {h}" if n_head > 1 else "" for h in range(n_head)]
    if len(panel_titles) != n_head:
        raise UsageError(f"got {len(panel_titles)} panel titles for {n_head} panels")
    for h, ax in enumerate(axes):
        image = _attention_panel(ax, att[h], tokens, panel_titles[h])
    fig.colorbar(image, ax=list(axes), label="attention weight $A_{ij}$", shrink=0.9)
    fig.suptitle(title)
    return _finish(fig, path)


def centred_mean(values, window):
    """Moving mean of ``values`` over a window centred on each point: at most ``window`` points, fewer
    near the ends, where the window shrinks to stay centred (the first and last points are their own
    mean). A trailing mean would lag a falling curve and sit above it for its first ``window`` steps."""
    values = np.asarray(values, dtype=np.float64)
    n = values.size
    half = np.minimum(max(int(window), 1) // 2, np.minimum(np.arange(n), n - 1 - np.arange(n)))
    sums = np.concatenate([[0.0], np.cumsum(values)])
    i = np.arange(n)
    return (sums[i + half + 1] - sums[i - half]) / (2 * half + 1)


def plot_loss_curve(history, path=None, title="Training loss"):
    """Loss against step from a :class:`npgpt.Trainer` history: the per-batch training loss (thin),
    its centred moving mean (:func:`centred_mean`), and the periodic train/val evaluations (markers)."""
    steps, loss = np.asarray(history["step"]), np.asarray(history["train_loss"])
    if steps.size == 0:
        raise UsageError("history has no training steps to plot")
    fig = Figure(figsize=(7, 4), layout="constrained")
    ax = fig.subplots()
    ax.plot(steps, loss, lw=0.6, alpha=0.35, color="C0", label="batch loss")
    window = max(1, min(51, steps.size // 10))
    ax.plot(steps, centred_mean(loss, window), color="C0", label=f"batch loss, centred mean of up to {window | 1} steps")
    if history.get("eval_step"):
        ax.plot(history["eval_step"], history["eval_train"], "o-", color="C1", label="train (eval)")
        ax.plot(history["eval_step"], history["eval_val"], "s-", color="C2", label="val (eval)")
    ax.set(xlabel="step", ylabel="cross-entropy (nats / token)", title=title)
    ax.grid(alpha=0.3)
    ax.legend()
    return _finish(fig, path)


def plot_step_anatomy(result, title="Where a training step's time goes", path=None):
    """Stacked horizontal bars, one per contender: milliseconds per step in each part.

    ``result`` maps a contender's name to ``{"parts_ms": {part: ms}, "step_ms": ms}``
    (what :func:`npgpt.perf.bench.step_anatomy` returns)."""
    names = list(result)
    parts = list(next(iter(result.values()))["parts_ms"])
    fig = Figure(figsize=(9, 1.2 + 0.8 * len(names)), layout="constrained")
    ax = fig.subplots()
    left = np.zeros(len(names))
    colors = colormaps["tab10"]
    for k, part in enumerate(parts):
        widths = np.array([result[n]["parts_ms"].get(part, 0.0) for n in names])
        ax.barh(names, widths, left=left, color=colors(k % 10), label=part)
        left += widths
    for i, n in enumerate(names):
        step = result[n]["step_ms"]
        ax.plot([step, step], [i - 0.45, i + 0.45], color="black", lw=2.5)   # the full step, measured
        ax.text(max(left[i], step), i, f"  step {step:.0f} ms", va="center")
    ax.set(xlabel="milliseconds per training step (forward + backward + AdamW); black tick: the "
                  "whole step timed as one, bars: each part timed alone", title=title)
    ax.set_xlim(0, left.max() * 1.15)
    ax.invert_yaxis()
    ax.legend(ncols=8, loc="upper center", bbox_to_anchor=(0.5, -0.22), fontsize=8, frameon=False)
    return _finish(fig, path)
