"""Exercise mode in Chinese (issue 26, item 4): ``check(..., lang="zh")``, ``NPGPT_LANG=zh`` or a kernel
in notebooks/zh gives the feedback and the hints in Chinese, graded exactly as in English: the same
verdicts and the same numbers, from the same code path (only npgpt.exercises.messages and the
exercises' ``zh=`` texts differ)."""
import re
import string
from collections import Counter
from pathlib import Path

import nbformat
import numpy as np
import pytest
from test_exercise_wrong_solutions import WRONG

from npgpt.exercises import ALL_EXERCISES, check, hint, reset_hints, scoreboard, solution
from npgpt.exercises.messages import MESSAGES
from npgpt.runtime.language import LanguageError

ROOT = Path(__file__).resolve().parents[1]
ZH_NOTEBOOK = ROOT / "notebooks" / "zh" / "exercises.ipynb"
CJK = re.compile(r"[\u4e00-\u9fff]")
ENGLISH_PROSE = re.compile(r"\b(the|and|of|is|are|with|then|not|when)\b", re.IGNORECASE)
# a number as the messages print it: 3, 0.458, 1.2e+00, 6.4e-01, -0.5
NUMBER = re.compile(r"-?\d+(?:\.\d+)?(?:e[+-]\d+)?")


@pytest.fixture(autouse=True)
def english_unless_asked(monkeypatch: pytest.MonkeyPatch):
    """No language from the caller's environment, and no failed attempts carried between tests (the
    hint tier a failure shows depends on them)."""
    monkeypatch.delenv("NPGPT_LANG", raising=False)
    reset_hints()
    yield
    reset_hints()


def softmax_diagonal_only(dout, s):
    return s * dout          # the classic mistake: only the diagonal of the Jacobian


# ---------------------------------------------------------------------- feedback in Chinese
def test_a_right_answer_in_chinese():
    zh = check("linear_backward", solution("linear_backward"), verbose=False, lang="zh")
    en = check("linear_backward", solution("linear_backward"), verbose=False, lang="en")
    assert zh.passed and zh.lang == "zh"
    first_line = zh.message.splitlines()[0]
    assert first_line.startswith("linear_backward：全部 4 个用例通过；与中心差分（float64）比对的梯度检验：最大相对误差 ")
    assert first_line.endswith("，容差 1e-06")
    worst = re.search(r"worst relative error (\S+), tolerance", en.message).group(1)
    assert f"最大相对误差 {worst}，" in zh.message          # the same number, printed the same way
    assert "\n  用例：x (2, 3, 4) @ W (4, 5) + b；x (6, 4) @ W (4, 3)，无偏置；只有一行：" in zh.message
    assert zh.status == "通过"


def test_a_wrong_answer_in_chinese():
    zh = check("softmax_backward", softmax_diagonal_only, verbose=False, lang="zh")
    reset_hints()
    en = check("softmax_backward", softmax_diagonal_only, verbose=False, lang="en")
    assert not zh.passed and not zh.blank and zh.status == "未通过"
    lines = zh.message.splitlines()
    assert lines[0] == "softmax_backward：未通过，用例 1/3（z (3, 5)）"
    # the worst entry: the English message's numbers, in a Chinese sentence
    found = re.search(r"the largest error is (\S+) at index (\(\d+, \d+\)) \(expected (\S+), got (\S+)\), (\S+) of",
                      en.message)
    error, index, expected, got, relative = found.groups()
    assert lines[1] == (f"  输出 dz，形状 (3, 5)：15 个元素中有 15 个错误；最大误差为 {error}，位于索引 {index}"
                        f"（期望 {expected}，实际 {got}），是 |dz| 最大值的 {relative}")
    assert re.fullmatch(r"  与中心差分比对的梯度检验（float64，逐个输入的相对误差，容差 1e-06）：z \S+ 未通过", lines[2])
    assert lines[3] == "  提示：" + ALL_EXERCISES["softmax_backward"].zh.hints[0]
    assert lines[4] == "  下一级提示（公式的形式）：hint('softmax_backward', 2)，或再改一次后重新检查"


def test_a_blank_and_a_crash_in_chinese():
    def blank(dout, cache):
        raise NotImplementedError

    result = check("gelu_backward", blank, verbose=False, lang="zh")
    assert result.blank and result.status == "尚未编写"
    assert result.message.splitlines()[:2] == ["gelu_backward：尚未编写（它抛出 NotImplementedError）。",
                                                "  要写的函数：gelu_backward(dout, cache) -> dx"]
    message = check("lstm_cell_backward", lambda dh, dc, cache: (dh, dc), verbose=False, lang="zh").message
    assert "返回了长度为 2 的 tuple；应返回长度为 7 的元组：(dx, dh, dc, dw_ih, dw_hh, db_ih, db_hh)" in message
    message = check("attention_backward", lambda dy, cache: cache.q @ dy, verbose=False, lang="zh").message
    assert "你的函数抛出了 ValueError: " in message and "cache.q @ dy" in message


def test_a_hint_in_chinese_at_each_tier():
    exercise = ALL_EXERCISES["softmax_backward"]
    messages = [check("softmax_backward", softmax_diagonal_only, verbose=False, lang="zh").message
                for _ in range(3)]
    for level, message in enumerate(messages, 1):
        text = hint("softmax_backward", level, lang="zh")
        assert text == exercise.zh.hints[level - 1] != exercise.en.hints[level - 1]
        assert CJK.search(text), text
        assert "  提示：" + text in message, (level, message)
    assert "下一级提示（公式）：hint('softmax_backward', 3)" in messages[1]
    assert "下一级提示" not in messages[2]
    assert "dz = s * (dout - sum(dout * s))" in hint("softmax_backward", 3, lang="zh")   # formulas unchanged


def test_NPGPT_LANG_zh_is_picked_up(monkeypatch: pytest.MonkeyPatch):
    exercise = ALL_EXERCISES["layernorm_backward"]
    assert exercise.title == exercise.en.title and hint("layernorm_backward") == exercise.en.hints[0]
    monkeypatch.setenv("NPGPT_LANG", "zh")
    result = check("layernorm_backward", solution("layernorm_backward"), verbose=False)
    assert result.lang == "zh" and result.message.startswith("layernorm_backward：全部 3 个用例通过")
    assert hint("layernorm_backward", 2) == exercise.zh.hints[1]
    # what the notebook's first cell prints, and the statement
    assert exercise.title == "层归一化（LayerNorm）的反向传播" and exercise.where.startswith("笔记本 04b 第 3 部分")
    assert str(exercise).startswith("layernorm_backward：层归一化（LayerNorm）的反向传播\n  讲解位置：")
    assert check("layernorm_backward", solution("layernorm_backward"), verbose=False, lang="en").lang == "en"


def test_a_kernel_in_notebooks_zh_speaks_chinese(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    folder = tmp_path / "notebooks" / "zh"
    folder.mkdir(parents=True)
    monkeypatch.chdir(folder)
    assert check("gelu_backward", solution("gelu_backward"), verbose=False).message.startswith(
        "gelu_backward：全部 2 个用例通过")


@pytest.mark.parametrize("call", [
    lambda: check("gelu_backward", solution("gelu_backward"), verbose=False, lang="fr"),
    lambda: hint("gelu_backward", 1, lang="fr"),
    lambda: ALL_EXERCISES["gelu_backward"].describe("fr"),
    lambda: scoreboard({}, lang="fr"),
])
def test_an_unknown_language_is_one_line_naming_it(call):
    with pytest.raises(LanguageError) as raised:
        call()
    assert str(raised.value) == "language 'fr' is not one npgpt speaks: expected one of en, zh"


def test_an_unknown_language_in_the_environment_is_one_line(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("NPGPT_LANG", "fr")
    with pytest.raises(LanguageError, match=r"^language 'fr' is not one npgpt speaks: expected one of en, zh$"):
        check("gelu_backward", solution("gelu_backward"), verbose=False)


def test_a_caller_mistake_in_chinese():
    with pytest.raises(ValueError, match=r"^提示级别必须是 1、2 或 3（思路, 公式的形式, 公式），实际是 4$"):
        hint("gelu_backward", 4, lang="zh")
    with pytest.raises(ValueError, match="^没有名为 'gelu' 的练习；现有的练习是：linear_backward"):
        check("gelu", solution("gelu_backward"), lang="zh")


def test_the_scoreboard_in_both_languages():
    def blank(dout, cache):
        raise NotImplementedError

    results = {"gelu_backward": check("gelu_backward", solution("gelu_backward"), verbose=False),
               "softmax_backward": check("softmax_backward", softmax_diagonal_only, verbose=False),
               "linear_backward": check("linear_backward", blank, verbose=False)}
    assert scoreboard(results, lang="en").splitlines() == [
        "gelu_backward                passed", "softmax_backward             FAILED",
        "linear_backward              not written yet", "", "1 of 3 passed"]
    assert scoreboard(results, lang="zh").splitlines() == [
        "gelu_backward                通过", "softmax_backward             未通过",
        "linear_backward              尚未编写", "", "3 个练习中通过了 1 个"]


# ---------------------------------------------------------------------- the same grading in both languages
def _numbers(message: str, exercise, lang: str) -> Counter:
    """The numbers a message reports, without the case labels and hints, which are texts of the
    exercise (tested separately) rather than findings of the grader. A Counter: a Chinese sentence
    may put them in another order ("15 个元素中有 15 个错误")."""
    texts = exercise.texts(lang)
    for text in sorted([*texts.hints, *(exercise.label(case, lang) for case in _cases(exercise))], key=len,
                       reverse=True):
        message = message.replace(text, " ")
    return Counter(NUMBER.findall(message))


def _cases(exercise):
    return exercise.make_cases(np.random.default_rng(0))


def _graded_both_ways(name: str, fn) -> None:
    exercise = ALL_EXERCISES[name]
    reset_hints()
    en = check(name, fn, verbose=False, lang="en")
    reset_hints()
    zh = check(name, fn, verbose=False, lang="zh")
    assert (en.passed, en.blank) == (zh.passed, zh.blank), (en.message, zh.message)
    assert _numbers(en.message, exercise, "en") == _numbers(zh.message, exercise, "zh"), (en.message, zh.message)
    assert len(en.message.splitlines()) == len(zh.message.splitlines())
    assert CJK.search(zh.message), zh.message


@pytest.mark.parametrize("name", list(ALL_EXERCISES))
def test_the_reference_is_graded_the_same_in_both_languages(name):
    _graded_both_ways(name, solution(name))


WRONG_CASES = [(name, label, fn) for name, entries in WRONG.items() for label, fn, _ in entries]


@pytest.mark.parametrize("name, label, fn", WRONG_CASES, ids=[f"{c[0]}-{c[1]}" for c in WRONG_CASES])
def test_a_wrong_solution_is_graded_the_same_in_both_languages(name, label, fn):
    _graded_both_ways(name, fn)


def test_the_numbers_are_compared_for_real():
    """The comparison above would pass if both messages lost their numbers: it sees them."""
    exercise = ALL_EXERCISES["softmax_backward"]
    message = check("softmax_backward", softmax_diagonal_only, verbose=False, lang="zh").message
    numbers = _numbers(message, exercise, "zh")
    assert numbers["15"] == 2 and numbers["1e-06"] == 1 and sum(numbers.values()) >= 10, numbers


# ---------------------------------------------------------------------- nothing missing in Chinese
def _fields(template: str) -> list[tuple]:
    return sorted((name, conversion or "", spec or "") for _, name, spec, conversion
                  in string.Formatter().parse(template) if name is not None)


def test_every_message_exists_in_both_languages_with_the_same_placeholders():
    assert MESSAGES["en"].keys() == MESSAGES["zh"].keys()
    for key, english in MESSAGES["en"].items():
        chinese = MESSAGES["zh"][key]
        assert _fields(chinese) == _fields(english), key
        assert chinese != english, f"{key} is not translated"


@pytest.mark.parametrize("name", list(ALL_EXERCISES))
def test_every_exercise_speaks_chinese(name):
    exercise = ALL_EXERCISES[name]
    zh, en = exercise.zh, exercise.en
    for field in ("title", "where", "statement"):
        assert CJK.search(getattr(zh, field)), (name, field)
    assert len(zh.hints) == 3 and len(set(zh.hints)) == 3
    # the idea and the shape are prose; the formula may be code alone, but then no English prose
    assert all(CJK.search(h) for h in zh.hints[:2]), name
    assert CJK.search(zh.hints[2]) or not ENGLISH_PROSE.search(zh.hints[2]), name
    # every case has a Chinese label, and no label is left over from a case that is gone
    labels = [case.label for case in _cases(exercise)]
    assert sorted(zh.cases) == sorted(labels), name
    assert all(zh.cases[label].strip() for label in labels)
    # the statement shown first gives the idea, never the formula, in Chinese too
    shown = exercise.describe("zh")
    assert zh.hints[0] in shown and zh.hints[2] not in shown and en.statement not in shown


# ---------------------------------------------------------------------- the Chinese notebook
def test_the_chinese_notebook_shows_chinese_feedback():
    nb = nbformat.read(ZH_NOTEBOOK, as_version=4)
    text = "\n".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))
    assert "softmax_backward：未通过，用例 1/3（z (3, 5)）" in text
    assert "linear_backward：尚未编写（它抛出 NotImplementedError）。" in text
    assert "层归一化（LayerNorm）的反向传播" in text                    # the first cell's table
    assert "linear_backward              尚未编写" in text              # the score
    assert "FAILED" not in text and "not written yet" not in text
