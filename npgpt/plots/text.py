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
from .labels import label
from .save import FigurePath, finish

__all__ = ["plot_compression_curve", "plot_word_projection"]


def plot_compression_curve(series: Mapping[str, tuple[Sequence[int], Sequence[float]]], path: FigurePath = None,
                           title: str | None = None) -> Figure:
    """Bytes per token against vocabulary size, one line per text.

    ``series``: ``{label: (vocab_sizes, bytes_per_token)}``. A vocabulary of the 256 bytes alone gives
    1 byte per token; each merge can only raise it. The x axis is logarithmic. ``title``: a title of
    its own, else one in the notebook's language.
    """
    if not series:
        raise UsageError("series is empty: give {label: (vocab_sizes, bytes_per_token)}")
    fig = Figure(figsize=(7, 4.2), layout="constrained")
    ax = fig.subplots()
    ticks = set()
    for k, (name, (sizes, ratio)) in enumerate(series.items()):
        sizes, ratio = np.asarray(sizes), np.asarray(ratio, dtype=float)
        if sizes.shape != ratio.shape or sizes.ndim != 1:
            raise UsageError(f"{name!r}: vocab_sizes and bytes_per_token must be 1-D and of equal length, "
                             f"got {sizes.shape} and {ratio.shape}")
        ticks.update(int(n) for n in sizes)
        ax.plot(sizes, ratio, "o-", color=f"C{k}", label=name)
        ax.annotate(f"{ratio[-1]:.2f}", (sizes[-1], ratio[-1]), textcoords="offset points",
                    xytext=(4, 4), fontsize="small", color=f"C{k}")
    ax.set_xscale("log", base=2)
    ax.set_xticks(sorted(ticks), [f"{n:,}" for n in sorted(ticks)], rotation=45 if len(ticks) > 8 else 0)
    ax.minorticks_off()
    ax.margins(x=0.08)
    if title is None:
        title = label("Byte-level BPE: compression against vocabulary size", "字节级 BPE：压缩率与词表大小")
    ax.set(xlabel=label("vocabulary size (256 bytes + merges)", "词表大小（256 个字节 + 合并次数）"),
           ylabel=label("UTF-8 bytes per token", "每个词元的 UTF-8 字节数"), title=title)
    ax.grid(alpha=0.3)
    ax.legend()
    return finish(fig, path)


def plot_word_projection(coords: np.ndarray, words: Sequence[str], groups: Sequence[str] | None = None,
                         path: FigurePath = None, explained: Sequence[float] | None = None,
                         title: str | None = None) -> Figure:
    """Scatter of 2-D word coordinates (e.g. :meth:`npgpt.wordvec.WordVectors.project`), each point
    labelled with its word.

    ``groups`` (optional, one name per word) colours the points by group, with a legend;
    ``explained`` (optional, two shares of variance) is written on the axes; ``title``: a title of its
    own, else one in the notebook's language.
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
    colours = [f"C{names.index(g) % 10}" for g in groups] if groups is not None else ["C0"] * len(words)
    for k, name in enumerate(names):
        mask = np.ones(len(words), bool) if name is None else np.array([g == name for g in groups])
        ax.scatter(coords[mask, 0], coords[mask, 1], s=22, color=f"C{k % 10}", label=name)
    for k, axis in enumerate((ax.xaxis, ax.yaxis)):
        share = "" if explained is None else label(f" ({100 * explained[k]:.1f}% of variance)",
                                                   f"（方差的 {100 * explained[k]:.1f}%）")
        axis.set_label_text(label(f"PC {k + 1}", f"第 {k + 1} 主成分") + share)
    ax.set_title(label("Word vectors, first two principal components", "词向量的前两个主成分")
                 if title is None else title)
    ax.grid(alpha=0.3)
    ax.margins(0.12)                          # room for the labels of the outermost points
    if groups is not None:                    # beside the axes, where it hides no point or label
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="small")
    _label_points(ax, coords, [str(w) for w in words], colours)
    return finish(fig, path)


# Where a label may sit around its point: the lower-left corner of its box as (a, b), meaning
# x = px + a*gap - (a < 0)*width - (a == 0)*width/2 and likewise y; tried in this order.
_SIDES = ((1, 1), (1, -1), (-1, 1), (-1, -1), (1, 0), (-1, 0), (0, 1), (0, -1))
_RINGS = (1.0, 2.5, 4.0, 6.0, 8.5, 12.0)     # gaps, in multiples of the first gap; past 1: a leader line
_GAP = 3.0                                    # points between a point and its nearest label


def _label_points(ax, coords: np.ndarray, words: list[str], colours: list[str], fontsize: float = 9) -> None:
    """Write each word beside its point where it overlaps no other label, no point and stays inside
    the axes: each label tries positions around its point, nearest ring first, and takes the first
    free one (crowded points choose first); a label moved off its first ring gets a thin leader
    line. If no position is free, the one overlapping least is taken.

    The layout is run first and then frozen, so the positions computed here are those drawn."""
    fig = ax.figure
    fig.draw_without_rendering()              # settle the constrained layout: the axes' final place
    fig.set_layout_engine("none")
    scale = 72.0 / fig.dpi                     # display pixels to points
    points = ax.transData.transform(coords) * scale
    frame = ax.get_window_extent()
    frame = np.array([frame.x0, frame.y0, frame.x1, frame.y1]) * scale
    sizes = []
    for word in words:                         # each label's size, measured once
        t = ax.text(0, 0, word, fontsize=fontsize)
        box = t.get_window_extent()
        sizes.append((box.width * scale, box.height * scale))
        t.remove()
    radius = 3.0                               # half a marker of s=22 (its diameter is sqrt(22) points)
    obstacles = [np.array([x - radius, y - radius, x + radius, y + radius]) for x, y in points]
    crowding = [int(np.sum(np.hypot(*(points - p).T) < 40)) for p in points]
    for i in sorted(range(len(words)), key=lambda i: -crowding[i]):
        box, ring = _free_box(points[i], sizes[i], obstacles, frame, own=i)
        obstacles.append(box)
        offset = (box[0] - points[i][0], box[1] - points[i][1])
        arrow = dict(arrowstyle="-", color=colours[i], lw=0.6, alpha=0.7, shrinkA=0, shrinkB=2) if ring else None
        ax.annotate(words[i], coords[i], xytext=offset, textcoords="offset points", fontsize=fontsize,
                    color=colours[i], ha="left", va="bottom", arrowprops=arrow)


def _free_box(point: np.ndarray, size: tuple[float, float], obstacles: list[np.ndarray],
              frame: np.ndarray, own: int) -> tuple[np.ndarray, int]:
    """(box, ring) for one label: the first candidate box, in points, that overlaps nothing in
    ``obstacles`` (but its own point's marker, ``obstacles[own]``, when touching it) and lies inside
    ``frame``; else the candidate with the least overlapping area."""
    w, h = size
    best, best_cost = None, np.inf
    for ring, factor in enumerate(_RINGS):
        gap = _GAP * factor
        for a, b in _SIDES:
            x = point[0] + a * gap - (a < 0) * w - (a == 0) * w / 2
            y = point[1] + b * gap - (b < 0) * h - (b == 0) * h / 2
            box = np.array([x, y, x + w, y + h])
            cost = sum(_overlap(box, o) for k, o in enumerate(obstacles) if k != own)
            inside = frame[0] <= box[0] and frame[1] <= box[1] and box[2] <= frame[2] and box[3] <= frame[3]
            cost += 0.0 if inside else 1e6
            if cost == 0.0:
                return box, ring
            if cost < best_cost:
                best, best_cost = (box, ring), cost
    return best


def _overlap(a: np.ndarray, b: np.ndarray) -> float:
    """Area shared by two boxes (x0, y0, x1, y1)."""
    return max(0.0, min(a[2], b[2]) - max(a[0], b[0])) * max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
