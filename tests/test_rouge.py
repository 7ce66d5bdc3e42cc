"""ROUGE (npgpt.evaluation.rouge) equals Google's rouge-score to 1e-12 on every type, on English,
punctuation-heavy, multi-sentence and random text, with and without the stemmer, and with the
per-character tokenizer on Chinese; the bootstrap interval equals the reference's BootstrapAggregator.
Bad input raises a ValueError naming it."""
import random

import numpy as np
import pytest
from references import optional_reference

from npgpt.evaluation import PerCharacterTokenizer, bootstrap_aggregate, rouge
from npgpt.evaluation.rouge import lcs_positions

TYPES = ["rouge1", "rouge2", "rouge3", "rouge4", "rougeL", "rougeLsum"]

PAIRS = {
    "english": ("The quick brown fox jumps over the lazy dog.", "A quick brown dog jumps over the lazy fox."),
    "identical": ("police killed the gunman", "police killed the gunman"),
    "reordered": ("police killed the gunman", "the gunman killed police"),
    "no overlap": ("alpha beta gamma", "delta epsilon"),
    "empty prediction": ("some target text", ""),
    "empty target": ("", "some prediction"),
    "only punctuation": ("!!! ... ???", "--- ;;; ,,,"),
    "punctuation-heavy": ("Well... (really?!) -- it's $3.50/lb & 10% off: <b>yes</b>; OK?",
                          "well -- really? it's 3.50 per lb, 10% off; yes!! ok"),
    "multi-sentence": ("The cat sat on the mat.\nIt was happy there.\nThen the dog came in.",
                       "A cat was on the mat.\nThe dog came in.\nThe cat was not happy."),
    "blank lines": ("first line\n\n\nsecond line\n", "\nsecond line\nfirst  line\n\n"),
    "ties in the LCS": ("a b c a b c\nb a c b a", "b a b c a c\nc b a\na b"),
    "repeated tokens": ("the the the cat the", "the cat the the the the\nthe"),
    "stemming": ("The runners were running quickly through the forests", "A runner runs quick through forested hills"),
    "unicode": ("Ｔｈｅ Straße ÉCOLE café İstanbul K", "the strasse ecole cafe istanbul k"),
}

CHINESE = {
    "chinese": ("大语言模型的评估通常使用困惑度。", "评估大语言模型常用困惑度和BLEU。"),
    "chinese sentences": ("我们今天去北京。\n我们参观了长城。", "今天我们去了北京\n参观长城"),
}


def reference_scorer(types, use_stemmer=False, tokenizer=None):
    rouge_scorer = optional_reference("rouge_score.rouge_scorer", reason="the reference ROUGE")
    return rouge_scorer.RougeScorer(types, use_stemmer=use_stemmer, tokenizer=tokenizer)


def assert_equal_to_reference(target, prediction, types=TYPES, use_stemmer=False, tokenizer=None):
    """npgpt's ROUGE against rouge-score's; returns the largest absolute difference."""
    ref = reference_scorer([t for t in types if len(t) != 6 or t[5].isdigit()], use_stemmer,
                           tokenizer).score(target, prediction)
    mine = rouge(target, prediction, types, use_stemmer=use_stemmer, tokenizer=tokenizer)
    assert list(mine) == list(types)
    worst = 0.0
    for kind, score in ref.items():
        diff = float(np.max(np.abs(np.subtract(tuple(mine[kind]), tuple(score)))))
        assert diff <= 1e-12, (kind, mine[kind], score)
        worst = max(worst, diff)
    return worst


@pytest.mark.parametrize("use_stemmer", [False, True])
@pytest.mark.parametrize("name", sorted(PAIRS))
def test_rouge_equals_rouge_score(name, use_stemmer):
    if use_stemmer:
        optional_reference("nltk", reason="use_stemmer=True uses nltk's Porter stemmer")
    target, prediction = PAIRS[name]
    assert_equal_to_reference(target, prediction, use_stemmer=use_stemmer)
    assert_equal_to_reference(prediction, target, use_stemmer=use_stemmer)
    for kind in TYPES:                       # a single type, too (the reference has a path for Lsum alone)
        assert_equal_to_reference(target, prediction, [kind], use_stemmer=use_stemmer)


def test_rouge_n_for_n_above_nine():
    target, prediction = " ".join("abcdefghijklm"), " ".join("abcdefghijkxm")
    assert rouge(target, prediction, ["rouge10"])["rouge10"].precision == pytest.approx(2 / 4)


@pytest.mark.parametrize("name", sorted(CHINESE))
def test_chinese_by_characters_equals_rouge_score_with_the_same_tokenizer(name):
    target, prediction = CHINESE[name]
    assert_equal_to_reference(target, prediction, tokenizer=PerCharacterTokenizer())
    assert rouge(target, prediction, ["rouge1"], tokenizer=PerCharacterTokenizer())["rouge1"].fmeasure > 0.5


def test_the_default_tokenizer_scores_chinese_as_empty():
    """The trap: without a Chinese tokenizer every character is deleted and ROUGE is 0."""
    target, prediction = CHINESE["chinese"]
    assert_equal_to_reference(target, prediction)
    assert rouge(target, target)["rouge1"] == (0.0, 0.0, 0.0)


def test_a_function_works_as_a_tokenizer():
    got = rouge("a b c", "a c", ["rougeL"], tokenizer=str.split)["rougeL"]
    assert got == pytest.approx((1.0, 2 / 3, 0.8))


def test_lcs_ties_are_broken_as_the_reference_does():
    optional_reference("rouge_score", reason="the reference ROUGE")
    from rouge_score.rouge_scorer import lcs_ind
    rng = random.Random(1)
    for _ in range(300):
        t = [rng.choice("abc") for _ in range(rng.randint(0, 9))]
        p = [rng.choice("abc") for _ in range(rng.randint(0, 9))]
        assert lcs_positions(t, p) == lcs_ind(t, p)


# ----------------------------------------------------------------------------- random text
VOCAB = ["the", "cat", "sat", "on", "mat", "dog", "ran", "running", "runs", "happily", "happy", "a", "an",
         "The", "CAT", "Dog's", "3.5", "1,000", "e.g.", "U.S.A.", "--", "!", "?", "(", ")", "...", "&", "naïve",
         "café", "猫", "北京", "\n", "\n", "\n\n", " \n", "\t"]


def random_text(rng, n):
    return "".join(rng.choice(VOCAB) + rng.choice([" ", " ", "", ", "]) for _ in range(n))


def random_pairs(n, seed=0):
    rng = random.Random(seed)
    for _ in range(n):
        target = random_text(rng, rng.randint(0, 30))
        words = target.split(" ")
        prediction = " ".join(w for w in words if rng.random() < 0.7) + random_text(rng, rng.randint(0, 5))
        yield target, prediction, rng.random() < 0.3


def test_random_text_equals_rouge_score():
    optional_reference("nltk", reason="half of the random cases use nltk's Porter stemmer")
    for target, prediction, use_stemmer in random_pairs(300):
        assert_equal_to_reference(target, prediction, use_stemmer=use_stemmer)


# ----------------------------------------------------------------------------- bootstrap
def test_bootstrap_equals_the_reference_aggregator():
    optional_reference("rouge_score", reason="the reference ROUGE")
    from rouge_score import scoring
    per_example = [rouge(t, p) for t, p, _ in random_pairs(40, seed=3)]
    for seed, confidence, n_samples in ((0, 0.95, 1000), (7, 0.9, 200)):
        aggregator = scoring.BootstrapAggregator(confidence_interval=confidence, n_samples=n_samples)
        for scores in per_example:
            aggregator.add_scores(scores)
        np.random.seed(seed)
        ref = aggregator.aggregate()
        mine = bootstrap_aggregate(per_example, confidence, n_samples, seed=seed)
        assert list(mine) == list(ref)
        for kind in ref:
            for bound in ("low", "mid", "high"):
                np.testing.assert_allclose(tuple(getattr(mine[kind], bound)), tuple(getattr(ref[kind], bound)),
                                           rtol=0, atol=1e-12)
        assert mine["rouge1"].low.fmeasure <= mine["rouge1"].mid.fmeasure <= mine["rouge1"].high.fmeasure


def test_bootstrap_is_seeded():
    per_example = [{"x": (v, 2 * v)} for v in np.linspace(0, 1, 9)]
    assert bootstrap_aggregate(per_example, seed=1) == bootstrap_aggregate(per_example, seed=1)
    assert bootstrap_aggregate(per_example, seed=1) != bootstrap_aggregate(per_example, seed=2)


# ----------------------------------------------------------------------------- bad input
def test_bad_input_is_named():
    with pytest.raises(ValueError, match=r"target must be a string, got list"):
        rouge(["a"], "a")
    with pytest.raises(ValueError, match=r"prediction must be a string, got NoneType None"):
        rouge("a", None)
    with pytest.raises(ValueError, match=r"unknown ROUGE type 'rouge0'"):
        rouge("a", "a", ["rouge0"])
    with pytest.raises(ValueError, match=r"unknown ROUGE type 'rougeW'"):
        rouge("a", "a", ["rouge1", "rougeW"])
    with pytest.raises(ValueError, match=r"rouge_types must be a non-empty list .*got 'rouge1'"):
        rouge("a", "a", "rouge1")
    with pytest.raises(ValueError, match=r"tokenizer must have a tokenize\(text\) method .*got int"):
        rouge("a", "a", tokenizer=3)
    with pytest.raises(ValueError, match=r"confidence_interval must be in \[0, 1\], got 1.5"):
        bootstrap_aggregate([{"x": (1.0,)}], confidence_interval=1.5)
    with pytest.raises(ValueError, match=r"n_samples must be a positive integer, got 0"):
        bootstrap_aggregate([{"x": (1.0,)}], n_samples=0)
    with pytest.raises(ValueError, match=r"every example must have a score for 'x'"):
        bootstrap_aggregate([{"x": (1.0,)}, {"y": (1.0,)}])
