"""Every environment variable npgpt reads, read here and nowhere else.

| variable | read by | meaning |
|---|---|---|
| ``NPGPT_BACKEND`` | :mod:`npgpt.kernels.backend` | ``numpy`` or ``numba`` (the default): which twin of the hot ops runs |
| ``NPGPT_THREADS`` | :mod:`npgpt.runtime.threads` | ``auto`` (the default: adapt to the machine's load) or a fixed thread count |
| ``NPGPT_KEEP_FREED_MEMORY`` | :mod:`npgpt.runtime.memory` | ``0`` leaves glibc's ``malloc`` as it is |
| ``NPGPT_DATA_DIR`` | :mod:`npgpt.text.corpus` | a folder holding ``tinyshakespeare.txt`` |
| ``NPGPT_FAST`` | :mod:`npgpt.apps.common` | ``1``: the short runs of the tests and the notebooks' fast mode |
| ``NPGPT_FIGURES_DIR`` | :mod:`npgpt.plots.save` | where notebooks save figures (unset: nowhere) |
| ``NPGPT_LANG`` | :mod:`npgpt.runtime.language` | ``en`` or ``zh``: the language of feedback and figure labels (unset: ``zh`` in ``notebooks/zh``, else ``en``) |

Each function reads the environment when it is called, so a test or a notebook may set a variable
before the call that needs it; none is applied to the process on import.
"""
import os
from pathlib import Path

VARIABLES = ("NPGPT_BACKEND", "NPGPT_THREADS", "NPGPT_KEEP_FREED_MEMORY", "NPGPT_DATA_DIR", "NPGPT_FAST",
             "NPGPT_FIGURES_DIR", "NPGPT_LANG")


def _get(name: str) -> str | None:
    """The value of one of :data:`VARIABLES`, or None when it is unset or empty."""
    assert name in VARIABLES, name
    return os.environ.get(name) or None


def backend() -> str | None:
    """``NPGPT_BACKEND``: the backend asked for, unchecked (None: the default)."""
    return _get("NPGPT_BACKEND")


def threads() -> str:
    """``NPGPT_THREADS``: ``"auto"`` or a thread count, unchecked (:func:`npgpt.runtime.threads.parse_threads`)."""
    return _get("NPGPT_THREADS") or "auto"


def keep_freed_memory() -> bool:
    """``NPGPT_KEEP_FREED_MEMORY``: False only when it is ``0``."""
    return (_get("NPGPT_KEEP_FREED_MEMORY") or "1").strip() != "0"


def data_dir() -> Path | None:
    """``NPGPT_DATA_DIR``: where to look for Tiny Shakespeare first, or None."""
    value = _get("NPGPT_DATA_DIR")
    return None if value is None else Path(value)


def fast() -> bool:
    """``NPGPT_FAST``: the short runs (set and not ``0``)."""
    return (_get("NPGPT_FAST") or "0") != "0"


def figures_dir() -> str | None:
    """``NPGPT_FIGURES_DIR``: the folder notebooks save figures into, or None (save nothing)."""
    return _get("NPGPT_FIGURES_DIR")


def language() -> str | None:
    """``NPGPT_LANG``: the language asked for, unchecked (:func:`npgpt.runtime.language.language`)."""
    return _get("NPGPT_LANG")
