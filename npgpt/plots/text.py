"""Plots for text encoding (document 3.1): BPE compression against vocabulary size, and word vectors
projected to two dimensions.

Same conventions as every plot of :mod:`npgpt.plots`: each helper takes data, returns a matplotlib
:class:`~matplotlib.figure.Figure` (object-oriented API, no pyplot state) and, given ``path``, saves
it atomically (:func:`npgpt.plots.save.finish`).
"""
from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure

from ..checks import UsageError
from .save import FigurePath, finish

__all__ = ["plot_compression_curve", "plot_word_projection"]


def plot_compression_curve(series: Mapping[str, tuple[Sequence[int], Sequence[float]]], path: FigurePath = None,
                           title: str = "Byte-level BPE: compression against vocabulary size") -> Figure:
    """Bytes per token against vocabulary size, one line per text.

    ``series``: ``{label: (vocab_sizes, bytes_per_token)}``. A vocabulary of the 256 bytes alone gives
    1 byte per token; each merge can only raise it. The x axis is logarithmic.
    """
    if not series:
        raise UsageError("series is empty: give {label: (vocab_sizes, bytes_per_token)}")
    fig = Figure(figsize=(7, 4.2), layout="constrained")
    ax = fig.subplots()
    ticks = set()
    for k, (label, (sizes, ratio)) in enumerate(series.items()):
        sizes, ratio = np.asarray(sizes), np.asarray(ratio, dtype=float)
        if sizes.shape != ratio.shape or sizes.ndim != 1:
            raise UsageError(f"{label!r}: vocab_sizes and bytes_per_token must be 1-D and of equal length, "
                             f"got {sizes.shape} and {ratio.shape}")
        ticks.update(int(n) for n in sizes)
        ax.plot(sizes, ratio, "o-", color=f"C{k}", label=label)
        ax.annotate(f"{ratio[-1]:.2f}", (sizes[-1], ratio[-1]), textcoords="offset points",
                    xytext=(4, 4), fontsize="small", color=f"C{k}")
    ax.set_xscale("log", base=2)
    ax.set_xticks(sorted(ticks), [f"{n:,}" for n in sorted(ticks)], rotation=45 if len(ticks) > 8 else 0)
    ax.minorticks_off()
    ax.margins(x=0.08)
    ax.set(xlabel="vocabulary size (256 bytes + merges)", ylabel="UTF-8 bytes per token", title=title)
    ax.grid(alpha=0.3)
    ax.legend()
    return finish(fig, path)


def plot_word_projection(coords: np.ndarray, words: Sequence[str], groups: Sequence[str] | None = None,
                         path: FigurePath = None, explained: Sequence[float] | None = None,
                         title: str = "Word vectors, first two principal components") -> Figure:
    """Scatter of 2-D word coordinates (e.g. :meth:`npgpt.wordvec.WordVectors.project`), each point
    labelled with its word.

    ``groups`` (optional, one name per word) colours the points by group, with a legend;
    ``explained`` (optional, two shares of variance) is written on the axes.
    """
    coords = np.asarray(coords, dtype=float)
    if coords.ndim != 2 or coords.shape[1] != 2:
        raise UsageError(f"coords must be (n, 2), got shape {coords.shape}")
    if len(words) != coords.shape[0]:
        raise UsageError(f"got {len(words)} words for {coords.shape[0]} points")
    if groups is not None and len(groups) != len(words):
        raise UsageError(f"got {len(groups)} groups for {len(words)} words")
    fig = Figure(figsize=(8, 6.5), layout="constrained")
    ax = fig.subplots()
    names = list(dict.fromkeys(groups)) if groups is not None else [None]
    for k, name in enumerate(names):
        mask = np.ones(len(words), bool) if name is None else np.array([g == name for g in groups])
        ax.scatter(coords[mask, 0], coords[mask, 1], s=22, color=f"C{k % 10}", label=name)
        for (x, y), word in zip(coords[mask], np.asarray(words, dtype=object)[mask]):
            ax.annotate(word, (x, y), textcoords="offset points", xytext=(3, 3), fontsize=9,
                        color=f"C{k % 10}")
    if explained is not None:
        ax.set(xlabel=f"PC 1 ({100 * explained[0]:.1f}% of variance)",
               ylabel=f"PC 2 ({100 * explained[1]:.1f}% of variance)")
    else:
        ax.set(xlabel="PC 1", ylabel="PC 2")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    if groups is not None:
        ax.legend(loc="best", fontsize="small")
    return finish(fig, path)
