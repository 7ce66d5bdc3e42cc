"""BLEU (npgpt.evaluation.bleu) equals sacrebleu: score to 1e-9, counts, totals, lengths exactly,
on fixed cases (English, Chinese, mixed, empty hypotheses, no matches, one and three references,
punctuation, several sentences) under every tokenizer and smoothing method, and on random corpora.
Bad input raises a ValueError naming it."""
import random

import pytest
from references import optional_reference

from npgpt.evaluation import bleu, sentence_bleu
from npgpt.evaluation.bleu_tokenizers import TOKENIZERS, is_chinese_char

SMOOTHINGS = [("exp", None), ("none", None), ("floor", None), ("floor", 0.3), ("add-k", None), ("add-k", 2)]

CORPORA = {
    "english": (["The cat sat on the mat.", "It is a guide to action which ensures that the military "
                 "always obeys the commands of the party."],
                [["The cat is on the mat.", "It is a guide to action that ensures that the military will "
                  "forever heed Party commands."]]),
    "three references": (["the the the the the the the", "He said: \"we'll see, in 1990-91.\""],
                         [["The cat is on the mat.", "He said, \"We will see in 1990-91\"."],
                          ["There is a cat on the mat.", "He said: we'll see (1990-91)."],
                          ["A cat sits on the mat!", "\"We'll see,\" he said, in 1990 - 91."]]),
    "chinese": (["我们今天去北京看长城。", "大语言模型的评估通常使用困惑度。"],
                [["我们今天去北京参观长城。", "评估大语言模型通常用困惑度和BLEU。"]]),
    "mixed": (["GPT-4 的参数有1.5亿个，对吗？", "BLEU（双语评估）= 25.3%"],
              [["GPT-4的参数量是1.5亿，对吗?", "BLEU (Bilingual Evaluation Understudy) = 25.3 %"],
               ["参数有 150,000,000 个——对吗…", "“BLEU” score: 25.3%"]]),
    "empty hypotheses": (["", "a b c d e", ""], [["x y z", "a b c d e", "w"]]),
    "all empty": (["", ""], [["one two", "three"]]),
    "no matches": (["alpha beta gamma delta", "epsilon zeta"], [["one two three four", "five six seven"]]),
    "punctuation": (["Well... (really?!) -- it's $3.50/lb & 10% off: <b>yes</b>; ok?",
                     "&quot;Hi&quot; &amp;amp; e.g., U.S.A. 3,000.5 -1 1-2 a-b"],
                    [["Well ... really ?! it's $ 3.50 / lb & 10 % off : yes ; ok ?",
                      "\"Hi\" & e.g. , U.S.A. 3,000.5 - 1 1 - 2 a-b"]]),
    "multi-sentence": (["First sentence here. Second one follows!\nA third, on a new line.",
                        "Short. Tiny.  Spaces\tand\ttabs.  "],
                       [["First sentence here. The second follows!\nA third one, on a new line.",
                         "Short.  Tiny. Spaces and tabs."]]),
    "short hypotheses": (["a", "b c", "d e f"], [["a x", "b c", "d e f g"]]),
    "unicode spaces and case": (["The\u3000CAT\xa0sat", "ÉCOLE été\u2028Straße"],
                                [["the cat sat", "école Été STRASSE"]]),
}


def reference(hyps, refs, tokenize, smooth_method, smooth_value, lowercase, effective_order=False):
    sacrebleu = optional_reference("sacrebleu", reason="the reference BLEU")
    metric = sacrebleu.BLEU(tokenize=tokenize, smooth_method=smooth_method, smooth_value=smooth_value,
                            lowercase=lowercase, effective_order=effective_order)
    score = metric.corpus_score(hyps, refs)
    return score, str(metric.get_signature())


def assert_equal_to_reference(hyps, refs, tokenize="13a", smooth_method="exp", smooth_value=None,
                              lowercase=False, effective_order=False):
    """npgpt's BLEU against sacrebleu's; returns the absolute difference of the scores."""
    ref, signature = reference(hyps, refs, tokenize, smooth_method, smooth_value, lowercase, effective_order)
    mine = bleu(hyps, refs, tokenize=tokenize, smooth_method=smooth_method, smooth_value=smooth_value,
                lowercase=lowercase, effective_order=effective_order)
    assert abs(mine.score - ref.score) <= 1e-9, (mine.score, ref.score)
    assert (mine.counts, mine.totals) == (list(ref.counts), list(ref.totals))
    assert (mine.sys_len, mine.ref_len) == (ref.sys_len, ref.ref_len)
    assert mine.bp == pytest.approx(ref.bp, abs=1e-12) and mine.ratio == pytest.approx(ref.ratio, abs=1e-12)
    assert mine.precisions == pytest.approx(list(ref.precisions), abs=1e-9)
    theirs = ref.format(signature=signature)
    assert mine.format() == theirs.replace(signature.rsplit("|", 1)[1], mine.signature.rsplit("|", 1)[1])
    return abs(mine.score - ref.score)


@pytest.mark.parametrize("tokenize", sorted(TOKENIZERS))
@pytest.mark.parametrize("smooth_method, smooth_value", SMOOTHINGS)
@pytest.mark.parametrize("corpus", sorted(CORPORA))
@pytest.mark.slow
def test_corpus_bleu_equals_sacrebleu(corpus, tokenize, smooth_method, smooth_value):
    hyps, refs = CORPORA[corpus]
    for lowercase in (False, True):
        for effective_order in (False, True):
            assert_equal_to_reference(hyps, refs, tokenize, smooth_method, smooth_value, lowercase,
                                      effective_order)


@pytest.mark.parametrize("corpus", sorted(CORPORA))
@pytest.mark.parametrize("tokenize", sorted(TOKENIZERS))
def test_sentence_bleu_equals_sacrebleus(corpus, tokenize):
    sacrebleu = optional_reference("sacrebleu", reason="the reference BLEU")
    hyps, refs = CORPORA[corpus]
    for s, hyp in enumerate(hyps):
        sentence_refs = [stream[s] for stream in refs]
        for smooth_method, smooth_value in SMOOTHINGS:
            ref = sacrebleu.sentence_bleu(hyp, sentence_refs, smooth_method=smooth_method,
                                          smooth_value=smooth_value, tokenize=tokenize)
            mine = sentence_bleu(hyp, sentence_refs, tokenize=tokenize, smooth_method=smooth_method,
                                 smooth_value=smooth_value)
            assert abs(mine.score - ref.score) <= 1e-9 and mine.counts == list(ref.counts)
            assert "eff:yes" in mine.signature


def test_a_missing_reference_gives_a_variable_count():
    hyps = ["the cat sat", "a dog ran off"]
    refs = [["the cat sat down", "a dog ran away"], ["a cat sat", None]]
    assert_equal_to_reference(hyps, refs)
    assert "nrefs:var" in bleu(hyps, refs).signature


# ----------------------------------------------------------------------------- random corpora
WORDS = ["the", "The", "cat", "sat", "on", "mat", "a", "dog", "ran", "3.14", "1,000", "1990-91", "well-known",
         "it's", "U.S.", "e.g.", "&amp;", "&quot;", "&lt;b&gt;", "<skipped>", "$5", "50%", "(x)", "[y]", "{z}",
         "...", "!", "?", ",", ".", ";", ":", "-", "--", "—", "“quoted”", "‘s’", "…", "→", "∑", "☃", "✓",
         "猫", "坐在", "垫子上", "。", "，", "！", "大语言模型", "评估", "困惑度", "ＡＢＣ", "１２３", "𠀀", "𪜀",
         "東京", "カタカナ", "한국어", "Ελληνικά", "Straße", "ÉTÉ", "İ", "ǅ", "١٢٣", "٫", "x\u200by", "\t", "\u3000",
         "-\n", "\n", "\xa0", "7.", ".5", "a.b", "1.", ",2"]


def random_line(rng, n_words):
    return "".join(rng.choice(WORDS) + rng.choice([" ", " ", " ", "", "  "]) for _ in range(n_words))


def random_corpus(rng):
    n_segments = rng.randint(1, 6)
    n_refs = rng.randint(1, 3)
    refs = [[random_line(rng, rng.randint(0, 14)) for _ in range(n_segments)] for _ in range(n_refs)]
    hyps = []
    for s in range(n_segments):          # a hypothesis that shares some words with a reference
        words = refs[0][s].split(" ")
        kept = [w for w in words if rng.random() < 0.7] + ([rng.choice(WORDS)] if rng.random() < 0.5 else [])
        rng.shuffle(kept) if rng.random() < 0.3 else None
        hyps.append(" ".join(kept))
    return hyps, refs


def random_cases(n, seed=0):
    rng = random.Random(seed)
    for _ in range(n):
        hyps, refs = random_corpus(rng)
        smooth_method, smooth_value = rng.choice(SMOOTHINGS)
        yield dict(hyps=hyps, refs=refs, tokenize=rng.choice(sorted(TOKENIZERS)), smooth_method=smooth_method,
                   smooth_value=smooth_value, lowercase=rng.random() < 0.3, effective_order=rng.random() < 0.3)


def test_random_corpora_equal_sacrebleu():
    for case in random_cases(400):
        assert_equal_to_reference(**case)


def test_the_zh_tokenizer_splits_the_code_points_sacrebleu_splits():
    optional_reference("sacrebleu", reason="the reference BLEU")
    from sacrebleu.tokenizers.tokenizer_zh import TokenizerZh
    mismatched = [code for code in list(range(0x10000)) + list(range(0x1F000, 0x30000, 7))
                  if code < 0xD800 or code > 0xDFFF
                  if is_chinese_char(chr(code)) != TokenizerZh._is_chinese_char(chr(code))]
    assert not mismatched, [hex(c) for c in mismatched[:10]]


def test_zh_quirks_as_documented():
    assert is_chinese_char("“") and is_chinese_char("—") and is_chinese_char("→")
    assert not is_chinese_char("𠀀")            # CJK Extension B: the table meant it, its escape missed it
    assert TOKENIZERS["zh"]("他说“你好”") == "他 说 “ 你 好 ”"


# ----------------------------------------------------------------------------- by hand
def test_a_case_counted_by_hand():
    """hyp 'the cat sat on the mat' against 'the cat is on the mat': unigrams 5/6 (sat misses),
    bigrams 3/5 (the cat, on the, the mat), trigrams 1/4 (on the mat), 4-grams 0/3; c = r = 6."""
    s = bleu(["the cat sat on the mat"], [["the cat is on the mat"]], smooth_method="none")
    assert s.counts == [5, 3, 1, 0] and s.totals == [6, 5, 4, 3] and s.bp == 1.0 and s.score == 0.0
    s = bleu(["the cat sat on the mat"], [["the cat is on the mat"]])             # exp: p4 = 1/(2*3)
    expected = 100 * (5 / 6 * 3 / 5 * 1 / 4 * 1 / 6) ** 0.25
    assert s.score == pytest.approx(expected, rel=1e-12)


# ----------------------------------------------------------------------------- bad input
@pytest.mark.parametrize("hyps, refs, match", [
    (["a", "b"], [["a"]], r"refs\[0\] has 1 references but there are 2 hypotheses"),
    (["a"], [["a"], ["b", "c"]], r"refs\[1\] has 2 references but there are 1 hypotheses"),
    (["a", 3], [["a", "b"]], r"hyps\[1\] must be a string, got int 3"),
    (["a"], [[b"a"]], r"refs\[0\]\[0\] must be a string .*got bytes b'a'"),
    ("a b", [["a b"]], r"hyps must be a non-empty list of hypothesis strings, got 'a b'"),
    ([], [[]], r"hyps must be a non-empty list"),
    (["a"], ["a"], r"refs\[0\] must be a list of reference strings .*got 'a'"),
    (["a"], [], r"refs must be a non-empty list of reference streams"),
    (["a"], [[None]], r"hypothesis 0 has no reference"),
])
def test_bad_corpora_are_named(hyps, refs, match):
    with pytest.raises(ValueError, match=match):
        bleu(hyps, refs)


def test_bad_names_are_named():
    with pytest.raises(ValueError, match=r"tokenize must be one of \('13a', 'intl', 'char', 'zh', 'none'\), got '14a'"):
        bleu(["a"], [["a"]], tokenize="14a")
    with pytest.raises(ValueError, match=r"smooth_method must be one of .*got 'add-one'"):
        bleu(["a"], [["a"]], smooth_method="add-one")
    with pytest.raises(ValueError, match=r"smooth_value must be None or a finite number >= 0, got -1"):
        bleu(["a"], [["a"]], smooth_method="floor", smooth_value=-1)
    with pytest.raises(ValueError, match=r"hyp must be a string, got list"):
        sentence_bleu(["a"], ["a"])
    with pytest.raises(ValueError, match=r"refs must be a non-empty list of reference strings, got 'a'"):
        sentence_bleu("a", "a")
