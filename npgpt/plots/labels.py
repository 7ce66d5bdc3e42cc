"""Figure text in the learner's language: ``label("loss by step", "按步数的损失")``.

The Chinese notebooks (``notebooks/zh``) run the English ones' code cells unchanged, so a figure
drawn there can only learn its language at run time, from :func:`npgpt.runtime.language.language`.
Chinese labels need a font with CJK glyphs; matplotlib's default (DejaVu Sans) has none and would
draw every character as an empty box ("tofu"). So Chinese is chosen only when such a font is found,
and it is then put first among the sans-serif fonts, which matplotlib resolves when it draws, so
titles and axis labels made before the first :func:`label` call draw in it too. Symbols a CJK font
may lack (WenQuanYi has no ``␣``) fall back to DejaVu Sans in every Text made after that call
(``font.family`` names both; a Text takes its families when it is made, and importing this module
changes nothing); a label mixing Chinese and a formula ("位置 $p$") draws its formula in the math
fonts and the rest in the CJK font. With no CJK font, :func:`label` gives the English text and says
once, on one line, what to install.
"""
import functools
import sys
from pathlib import Path
from typing import TypeVar

from matplotlib import font_manager, rcParams

from ..runtime.language import language

__all__ = ["CJK_FAMILIES", "CJK_FONT_PACKAGE", "chinese_labels", "cjk_font", "label"]

# Families that cover simplified Chinese, the ones a Debian, macOS or Windows machine ships first.
CJK_FAMILIES = ("Noto Sans CJK SC", "Noto Sans CJK JP", "Source Han Sans SC", "Noto Sans SC",
                "WenQuanYi Zen Hei", "WenQuanYi Micro Hei", "Droid Sans Fallback", "PingFang SC",
                "Heiti SC", "Microsoft YaHei", "SimHei", "Arial Unicode MS")
# File names of those fonts, for a font installed after matplotlib built its font cache.
_CJK_FILE_HINTS = ("notosanscjk", "sourcehansans", "notosanssc", "wqy", "droidsansfallback")
CJK_FONT_PACKAGE = "fonts-wqy-microhei"   # Debian's, 1.6 MB (fonts-noto-cjk is 56 MB): apt-get install -y fonts-wqy-microhei

_warned = False
Text = TypeVar("Text")   # a string, or a list of them (tick labels)


def _known_families() -> set[str]:
    return {f.name for f in font_manager.fontManager.ttflist}


@functools.cache
def cjk_font() -> str | None:
    """The family name of an installed CJK font, or None. matplotlib caches the fonts it found on
    its first import, so a font installed since is looked for among the system's font files too."""
    found = [f for f in CJK_FAMILIES if f in _known_families()]
    if not found:
        for path in font_manager.findSystemFonts():
            if any(hint in Path(path).name.lower().replace("-", "").replace("_", "")
                   for hint in _CJK_FILE_HINTS):
                try:
                    font_manager.fontManager.addfont(path)
                except (OSError, RuntimeError, ValueError):   # an unreadable font file: skip it
                    continue
        found = [f for f in CJK_FAMILIES if f in _known_families()]
    return found[0] if found else None


def _use_font(family: str) -> None:
    """Draw text in ``family`` (it has Latin glyphs too), falling back per glyph to DejaVu Sans,
    matplotlib's own font, for the symbols a CJK font may lack (WenQuanYi Micro Hei has no ␣).
    Fallback needs both named in ``font.family``: a generic family resolves to one font only."""
    fonts = [f for f in rcParams["font.sans-serif"] if f != family]
    if rcParams["font.sans-serif"][:1] != [family]:
        rcParams["font.sans-serif"] = [family, *fonts]
    if rcParams["font.family"][:2] != [family, "DejaVu Sans"]:
        rcParams["font.family"] = [family, "DejaVu Sans"]


def chinese_labels() -> bool:
    """True when figures are to be labelled in Chinese: the language is ``zh`` and a CJK font is
    installed (then configured). When the language is ``zh`` but no font is found, says so once, on
    one line, and answers False (English labels rather than empty boxes)."""
    global _warned
    if language() != "zh":
        return False
    family = cjk_font()
    if family is None:
        if not _warned:
            _warned = True
            print(f"npgpt: no CJK font found, so figures keep their English labels; install one "
                  f"(apt-get install -y {CJK_FONT_PACKAGE})", file=sys.stderr)
        return False
    _use_font(family)
    return True


def label(en: Text, zh: Text) -> Text:
    """``zh`` when figures are labelled in Chinese (:func:`chinese_labels`), else ``en``."""
    return zh if chinese_labels() else en
