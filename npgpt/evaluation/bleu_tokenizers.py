r"""The tokenizers BLEU is computed after (document section 8), as sacrebleu defines them.

BLEU counts n-grams of *tokens*, so the number depends on how a line is cut into tokens: a score
means nothing without its tokenizer, which is why the signature names it. Each tokenizer here takes
one line and returns the tokens joined by single spaces (BLEU then splits on whitespace):

``13a``  (the default) the rules of ``mteval-v13a.pl``, the script WMT used for years:
         undo four HTML escapes, then put spaces around ASCII punctuation and symbols, except that
         a period or comma between two digits stays (``3.14``, ``1,000``), and a hyphen is split off
         only after a digit (``1990-91`` but ``well-known``). The line is padded with a space on each
         side first, so a period at the very start or end is split too.
``intl`` the rules of ``mteval-v14.pl --international-tokenization``: Unicode punctuation
         (``\p{P}``) is split off unless it sits between two digits, and every symbol (``\p{S}``) is
         split off. No padding: ``in 1990.`` keeps ``1990.`` together (mteval's own quirk).
``char`` every character is a token; spaces disappear.
``zh``   every "Chinese" character becomes a token, the rest is cut by the 13a regular expressions
         (without 13a's HTML unescaping and without its padding).
``none`` the line as it is.

Quirks of ``zh``, kept because they are sacrebleu's definition: its table of "Chinese" code points
writes two ranges as ``'\u20000'`` and ``'\u2f800'``, which Python reads as a four-digit escape plus
a digit. Compared as strings, those ranges become U+2001..U+2A6D and U+2F81..U+2FA1. So general
punctuation (curly quotes, dashes, the ellipsis), arrows, mathematical operators and box drawing
count as Chinese and are split off one by one, while the CJK Extension B ideographs (U+20000 and
up), which the table meant to include, are *not* split. The table also names full-width forms,
CJK punctuation, kana-like phonetic blocks, dingbats and miscellaneous symbols.
"""
import re
from collections.abc import Callable

import regex

from ..checks import UsageError

# ----------------------------------------------------------------------------- 13a
# mteval-v13a: ASCII punctuation and symbols except the apostrophe, comma, hyphen and period.
_ASCII_PUNCT = re.escape(" !\"#$%&()*+/:;<=>?@[\\]^_`{|}~")
_13A_RULES = (
    (re.compile(f"([{_ASCII_PUNCT}])"), r" \1 "),      # split punctuation and symbols off
    (re.compile(r"([^0-9])([.,])"), r"\1 \2 "),        # period, comma after a non-digit
    (re.compile(r"([.,])([^0-9])"), r" \1 \2"),        # period, comma before a non-digit
    (re.compile(r"([0-9])(-)"), r"\1 \2 "),            # hyphen after a digit
)
_HTML_ESCAPES = (("&quot;", '"'), ("&amp;", "&"), ("&lt;", "<"), ("&gt;", ">"))   # in this order


def _mteval_regexps(line: str) -> str:
    """The language-dependent part of 13a: the four rules in order, then single spaces."""
    for pattern, replacement in _13A_RULES:
        line = pattern.sub(replacement, line)
    return " ".join(line.split())


def tokenize_13a(line: str) -> str:
    """mteval-v13a: unescape, pad with spaces, split ASCII punctuation off (module docstring)."""
    line = line.replace("<skipped>", "").replace("-\n", "").replace("\n", " ")
    if "&" in line:
        for escaped, plain in _HTML_ESCAPES:
            line = line.replace(escaped, plain)
    return _mteval_regexps(f" {line} ")


# ----------------------------------------------------------------------------- intl
_INTL_RULES = (
    (regex.compile(r"(\P{N})(\p{P})"), r"\1 \2 "),     # punctuation after a non-digit
    (regex.compile(r"(\p{P})(\P{N})"), r" \1 \2"),     # punctuation before a non-digit
    (regex.compile(r"(\p{S})"), r" \1 "),              # every symbol
)


def tokenize_intl(line: str) -> str:
    """mteval-v14 international: Unicode punctuation and symbols split off (module docstring)."""
    for pattern, replacement in _INTL_RULES:
        line = pattern.sub(replacement, line)
    return " ".join(line.split())


# ----------------------------------------------------------------------------- char, none
def tokenize_char(line: str) -> str:
    """Every character a token (whitespace characters vanish when BLEU splits the result)."""
    return " ".join(line)


def tokenize_none(line: str) -> str:
    """No tokenization: BLEU splits the line on whitespace as it is."""
    return line


# ----------------------------------------------------------------------------- zh
# The code point ranges sacrebleu's zh tokenizer treats as Chinese, as they act (module docstring):
# the two written '\u20000'..'\u2a6d6' and '\u2f800'..'\u2fa1d' act as the ranges below.
CHINESE_RANGES = (
    (0x3400, 0x4DB5), (0x4E00, 0x9FA5), (0x9FA6, 0x9FBB), (0xF900, 0xFA2D), (0xFA30, 0xFA6A),
    (0xFA70, 0xFAD9),
    (0x2001, 0x2A6D),      # written as CJK Extension B (U+20000..U+2A6D6)
    (0x2F81, 0x2FA1),      # written as the CJK Compatibility Supplement (U+2F800..U+2FA1D)
    (0xFF00, 0xFFEF), (0x2E80, 0x2EFF), (0x3000, 0x303F), (0x31C0, 0x31EF), (0x2F00, 0x2FDF),
    (0x2FF0, 0x2FFF), (0x3100, 0x312F), (0x31A0, 0x31BF), (0xFE10, 0xFE1F), (0xFE30, 0xFE4F),
    (0x2600, 0x26FF), (0x2700, 0x27BF), (0x3200, 0x32FF), (0x3300, 0x33FF),
)


def is_chinese_char(ch: str) -> bool:
    """Whether sacrebleu's zh tokenizer splits ``ch`` off as a Chinese character."""
    code = ord(ch)
    return any(low <= code <= high for low, high in CHINESE_RANGES)


def tokenize_zh(line: str) -> str:
    """Chinese characters one token each; the rest by the 13a regular expressions."""
    spaced = "".join(f" {ch} " if is_chinese_char(ch) else ch for ch in line.strip())
    return _mteval_regexps(spaced)


TOKENIZERS: dict[str, Callable[[str], str]] = {
    "13a": tokenize_13a, "intl": tokenize_intl, "char": tokenize_char, "zh": tokenize_zh, "none": tokenize_none}


def get_tokenizer(name: str) -> Callable[[str], str]:
    """The tokenizer called ``name`` (one of :data:`TOKENIZERS`), or a ValueError naming it."""
    if not isinstance(name, str) or name not in TOKENIZERS:
        raise UsageError(f"tokenize must be one of {tuple(TOKENIZERS)}, got {name!r}")
    return TOKENIZERS[name]
