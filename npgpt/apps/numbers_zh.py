"""English numbers and dates -> Chinese, for translation (document section 5).

Data card
---------
- **What**: pairs (English, Chinese). Numbers 1 to 99,999 in British English words ("three thousand
  and five", "twelve thousand three hundred and four") -> Chinese numerals (三千零五, 一万二千三百零四);
  dates 1900-2099 in two English orders ("the 2nd of March, 1998", "March 2nd, 1998") -> 1998年3月2日.
- **Register**: everyday Mandarin, what a speaker says and writes in ordinary text (:data:`REGISTERS`):
  a leading 2 before 百, 千 or 万 is 两 (两百, 两千, 两万零五, 两千二百二十二), every other 2 is 二
  (二, 十二, 二十二, 一百零二, 一万二千: a 2 after a higher place stays 二, though 一万两千 is also
  heard). Before 百 both 两百 and 二百 are standard; this set says 两百, the spoken choice. The formal
  register (二 everywhere: 二千, 二万, as read out digit by place) is ``chinese(n, register="formal")``
  and ``make_pairs(register="formal")``; the committed results use the everyday one.
- **Why it is a real sequence-to-sequence task**: the units change (twelve *thousand* is 一*万*二千),
  one 零 marks a run of missing places but trailing zeros say nothing (一万零五, 一万零五百,
  一万一千), 10-19 drop the 一 (十五) but not inside a larger number (一百一十五), two is 两 or 二
  by its place, and a date's parts come out in the reverse order (year, month, day) with the month's
  name turned into a number.
- **How it was made**: :func:`english`, :func:`chinese`, :func:`make_pair` here, seeded, checked
  against a hand-written table (tests/test_apps.py); numbers are drawn with a uniform number of
  digits, so small and large ones are equally common.
- **Size and splits**: :data:`SPLITS` distinct English sources (train 8000, val 300, test 500), split
  by source text.
- **What it cannot teach**: numbers above 99,999 (十万 and beyond), hyphens ("twenty-three"), American
  English without "and", other date formats, the other register than the one it was made in,
  anything but these two kinds of phrase.
"""
import datetime

import numpy as np

from ..checks import UsageError
from .common import draw_distinct, fixed_splits

SPLITS = {"train": 8000, "val": 300, "test": 500}
ONES = ["", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
TEENS = ["ten", "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen",
         "nineteen"]
TENS = ["", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]
MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
          "November", "December"]
DIGITS_ZH = "零一二三四五六七八九"
UNITS_ZH = ["万", "千", "百", "十", ""]
MAX_NUMBER = 99999
# everyday: 两 for a leading 2 before 百/千/万 (两千, 两万); formal: 二 everywhere (二千, 二万)
REGISTERS = ("everyday", "formal")
LIANG_UNITS = ("万", "千", "百")


def _below_100(n):
    if n < 10:
        return ONES[n]
    if n < 20:
        return TEENS[n - 10]
    return TENS[n // 10] + ("" if n % 10 == 0 else " " + ONES[n % 10])


def _below_1000(n):
    hundreds, rest = divmod(n, 100)
    if not hundreds:
        return _below_100(rest)
    return ONES[hundreds] + " hundred" + ("" if rest == 0 else " and " + _below_100(rest))


def english(n):
    """British English words for 1 <= n <= 99999 ("and" before the tens and units)."""
    if not 1 <= n <= MAX_NUMBER:
        raise UsageError(f"n must be in 1..{MAX_NUMBER}, got {n}")
    thousands, rest = divmod(n, 1000)
    if not thousands:
        return _below_1000(rest)
    words = _below_1000(thousands) + " thousand"
    if rest == 0:
        return words
    return words + (" and " if rest < 100 else " ") + _below_1000(rest)


def chinese(n: int, register: str = "everyday") -> str:
    """Chinese numerals for 1 <= n <= 99999: a digit and its unit for each non-zero place, one 零 for
    each run of zeros followed by a non-zero place, nothing for trailing zeros, 十 (not 一十) when
    ten is the leading place. In the everyday register a leading 2 before 百/千/万 is 两 (两千二百二十二);
    in the formal one it is 二 (二千二百二十二)."""
    if not 1 <= n <= MAX_NUMBER:
        raise UsageError(f"n must be in 1..{MAX_NUMBER}, got {n}")
    if register not in REGISTERS:
        raise UsageError(f"register must be one of {', '.join(REGISTERS)}, got {register!r}")
    digits = [int(d) for d in f"{n:05d}"]
    first = next(i for i, d in enumerate(digits) if d)
    out, pending_zero = "", False
    for i in range(first, 5):
        d = digits[i]
        if d == 0:
            pending_zero = True
            continue
        if pending_zero:
            out += "零"
            pending_zero = False
        out += _digit(d, UNITS_ZH[i], i == first, register) + UNITS_ZH[i]
    return out


def _digit(d: int, unit: str, leading: bool, register: str) -> str:
    """The digit written before ``unit``: none for a leading 1 before 十 (十五), 两 for a leading 2
    before 百/千/万 in the everyday register, else the digit."""
    if leading and d == 1 and unit == "十":
        return ""
    if leading and d == 2 and unit in LIANG_UNITS and register == "everyday":
        return "两"
    return DIGITS_ZH[d]


def ordinal(day):
    suffix = "th" if 11 <= day % 100 <= 13 else {1: "st", 2: "nd", 3: "rd"}.get(day % 10, "th")
    return f"{day}{suffix}"


def english_date(date, style):
    if style == 0:
        return f"the {ordinal(date.day)} of {MONTHS[date.month - 1]}, {date.year}"
    return f"{MONTHS[date.month - 1]} {ordinal(date.day)}, {date.year}"


def chinese_date(date):
    return f"{date.year}年{date.month}月{date.day}日"


def make_pair(rng, register="everyday"):
    """One (English, Chinese) pair: half numbers (uniform number of digits), half dates."""
    if rng.random() < 0.5:
        n_digits = int(rng.integers(1, 6))
        n = int(rng.integers(max(1, 10 ** (n_digits - 1)), 10 ** n_digits))
        return english(n), chinese(n, register)
    date = datetime.date(1900, 1, 1) + datetime.timedelta(days=int(rng.integers(0, 73049)))
    return english_date(date, int(rng.integers(2))), chinese_date(date)


def make_pairs(seed=0, sizes=None, register="everyday"):
    """The fixed splits: split -> list of (English, Chinese), distinct English, none in two splits;
    the Chinese in ``register`` (:data:`REGISTERS`)."""
    if register not in REGISTERS:
        raise UsageError(f"register must be one of {', '.join(REGISTERS)}, got {register!r}")
    sizes = dict(SPLITS if sizes is None else sizes)
    rng = np.random.default_rng([seed, 505])
    examples = draw_distinct(lambda r: make_pair(r, register), rng, sum(sizes.values()), lambda p: p[0])
    return fixed_splits(examples, lambda p: p[0], sizes, [seed, 506])


# ----------------------------------------------------------------------------- the word-for-word baseline
def word_for_word(source):
    """A dictionary baseline: each English word replaced by its Chinese in the same order (no
    reordering, no 零, thousand is always 千, two is always 二). Right on "forty two" (四十二), wrong
    on "twelve thousand" (十二千), on "two thousand" (二千, where everyday Mandarin says 两千) and on
    every date (2日3月1998)."""
    lexicon = {w: DIGITS_ZH[i] for i, w in enumerate(ONES) if w}
    lexicon.update({w: ("十" + DIGITS_ZH[i] if i else "十") for i, w in enumerate(TEENS)})
    lexicon.update({w: DIGITS_ZH[i] + "十" for i, w in enumerate(TENS) if w})
    lexicon.update({"hundred": "百", "thousand": "千"})
    lexicon.update({m.lower(): f"{i + 1}月" for i, m in enumerate(MONTHS)})
    lexicon.update({s: "日" for s in ("st", "nd", "rd", "th")})
    out = ""
    for token in source.lower().replace(",", " ").split():
        if token[0].isdigit():
            digits = "".join(ch for ch in token if ch.isdigit())
            out += digits + ("日" if token[-1].isalpha() else "")
        else:
            out += lexicon.get(token, "")
    return out
