"""The applications of document section 5 (npgpt/apps): the data generators against hand-written
tables, split hygiene, the classifier head's gradient check, bad inputs, and one tiny end-to-end run
per app (slow)."""
import re

import numpy as np
import pytest

from npgpt import GPT, GPTConfig, TrainConfig, Trainer, check_model, check_op, jitter
from npgpt.apps import numbers_zh, passages, resolve, reviews, translation
from npgpt.apps.classifier import BagOfWordsLogReg, GPTClassifier, pooled_head_backward, pooled_head_forward
from npgpt.apps.common import (
    IGNORE,
    NotTrained,
    PromptAnswerData,
    WordTokenizer,
    exact_match,
    join_tokens,
    token_f1,
)
from npgpt.cli import main

# ----------------------------------------------------------------------------- generators
# Everyday Mandarin: a leading 2 before 百/千/万 is 两 (两百, 两千, 两万), every other 2 is 二 (二, 十二,
# 二十二, 一百零二, and after a higher place: 一万二千, 两千二百二十二).
NUMBERS = {1: ("one", "一"), 2: ("two", "二"), 10: ("ten", "十"), 12: ("twelve", "十二"), 15: ("fifteen", "十五"),
           20: ("twenty", "二十"), 22: ("twenty two", "二十二"), 102: ("one hundred and two", "一百零二"),
           200: ("two hundred", "两百"), 260: ("two hundred and sixty", "两百六十"), 2000: ("two thousand", "两千"),
           2222: ("two thousand two hundred and twenty two", "两千二百二十二"),
           12000: ("twelve thousand", "一万二千"), 20000: ("twenty thousand", "两万"),
           22222: ("twenty two thousand two hundred and twenty two", "两万二千二百二十二"),
           42: ("forty two", "四十二"), 100: ("one hundred", "一百"), 105: ("one hundred and five", "一百零五"),
           110: ("one hundred and ten", "一百一十"), 115: ("one hundred and fifteen", "一百一十五"),
           412: ("four hundred and twelve", "四百一十二"), 1000: ("one thousand", "一千"),
           1010: ("one thousand and ten", "一千零一十"), 3005: ("three thousand and five", "三千零五"),
           3050: ("three thousand and fifty", "三千零五十"), 3500: ("three thousand five hundred", "三千五百"),
           10000: ("ten thousand", "一万"), 10005: ("ten thousand and five", "一万零五"),
           10500: ("ten thousand five hundred", "一万零五百"), 11000: ("eleven thousand", "一万一千"),
           12304: ("twelve thousand three hundred and four", "一万二千三百零四"),
           20019: ("twenty thousand and nineteen", "两万零一十九"),
           99999: ("ninety nine thousand nine hundred and ninety nine", "九万九千九百九十九")}


@pytest.mark.parametrize("n", sorted(NUMBERS))
def test_numbers_match_the_hand_written_table(n):
    assert (numbers_zh.english(n), numbers_zh.chinese(n)) == NUMBERS[n]


# The formal register: 二 in every place, as a number is read out digit by place.
FORMAL = {2: "二", 200: "二百", 2000: "二千", 2222: "二千二百二十二", 20000: "二万", 22222: "二万二千二百二十二",
          3005: "三千零五"}


def test_the_formal_register_writes_er_everywhere():
    assert {n: numbers_zh.chinese(n, register="formal") for n in FORMAL} == FORMAL
    formal = numbers_zh.make_pairs(sizes={"test": 200}, register="formal")
    everyday = numbers_zh.make_pairs(sizes={"test": 200})
    assert [e for e, _ in formal["test"]] == [e for e, _ in everyday["test"]]         # the same sources
    assert any("两" in z for _, z in everyday["test"]) and not any("两" in z for _, z in formal["test"])
    with pytest.raises(ValueError, match="register must be one of everyday, formal, got 'spoken'"):
        numbers_zh.chinese(2000, register="spoken")


def test_dates_and_the_word_for_word_baseline():
    import datetime
    d = datetime.date(1998, 3, 2)
    assert numbers_zh.english_date(d, 0) == "the 2nd of March, 1998"
    assert numbers_zh.english_date(d, 1) == "March 2nd, 1998"
    assert numbers_zh.chinese_date(d) == "1998年3月2日"
    assert [numbers_zh.ordinal(k) for k in (1, 2, 3, 4, 11, 12, 13, 21, 22, 23, 31)] == \
        ["1st", "2nd", "3rd", "4th", "11th", "12th", "13th", "21st", "22nd", "23rd", "31st"]
    assert numbers_zh.word_for_word("forty two") == "四十二"                 # right
    assert numbers_zh.word_for_word("three thousand and five") == "三千五"    # no 零
    assert numbers_zh.word_for_word("the 2nd of March, 1998") == "2日3月1998"  # no reordering
    with pytest.raises(ValueError, match="1..99999"):
        numbers_zh.chinese(100000)


def test_reports_aggregate_what_they_say():
    rng = np.random.default_rng(3)
    for _ in range(50):
        r = passages.make_report(rng)
        words = r["text"].split()
        if r["kind"] == "shop":
            nums = [int(w) for w in words if w.isdigit()]
            assert f" {sum(nums)} " in r["summary"]
        if r["kind"] == "weather":
            temps = [int(w) for w in words if w.isdigit()]
            assert f"at {max(temps)} degrees" in r["summary"]
        assert r["summary"] not in r["text"]                   # the summary is not a sentence of the report
        assert len(r["qa"]) == 2


def test_reports_say_one_goal_and_one_cake():
    rng = np.random.default_rng(3)
    texts = " ".join(passages.make_report(rng)["text"] for _ in range(300))
    assert "scored 1 goal." in texts and "sold 1 " in texts
    assert not re.findall(r"\b1 \w+s\b", texts), "a plural after 1"


# What a reviewer accepted as idiomatic, written here by hand (not read from npgpt.apps.reviews): aspect ->
# (words that praise it, words that fault it). 声音很贵, 价格很慢, "the price is bad" are not in it.
IDIOM_EN = {"screen": ({"sharp", "bright", "clear", "good"}, {"dim", "blurry", "bad"}),
            "battery life": ({"long", "good"}, {"short", "poor"}),
            "camera": ({"sharp", "good"}, {"blurry", "poor", "bad"}),
            "sound": ({"clear", "rich", "good"}, {"tinny", "muffled", "harsh"}),
            "price": ({"low", "fair", "reasonable"}, {"high", "steep"}),
            "keyboard": ({"comfortable", "responsive", "good"}, {"stiff", "cramped", "bad"}),
            "case": ({"sturdy", "solid"}, {"flimsy", "fragile"}),
            "service": ({"friendly", "helpful", "fast"}, {"slow", "rude", "poor"})}
IDIOM_ZH = {"屏幕": ({"清晰", "亮"}, {"模糊", "暗"}), "续航": ({"长", "持久"}, {"短"}), "拍照": ({"清晰"}, {"模糊"}),
            "声音": ({"清楚", "好听"}, {"刺耳", "难听"}), "价格": ({"便宜", "实惠", "低"}, {"贵", "高"}),
            "键盘": ({"好用", "舒服"}, {"难用", "吵"}), "服务": ({"周到", "热情"}, {"差", "慢"}),
            "速度": ({"快"}, {"慢"})}
CLAUSE_EN = re.compile(r"the (\w+(?: life)?) is (not )?(?:very |really |quite )?(\w+)(?: at all)?")
# every Chinese aspect (old and new) has two characters, so the aspect is the first two
CLAUSE_ZH = re.compile(r"(\w\w)(不太|一点也不|不)?(很|非常|真|特别|太)?(\w+)")


def review_clauses(text: str) -> list[tuple[str, bool, str, str, dict]]:
    """(aspect, negated, degree adverb, word, the idiom table of its language) of each clause of a
    review, in order; AssertionError naming a clause that does not parse."""
    zh = re.match(r"虽然(.+?)，?但是(.+)", text)
    out = []
    for clause in zh.groups() if zh else text.split(" but "):
        if m := CLAUSE_EN.fullmatch(clause):
            out.append((m.group(1), bool(m.group(2)), "", m.group(3), IDIOM_EN))
        elif m := CLAUSE_ZH.fullmatch(clause):
            out.append((m.group(1), bool(m.group(2)), m.group(3) or "", m.group(4), IDIOM_ZH))
        else:
            raise AssertionError(f"unparsed clause {clause!r} in {text!r}")
    return out


def test_reviews_pair_each_aspect_with_its_own_words():
    """Every (aspect, word) is in the hand-written idiom table, its polarity after negation is the
    label's (the second clause's in a contrast), and 太 never praises; nearly every pair is used."""
    rng = np.random.default_rng(0)
    seen = set()
    for _ in range(3000):
        text, label = reviews.make_review(rng)
        polarities = []
        for aspect, negated, adverb, word, table in review_clauses(text):
            good, bad = table.get(aspect, (set(), set()))
            assert word in good | bad, f"{aspect!r} said with {word!r} in {text!r}: not idiomatic"
            assert not (adverb == "太" and word in good), f"太 praising in {text!r}"
            polarities.append(int((word in good) != negated))
            seen.add((aspect, word))
        assert polarities == ([1 - label, label] if len(polarities) == 2 else [label]), text
    assert len(seen) > 0.9 * sum(len(g) + len(b) for t in (IDIOM_EN, IDIOM_ZH) for g, b in t.values())


def test_a_review_gives_one_opinion_per_aspect():
    """No "the price is fine but the price is quite bad": a contrast speaks of two aspects."""
    rng = np.random.default_rng(0)
    for _ in range(3000):
        text, _ = reviews.make_review(rng)
        aspects = [clause[0] for clause in review_clauses(text)]
        assert len(set(aspects)) == len(aspects), f"two opinions of one aspect: {text!r}"


def test_reviews_defeat_a_bag_of_words_by_construction():
    rng = np.random.default_rng(0)
    texts = dict(reviews.make_review(rng) for _ in range(3000))
    flipped = [(t, y) for t, y in texts.items() if " but " in t
               and " but ".join(reversed(t.split(" but "))) in texts]
    assert flipped, "both orders of a contrast should occur"
    t, y = flipped[0]
    assert texts[" but ".join(reversed(t.split(" but ")))] == 1 - y     # same bag of words, other label


@pytest.mark.parametrize("make, key", [(numbers_zh.make_pairs, lambda e: e[0]),
                                       (passages.make_reports, lambda e: e["text"]),
                                       (reviews.make_reviews, lambda e: e[0])])
@pytest.mark.slow
def test_splits_are_fixed_sized_and_disjoint(make, key):
    splits = make(0)
    again = make(0)
    keys = {s: {key(e) for e in rows} for s, rows in splits.items()}
    assert {s: len(rows) for s, rows in splits.items()} == {s: len(k) for s, k in keys.items()}  # no repeats
    assert not keys["train"] & keys["test"] and not keys["val"] & keys["test"] and not keys["train"] & keys["val"]
    assert [key(e) for e in again["test"]] == [key(e) for e in splits["test"]]    # seeded: the same test split


@pytest.mark.slow
def test_test_tokens_are_all_in_the_training_vocabulary():
    for make, texts in [(numbers_zh.make_pairs, lambda e: [e[0].lower(), e[1]]),
                        (passages.make_reports, lambda e: [e["text"], e["summary"]] + [x for qa in e["qa"] for x in qa]),
                        (reviews.make_reviews, lambda e: [e[0]])]:
        splits = make(0)
        tok = WordTokenizer.from_texts(t for e in splits["train"] for t in texts(e))
        assert not [t for e in splits["test"] for x in texts(e) for t in tok.unknown(x)]


# ----------------------------------------------------------------------------- shared pieces
def test_tokenizer_round_trip_and_messages():
    tok = WordTokenizer.from_texts(["The Lions beat the Tigers 3 to 1.", "1998年3月2日"])
    assert tok.decode(tok.encode("The Lions beat the Tigers 3 to 1.")) == "The Lions beat the Tigers 3 to 1."
    assert tok.decode(tok.encode("1998年3月2日")) == "1998年3月2日"
    assert join_tokens(["3", "-", "1"]) == "3-1"
    with pytest.raises(ValueError, match="empty"):
        tok.encode("   ")
    with pytest.raises(ValueError, match="never seen: 'Bears'"):
        tok.encode("The Bears")


def test_prompt_answer_batches_score_only_the_answer():
    data = PromptAnswerData({"train": [(np.array([5, 6, 7]), np.array([8, 9]))]}, pad_id=0, eos_id=2)
    x, y = data.get_batch("train", 2, 16, np.random.default_rng(0))
    assert x[0].tolist() == [5, 6, 7, 8, 9]
    assert y[0].tolist() == [IGNORE, IGNORE, 8, 9, 2]


def test_a_plain_gpt_is_trained_on_the_answers_alone():
    """The data names the targets to skip (its ``ignore_index``), so the Trainer's GPT needs no
    subclass: its loss is the cross-entropy of the answers and the <eos>, nothing else."""
    pairs = [(np.array([5, 6, 7]), np.array([8, 9])), (np.array([3, 4]), np.array([10]))]
    data = PromptAnswerData({"train": pairs, "val": pairs}, pad_id=0, eos_id=2)
    model = GPT(GPTConfig(vocab_size=11, block_size=8, n_layer=1, n_head=2, n_embd=8), dtype=np.float64)
    config = TrainConfig(max_iters=1, batch_size=4, eval_interval=1, eval_iters=1, warmup_iters=0)
    batch = data.get_batch("train", 4, 8, np.random.default_rng([config.seed, 0]))   # the Trainer's first
    _, expected = GPT(model.config, dtype=np.float64).forward(*batch, ignore_index=IGNORE)
    assert Trainer(model, data, config).train(progress=False, log=lambda *_: None)["train_loss"] == [expected]


def test_the_translation_model_is_trained_without_a_made_up_config():
    tok = WordTokenizer.from_texts(["one two", "一 二"])
    src, tgt_in, tgt_out = translation.encode_pairs([("one", "一"), ("two", "二")], tok)
    model = translation.Seq2SeqForTrainer(translation.build(tok.vocab_size), tok.pad_id)
    assert not hasattr(model, "config")
    data = translation.PairBatches({"train": (src, tgt_in, tgt_out), "val": (src, tgt_in, tgt_out)})
    config = TrainConfig(max_iters=1, batch_size=2, eval_interval=1, eval_iters=1, warmup_iters=0)
    history = Trainer(model, data, config).train(progress=False, log=lambda *_: None)
    assert np.isfinite(history["train_loss"]).all() and np.isfinite(history["eval_val"]).all()


def test_answer_metrics():
    assert exact_match("The Lions", "the lions.") == 1.0
    assert token_f1("24 degrees", "24") == pytest.approx(2 / 3)
    assert token_f1("Monday", "Tuesday") == 0.0


# ----------------------------------------------------------------------------- the classifier head
def test_pooled_head_gradient_check():
    rng = np.random.default_rng(0)
    mask = np.array([[1, 1, 1, 0], [1, 1, 0, 0], [1, 1, 1, 1]], dtype=bool)
    inputs = dict(h=rng.standard_normal((3, 4, 5)), mask=mask, W=rng.standard_normal((5, 2)), b=rng.standard_normal(2))
    report = check_op(pooled_head_forward, pooled_head_backward, inputs, ("h", "W", "b"))
    assert report.max_rel_error <= 1e-6, str(report)


@pytest.mark.slow
def test_the_whole_classifier_gradient_check():
    config = GPTConfig(vocab_size=11, block_size=8, n_layer=2, n_head=2, n_embd=8)
    model = GPTClassifier(config, n_classes=2, pad_id=0, dtype=np.float64)
    jitter(model.params)
    idx = np.array([[3, 4, 5, 0, 0], [6, 7, 8, 9, 10], [1, 2, 0, 0, 0]])
    report = check_model(model, idx, np.array([0, 1, 1]))
    assert report.max_rel_error <= 1e-6, str(report)
    assert {row.name for row in report.rows} == set(model.params)


def test_padding_does_not_change_the_scores():
    config = GPTConfig(vocab_size=11, block_size=8, n_layer=1, n_head=2, n_embd=8)
    model = GPTClassifier(config, n_classes=2, dtype=np.float64).eval()
    a = model.forward(np.array([[3, 4, 5]]))[0]
    b = model.forward(np.array([[3, 4, 5, 0, 0]]))[0]
    np.testing.assert_allclose(a, b, atol=1e-12)


def test_bag_of_words_learns_word_polarity_but_not_order():
    docs = [["good"], ["bad"], ["good", "x"], ["bad", "x"]]
    model = BagOfWordsLogReg().fit(docs, [1, 0, 1, 0])
    assert model.predict([["good"], ["bad"]]).tolist() == [1, 0]
    assert model.predict([["a", "but", "b"]]) == model.predict([["b", "but", "a"]])


# ----------------------------------------------------------------------------- bad input
def test_unknown_app_is_named(capsys):
    assert main(["app", "nosuch", "run", "x"]) == 2
    assert "unknown app 'nosuch'; choose one of generation, translation" in capsys.readouterr().err
    with pytest.raises(ValueError, match="unknown app"):
        resolve("nosuch")


@pytest.mark.parametrize("app", ["generation", "translate", "summarization", "qa", "sentiment"])
def test_run_before_training_says_how_to_train(app, tmp_path, capsys):
    ckpt = str(tmp_path / "none.npz")
    assert main(["app", app, "run", "hello", "--ckpt", ckpt]) == 2
    err = capsys.readouterr().err
    assert "no trained" in err and "python -m npgpt app" in err and " train --ckpt" in err
    with pytest.raises(NotTrained):
        resolve(app).load(ckpt)


def test_run_needs_an_input(capsys):
    assert main(["app", "sentiment", "run"]) == 2
    assert "run needs an input" in capsys.readouterr().err


# ----------------------------------------------------------------------------- end to end, tiny
RUN_INPUTS = {"generation": "ROMEO:", "translation": "three thousand and five", "sentiment": "the screen is not bad at all",
              "summarization": "Anna has a small shop. Anna sold 3 cakes in the morning. Anna sold 4 cakes in the afternoon.",
              "qa": "Anna has a small shop. Anna sold 3 cakes in the morning. Q: Who sold them?"}


@pytest.mark.slow
@pytest.mark.parametrize("app", sorted(RUN_INPUTS))
def test_each_app_trains_and_runs_from_the_command_line(app, tmp_path, capsys):
    ckpt = str(tmp_path / "ckpt.npz")
    assert main(["app", app, "train", "--ckpt", ckpt, "--max-iters", "2", "--batch-size", "4", "--no-progress"]) == 0
    assert "trained 2 steps" in capsys.readouterr().out
    assert main(["app", app, "run", RUN_INPUTS[app], "--ckpt", ckpt]) == 0
    assert capsys.readouterr().out.strip() != "" or app != "generation"


@pytest.mark.slow
@pytest.mark.parametrize("app", sorted(RUN_INPUTS))
def test_a_saved_app_loads_as_the_model_it_trained(app, tmp_path):
    """save_app, then load through the checked reader (tests/test_app_files.py has the hostile
    files): every weight the same float32 array, and the same answer (exactly: same weights, same code)."""
    module = resolve(app)
    trained = module.train(ckpt=str(tmp_path / "ckpt.npz"), max_iters=1, batch_size=4, progress=False,
                           log=lambda *_: None)
    model, tokenizer = module.load(trained["ckpt"])
    assert model.params.keys() == trained["model"].params.keys()
    for name, value in trained["model"].params.items():
        assert model.params[name].dtype == np.float32
        np.testing.assert_array_equal(model.params[name], value, err_msg=name)
    assert module.run(RUN_INPUTS[app], model=model, tokenizer=tokenizer) == \
        module.run(RUN_INPUTS[app], model=trained["model"], tokenizer=trained["tokenizer"])


@pytest.mark.slow
@pytest.mark.parametrize("app", ["sentiment", "translation"])
def test_evaluate_reports_the_model_and_its_baselines(app, tmp_path):
    module = resolve(app)
    trained = module.train(ckpt=str(tmp_path / "ckpt.npz"), max_iters=2, batch_size=4, progress=False)
    result = module.evaluate(model=trained["model"], tokenizer=trained["tokenizer"], split="val",
                             **({"beam_examples": 3} if app == "translation" else {}))
    assert set(result) >= {"metric", "model", "baselines", "params", "examples"}
    assert len(result["examples"]) == 300


@pytest.mark.slow
def test_bad_inputs_when_a_model_exists(tmp_path, capsys):
    ckpt = str(tmp_path / "ckpt.npz")
    assert main(["app", "translation", "train", "--ckpt", ckpt, "--max-iters", "1", "--no-progress"]) == 0
    capsys.readouterr()
    for text, message in [("", "empty"), ("three thousand and five 🙂", "never seen: '🙂'"),
                          ("one " * 20, "refused, not truncated")]:
        assert main(["app", "translation", "run", text, "--ckpt", ckpt]) == 2
        assert message in capsys.readouterr().err


@pytest.mark.slow
def test_a_long_generation_prompt_is_truncated_with_a_warning(tmp_path):
    gen = resolve("generation")
    trained = gen.train(ckpt=str(tmp_path / "ckpt.npz"), max_iters=1, progress=False)
    with pytest.warns(UserWarning, match="sees the last 64"):
        gen.run("ROMEO: " * 20, model=trained["model"], tokenizer=trained["tokenizer"], max_new_tokens=3)
    with pytest.raises(ValueError, match="never seen"):
        gen.run("ROMEO 🙂", model=trained["model"], tokenizer=trained["tokenizer"])


@pytest.mark.slow
def test_training_an_app_again_refuses_to_replace_its_model(tmp_path, capsys):
    ckpt = tmp_path / "ckpt.npz"
    args = ["app", "sentiment", "train", "--ckpt", str(ckpt), "--max-iters", "1", "--batch-size", "4", "--no-progress"]
    assert main(args) == 0
    before = ckpt.read_bytes()
    capsys.readouterr()
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err == (f"npgpt app: error: {ckpt} already holds a trained sentiment model; replace it with --force, "
                   f"or write the new one elsewhere with --ckpt PATH")
    assert ckpt.read_bytes() == before
    assert main([*args, "--force"]) == 0
