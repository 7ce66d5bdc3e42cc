r"""Exercise mode's grader: write a piece of npgpt yourself and have it graded.

Each exercise is one function of the library: a backward pass of :mod:`npgpt.ops`, a BPE step, the
top-p filter, a step of cached attention, the LSTM cell's backward. You write a function with the same
signature, and :func:`check` grades it two ways:

* **against the reference**, the library's own function, on several shapes (edge cases included:
  repeated ids, one position, no bias, ignored targets, ties), and
* **with the gradient checker**, for a backward pass: central differences of the op's forward, in
  float64 (:func:`npgpt.gradcheck`), which needs no reference at all.

::

    from npgpt.exercises.grading import EXERCISES, check, solution
    print(EXERCISES["layernorm_backward"])               # what to write, the signature, a hint
    result = check("layernorm_backward", my_function)    # prints the verdict
    result.passed, result.message
    solution("layernorm_backward")                       # the reference: npgpt.ops.layernorm_backward

A failed check says which output is wrong, on which input shape, by how much and where, and gives
the exercise's hint. The reference of every exercise is the library function itself (or a two-line
wrapper around it), so an exercise cannot drift from the library. The exercises themselves, with
their cases, are the entries of :mod:`npgpt.exercises.catalogue`. ``notebooks/exercises.ipynb`` has
a cell per exercise; ``notebooks/04b_backward.ipynb`` derives every backward pass graded here.
"""
import copy
import inspect
import traceback
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ..checks import UsageError
from ..verify.gradcheck import DEFAULT_TOLERANCE
from .catalogue import EXERCISES, Exercise

__all__ = ["EXERCISES", "CheckResult", "Exercise", "check", "solution"]

TOLERANCE = DEFAULT_TOLERANCE   # largest error allowed, relative to the largest |expected entry|


@dataclass
class CheckResult:
    """What :func:`check` found: ``passed``, and a ``message`` saying why (printed by :func:`check`)."""
    name: str
    passed: bool
    message: str

    def __repr__(self):
        return f"CheckResult({self.name!r}, passed={self.passed})"


def solution(name: str) -> Callable:
    """The reference function of exercise ``name``: the library's own."""
    return _exercise(name).reference


def _exercise(name):
    if name not in EXERCISES:
        raise UsageError(f"no exercise named {name!r}; the exercises are: {', '.join(EXERCISES)}")
    return EXERCISES[name]


# ====================================================================== grading
def check(name: str, fn: Callable, verbose: bool = True) -> CheckResult:
    """Grade ``fn`` as exercise ``name``: on every case against the reference, and for a backward
    pass with the gradient checker. Prints the message (unless ``verbose`` is False) and returns a
    :class:`CheckResult`."""
    exercise = _exercise(name)
    if not callable(fn):
        raise TypeError(f"check({name!r}, fn) needs a function, got {type(fn).__name__}")
    passed, message = _grade(exercise, fn)
    result = CheckResult(name, passed, message)
    if verbose:
        print(message)
    return result


def _grade(exercise, fn):
    cases = exercise.make_cases(np.random.default_rng(0))
    worst_gradcheck = None
    for number, case in enumerate(cases, 1):
        where = f"case {number} of {len(cases)} ({case.label})"
        args = copy.deepcopy(case.args)
        try:
            got = fn(*args)
        except NotImplementedError:
            return False, (f"{exercise.name}: not written yet (it raises NotImplementedError).\n"
                           f"  write: {exercise.signature}\n  hint: {exercise.hint}")
        except Exception as err:   # the student's error, reported rather than raised
            return False, _failure(exercise, where, f"your function raised {type(err).__name__}: {err}\n"
                                                    f"  {_last_frame(err)}", None, fn, case)
        changed = _changed_arguments(exercise, case.args, args)
        expected = exercise.reference(*copy.deepcopy(case.args))
        problem, right = _compare_outputs(exercise, expected, got)
        if problem is None and changed:
            problem = (f"your function changed its argument{'s' if len(changed) > 1 else ''} "
                       f"{', '.join(changed)} in place; the library's functions are pure (the caller "
                       f"may use that array again: a residual connection sends dout down two roads)")
        if problem is not None:
            return False, _failure(exercise, where, problem, right, fn, case)
        if case.gradcheck is not None:
            report = case.gradcheck(fn)
            if not report.ok:      # equal to the reference yet not the gradient: the reference is wrong
                return False, _failure(exercise, where, "the outputs equal the reference, but the gradient "
                                       "check fails (please report this)", None, fn, case)
            worst_gradcheck = max(worst_gradcheck or 0.0, report.max_rel_error)
    summary = f"{exercise.name}: passed on all {len(cases)} cases"
    if worst_gradcheck is not None:
        summary += (f"; gradient check against central differences (float64): worst relative error "
                    f"{worst_gradcheck:.1e}, tolerance {TOLERANCE:g}")
    return True, summary + "\n  cases: " + "; ".join(c.label for c in cases)


def _failure(exercise, where, problem, right, fn, case):
    lines = [f"{exercise.name}: FAILED on {where}", f"  {problem}"]
    if right:
        lines.append(f"  right: {', '.join(right)}")
    if case.gradcheck is not None:
        lines.append("  " + _gradcheck_line(case, fn))
    lines.append(f"  hint: {exercise.hint}")
    return "\n".join(lines)


def _gradcheck_line(case, fn):
    """The gradient checker's verdict on the student's function, in one line."""
    try:
        report = case.gradcheck(fn)
    except Exception as err:
        return f"gradient check could not run: {type(err).__name__}: {err}"
    verdicts = ", ".join(f"{row.name} {row.rel_error:.1e}{'' if row.rel_error <= report.tolerance else ' FAIL'}"
                         for row in report.rows)
    return (f"gradient check against central differences (float64, relative error per input, tolerance "
            f"{report.tolerance:g}): {verdicts}")


def _last_frame(err):
    frames = traceback.extract_tb(err.__traceback__)
    if not frames:
        return ""
    frame = frames[-1]
    return f"at line {frame.lineno} of {frame.name}: {frame.line}"


def _changed_arguments(exercise, before, after):
    names = list(inspect.signature(exercise.reference).parameters)
    return [names[i] if i < len(names) else f"argument {i}" for i, (a, b) in enumerate(zip(before, after))
            if not _same(a, b)]


def _same(a, b):
    """Equal values, recursively (arrays compared entry by entry, NaN equal to NaN)."""
    if isinstance(a, np.ndarray):
        return isinstance(b, np.ndarray) and a.shape == b.shape and np.array_equal(a, b, equal_nan=True)
    if isinstance(a, (tuple, list)):
        return isinstance(b, (tuple, list)) and len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    return True   # scalars, None, bytes: passed by value or immutable


def _compare_outputs(exercise, expected, got):
    """(None, names of right outputs) when ``got`` matches ``expected``; else (what is wrong, the
    outputs that are right)."""
    names = exercise.outputs
    if len(names) == 1:
        expected, got = (expected,), (got,)
    elif not isinstance(got, (tuple, list)) or len(got) != len(names):
        what = f"a {type(got).__name__} of length {len(got)}" if isinstance(got, (tuple, list)) else \
            f"a {type(got).__name__}"
        return f"returned {what}; expected a tuple of {len(names)}: ({', '.join(names)})", None
    right, wrong = [], []
    for name, e, g in zip(names, expected, got):
        problem = _compare(name, e, g, exercise.exact)
        (right if problem is None else wrong).append(name if problem is None else problem)
    if not wrong:
        return None, right
    return "\n  ".join(wrong), right


def _compare(name, expected, got, exact):
    if expected is None:
        return None if got is None else (f"output {name} should be None (this case has no bias), "
                                         f"got {type(got).__name__}")
    if got is None:
        return f"output {name} is None; expected {_describe(expected)}"
    if isinstance(expected, dict):
        if not isinstance(got, dict):
            return f"output {name} should be a dict, got {type(got).__name__}"
        missing, extra = sorted(set(expected) - set(got)), sorted(set(got) - set(expected))
        if missing or extra:
            return (f"output {name} has the wrong keys: " + "; ".join(
                part for part in (f"missing {missing}" if missing else "", f"unexpected {extra}" if extra else "")
                if part))
        problems = [p for key in expected if (p := _compare(f"{name}[{key!r}]", expected[key], got[key], exact))]
        return "\n  ".join(problems) if problems else None
    if exact or not _is_float_array(expected):
        return None if _exact_equal(expected, got) else \
            f"output {name} is {_short(got)}; expected {_short(expected)}"
    return _compare_arrays(name, np.asarray(expected), got)


def _is_float_array(value):
    return isinstance(value, (float, np.floating)) or (isinstance(value, np.ndarray) and value.dtype.kind == "f")


def _exact_equal(expected, got):
    if isinstance(expected, np.ndarray) or isinstance(got, np.ndarray):
        return np.shape(expected) == np.shape(got) and np.array_equal(expected, got)
    if isinstance(expected, (tuple, list)):
        return isinstance(got, (tuple, list)) and len(got) == len(expected) and \
            all(_exact_equal(e, g) for e, g in zip(expected, got))
    return type(got) is not bool and got == expected


def _compare_arrays(name, expected, got):
    try:
        got = np.asarray(got, dtype=np.float64)
    except (TypeError, ValueError):
        return f"output {name} is not an array of numbers: {_short(got)}"
    if got.shape != expected.shape:
        note = " (transposed?)" if got.shape == expected.shape[::-1] and got.ndim > 1 else ""
        return f"output {name} has shape {got.shape}{note}; expected {expected.shape}"
    if not np.all(np.isfinite(got)):
        bad = np.argwhere(~np.isfinite(got))
        return f"output {name} {got.shape} has {len(bad)} NaN or infinite entries, the first at {tuple(bad[0])}"
    error = np.abs(got - expected)
    scale = max(float(np.max(np.abs(expected))) if expected.size else 0.0, 1e-12)
    if error.size == 0 or error.max() <= TOLERANCE * scale:
        return None
    worst = np.unravel_index(np.argmax(error), error.shape)
    n_wrong = int(np.count_nonzero(error > TOLERANCE * scale))
    message = (f"output {name}, shape {expected.shape}: {n_wrong} of {error.size} entries wrong; the largest "
               f"error is {error[worst]:.3g} at index {tuple(int(i) for i in worst)} (expected "
               f"{expected[worst]:.6g}, got {got[worst]:.6g}), {error[worst] / scale:.1e} of the largest "
               f"|{name}|")
    if expected.ndim >= 2:
        rows = np.unique(np.argwhere(error > TOLERANCE * scale)[:, 0])
        if len(rows) < expected.shape[0]:
            message += f"; wrong rows (first axis): {rows[:10].tolist()}{' ...' if len(rows) > 10 else ''}"
    ratio = _common_ratio(expected, got)
    if ratio is not None:
        message += f"; every entry is {ratio:.4g} x the expected one (a missing or extra factor?)"
    return message


def _common_ratio(expected, got):
    """The constant c with got = c * expected, if there is one (and it is not 1)."""
    big = np.abs(expected) > 1e-8 * np.max(np.abs(expected))
    if not big.any():
        return None
    ratios = got[big] / expected[big]
    c = float(np.median(ratios))
    if abs(c - 1.0) > 1e-6 and np.allclose(got, c * expected, rtol=1e-6, atol=1e-12):
        return c
    return None


def _describe(value):
    if isinstance(value, np.ndarray):
        return f"an array of shape {value.shape}"
    return f"a {type(value).__name__}"


def _short(value, limit=160):
    text = np.array2string(value, precision=4, threshold=20) if isinstance(value, np.ndarray) else repr(value)
    return text if len(text) <= limit else text[:limit] + " ..."

