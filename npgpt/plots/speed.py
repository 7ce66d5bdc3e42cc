"""The speed figure: where a training step's time goes, part by part, one bar per contender
(what :func:`npgpt.perf.anatomy.step_anatomy` measures; notebook 10, ``benchmarks/anatomy.py``).
"""
from collections.abc import Mapping
from typing import Any

import numpy as np
from matplotlib import colormaps
from matplotlib.figure import Figure

from .labels import label as tr
from .save import FigurePath, finish

__all__ = ["OVERRUN_NOTE", "OVERRUN_NOTE_ZH", "PART_NAMES_ZH", "plot_step_anatomy"]


# Why timed parts can add up to more than the timed whole: said on the figure whenever they do.
OVERRUN_NOTE = ("Hatched: the parts, each timed alone, add up to more than the whole step. A part timed alone pays "
                "fixed costs the whole step pays once:\nits own call and backward pass per layer (in PyTorch its own "
                "autograd graph and backward() from a gradient of ones), fresh output buffers;\nand the sum carries the "
                "timing noise of seven measurements. \"other\" (the step minus the parts) is then shown as 0.")
OVERRUN_NOTE_ZH = ("斜线：各部分单独计时，加起来超过了整步。单独计时的部分要付出整步只付一次的固定开销：\n"
                   "每层各自的一次调用和一次反向传播（在 PyTorch 中还有它自己的自动求导图，以及从全 1 梯度开始的 backward()）、"
                   "新分配的输出缓冲区；\n而且这个和带着七次测量的计时噪声。此时 “other”（整步减去各部分）显示为 0。")
# The parts' names in a Chinese figure (npgpt.perf.anatomy names them in English; a new part keeps its name).
PART_NAMES_ZH = {"attention": "注意力", "MLP matmuls": "MLP 矩阵乘法", "LayerNorm": "层归一化",
                 "head + loss": "输出层 + 损失", "embedding": "嵌入", "other": "其他"}


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
        ax.barh(names, widths, left=left, color=colors(k % 10), label=tr(part, PART_NAMES_ZH.get(part, part)))
        left += widths
    overrun = False
    for i, n in enumerate(names):
        step = result[n]["step_ms"]
        ax.plot([step, step], [i - 0.45, i + 0.45], color="black", lw=2.5)   # the full step, measured
        text = tr(f"  step {step:.0f} ms", f"  整步 {step:.0f} ms")
        if left[i] > step * 1.005:                # beyond rounding: the parts overrun the whole
            overrun = True
            ax.barh(i, left[i] - step, left=step, height=0.8, color="none", edgecolor="black", hatch="///",
                    lw=0.8)
            text += tr(f"; parts alone {left[i]:.0f} ms", f"；各部分单独 {left[i]:.0f} ms")
        ax.text(max(left[i], step), i, text, va="center")
    ax.set(xlabel=tr("milliseconds per training step (forward + backward + AdamW); black tick: the "
                     "whole step timed as one, bars: each part timed alone",
                     "每个训练步的毫秒数（前向 + 反向 + AdamW）；黑色刻度：整步作为一个整体计时，色条：各部分单独计时"),
           title=title)
    ax.set_xlim(0, left.max() * (tr(1.3, 1.4) if overrun else 1.15))     # room for the bar's label (longer in Chinese)
    ax.invert_yaxis()
    # below the axis label, which a CJK font draws taller
    ax.legend(ncols=8, loc="upper center", bbox_to_anchor=(0.5, tr(-0.22, -0.3)), fontsize=8, frameon=False)
    if overrun:
        fig.supxlabel(tr(OVERRUN_NOTE, OVERRUN_NOTE_ZH), fontsize=8, color="0.25")   # the layout keeps room for it
    return finish(fig, path)
