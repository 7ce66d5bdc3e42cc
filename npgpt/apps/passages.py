"""Short generated reports, for summarization and question answering (document section 5).

Data card
---------
- **What**: three kinds of short English report, each 4-6 sentences: a football match (two teams,
  their goals in either order, the day, the crowd, distractor sentences), a weather week in a city
  (four or five days, each with its temperature, in shuffled order, plus distractors), and a
  seller's day (items sold in the morning and the afternoon, plus distractors).
- **Summary** (one sentence) that must *aggregate*: who won and the score, winner first
  (compare two numbers); the hottest day (the maximum of four or five); the total sold (add two
  numbers). None of them is a sentence of the report.
- **Questions** (2 per report): who won, how many goals a team scored, the match's day, the crowd;
  the temperature on a day, the hottest or coldest day; how many were sold in the morning, the
  afternoon, in total, who sold them.
- **How it was made**: :func:`make_reports` here, seeded; nothing downloaded.
- **Size and splits**: :data:`SPLITS` distinct reports (train 4000, val 300, test 500), split by
  report text, so no report (and none of its questions) is in two splits.
- **Idiom**: one goal, one cake (:func:`_count`): never "1 goals".
- **What it cannot teach**: the vocabulary is closed (about 120 words: a word outside it is
  refused), the sentences come from a few templates, the numbers are small; a model that does well
  here has learnt these templates' arithmetic and look-up, not reading.
"""
import numpy as np

from .common import draw_distinct, fixed_splits

SPLITS = {"train": 4000, "val": 300, "test": 500}
TEAMS = ["Lions", "Tigers", "Bears", "Wolves", "Eagles", "Sharks", "Hawks", "Foxes", "Bulls", "Owls"]
DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
CITIES = ["Paris", "Lima", "Oslo", "Cairo", "Delhi", "Tokyo", "Rome", "Quito"]
SELLERS = ["Anna", "Ben", "Chen", "Dora", "Omar", "Lena", "Ravi", "Mia"]
ITEMS = ["apples", "books", "cakes", "lamps", "shirts", "cups"]
KINDS = ("match", "weather", "shop")


def _count(n, plural):
    """``n`` and its noun, singular for one: "1 goal", "0 goals", "5 cakes" (every noun here makes its
    plural with an s)."""
    return f"{n} {plural[:-1] if n == 1 else plural}"


def _match(rng):
    a, b = rng.choice(TEAMS, 2, replace=False)
    ga, gb = rng.choice(np.arange(0, 8), 2, replace=False)       # no draws: someone won
    day, crowd = rng.choice(DAYS), int(rng.integers(2, 10)) * 100
    goals = [f"The {a} scored {_count(ga, 'goals')}.", f"The {b} scored {_count(gb, 'goals')}."]
    rng.shuffle(goals)
    distractors = ["It rained in the second half.", f"The {a} wore red shirts.", "The referee was new.",
                   f"The {b} had a long trip."]
    body = [f"{crowd} people came to watch.", *goals, *rng.choice(distractors, 2, replace=False)]
    order = rng.permutation(len(body))
    sentences = [f"The {a} played the {b} on {day}."] + [body[i] for i in order]
    win, lose, gw, gl = (a, b, ga, gb) if ga > gb else (b, a, gb, ga)
    summary = f"The {win} beat the {lose} {gw} to {gl}."
    questions = [("Who won?", f"the {win}"), (f"How many goals did the {a} score?", str(ga)),
                 (f"How many goals did the {b} score?", str(gb)), ("On which day was the match?", day),
                 ("How many people came to watch?", str(crowd))]
    return sentences, summary, questions


def _weather(rng):
    city = rng.choice(CITIES)
    n = int(rng.integers(4, 6))
    days = [DAYS[i] for i in sorted(rng.choice(7, n, replace=False))]
    temps = rng.choice(np.arange(10, 36), n, replace=False)
    facts = [f"On {d} it was {t} degrees." for d, t in zip(days, temps)]
    distractors = [f"On {rng.choice(days)} it was windy.", "The nights were cold.", "A storm came from the sea."]
    body = facts + list(rng.choice(distractors, 1))
    order = rng.permutation(len(body))
    sentences = [f"This is the weather in {city}."] + [body[i] for i in order]
    hot, cold = int(np.argmax(temps)), int(np.argmin(temps))
    summary = f"The hottest day in {city} was {days[hot]} at {temps[hot]} degrees."
    i = int(rng.integers(n))
    questions = [(f"What was the temperature on {days[i]}?", f"{temps[i]} degrees"),
                 ("Which day was the hottest?", days[hot]), ("Which day was the coldest?", days[cold])]
    return sentences, summary, questions


def _shop(rng):
    who, item = rng.choice(SELLERS), rng.choice(ITEMS)
    am, pm = (int(v) for v in rng.integers(1, 10, 2))
    distractors = [f"{who} had lunch at noon.", "The shop was busy.", f"{who} closed the door at six.",
                   "A friend came to help."]
    body = [f"{who} sold {_count(am, item)} in the morning.", f"{who} sold {_count(pm, item)} in the afternoon."]
    body += list(rng.choice(distractors, 2, replace=False))
    order = rng.permutation(len(body))
    sentences = [f"{who} has a small shop."] + [body[i] for i in order]
    summary = f"{who} sold {am + pm} {item} in total."
    questions = [(f"How many {item} were sold in the morning?", str(am)),
                 (f"How many {item} were sold in the afternoon?", str(pm)),
                 (f"How many {item} were sold in total?", str(am + pm)), ("Who sold them?", who)]
    return sentences, summary, questions


MAKERS = {"match": _match, "weather": _weather, "shop": _shop}


def make_report(rng, kind=None):
    """One report: dict(kind, text, summary, qa=[(question, answer), ...] two of them)."""
    kind = kind or KINDS[int(rng.integers(len(KINDS)))]
    sentences, summary, questions = MAKERS[kind](rng)
    picks = rng.choice(len(questions), 2, replace=False)
    return {"kind": kind, "text": " ".join(sentences), "summary": summary,
            "qa": [questions[i] for i in sorted(picks)], "all_qa": questions}


def make_reports(seed=0, sizes=None):
    """The fixed splits: split -> list of reports (distinct texts, no text in two splits)."""
    sizes = dict(SPLITS if sizes is None else sizes)
    rng = np.random.default_rng([seed, 515])
    examples = draw_distinct(make_report, rng, sum(sizes.values()), lambda r: r["text"])
    return fixed_splits(examples, lambda r: r["text"], sizes, [seed, 516])


def lead_sentence(text):
    """The lead baseline: the report's first sentence."""
    return text.split(". ")[0].rstrip(".") + "."
