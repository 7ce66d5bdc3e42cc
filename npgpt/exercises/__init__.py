"""Exercise mode (the article's §2-§4): write a piece of npgpt yourself and have it graded.

    from npgpt.exercises import ALL_EXERCISES, check, hint, solution
    check("layernorm_backward", my_layernorm_backward)
    hint("layernorm_backward", 2)      # 1 the idea, 2 the shape of the formula, 3 the formula
    check("layernorm_backward", my_layernorm_backward, lang="zh")   # 中文反馈, the same grading

:data:`ALL_EXERCISES` has every exercise; :data:`EXERCISES`, those notebooks/exercises.ipynb asks.
:mod:`.catalogue` holds the exercises as data (one entry each, beside its cases, with its texts in
English and Chinese); :mod:`.grading` grades an answer against its entry; :mod:`.messages` has every
sentence of the grader in both languages. The language is ``lang=`` when given, else
:func:`npgpt.runtime.language.language` (NPGPT_LANG, or Chinese in notebooks/zh).
"""
from .catalogue import ALL_EXERCISES, EXERCISES, Exercise, Texts
from .grading import CheckResult, check, hint, reset_hints, scoreboard, solution

__all__ = ["ALL_EXERCISES", "EXERCISES", "CheckResult", "Exercise", "Texts", "check", "hint", "reset_hints",
           "scoreboard", "solution"]
