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
    check("layernorm_backward", my_function, lang="zh")  # the same grading, reported in Chinese

A failed check says which output is wrong, on which input shape, by how much and where, and gives
a hint: hints come in tiers (:func:`hint`: 1 the idea, 2 the shape of the formula, 3 the formula),
and each failed check of an exercise shows the next tier, so the formula comes last; a function not
written yet gets the idea only. Your function runs under a time limit per call (``check(..., time_limit=5.0)``
seconds, None for none): an endless loop is reported, not waited for. Whatever your function raises,
``sys.exit`` included, is reported too; a KeyboardInterrupt, or an exception raised by the caller's
own signal handler (a caller's timeout), is the caller's and propagates. Outputs may be anything
NumPy turns into an array (a list of lists passes).

Every message is in English or Chinese: ``lang=`` when given, else
:func:`npgpt.runtime.language.language` (``NPGPT_LANG``, or Chinese for a kernel in
``notebooks/zh``). The grading decides what to say, a key of :mod:`npgpt.exercises.messages` and its
numbers, on one code path for both languages; only ``say`` (a :func:`~npgpt.exercises.messages.speaker`)
turns it into words.

The reference of every exercise is the library function itself (or a two-line wrapper around it),
so an exercise cannot drift from the library. The exercises themselves, with
their cases, are the entries of :mod:`npgpt.exercises.catalogue`. ``notebooks/exercises.ipynb`` has
a cell per exercise; ``notebooks/04b_backward.ipynb`` derives every backward pass graded here.
"""
import copy
import inspect
import signal
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ..checks import UsageError, check_real
from ..verify.gradcheck import DEFAULT_TOLERANCE
from .catalogue import ALL_EXERCISES, EXERCISES, HINT_LEVELS, Exercise
from .messages import speaker

__all__ = ["ALL_EXERCISES", "EXERCISES", "CheckResult", "Exercise", "check", "hint", "reset_hints", "scoreboard",
           "solution"]

TOLERANCE = DEFAULT_TOLERANCE   # largest error allowed, relative to the largest |expected entry|
# Seconds one call of the student's function may take: every case is a few small arrays in plain
# NumPy (milliseconds even on a loaded machine), so a function still running after this is looping.
TIME_LIMIT = 5.0


@dataclass
class CheckResult:
    """What :func:`check` found: ``passed``, and a ``message`` saying why (printed by :func:`check`),
    in the language ``lang``; ``blank`` when the function is not written yet (it raised
    NotImplementedError)."""
    name: str
    passed: bool
    message: str
    blank: bool = False
    lang: str = "en"

    @property
    def status(self) -> str:
        """One word or three for a score table: passed, not written yet, FAILED (in ``lang``)."""
        return _status(self, speaker(self.lang))

    def __repr__(self):
        return f"CheckResult({self.name!r}, passed={self.passed})"


def solution(name: str) -> Callable:
    """The reference function of exercise ``name``: the library's own."""
    return _exercise(name, speaker()).reference


def hint(name: str, level: int = 1, lang: str | None = None) -> str:
    """Hint ``level`` of exercise ``name``: 1 the idea, 2 the shape of the formula, 3 the formula; in
    ``lang`` ("en" or "zh"; None: :func:`npgpt.runtime.language.language`)."""
    say = speaker(lang)
    exercise = _exercise(name, say)
    if isinstance(level, bool) or not isinstance(level, (int, np.integer)) or not 1 <= level <= len(HINT_LEVELS):
        raise UsageError(say("bad_level", tiers=", ".join(_tiers(say)), level=level))
    return exercise.texts(say.lang).hints[level - 1]


def scoreboard(results: dict[str, "CheckResult"], lang: str | None = None) -> str:
    """A score table of ``results`` ({name: CheckResult}): one line per exercise, its status, and
    how many passed, in ``lang`` (None: :func:`npgpt.runtime.language.language`)."""
    say = speaker(lang)
    lines = [f"{name:<28} {_status(result, say)}" for name, result in results.items()]
    score = say("score", passed=sum(r.passed for r in results.values()), total=len(results))
    return "\n".join([*lines, "", score])


def _status(result: CheckResult, say) -> str:
    return say("status_passed" if result.passed else "status_blank" if result.blank else "status_failed")


def _tiers(say) -> list[str]:
    return [say(f"tier_{level}") for level in range(1, len(HINT_LEVELS) + 1)]


# Failed attempts per exercise in this session: the n-th failed check shows hint tier n (at most the
# last), so the formula comes only after the idea and the shape did not help. A pass starts over.
_failed_attempts: dict[str, int] = {}


def reset_hints(name: str | None = None) -> None:
    """Forget the failed attempts of exercise ``name`` (all exercises when None): the next failed
    check shows the first hint again."""
    if name is None:
        _failed_attempts.clear()
    else:
        _failed_attempts.pop(_exercise(name, speaker()).name, None)


def _hint_lines(exercise: Exercise, failed: bool, say) -> list[str]:
    """The hint a check shows: tier 1 for a blank (not an attempt), tier n for the n-th failure, and
    an offer of the next tier."""
    level = 1
    if failed:
        level = _failed_attempts[exercise.name] = min(_failed_attempts.get(exercise.name, 0) + 1,
                                                        len(HINT_LEVELS))
    lines = [say("hint", hint=exercise.texts(say.lang).hints[level - 1])]
    if failed and level < len(HINT_LEVELS):
        lines.append(say("next_hint", tier=say(f"tier_{level + 1}"), name=exercise.name, level=level + 1))
    return lines


def _exercise(name, say):
    if name not in ALL_EXERCISES:
        raise UsageError(say("no_exercise", name=name, names=", ".join(ALL_EXERCISES)))
    return ALL_EXERCISES[name]


# ====================================================================== grading
def check(name: str, fn: Callable, verbose: bool = True,
          time_limit: float | None = TIME_LIMIT, lang: str | None = None) -> CheckResult:
    """Grade ``fn`` as exercise ``name``: on every case against the reference, and for a backward
    pass with the gradient checker. Each call of ``fn`` may take ``time_limit`` seconds (None: no
    limit; off the main thread there is none, and the message says so). Prints the message (unless
    ``verbose`` is False) and returns a :class:`CheckResult`. The message is in ``lang`` ("en" or
    "zh"; None: :func:`npgpt.runtime.language.language`, NPGPT_LANG or Chinese in notebooks/zh);
    the grading is the same in every language."""
    say = speaker(lang)
    exercise = _exercise(name, say)
    if not callable(fn):
        raise TypeError(say("not_a_function", name=name, type=type(fn).__name__))
    student = _Student(fn, _checked_limit(time_limit), say)
    passed, message, blank = _grade(exercise, student, say)
    if passed:
        _failed_attempts.pop(name, None)
    if student.note:
        message += say("note", note=student.note)
    result = CheckResult(name, passed, message, blank, say.lang)
    if verbose:
        print(message)
    return result


def _grade(exercise, student, say):
    """(passed, message, blank): the grading of ``student`` on every case; ``say`` words the message
    and decides nothing."""
    cases = exercise.make_cases(np.random.default_rng(0))
    worst_gradcheck = None
    for number, case in enumerate(cases, 1):
        where = say("case", number=number, total=len(cases), label=exercise.label(case, say.lang))
        args = copy.deepcopy(case.args)
        try:
            got = student(*args)
        except _Fault as fault:   # the student's error, reported rather than raised
            if fault.blank:
                return False, "\n".join([say("blank", name=exercise.name),
                                         say("write", signature=exercise.signature),
                                         *_hint_lines(exercise, False, say)]), True
            return False, _failure(exercise, where, fault.problem, None, None, case, say), False
        changed = _changed_arguments(exercise, case.args, args)
        expected = exercise.reference(*copy.deepcopy(case.args))
        problem, right = _compare_outputs(exercise, expected, got, say)
        if problem is None and changed:
            problem = say("changed_many" if len(changed) > 1 else "changed_one", names=", ".join(changed))
        if problem is not None:
            return False, _failure(exercise, where, problem, right, student, case, say), False
        if case.gradcheck is not None:
            try:
                report = case.gradcheck(student)
            except _Fault as fault:     # right the first time, wrong when the gradient check calls it
                again = say("called_again", problem=fault.problem)
                return False, _failure(exercise, where, again, None, None, case, say), False
            if not report.ok:
                # equal to the reference on this case's upstream gradient, wrong on the checker's
                # (a function that ignores dloss is right when dloss = 1)
                return False, _failure(exercise, where, say("ignores_upstream"), None, student, case, say), False
            worst_gradcheck = max(worst_gradcheck or 0.0, report.max_rel_error)
    summary = say("passed", name=exercise.name, total=len(cases))
    if worst_gradcheck is not None:
        summary += say("passed_gradcheck", worst=worst_gradcheck, tolerance=TOLERANCE)
    labels = say("case_separator").join(exercise.label(c, say.lang) for c in cases)
    return True, summary + say("cases", labels=labels), False


def _failure(exercise, where, problem, right, student, case, say):
    """The report of a failed case. ``student`` is None when the function did not return (it raised
    or ran out of time): then it is not called again for the gradient check's line."""
    lines = [say("failed", name=exercise.name, where=where), f"  {problem}"]
    if right:
        lines.append(say("right", names=", ".join(right)))
    if case.gradcheck is not None and student is not None:
        lines.append("  " + _gradcheck_line(case, student, say))
    lines += _hint_lines(exercise, True, say)
    return "\n".join(lines)


def _gradcheck_line(case, student, say):
    """The gradient checker's verdict on the student's function, in one line."""
    try:
        report = case.gradcheck(student)
    except _Fault as fault:
        return say("gradcheck_not_run", problem=fault.problem.splitlines()[0])
    except Exception as err:        # what the function returned broke the check: say so
        if _raised_by_signal_handler(err):
            raise
        return say("gradcheck_not_run", problem=f"{type(err).__name__}: {err}")
    fail = say("gradcheck_fail")
    verdicts = ", ".join(f"{row.name} {row.rel_error:.1e}{'' if row.rel_error <= report.tolerance else fail}"
                         for row in report.rows)
    return say("gradcheck", tolerance=report.tolerance, verdicts=verdicts)


# ====================================================================== running the student's function
class _Fault(Exception):
    """What the student's function did wrong on one call: ``problem``, a sentence of the report;
    ``blank`` when it raised NotImplementedError (not written yet)."""

    def __init__(self, problem: str, blank: bool = False):
        super().__init__(problem)
        self.problem, self.blank = problem, blank


class _TimeUp(BaseException):
    """Raised into the student's function when its time is up. A BaseException, so that the
    student's ``except Exception:`` does not catch it."""


def _checked_limit(seconds: object) -> float | None:
    return None if seconds is None else check_real("time_limit", seconds, low=0.0, low_open=True)


def _why_no_limit() -> str | None:
    """Why a limit cannot be set here (a key of :data:`~npgpt.exercises.messages.MESSAGES`), or None
    when it can."""
    if not hasattr(signal, "setitimer"):
        return "no_timer"
    if threading.current_thread() is not threading.main_thread():
        # Python runs signal handlers in the main thread only, and a thread cannot be stopped from
        # outside: a limit would leave an endless loop spinning behind a verdict.
        return "not_main_thread"
    if signal.getsignal(signal.SIGALRM) is None:
        return "foreign_handler"
    return None


class _Student:
    """The student's function, called under the time limit. Whatever goes wrong in it becomes a
    :class:`_Fault`, except what is the caller's: a KeyboardInterrupt, or an exception raised by
    one of the caller's signal handlers (their own timeout, a stop request), which propagates."""

    def __init__(self, fn: Callable, seconds: float | None, say):
        self.fn, self.seconds, self.note, self.say = fn, seconds, None, say
        if seconds is not None and (why := _why_no_limit()):
            self.seconds, self.note = None, say("no_limit", why=say(why))

    def __call__(self, *args):
        alarm = _Alarm(self.seconds)
        try:
            result = alarm.run(self.fn, args)
        except KeyboardInterrupt:
            raise
        except BaseException as err:   # SystemExit and GeneratorExit too: the student's
            if alarm.fired:            # _TimeUp, or what the student raised on catching it
                raise _Fault(self._too_long(alarm)) from None
            if _raised_by_signal_handler(err):
                raise
            raise _Fault(_raised(err, self.say), blank=isinstance(err, NotImplementedError)) from err
        if alarm.fired:
            raise _Fault(self._too_long(alarm))
        return result

    def _too_long(self, alarm: "_Alarm") -> str:
        text = self.say("too_long", seconds=self.seconds)
        if alarm.fired > 1 or alarm.returned:
            text += self.say("caught_interrupt")
        return text + self.say("time_limit")


def _raised(err: BaseException, say) -> str:
    if isinstance(err, SystemExit):
        code = "" if err.code is None else repr(err.code)
        return say("exited", code=code, frame=_last_frame(err, say))
    return say("raised", type=type(err).__name__, error=err, frame=_last_frame(err, say))


def _raised_by_signal_handler(err: BaseException) -> bool:
    """Whether ``err``, or an exception it was raised while handling, came out of a Python signal
    handler installed now: the caller's timeout or stop request, not the student's error."""
    codes = {getattr(handler, "__code__", None) for handler in map(signal.getsignal, signal.valid_signals())}
    codes.discard(None)
    seen = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        tb = err.__traceback__
        while tb is not None:
            if tb.tb_frame.f_code in codes:
                return True
            tb = tb.tb_next
        err = err.__cause__ or err.__context__
    return False


class _Alarm:
    """A limit of ``seconds`` on one call, by SIGALRM. A caller's own timer is kept: its handler
    still runs when it is due (and its exception propagates), and it goes on after the call.

    A handler runs between two Python bytecodes, so a long NumPy call is stopped once it returns.
    After the limit the alarm comes again every :data:`AGAIN` seconds, because the student's code
    may catch it; the code of this module (around the call) is never interrupted."""
    AGAIN = 0.1

    def __init__(self, seconds: float | None):
        self.seconds = seconds
        self.fired = 0            # times _TimeUp was raised into the student's code
        self.returned = False     # the call returned (after fired > 0: it caught _TimeUp)
        self.active = False

    def run(self, fn: Callable, args: tuple):
        if self.seconds is None:
            return fn(*args)
        self._install()
        try:
            result = fn(*args)
            self.returned = True
            return result
        finally:
            self._uninstall()

    def _install(self) -> None:
        now = time.monotonic()
        self.caller_handler = signal.signal(signal.SIGALRM, self._on_alarm)
        delay, self.caller_interval = signal.setitimer(signal.ITIMER_REAL, 0)
        self.caller_due = now + delay if delay > 0 else None
        self.due = now + self.seconds
        self.active = True
        self._arm(now)

    def _uninstall(self) -> None:
        if not self.active:
            return
        self.active = False       # from here on, an alarm already on its way does nothing
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, self.caller_handler)
        if self.caller_due is not None:   # the caller's timer goes on with what was left of it
            left = max(self.caller_due - time.monotonic(), 1e-4)
            signal.setitimer(signal.ITIMER_REAL, left, self.caller_interval)

    def _arm(self, now: float) -> None:
        """Wake at the first due time: ours or the caller's."""
        due = self.due if self.caller_due is None else min(self.due, self.caller_due)
        signal.setitimer(signal.ITIMER_REAL, max(due - now, 1e-4))

    def _on_alarm(self, signum, frame) -> None:
        if not self.active:
            return
        now = time.monotonic()
        if frame is not None and frame.f_globals.get("__name__") == __name__:
            # between this module's lines just before or after the call: raising here would skip
            # the restoring of the caller's handler, so come back in a moment
            signal.setitimer(signal.ITIMER_REAL, 1e-3)
        elif self.caller_due is not None and now >= self.caller_due:
            self.caller_due = now + self.caller_interval if self.caller_interval else None
            self._arm(now)
            self._callers_alarm(signum, frame)
        elif now >= self.due:
            self.fired += 1
            self.due = now + self.AGAIN
            self._arm(now)
            raise _TimeUp
        else:
            self._arm(now)

    def _callers_alarm(self, signum, frame) -> None:
        """What the caller's SIGALRM would have done without us."""
        handler = self.caller_handler
        if callable(handler):
            handler(signum, frame)          # the caller's exception, if any, propagates
        elif handler == signal.SIG_DFL:     # the default action ends the process
            self._uninstall()
            signal.raise_signal(signal.SIGALRM)


def _last_frame(err, say):
    frames = traceback.extract_tb(err.__traceback__)
    if not frames:
        return ""
    frame = frames[-1]
    return say("frame", line=frame.lineno, function=frame.name, source=frame.line)


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


def _compare_outputs(exercise, expected, got, say):
    """(None, names of right outputs) when ``got`` matches ``expected``; else (what is wrong, the
    outputs that are right)."""
    names = exercise.outputs
    if len(names) == 1:
        expected, got = (expected,), (got,)
    elif not isinstance(got, (tuple, list)) or len(got) != len(names):
        what = say("returned_sequence", type=type(got).__name__, length=len(got)) \
            if isinstance(got, (tuple, list)) else say("returned_other", type=type(got).__name__)
        return say("wrong_structure", what=what, count=len(names), names=", ".join(names)), None
    right, wrong = [], []
    for name, e, g in zip(names, expected, got):
        problem = _compare(name, e, g, exercise.exact, say)
        (right if problem is None else wrong).append(name if problem is None else problem)
    if not wrong:
        return None, right
    return "\n  ".join(wrong), right


def _compare(name, expected, got, exact, say):
    if expected is None:
        return None if got is None else say("should_be_none", name=name, type=type(got).__name__)
    if got is None:
        return say("is_none", name=name, what=_describe(expected, say))
    if isinstance(expected, dict):
        if not isinstance(got, dict):
            return say("should_be_dict", name=name, type=type(got).__name__)
        missing, extra = sorted(set(expected) - set(got)), sorted(set(got) - set(expected))
        if missing or extra:
            parts = [say("missing_keys", keys=missing)] if missing else []
            parts += [say("unexpected_keys", keys=extra)] if extra else []
            return say("wrong_keys", name=name, parts=say("key_separator").join(parts))
        problems = [p for key in expected
                    if (p := _compare(f"{name}[{key!r}]", expected[key], got[key], exact, say))]
        return "\n  ".join(problems) if problems else None
    if exact or not _is_float_array(expected):
        return None if _exact_equal(expected, got) else \
            say("not_equal", name=name, got=_short(got), expected=_short(expected))
    return _compare_arrays(name, np.asarray(expected), got, say)


def _is_float_array(value):
    return isinstance(value, (float, np.floating)) or (isinstance(value, np.ndarray) and value.dtype.kind == "f")


def _exact_equal(expected, got):
    if isinstance(expected, np.ndarray) or isinstance(got, np.ndarray):
        try:
            return np.shape(expected) == np.shape(got) and np.array_equal(expected, got)
        except ValueError:          # a ragged list (rows of different lengths) has no shape
            return False
    if isinstance(expected, (tuple, list)):
        return isinstance(got, (tuple, list)) and len(got) == len(expected) and \
            all(_exact_equal(e, g) for e, g in zip(expected, got))
    return type(got) is not bool and got == expected


def _compare_arrays(name, expected, got, say):
    try:
        got = np.asarray(got, dtype=np.float64)
    except (TypeError, ValueError):
        return say("not_numbers", name=name, got=_short(got))
    if got.shape != expected.shape:
        note = say("transposed") if got.shape == expected.shape[::-1] and got.ndim > 1 else ""
        return say("wrong_shape", name=name, got=got.shape, note=note, expected=expected.shape)
    if not np.all(np.isfinite(got)):
        bad = np.argwhere(~np.isfinite(got))
        return say("not_finite", name=name, shape=got.shape, count=len(bad), first=tuple(bad[0]))
    error = np.abs(got - expected)
    scale = max(float(np.max(np.abs(expected))) if expected.size else 0.0, 1e-12)
    if error.size == 0 or error.max() <= TOLERANCE * scale:
        return None
    if expected.ndim == 0:      # a number: its value and the ratio say it all (a ratio is always "common")
        ratio = say("number_ratio", ratio=float(got) / float(expected)) if expected != 0 else ""
        return say("wrong_number", name=name, got=float(got), expected=float(expected), ratio=ratio)
    worst = np.unravel_index(np.argmax(error), error.shape)
    n_wrong = int(np.count_nonzero(error > TOLERANCE * scale))
    message = say("wrong_entries", name=name, shape=expected.shape, wrong=n_wrong, size=error.size,
                  error=error[worst], index=tuple(int(i) for i in worst), expected=expected[worst],
                  got=got[worst], relative=error[worst] / scale)
    if expected.ndim >= 2:
        rows = np.unique(np.argwhere(error > TOLERANCE * scale)[:, 0])
        if len(rows) < expected.shape[0]:
            message += say("wrong_rows", rows=rows[:10].tolist(), more=" ..." if len(rows) > 10 else "")
    ratio = _common_ratio(expected, got)
    if ratio is not None:
        message += say("common_ratio", ratio=ratio)
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


def _describe(value, say):
    if isinstance(value, np.ndarray):
        return say("an_array", shape=value.shape)
    return say("a_value", type=type(value).__name__)


def _short(value, limit=160):
    text = np.array2string(value, precision=4, threshold=20) if isinstance(value, np.ndarray) else repr(value)
    return text if len(text) <= limit else text[:limit] + " ..."

