"""Every sentence the exercise mode says, once per language: :data:`MESSAGES` maps a language of
:data:`npgpt.runtime.language.LANGUAGES` to ``{key: template}``, templates of :meth:`str.format` with
named fields. The grader decides what to say (a key and its numbers) on one code path; only
:func:`say` looks at the language. A Chinese template has exactly the English one's fields (tests
check it), so both languages report the same numbers.

The exercises' own texts (titles, statements, hints, case labels) live beside each exercise in
:mod:`npgpt.exercises.catalogue` (its ``en=`` and ``zh=`` :class:`~npgpt.exercises.catalogue.Texts`).
"""
from collections.abc import Callable

from ..runtime.language import check_language, language

__all__ = ["MESSAGES", "say", "speaker"]

MESSAGES: dict[str, dict[str, str]] = {
    "en": {
        # the verdicts
        "blank": "{name}: not written yet (it raises NotImplementedError).",
        "write": "  write: {signature}",
        "case": "case {number} of {total} ({label})",
        "failed": "{name}: FAILED on {where}",
        "passed": "{name}: passed on all {total} cases",
        "passed_gradcheck": ("; gradient check against central differences (float64): worst relative error "
                             "{worst:.1e}, tolerance {tolerance:g}"),
        "cases": "\n  cases: {labels}",
        "case_separator": "; ",
        "right": "  right: {names}",
        # what went wrong
        "changed_one": ("your function changed its argument {names} in place; the library's functions are pure "
                        "(the caller may use that array again: a residual connection sends dout down two roads)"),
        "changed_many": ("your function changed its arguments {names} in place; the library's functions are pure "
                         "(the caller may use that array again: a residual connection sends dout down two roads)"),
        "called_again": "when the gradient check called it again, {problem}",
        "ignores_upstream": ("the outputs equal the reference for this case's upstream gradient, but the gradient "
                             "check, which calls your function with another upstream gradient, fails: does every "
                             "term use the upstream gradient?"),
        "gradcheck_not_run": "gradient check could not run: {problem}",
        "gradcheck": ("gradient check against central differences (float64, relative error per input, tolerance "
                      "{tolerance:g}): {verdicts}"),
        "gradcheck_fail": " FAIL",
        "returned_sequence": "a {type} of length {length}",
        "returned_other": "a {type}",
        "wrong_structure": "returned {what}; expected a tuple of {count}: ({names})",
        "should_be_none": "output {name} should be None (this case has no bias), got {type}",
        "is_none": "output {name} is None; expected {what}",
        "an_array": "an array of shape {shape}",
        "a_value": "a {type}",
        "should_be_dict": "output {name} should be a dict, got {type}",
        "wrong_keys": "output {name} has the wrong keys: {parts}",
        "missing_keys": "missing {keys}",
        "unexpected_keys": "unexpected {keys}",
        "key_separator": "; ",
        "not_equal": "output {name} is {got}; expected {expected}",
        "not_numbers": "output {name} is not an array of numbers: {got}",
        "wrong_shape": "output {name} has shape {got}{note}; expected {expected}",
        "transposed": " (transposed?)",
        "not_finite": "output {name} {shape} has {count} NaN or infinite entries, the first at {first}",
        "wrong_number": "output {name} is {got:.6g}; expected {expected:.6g}{ratio}",
        "number_ratio": " ({ratio:.4g} x the expected value)",
        "wrong_entries": ("output {name}, shape {shape}: {wrong} of {size} entries wrong; the largest error is "
                          "{error:.3g} at index {index} (expected {expected:.6g}, got {got:.6g}), {relative:.1e} "
                          "of the largest |{name}|"),
        "wrong_rows": "; wrong rows (first axis): {rows}{more}",
        "common_ratio": "; every entry is {ratio:.4g} x the expected one (a missing or extra factor?)",
        # the student's function misbehaving
        "raised": "your function raised {type}: {error}\n  {frame}",
        "exited": "your function called sys.exit({code}); a graded function returns its result\n  {frame}",
        "frame": "at line {line} of {function}: {source}",
        "too_long": "your function took longer than {seconds:g} s and was stopped (an endless loop?)",
        "caught_interrupt": ("; it caught the interruption and went on (a bare except: or except BaseException: "
                             "in a loop?)"),
        "time_limit": ". check()'s time_limit sets the limit",
        "note": "\n  note: {note}",
        "no_limit": "no time limit: {why}",
        "no_timer": "this platform has no SIGALRM timer",
        "not_main_thread": ("check() ran outside the main thread, and Python delivers the timer's signal (SIGALRM) "
                            "only to the main thread"),
        "foreign_handler": "SIGALRM is handled by code outside Python here, and check() leaves it alone",
        # hints
        "hint": "  hint: {hint}",
        "next_hint": ("  the next hint ({tier}): hint({name!r}, {level}), or check again after another attempt"),
        "tier_1": "the idea",
        "tier_2": "the shape of the formula",
        "tier_3": "the formula",
        # an exercise shown, the score
        "exercise": "{name}: {title}\n  taught in: {where}\n  write: {signature}\n\n{statement}\n\nhint: {hint}",
        "status_passed": "passed",
        "status_blank": "not written yet",
        "status_failed": "FAILED",
        "score": "{passed} of {total} passed",
        # a caller's mistakes
        "no_exercise": "no exercise named {name!r}; the exercises are: {names}",
        "bad_level": "hint level must be 1, 2 or 3 ({tiers}), got {level!r}",
        "not_a_function": "check({name!r}, fn) needs a function, got {type}",
    },
    "zh": {
        "blank": "{name}：尚未编写（它抛出 NotImplementedError）。",
        "write": "  要写的函数：{signature}",
        "case": "用例 {number}/{total}（{label}）",
        "failed": "{name}：未通过，{where}",
        "passed": "{name}：全部 {total} 个用例通过",
        "passed_gradcheck": "；与中心差分（float64）比对的梯度检验：最大相对误差 {worst:.1e}，容差 {tolerance:g}",
        "cases": "\n  用例：{labels}",
        "case_separator": "；",
        "right": "  正确的输出：{names}",
        "changed_one": ("你的函数原地修改了参数 {names}；库里的函数都是纯函数（调用方可能还要用这个数组：残差连接"
                        "会把 dout 同时送往两条路）"),
        "changed_many": ("你的函数原地修改了参数 {names}；库里的函数都是纯函数（调用方可能还要用这些数组：残差连接"
                         "会把 dout 同时送往两条路）"),
        "called_again": "梯度检验再次调用它时，{problem}",
        "ignores_upstream": ("在本用例的上游梯度下，输出与参考实现一致，但梯度检验换了一个上游梯度来调用你的函数，"
                             "结果未通过：每一项都乘上游梯度了吗？"),
        "gradcheck_not_run": "梯度检验无法运行：{problem}",
        "gradcheck": "与中心差分比对的梯度检验（float64，逐个输入的相对误差，容差 {tolerance:g}）：{verdicts}",
        "gradcheck_fail": " 未通过",
        "returned_sequence": "长度为 {length} 的 {type}",
        "returned_other": "一个 {type}",
        "wrong_structure": "返回了{what}；应返回长度为 {count} 的元组：({names})",
        "should_be_none": "输出 {name} 应为 None（本用例没有偏置），实际是 {type}",
        "is_none": "输出 {name} 是 None；应为{what}",
        "an_array": "形状为 {shape} 的数组",
        "a_value": "一个 {type}",
        "should_be_dict": "输出 {name} 应为 dict，实际是 {type}",
        "wrong_keys": "输出 {name} 的键不对：{parts}",
        "missing_keys": "缺少 {keys}",
        "unexpected_keys": "多出 {keys}",
        "key_separator": "；",
        "not_equal": "输出 {name} 是 {got}；应为 {expected}",
        "not_numbers": "输出 {name} 不是数值数组：{got}",
        "wrong_shape": "输出 {name} 的形状是 {got}{note}；应为 {expected}",
        "transposed": "（转置了？）",
        "not_finite": "输出 {name} {shape} 有 {count} 个元素是 NaN 或无穷大，第一个位于 {first}",
        "wrong_number": "输出 {name} 是 {got:.6g}；应为 {expected:.6g}{ratio}",
        "number_ratio": "（期望值的 {ratio:.4g} 倍）",
        "wrong_entries": ("输出 {name}，形状 {shape}：{size} 个元素中有 {wrong} 个错误；最大误差为 {error:.3g}，"
                          "位于索引 {index}（期望 {expected:.6g}，实际 {got:.6g}），是 |{name}| 最大值的 "
                          "{relative:.1e}"),
        "wrong_rows": "；出错的行（第一个轴）：{rows}{more}",
        "common_ratio": "；每个元素都是期望值的 {ratio:.4g} 倍（少了或多了一个因子？）",
        "raised": "你的函数抛出了 {type}: {error}\n  {frame}",
        "exited": "你的函数调用了 sys.exit({code})；被评分的函数应当返回结果\n  {frame}",
        "frame": "{function} 的第 {line} 行：{source}",
        "too_long": "你的函数运行超过 {seconds:g} 秒，已被中止（死循环？）",
        "caught_interrupt": "；它捕获了中断后继续运行（循环里写了裸 except: 或 except BaseException:？）",
        "time_limit": "。时限由 check() 的 time_limit 参数设定",
        "note": "\n  注意：{note}",
        "no_limit": "没有时间限制：{why}",
        "no_timer": "本平台没有 SIGALRM 定时器",
        "not_main_thread": "check() 不在主线程中运行，而 Python 只把定时器信号（SIGALRM）交给主线程",
        "foreign_handler": "这里的 SIGALRM 由 Python 之外的代码处理，check() 不去改动它",
        "hint": "  提示：{hint}",
        "next_hint": "  下一级提示（{tier}）：hint({name!r}, {level})，或再改一次后重新检查",
        "tier_1": "思路",
        "tier_2": "公式的形式",
        "tier_3": "公式",
        "exercise": "{name}：{title}\n  讲解位置：{where}\n  要写的函数：{signature}\n\n{statement}\n\n提示：{hint}",
        "status_passed": "通过",
        "status_blank": "尚未编写",
        "status_failed": "未通过",
        "score": "{total} 个练习中通过了 {passed} 个",
        "no_exercise": "没有名为 {name!r} 的练习；现有的练习是：{names}",
        "bad_level": "提示级别必须是 1、2 或 3（{tiers}），实际是 {level!r}",
        "not_a_function": "check({name!r}, fn) 需要一个函数，实际是 {type}",
    },
}


def say(lang: str, key: str, **fields: object) -> str:
    """The message ``key`` in ``lang``, its fields filled in."""
    return MESSAGES[lang][key].format(**fields)


def speaker(lang: str | None = None) -> Callable[..., str]:
    """``say`` bound to a language: ``lang`` checked (one line naming a language npgpt does not
    speak), or, when None, :func:`npgpt.runtime.language.language` (NPGPT_LANG, or Chinese in
    notebooks/zh)."""
    chosen = language() if lang is None else check_language(lang)

    def bound(key: str, **fields: object) -> str:
        return say(chosen, key, **fields)
    bound.lang = chosen
    return bound
