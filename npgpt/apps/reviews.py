"""Short product reviews in English and Chinese, for sentiment analysis (document section 5).

Data card
---------
- **What**: one-line reviews labelled positive (1) or negative (0), in English ("the screen is very
  sharp", "the price is not high at all", "the case is flimsy but the service is really friendly")
  and Chinese (屏幕很清晰, 价格一点也不贵, 服务不太周到, 虽然价格很贵，但是拍照很清晰).
- **Idiom**: each aspect is said only with words that go with it (:data:`ASPECTS_EN`,
  :data:`ASPECTS_ZH`: a price is low or high, 便宜 or 贵, a sound clear or tinny, 好听 or 刺耳; never
  "声音很贵"), every English word is gradable so "very"/"quite"/"not" fit it, 太 is only said of a
  fault (太贵, 太慢), and a review gives at most one opinion of an aspect (a contrast names two
  different aspects).
- **Why a bag of words is not enough**: many reviews are a contrast, "A but B" /
  "虽然A，但是B", whose label is B's; the same two clauses appear in both orders with opposite labels,
  so their bags of words are identical. Others negate a word ("not sharp", "not slow at all", 不便宜,
  一点也不贵), so a word's polarity depends on its neighbour.
- **How it was made**: :func:`make_review` here, seeded, from the two aspect tables.
- **Size and splits**: :data:`SPLITS` distinct reviews (train 4000, val 300, test 600), split by text;
  labels are balanced. There are far fewer distinct plain and negated reviews than contrasts, so
  after removing duplicates most reviews are contrasts.
- **What it cannot teach**: real reviews (sarcasm, mixed or neutral opinions, spelling mistakes, a
  review that names no aspect such as 虽然贵但是值得), tokens outside its vocabulary of about 115
  words and characters (refused with a message), any third language.
"""
import numpy as np

from .common import draw_distinct, fixed_splits

SPLITS = {"train": 4000, "val": 300, "test": 600}
LABELS = ("negative", "positive")
# aspect -> (words that praise it, words that fault it). Only pairs a native speaker says: a price is
# low or steep, never "bad"; a case is sturdy or flimsy. Every word is gradable, so each takes
# "very"/"quite" and "not" ("very excellent" and "not awful" are left out for that reason).
ASPECTS_EN = {
    "screen": (("sharp", "bright", "good"), ("dim", "blurry", "bad")),
    "battery life": (("long", "good"), ("short", "poor")),
    "camera": (("sharp", "good"), ("blurry", "poor", "bad")),
    "sound": (("clear", "rich", "good"), ("tinny", "muffled", "harsh")),
    "price": (("low", "fair", "reasonable"), ("high", "steep")),
    "keyboard": (("comfortable", "responsive", "good"), ("stiff", "cramped", "bad")),
    "case": (("sturdy", "solid"), ("flimsy", "fragile")),
    "service": (("friendly", "helpful", "fast"), ("slow", "rude", "poor")),
}
INTENSIFIERS_EN = ["", "very ", "really ", "quite "]
# 主语 -> (褒义词, 贬义词): 价格便宜/实惠/低 or 贵/高, 声音清楚/好听 or 刺耳/难听, 速度快 or 慢 ... each
# also reads after 不 (价格不贵, 速度不慢, 服务不太周到).
ASPECTS_ZH = {
    "屏幕": (("清晰", "亮"), ("模糊", "暗")),
    "续航": (("长", "持久"), ("短",)),
    "拍照": (("清晰",), ("模糊",)),
    "声音": (("清楚", "好听"), ("刺耳", "难听")),
    "价格": (("便宜", "实惠", "低"), ("贵", "高")),
    "键盘": (("好用", "舒服"), ("难用", "吵")),
    "服务": (("周到", "热情"), ("差", "慢")),
    "速度": (("快",), ("慢",)),
}
# A bare adjective predicate (价格贵) sounds unfinished or contrastive in Chinese, so a plain clause
# always has a degree adverb; 太 (too) only goes with a fault: 太贵 is a complaint, 太便宜 is not praise.
INTENSIFIERS_ZH = {True: ["很", "非常", "真", "特别"], False: ["很", "非常", "真", "特别", "太"]}


def _words(table, aspect, praise):
    return table[aspect][0 if praise else 1]


def _en_clause(rng, aspect, positive, allow_negation=True):
    if allow_negation and rng.random() < 0.4:      # a negated opposite word carries the polarity
        word = rng.choice(_words(ASPECTS_EN, aspect, not positive))
        tail = " at all" if positive and rng.random() < 0.5 else ""
        return f"the {aspect} is not {word}{tail}"
    return f"the {aspect} is {rng.choice(INTENSIFIERS_EN)}{rng.choice(_words(ASPECTS_EN, aspect, positive))}"


def _zh_clause(rng, aspect, positive, allow_negation=True):
    if allow_negation and rng.random() < 0.4:
        word = rng.choice(_words(ASPECTS_ZH, aspect, not positive))
        if positive:                                # 价格不贵 / 价格一点也不贵
            return f"{aspect}{rng.choice(['不', '一点也不'])}{word}"
        return f"{aspect}{rng.choice(['不', '不太'])}{word}"
    return f"{aspect}{rng.choice(INTENSIFIERS_ZH[positive])}{rng.choice(_words(ASPECTS_ZH, aspect, positive))}"


def make_review(rng):
    """One (text, label) pair: a plain, negated or contrasting review in English or Chinese; a
    contrast speaks of two different aspects (one opinion per aspect)."""
    label = int(rng.integers(2))
    zh = rng.random() < 0.5
    clause, table = (_zh_clause, ASPECTS_ZH) if zh else (_en_clause, ASPECTS_EN)
    aspects = list(table)
    if rng.random() < 0.5:                          # a contrast: the second clause decides
        a, b = rng.choice(len(aspects), 2, replace=False)
        first = clause(rng, aspects[a], not label, False)
        second = clause(rng, aspects[b], bool(label), False)
        return (f"虽然{first}，但是{second}" if zh else f"{first} but {second}"), label
    return clause(rng, aspects[int(rng.integers(len(aspects)))], bool(label)), label


def make_reviews(seed=0, sizes=None):
    """The fixed splits: split -> list of (text, label), distinct texts, none in two splits."""
    sizes = dict(SPLITS if sizes is None else sizes)
    rng = np.random.default_rng([seed, 525])
    examples = draw_distinct(make_review, rng, sum(sizes.values()), lambda r: r[0])
    return fixed_splits(examples, lambda r: r[0], sizes, [seed, 526])
