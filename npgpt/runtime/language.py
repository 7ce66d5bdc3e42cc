"""The language npgpt speaks to a learner: English or Chinese (the 中文版 of the course).

The Chinese notebooks (``notebooks/zh/``) have the English ones' code cells, identical, so the
language cannot be a line of code in them: it is read from ``NPGPT_LANG`` when set, and otherwise
from where the kernel runs (Jupyter starts a notebook's kernel in the notebook's folder, so a kernel
in ``notebooks/zh`` speaks Chinese).
"""
from pathlib import Path

from . import settings

LANGUAGES = ("en", "zh")


class LanguageError(ValueError):
    """``NPGPT_LANG`` or a ``lang=`` argument names a language npgpt does not speak."""


def check_language(lang: str) -> str:
    """``lang`` itself when it is one of :data:`LANGUAGES`; a one-line LanguageError otherwise."""
    if lang not in LANGUAGES:
        raise LanguageError(f"language {lang!r} is not one npgpt speaks: expected one of {', '.join(LANGUAGES)}")
    return lang


def language(cwd: Path | None = None) -> str:
    """``"en"`` or ``"zh"``: ``NPGPT_LANG`` when set, else ``"zh"`` in a ``notebooks/zh`` folder
    (``cwd``, default the working directory), else ``"en"``."""
    asked = settings.language()
    if asked is not None:
        return check_language(asked.strip().lower())
    here = Path.cwd() if cwd is None else cwd
    return "zh" if (here.name, here.parent.name) == ("zh", "notebooks") else "en"
