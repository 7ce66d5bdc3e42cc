"""Exercise mode (the article's §2-§4): write a piece of npgpt yourself and have it graded.

    from npgpt.exercises import EXERCISES, check, solution
    check("layernorm_backward", my_layernorm_backward)

:mod:`.grading` holds the catalogue and the grader.
"""
from .grading import EXERCISES, CheckResult, Exercise, check, solution

__all__ = ["EXERCISES", "CheckResult", "Exercise", "check", "solution"]
