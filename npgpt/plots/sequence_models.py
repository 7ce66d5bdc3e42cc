"""Recurrence against attention, drawn (notebook 03, ``benchmarks/compare_sequence_models.py``): how
much gradient reaches the input k steps back, and the loss of equal-sized models by step and by
second. The numbers come from :mod:`npgpt.training.comparison`; each helper returns a Figure and
saves it when given ``path`` (:func:`npgpt.plots.save.finish`). Their text is Chinese in the
Chinese notebooks (:func:`npgpt.plots.labels.label`).
"""
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from .save import FigurePath, finish
from .labels import label

__all__ = ["COLORS", "LABELS", "plot_sequence_model_losses", "plot_vanishing_gradients"]

COLORS = {"rnn": "C3", "lstm": "C0", "gru": "C2", "gpt": "C1"}
LABELS = {"rnn": "RNN (tanh)", "lstm": "LSTM", "gru": "GRU", "gpt": "GPT (attention)"}
LABELS_ZH = {"rnn": "RNN（tanh）", "lstm": "LSTM", "gru": "GRU", "gpt": "GPT（注意力）"}


def _name(name: str) -> str:
    return label(LABELS.get(name, name), LABELS_ZH.get(name, name))


def plot_vanishing_gradients(panels: Mapping[str, Mapping[str, Sequence[float]]], path: FigurePath = None,
                             title: str | None = None) -> Figure:
    r"""Log-scale curves of $\|\partial \ell_T/\partial e_{T-k}\|$ against $k$: ``panels`` maps a panel
    title to {model name: curve}, one panel each (e.g. at initialisation and after training)."""
    fig = Figure(figsize=(5.2 * len(panels), 4.2), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(panels), sharey=True))
    for ax, (panel_title, curves) in zip(axes, panels.items()):
        for name, curve in curves.items():
            curve = np.asarray(curve)
            ax.semilogy(np.arange(curve.size), curve, color=COLORS.get(name), label=_name(name))
        ax.set(xlabel=label("$k$ (steps back from the last position)", "$k$（从最后一个位置往回数的步数）"),
               title=panel_title)
        ax.grid(alpha=0.3, which="major")
    axes[0].set_ylabel(label(r"$\|\partial \ell_T / \partial e_{T-k}\|$ (geometric mean)",
                             r"$\|\partial \ell_T / \partial e_{T-k}\|$（几何平均）"))
    axes[-1].legend()
    fig.suptitle(title or label("How much gradient reaches the input k steps back",
                                "有多少梯度能传回 k 步之前的输入"))
    return finish(fig, path)


def plot_sequence_model_losses(results: Mapping[str, Mapping[str, Any]], path: FigurePath = None,
                               title: str | None = None) -> Figure:
    """Two panels for ``results`` ({name: what :func:`npgpt.training.comparison.train_and_evaluate`
    returns}): the loss against the step (the per-batch training loss, smoothed, and the periodic
    validation loss as markers), and the validation loss against seconds of training."""
    fig = Figure(figsize=(12, 4.4), layout="constrained")
    by_step, by_time = fig.subplots(1, 2, sharey=True)
    for name, r in results.items():
        h, color = r["history"], COLORS.get(name)
        legend = f"{_name(name)}, {r['params'] / 1e6:.2f}M"
        steps, loss = np.asarray(h["step"]), np.asarray(h["train_loss"])
        window = max(1, min(25, steps.size // 10))
        smooth = np.convolve(loss, np.ones(window) / window, mode="valid")
        by_step.plot(steps[window - 1:], smooth, color=color, lw=1.0, alpha=0.6)
        by_step.plot(h["eval_step"], h["eval_val"], "o-", color=color, ms=3.5, label=legend)
        by_time.plot(h["eval_seconds"], h["eval_val"], "o-", color=color, ms=3.5, label=legend)
    by_step.set(xlabel=label("step", "步数"), ylabel=label("cross-entropy (nats / character)", "交叉熵（奈特/字符）"),
                title=label("Loss by step (lines: train batches, smoothed; dots: val)",
                            "损失随步数的变化（线：训练批次，平滑后；点：验证集）"))
    by_time.set(xlabel=label("seconds of training", "训练时间（秒）"),
                title=label("Validation loss by wall-clock time", "验证损失随实际耗时的变化"))
    for ax in (by_step, by_time):
        ax.grid(alpha=0.3)
    by_step.legend()
    if title:
        fig.suptitle(title)
    return finish(fig, path)
