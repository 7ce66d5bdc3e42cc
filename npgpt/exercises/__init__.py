"""Exercise mode (the article's §2-§4): write a piece of npgpt yourself and have it graded.

    from npgpt.exercises import ALL_EXERCISES, check, hint, solution
    check("layernorm_backward", my_layernorm_backward)
    hint("layernorm_backward", 2)      # 1 the idea, 2 the shape of the formula, 3 the formula

:data:`ALL_EXERCISES` has every exercise; :data:`EXERCISES`, those notebooks/exercises.ipynb asks.
:mod:`.catalogue` holds the exercises as data (one entry each, beside its cases); :mod:`.grading`
grades an answer against its entry.
"""
from .catalogue import ALL_EXERCISES, EXERCISES, Exercise
from .grading import CheckResult, check, hint, reset_hints, solution

__all__ = ["ALL_EXERCISES", "EXERCISES", "CheckResult", "Exercise", "check", "hint", "reset_hints",
           "solution"]
