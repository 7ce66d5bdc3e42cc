"""The speed figure: where a training step's time goes, part by part, one bar per contender
(what :func:`npgpt.perf.anatomy.step_anatomy` measures; notebook 10, ``benchmarks/anatomy.py``).
"""
from collections.abc import Mapping
from typing import Any

import numpy as np
from matplotlib import colormaps
from matplotlib.figure import Figure

from .save import FigurePath, finish

__all__ = ["OVERRUN_NOTE", "plot_step_anatomy"]


# Why timed parts can add up to more than the timed whole: said on the figure whenever they do.
OVERRUN_NOTE = ("Hatched: the parts, each timed alone, add up to more than the whole step. A part timed alone pays "
                "fixed costs the whole step pays once:\nits own call and backward pass per layer (in PyTorch its own "
                "autograd graph and backward() from a gradient of ones), fresh output buffers;\nand the sum carries the "
                "timing noise of seven measurements. \"other\" (the step minus the parts) is then shown as 0.")


def plot_step_anatomy(result: Mapping[str, Mapping[str, Any]], title: str = "Where a training step's time goes",
                      path: FigurePath = None) -> Figure:
    """Stacked horizontal bars, one per contender: milliseconds per step in each part, and a black
    tick at the whole step timed as one. Where the parts add up to more than the whole step, the
    excess is hatched and a note under the axes says why (:data:`OVERRUN_NOTE`).

    ``result`` maps a contender's name to ``{"parts_ms": {part: ms}, "step_ms": ms}``
    (what :func:`npgpt.perf.anatomy.step_anatomy` returns)."""
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
    overrun = False
    for i, n in enumerate(names):
        step = result[n]["step_ms"]
        ax.plot([step, step], [i - 0.45, i + 0.45], color="black", lw=2.5)   # the full step, measured
        label = f"  step {step:.0f} ms"
        if left[i] > step * 1.005:                # beyond rounding: the parts overrun the whole
            overrun = True
            ax.barh(i, left[i] - step, left=step, height=0.8, color="none", edgecolor="black", hatch="///",
                    lw=0.8)
            label += f"; parts alone {left[i]:.0f} ms"
        ax.text(max(left[i], step), i, label, va="center")
    ax.set(xlabel="milliseconds per training step (forward + backward + AdamW); black tick: the "
                  "whole step timed as one, bars: each part timed alone", title=title)
    ax.set_xlim(0, left.max() * (1.3 if overrun else 1.15))
    ax.invert_yaxis()
    ax.legend(ncols=8, loc="upper center", bbox_to_anchor=(0.5, -0.22), fontsize=8, frameon=False)
    if overrun:
        fig.supxlabel(OVERRUN_NOTE, fontsize=8, color="0.25")   # the layout keeps room for it
    return finish(fig, path)
