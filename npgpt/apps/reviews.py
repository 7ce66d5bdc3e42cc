"""Short product reviews in English and Chinese, for sentiment analysis (document section 5).

Data card
---------
- **What**: one-line reviews labelled positive (1) or negative (0), in English ("the screen is great",
  "the battery is not bad at all", "great screen but the battery dies by noon") and Chinese
  (屏幕很好, 电池不太好, 虽然贵但是值得).
- **Why a bag of words is not enough**: a third of the reviews are a contrast, "A but B" /
  "虽然A但是B", whose label is B's; the same two clauses appear in both orders with opposite labels,
  so their bags of words are identical. Another third negate a word ("not good", "not bad at
  all", 不好, 不差), so a word's polarity depends on its neighbour.
- **How it was made**: :func:`make_review` here, seeded, from small lists of aspects and opinions.
- **Size and splits**: :data:`SPLITS` distinct reviews (train 4000, val 300, test 600), split by text;
  labels are balanced.
- **What it cannot teach**: real reviews (sarcasm, mixed or neutral opinions, spelling mistakes),
  words outside its ~90-word vocabulary (refused with a message), any third language.
"""
import numpy as np

from .common import draw_distinct, fixed_splits

SPLITS = {"train": 4000, "val": 300, "test": 600}
LABELS = ("negative", "positive")
ASPECTS_EN = ["screen", "battery", "camera", "sound", "price", "keyboard", "case", "service"]
GOOD_EN = ["great", "good", "excellent", "fine", "nice"]
BAD_EN = ["bad", "poor", "awful", "terrible", "weak"]
ASPECTS_ZH = ["屏幕", "电池", "相机", "声音", "价格", "键盘", "服务"]
INTENSIFIERS_EN = ["", "very ", "really ", "quite "]
INTENSIFIERS_ZH = ["很", "非常", "真", "太"]
GOOD_ZH = ["好", "棒", "不错", "值得"]
BAD_ZH = ["差", "糟", "贵", "慢"]


def _en_clause(rng, positive, allow_negation=True):
    aspect = rng.choice(ASPECTS_EN)
    if allow_negation and rng.random() < 0.4:      # a negated opposite word carries the polarity
        word = rng.choice(BAD_EN if positive else GOOD_EN)
        tail = " at all" if positive and rng.random() < 0.5 else ""
        return f"the {aspect} is not {word}{tail}"
    return f"the {aspect} is {rng.choice(INTENSIFIERS_EN)}{rng.choice(GOOD_EN if positive else BAD_EN)}"


def _zh_clause(rng, positive, allow_negation=True):
    aspect = rng.choice(ASPECTS_ZH)
    if allow_negation and rng.random() < 0.4:
        word = rng.choice(["差", "贵", "慢"] if positive else ["好", "值得"])
        return f"{aspect}{'不' if positive else rng.choice(['不', '不太'])}{word}"
    word = rng.choice(GOOD_ZH if positive else BAD_ZH)
    return f"{aspect}{rng.choice(INTENSIFIERS_ZH) if len(word) == 1 else ''}{word}"


def make_review(rng):
    """One (text, label) pair: a plain, negated or contrasting review in English or Chinese."""
    label = int(rng.integers(2))
    zh = rng.random() < 0.5
    clause = _zh_clause if zh else _en_clause
    if rng.random() < 0.5:                          # a contrast: the second clause decides
        first, second = clause(rng, not label, False), clause(rng, bool(label), False)
        if zh:
            return f"虽然{first}但是{second}", label
        return f"{first} but {second}", label
    return clause(rng, bool(label)), label


def make_reviews(seed=0, sizes=None):
    """The fixed splits: split -> list of (text, label), distinct texts, none in two splits."""
    sizes = dict(SPLITS if sizes is None else sizes)
    rng = np.random.default_rng([seed, 525])
    examples = draw_distinct(make_review, rng, sum(sizes.values()), lambda r: r[0])
    return fixed_splits(examples, lambda r: r[0], sizes, [seed, 526])
