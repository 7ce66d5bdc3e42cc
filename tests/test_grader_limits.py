"""The exercise grader against answers that misbehave (issue 28, item 5): an endless loop is stopped
by a time limit per call, a caller's own timeout or stop signal is the caller's and propagates,
right values returned as lists (any array-like) pass, and nothing a student's function raises --
sys.exit included -- escapes check().

The "endless" loops here end after some seconds of wall clock: far beyond every limit tested, so
they count as endless for the grader, yet a grader with no limit fails these tests instead of
hanging them."""
import math
import os
import signal
import sys
import threading
import time

import numpy as np
import pytest

from npgpt.checks import UsageError
from npgpt.exercises.grading import EXERCISES, TIME_LIMIT, check, solution
from npgpt.verify.gradcheck import check_op, gradcheck

pytestmark = pytest.mark.skipif(not hasattr(signal, "setitimer"), reason="the limit needs SIGALRM (POSIX)")
GRADIENT_EXERCISES = [name for name, exercise in EXERCISES.items()
                      if exercise.make_cases(np.random.default_rng(0))[0].gradcheck]


class Spinner:
    """A student's function that loops for ``seconds`` of wall clock, counting its calls."""

    def __init__(self, seconds: float, swallow: bool = False):
        self.seconds, self.swallow, self.calls = seconds, swallow, 0

    def __call__(self, *args):
        self.calls += 1
        end = time.monotonic() + self.seconds
        while time.monotonic() < end:
            if not self.swallow:
                continue
            try:
                while time.monotonic() < end:
                    pass
            except BaseException:   # a bare except: in a loop catches every interruption
                pass


@pytest.fixture(autouse=True)
def alarm_untouched():
    """Every test leaves SIGALRM's handler and timer as it found them."""
    handler = signal.getsignal(signal.SIGALRM)
    yield
    assert signal.getsignal(signal.SIGALRM) is handler
    assert signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)


@pytest.fixture
def callers_alarm():
    """Install a caller's own SIGALRM handler and timer (``arm(handler, delay, interval)``); undo both."""
    before = signal.getsignal(signal.SIGALRM)

    def arm(handler, delay, interval=0.0):
        signal.signal(signal.SIGALRM, handler)
        signal.setitimer(signal.ITIMER_REAL, delay, interval)
    yield arm
    signal.setitimer(signal.ITIMER_REAL, 0)
    signal.signal(signal.SIGALRM, before)


# ---------------------------------------------------------------------- the time limit
def test_an_endless_loop_is_stopped_by_the_default_limit_and_not_called_again():
    spinner = Spinner(60)
    result = check("gelu_backward", spinner, verbose=False)
    assert not result.passed
    assert f"your function took longer than {TIME_LIMIT:g} s" in result.message, result.message
    assert "hint: " in result.message
    assert spinner.calls == 1      # no second run for the gradient-check line


@pytest.mark.parametrize("name", ["layernorm_backward", "bpe_merge_step", "top_p_filter"])
def test_the_limit_is_a_keyword(name):
    spinner = Spinner(30)
    result = check(name, spinner, verbose=False, time_limit=0.2)
    assert not result.passed and "took longer than 0.2 s" in result.message, result.message
    assert spinner.calls == 1


def test_a_loop_that_catches_every_interruption_is_interrupted_again_and_reported():
    spinner = Spinner(2, swallow=True)
    result = check("softmax_backward", spinner, verbose=False, time_limit=0.2)
    assert not result.passed
    assert "took longer than 0.2 s" in result.message and "caught" in result.message, result.message


def test_no_limit_is_possible_and_a_bad_limit_is_refused():
    assert check("gelu_backward", solution("gelu_backward"), verbose=False, time_limit=None).passed
    for bad in (0, -1, math.nan, math.inf, "5", True):
        with pytest.raises(UsageError, match=r"time_limit must be .*got"):
            check("gelu_backward", solution("gelu_backward"), time_limit=bad)


def test_off_the_main_thread_the_check_runs_without_a_limit_and_says_so():
    results = []
    thread = threading.Thread(target=lambda: results.append(check("gelu_backward", solution("gelu_backward"),
                                                                   verbose=False, time_limit=0.5)))
    thread.start()
    thread.join()
    assert results[0].passed
    assert "no time limit" in results[0].message and "main thread" in results[0].message, results[0].message


# ---------------------------------------------------------------------- the caller's own timers and signals
class CallersTimeout(Exception):
    """What a caller's own alarm raises: not the student's error."""


def raise_callers_timeout(signum, frame):
    raise CallersTimeout("the caller's deadline")


def test_a_callers_earlier_alarm_propagates_and_the_function_is_not_called_again(callers_alarm):
    spinner = Spinner(10)
    callers_alarm(raise_callers_timeout, 0.3)
    with pytest.raises(CallersTimeout):
        check("layernorm_backward", spinner, verbose=False)     # the default limit comes after 0.3 s
    assert spinner.calls == 1


def test_a_callers_later_alarm_survives_the_limit(callers_alarm):
    callers_alarm(raise_callers_timeout, 600)
    result = check("gelu_backward", Spinner(30), verbose=False, time_limit=0.2)
    assert "took longer than 0.2 s" in result.message
    assert signal.getsignal(signal.SIGALRM) is raise_callers_timeout
    remaining, interval = signal.getitimer(signal.ITIMER_REAL)
    assert 0 < remaining <= 600 and interval == 0


def test_a_callers_ticking_timer_keeps_ticking_during_the_check(callers_alarm):
    ticks = []
    callers_alarm(lambda signum, frame: ticks.append(signum), 0.02, 0.02)
    result = check("gelu_backward", Spinner(30), verbose=False, time_limit=0.5)
    assert "took longer than 0.5 s" in result.message
    assert ticks, "the caller's handler was never called while the student's function ran"
    assert signal.getitimer(signal.ITIMER_REAL)[1] == pytest.approx(0.02)   # its interval is back


def test_a_callers_stop_signal_propagates():
    class CallersStop(Exception):
        pass

    def stop(signum, frame):
        raise CallersStop(signum)
    before = signal.signal(signal.SIGTERM, stop)
    spinner = Spinner(10)
    timer = threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGTERM))
    try:
        timer.start()
        with pytest.raises(CallersStop):
            check("layernorm_backward", spinner, verbose=False)
    finally:
        timer.cancel()
        signal.signal(signal.SIGTERM, before)
    assert spinner.calls == 1


def test_keyboard_interrupt_propagates():
    def interrupted(dout, cache):
        raise KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt):
        check("gelu_backward", interrupted, verbose=False)


# ---------------------------------------------------------------------- nothing escapes
@pytest.mark.parametrize("code, shown", [(3, "sys.exit(3)"), (None, "sys.exit()"),
                                         ("bye", "sys.exit('bye')")])
def test_sys_exit_is_feedback(code, shown):
    result = check("gelu_backward", lambda dout, cache: sys.exit(code), verbose=False)
    assert not result.passed and f"your function called {shown}" in result.message, result.message


class Unusual(BaseException):
    pass


@pytest.mark.parametrize("error", [GeneratorExit(), Unusual("odd"), RecursionError("deep"), MemoryError()])
def test_any_exception_is_feedback(error):
    def raises(probs, p):
        raise error
    result = check("top_p_filter", raises, verbose=False)
    assert not result.passed and f"your function raised {type(error).__name__}" in result.message


def test_an_error_on_the_gradient_checks_call_is_feedback():
    calls = []

    def only_once(dout, cache):
        calls.append(1)
        if len(calls) > 1:
            raise RuntimeError("only once")
        return solution("gelu_backward")(dout, cache)
    result = check("gelu_backward", only_once, verbose=False)
    assert not result.passed and "RuntimeError: only once" in result.message, result.message


# ---------------------------------------------------------------------- array-likes
def _as_lists(value):
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, dict):
        return {key: _as_lists(v) for key, v in value.items()}
    if isinstance(value, tuple) and not hasattr(value, "_fields"):
        return [_as_lists(v) for v in value]
    return value


@pytest.mark.parametrize("name", GRADIENT_EXERCISES)
def test_right_values_as_python_lists_pass(name):
    reference = solution(name)
    result = check(name, lambda *args: _as_lists(reference(*args)), verbose=False)
    assert result.passed, result.message


def test_values_numpy_cannot_read_are_reported_not_raised():
    result = check("gelu_backward", lambda dout, cache: [[1.0, 2.0], [3.0]], verbose=False)
    assert not result.passed and "output dx is not an array of numbers" in result.message, result.message
    result = check("bpe_encode_piece", lambda *args: [[1, 2], [3]], verbose=False)
    assert not result.passed and "output ids" in result.message, result.message


def test_gradcheck_takes_array_likes_and_names_what_it_cannot_read():
    params = {"w": np.array([1.0, -2.0, 0.5])}

    def loss():
        return float(np.sum(params["w"] ** 2))
    assert gradcheck(loss, params, {"w": [2.0, -4.0, 1.0]}).ok
    with pytest.raises(UsageError, match=r"gradient 'w' is not an array of numbers"):
        gradcheck(loss, params, {"w": ["a", "b", "c"]})
    with pytest.raises(UsageError, match=r"gradient 'w' is None"):
        gradcheck(loss, params, {"w": None})

    def forward(x, W):
        return x @ W, (x, W)

    def backward_as_list(dout, cache):
        x, W = cache
        return [(dout @ W.T).tolist(), (x.T @ dout).tolist()]
    rng = np.random.default_rng(0)
    inputs = {"x": rng.standard_normal((2, 3)), "W": rng.standard_normal((3, 4))}
    assert check_op(forward, backward_as_list, inputs, ["x", "W"]).ok
