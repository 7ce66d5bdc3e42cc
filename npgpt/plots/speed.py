"""The speed figure: where a training step's time goes, part by part, one bar per contender
(what :func:`npgpt.perf.anatomy.step_anatomy` measures; notebook 10, ``benchmarks/anatomy.py``).
"""
from collections.abc import Mapping
from typing import Any

import numpy as np
from matplotlib import colormaps
from matplotlib.figure import Figure

from .save import FigurePath, finish

__all__ = ["plot_step_anatomy"]


def plot_step_anatomy(result: Mapping[str, Mapping[str, Any]], title: str = "Where a training step's time goes",
                      path: FigurePath = None) -> Figure:
    """Stacked horizontal bars, one per contender: milliseconds per step in each part.

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
    for i, n in enumerate(names):
        step = result[n]["step_ms"]
        ax.plot([step, step], [i - 0.45, i + 0.45], color="black", lw=2.5)   # the full step, measured
        ax.text(max(left[i], step), i, f"  step {step:.0f} ms", va="center")
    ax.set(xlabel="milliseconds per training step (forward + backward + AdamW); black tick: the "
                  "whole step timed as one, bars: each part timed alone", title=title)
    ax.set_xlim(0, left.max() * 1.15)
    ax.invert_yaxis()
    ax.legend(ncols=8, loc="upper center", bbox_to_anchor=(0.5, -0.22), fontsize=8, frameon=False)
    return finish(fig, path)
