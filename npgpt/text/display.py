"""Text in fixed-width columns when some of it is Chinese.

``f"{title:<62}"`` pads by characters, but a terminal or a notebook's monospace output draws a Han
character (and a fullwidth ``（``, ``：``) two columns wide, so a Chinese column comes out ragged.
:func:`pad` pads by display width instead: East Asian Wide and Fullwidth characters (Unicode's
``east_asian_width`` W and F) count 2 columns, every other character 1. On ASCII text it gives what
the format spec gives, so English output does not change.
"""
import unicodedata

from ..checks import UsageError, check_int

ALIGNS = ("<", ">", "^")


def display_width(text: str) -> int:
    """Columns ``text`` takes in a monospace font: 2 per East Asian Wide or Fullwidth character, 1
    for every other (Ambiguous ones such as ``≈`` count 1, as Western fonts draw them)."""
    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)


def pad(text: str, width: int, align: str = "<") -> str:
    """``text`` padded with spaces to ``width`` display columns, aligned as a format spec aligns it
    (``"<"`` left, ``">"`` right, ``"^"`` centred, the odd space on the right); text already as wide
    or wider comes back unchanged, as ``str.ljust`` does."""
    if not isinstance(text, str):
        raise UsageError(f"text must be a str, got {type(text).__name__} {text!r}")
    width = check_int("width", width, low=0)
    if align not in ALIGNS:
        raise UsageError(f"align must be one of {', '.join(repr(a) for a in ALIGNS)}, got {align!r}")
    room = max(width - display_width(text), 0)
    left = {"<": 0, ">": room, "^": room // 2}[align]
    return " " * left + text + " " * (room - left)
