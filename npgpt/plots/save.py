"""Where a figure goes and how it is written: the one place every plot of :mod:`npgpt.plots` ends.

Each plotting helper takes data, builds a :class:`matplotlib.figure.Figure` with matplotlib's
object-oriented API (no pyplot, so it works under any backend, Agg on a headless machine included,
and leaves no global state behind) and ends with :func:`finish`: the figure is saved when given a
path (``path=None``, the default, saves nothing) and returned. In a notebook, run
``%matplotlib inline`` once and a returned Figure displays itself.

Where a notebook saves its figures: :func:`figure_path` gives ``$NPGPT_FIGURES_DIR/name`` when that
variable is set and None otherwise, so a notebook run in Jupyter only shows its figures and never
writes into the repository. ``notebooks/build.py`` sets the variable to the repository's figures/,
the one step that regenerates the committed figures.
"""
import os

from matplotlib.figure import Figure

from ..atomic import atomic_writer
from ..checks import UsageError
from ..runtime import settings

FigurePath = str | os.PathLike | None   # where to save a figure; None: nowhere

FIGURES_ENV = "NPGPT_FIGURES_DIR"   # the folder notebooks save figures into; unset: save nothing

__all__ = ["FIGURES_ENV", "FigurePath", "figure_path", "figures_destination", "finish", "save_figure"]


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


def save_figure(fig: Figure, path: FigurePath, dpi: int = 120) -> FigurePath:
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


def finish(fig: Figure, path: FigurePath) -> Figure:
    """The last line of every plotting helper: save ``fig`` to ``path`` (nothing when None) and
    return it."""
    save_figure(fig, path)
    return fig
