"""The training figure: the loss curve of a run (``npgpt train`` saves it; notebook 06), smoothed by a
centred moving mean. Returns a Figure and saves it when given ``path`` (:func:`npgpt.plots.save.finish`).
"""
from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure

from ..checks import UsageError
from .labels import label
from .save import FigurePath, finish

__all__ = ["centred_mean", "plot_loss_curve"]


def centred_mean(values: Sequence[float] | np.ndarray, window: int) -> np.ndarray:
    """Moving mean of ``values`` over a window centred on each point: at most ``window`` points, fewer
    near the ends, where the window shrinks to stay centred (the first and last points are their own
    mean). A trailing mean would lag a falling curve and sit above it for its first ``window`` steps."""
    values = np.asarray(values, dtype=np.float64)
    n = values.size
    half = np.minimum(max(int(window), 1) // 2, np.minimum(np.arange(n), n - 1 - np.arange(n)))
    sums = np.concatenate([[0.0], np.cumsum(values)])
    i = np.arange(n)
    return (sums[i + half + 1] - sums[i - half]) / (2 * half + 1)


def plot_loss_curve(history: Mapping[str, Sequence[float]], path: FigurePath = None,
                    title: str = "Training loss") -> Figure:
    """Loss against step from a :class:`npgpt.Trainer` history: the per-batch training loss (thin),
    its centred moving mean (:func:`centred_mean`), and the periodic train/val evaluations (markers)."""
    steps, loss = np.asarray(history["step"]), np.asarray(history["train_loss"])
    if steps.size == 0:
        raise UsageError("history has no training steps to plot")
    fig = Figure(figsize=(7, 4), layout="constrained")
    ax = fig.subplots()
    ax.plot(steps, loss, lw=0.6, alpha=0.35, color="C0", label=label("batch loss", "批次损失"))
    window = max(1, min(51, steps.size // 10))
    mean_label = label(f"batch loss, centred mean of up to {window | 1} steps", f"批次损失，至多 {window | 1} 步的居中平均")
    ax.plot(steps, centred_mean(loss, window), color="C0", label=mean_label)
    if history.get("eval_step"):
        ax.plot(history["eval_step"], history["eval_train"], "o-", color="C1", label=label("train (eval)", "训练集（评估）"))
        ax.plot(history["eval_step"], history["eval_val"], "s-", color="C2", label=label("val (eval)", "验证集（评估）"))
    ax.set(xlabel=label("step", "步数"), ylabel=label("cross-entropy (nats / token)", "交叉熵（奈特/词元）"), title=title)
    ax.grid(alpha=0.3)
    ax.legend()
    return finish(fig, path)
