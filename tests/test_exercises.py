"""Exercise mode (npgpt/exercises/ and notebooks/exercises.ipynb): every reference passes, a wrong
answer fails with a message that says what is wrong, and the notebook's blanks, filled with the
reference solutions, pass when the notebook runs."""
import ast
import importlib.util
import inspect
import os
import re
from pathlib import Path

import nbformat
import numpy as np
import pytest

from npgpt.checks import UsageError
from npgpt.exercises import catalogue, hint, reset_hints
from npgpt.exercises.grading import ALL_EXERCISES, EXERCISES, CheckResult, check, solution

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "notebooks" / "exercises.ipynb"
NAMES = list(ALL_EXERCISES)      # every exercise
IN_NOTEBOOK = list(EXERCISES)    # those the notebook has a cell for
SINGLE_THREADED = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "NUMBA_NUM_THREADS": "1"}


def _load_build():
    """notebooks/build.py, imported by path (as tests/test_notebooks.py does)."""
    spec = importlib.util.spec_from_file_location("npgpt_notebooks_build", ROOT / "notebooks" / "build.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(autouse=True)
def fresh_hints():
    """Each test starts with no failed attempts (the hint tier a failure shows depends on them)."""
    reset_hints()
    yield
    reset_hints()


def test_there_are_at_least_26_exercises_each_with_a_statement_and_three_hints():
    assert len(ALL_EXERCISES) >= 26
    for name, exercise in ALL_EXERCISES.items():
        assert exercise.name == name and exercise.statement and exercise.where
        assert len(exercise.hints) == 3 and len(set(exercise.hints)) == 3 and all(exercise.hints)
        # what the statement shows is the idea, never the formula
        assert name in str(exercise) and exercise.hint in str(exercise) and exercise.hints[2] not in str(exercise)


@pytest.mark.parametrize("name", NAMES)
def test_a_blank_gets_the_idea_never_the_formula(name):
    def blank(*args):
        raise NotImplementedError

    for _ in range(3):        # a blank is not an attempt: checking it again gives no more
        message = check(name, blank, verbose=False).message
        assert message.startswith(f"{name}: not written yet")
        assert "hint: " + hint(name, 1) in message
        assert hint(name, 2) not in message and hint(name, 3) not in message


def test_each_failed_attempt_shows_the_next_tier_and_a_pass_starts_over():
    def wrong(dout, s):
        return s * dout

    messages = [check("softmax_backward", wrong, verbose=False).message for _ in range(4)]
    for level, message in zip((1, 2, 3, 3), messages):
        assert "hint: " + hint("softmax_backward", level) in message, (level, message)
        others = {1, 2, 3} - {level}
        assert not any(hint("softmax_backward", k) in message for k in others), (level, message)
    assert "the next hint (the shape of the formula): hint('softmax_backward', 2)" in messages[0]
    assert "the next hint (the formula): hint('softmax_backward', 3)" in messages[1]
    assert "the next hint" not in messages[2]
    # the tiers are per exercise, and a pass forgets the failures
    assert "hint: " + hint("gelu_backward", 1) in check("gelu_backward", lambda d, c: d, verbose=False).message
    assert check("softmax_backward", solution("softmax_backward"), verbose=False).passed
    assert "hint: " + hint("softmax_backward", 1) in check("softmax_backward", wrong, verbose=False).message


def test_hint_levels():
    for name, exercise in ALL_EXERCISES.items():
        assert hint(name) == hint(name, 1) == exercise.hint
        assert [hint(name, k) for k in (1, 2, 3)] == list(exercise.hints)
    for bad in (0, 4, 1.5, "2", True):
        with pytest.raises(UsageError, match=r"hint level must be 1, 2 or 3 \(the idea, the shape of the formula, "
                                             r"the formula\), got"):
            hint("gelu_backward", bad)
    with pytest.raises(UsageError, match="no exercise named 'gelu'"):
        hint("gelu")


@pytest.mark.parametrize("name", NAMES)
def test_the_signature_shown_is_the_reference_signature(name):
    exercise = ALL_EXERCISES[name]
    shown = re.match(r"(\w+)\((.*?)\)", exercise.signature)
    assert shown.group(1) == name
    required = [n for n, p in inspect.signature(exercise.reference).parameters.items() if p.default is p.empty]
    assert [a.strip() for a in shown.group(2).split(",")] == required


@pytest.mark.parametrize("name", NAMES)
def test_the_reference_solution_passes(name):
    result = check(name, solution(name), verbose=False)
    assert isinstance(result, CheckResult)
    assert result.passed, result.message
    assert result.message.startswith(f"{name}: passed on all")


def _perturbed(name):
    """The reference with one entry of its first output changed: a solution that is nearly right."""
    reference = solution(name)

    def nudge(value):
        if isinstance(value, dict):
            key = next(iter(value))
            return {**value, key: nudge(value[key])}
        if isinstance(value, np.ndarray) and value.dtype.kind == "f":
            value = value.copy()
            value.reshape(-1)[0] += 1e-3 * (1.0 + np.abs(value).max())
            return value
        if isinstance(value, tuple) and name == "bpe_merge_step":
            return (value[1], value[0])
        if isinstance(value, (int, float, np.integer, np.floating)):
            return value + 1e-3 * (1.0 + abs(value))
        return [*value, 0]

    def wrong(*args):
        out = reference(*args)
        if len(ALL_EXERCISES[name].outputs) == 1:
            return nudge(out)
        return (nudge(out[0]), *out[1:])
    return wrong


@pytest.mark.parametrize("name", NAMES)
def test_a_nearly_right_solution_fails_naming_the_output(name):
    result = check(name, _perturbed(name), verbose=False)
    first_output = ALL_EXERCISES[name].outputs[0]
    assert not result.passed
    assert f"{name}: FAILED on case 1 of" in result.message
    assert f"output {first_output}" in result.message, result.message
    assert "hint: " + ALL_EXERCISES[name].hint in result.message


def test_the_message_says_which_output_how_much_where_and_on_which_shape():
    def forgets_the_mean(dout, cache):       # LayerNorm without the -mean(g) term
        xhat, rstd, w, has_bias = cache
        g = dout * w
        C = w.shape[0]
        return (rstd * (g - xhat * (g * xhat).mean(-1, keepdims=True)), (dout * xhat).reshape(-1, C).sum(0),
                dout.reshape(-1, C).sum(0) if has_bias else None)

    message = check("layernorm_backward", forgets_the_mean, verbose=False).message
    assert "FAILED on case 1 of 3 (x (2, 3, 5), with bias)" in message
    assert re.search(r"output dx, shape \(2, 3, 5\): 30 of 30 entries wrong; the largest error is [\d.]+ at "
                     r"index \(\d, \d, \d\) \(expected -?[\d.]+, got -?[\d.]+\)", message), message
    assert "right: dw, db" in message
    assert re.search(r"gradient check .*: x [\d.e+-]+ FAIL, w [\d.e+-]+, b [\d.e+-]+\n", message), message


def test_an_embedding_backward_that_drops_repeats_fails():
    def assigns(dout, cache):
        idx, shape = cache
        dW = np.zeros(shape)
        dW[idx] += dout                          # fancy-index assignment: repeats overwrite
        return dW

    result = check("embedding_backward", assigns, verbose=False)
    assert not result.passed and "output dW, shape (4, 3)" in result.message and "np.add.at" not in result.message
    check("embedding_backward", assigns, verbose=False)
    assert "np.add.at" in check("embedding_backward", assigns, verbose=False).message    # the third tier


def test_the_diagonal_only_softmax_backward_fails():
    result = check("softmax_backward", lambda dout, s: s * dout, verbose=False)
    assert not result.passed and "output dz" in result.message and "z 6" in result.message


def test_a_missing_factor_is_named():
    def unscaled(dy, cache):
        return solution("attention_backward")(dy, cache._replace(scale=1.0))

    message = check("attention_backward", unscaled, verbose=False).message
    assert "every entry is 2 x the expected one" in message and "right: dv" in message


def test_changing_an_argument_in_place_fails():
    def scales_dout_in_place(dout, cache):
        dout *= 2.0
        dx, dW, db = solution("linear_backward")(dout, cache)
        return dx / 2, dW / 2, None if db is None else db / 2

    message = check("linear_backward", scales_dout_in_place, verbose=False).message
    assert "changed its argument dout in place" in message


def test_a_top_p_filter_that_drops_the_crossing_token_fails():
    def strict(probs, p):
        order = np.argsort(-probs, kind="stable")
        keep = order[np.cumsum(probs[order]) < p]
        out = np.zeros_like(probs)
        out[keep] = probs[keep]
        return out / out.sum()

    result = check("top_p_filter", strict, verbose=False)
    assert not result.passed and "output probs, shape (10,)" in result.message


def test_blanks_errors_and_wrong_structures_are_reported_not_raised(capsys):
    def blank(dout, cache):
        raise NotImplementedError

    result = check("gelu_backward", blank)
    assert not result.passed and result.message.startswith("gelu_backward: not written yet")
    assert capsys.readouterr().out.strip() == result.message.strip()

    def broken(dy, cache):
        return cache.q @ dy                      # shapes do not chain
    message = check("attention_backward", broken, verbose=False).message
    assert "your function raised ValueError" in message and "cache.q @ dy" in message

    message = check("lstm_cell_backward", lambda dh, dc, cache: (dh, dc), verbose=False).message
    assert "returned a tuple of length 2; expected a tuple of 7: (dx, dh, dc, dw_ih" in message

    def transposes(dout, cache):
        dx, dW, db = solution("linear_backward")(dout, cache)
        return dx, dW.T, db
    message = check("linear_backward", transposes, verbose=False).message
    assert "output dW has shape (5, 4) (transposed?); expected (4, 5)" in message and "right: dx, db" in message


def test_unknown_names_and_non_functions_are_refused():
    with pytest.raises(ValueError, match="no exercise named 'layernorm'; the exercises are: linear_backward"):
        check("layernorm", lambda: None)
    with pytest.raises(ValueError, match="no exercise named"):
        solution("nope")
    with pytest.raises(TypeError, match="needs a function, got int"):
        check("gelu_backward", 3)


def test_the_references_are_the_library():
    from npgpt.decoding.strategies import top_p_filter
    from npgpt.ops import layernorm_backward
    from npgpt.text.bpe import bpe_merge
    assert solution("layernorm_backward") is layernorm_backward
    assert solution("top_p_filter") is top_p_filter and solution("bpe_encode_piece") is bpe_merge
    assert catalogue.bpe_merge_step([list(b"abab")], [2]) == ((97, 98), 4, [[256, 256]])


# ---------------------------------------------------------------------- the notebook
def exercise_cells(nb, names=IN_NOTEBOOK):
    """{exercise name: (cell index, the FunctionDef)} for every code cell that defines one of ``names``."""
    found = {}
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        for node in ast.parse(cell.source).body:
            if isinstance(node, ast.FunctionDef) and node.name in names:
                assert node.name not in found, f"{node.name} is defined in two cells"
                found[node.name] = (i, node)
    return found



def test_the_notebook_has_a_blank_for_every_exercise_of_EXERCISES():
    """EXERCISES is what the notebook asks (its summary cell grades every name of EXERCISES); an
    exercise of ALL_EXERCISES whose cell lands must join EXERCISES, in the notebook's order."""
    assert NAMES[:len(IN_NOTEBOOK)] == IN_NOTEBOOK, "EXERCISES comes first in ALL_EXERCISES, in its order"
    nb = nbformat.read(NOTEBOOK, as_version=4)
    cells = exercise_cells(nb, NAMES)
    assert list(cells) == IN_NOTEBOOK, "one cell per exercise of EXERCISES, in its order, and none for the others"
    for name, (i, node) in cells.items():
        raises = [n for n in ast.walk(node) if isinstance(n, ast.Raise)]
        assert raises and "NotImplementedError" in ast.unparse(raises[-1]), f"{name}'s blank must raise NotImplementedError"
        assert f'check("{name}", {name})' in nb.cells[i].source
        assert EXERCISES[name].signature.startswith(f"{name}({', '.join(a.arg for a in node.args.args)})")


def with_solutions(nb, wrong=None):
    """A copy of ``nb`` whose blanks call the reference solution instead of raising, and whose
    checks assert that they pass. ``wrong`` (name, source): that exercise gets this function instead
    and its check must fail."""
    nb = nbformat.from_dict(nb)
    for name, (i, node) in exercise_cells(nb).items():
        lines = nb.cells[i].source.splitlines()
        if wrong and wrong[0] == name:
            lines[node.lineno - 1:node.end_lineno] = wrong[1].splitlines()
            verdict = "not "
        else:
            raise_node = [n for n in node.body if isinstance(n, ast.Raise)][-1]
            indent = " " * raise_node.col_offset
            args = ", ".join(a.arg for a in node.args.args)
            lines[raise_node.lineno - 1:raise_node.end_lineno] = [f'{indent}return solution("{name}")({args})']
            verdict = ""
        source = "\n".join(lines)
        call = f'check("{name}", {name})'
        source = source.replace(call + ";", call).replace(call, f"assert {verdict}{call}.passed, {name!r}")
        nb.cells[i].source = source
    first = next(c for c in nb.cells if c.cell_type == "code")
    first.source += "\n" + WARM_UP
    return nb


# Each reference run once on its first case before any check: the blanks here ARE the references, and
# a reference's first call may compile numba kernels (bpe_merge_step's train_bpe: 4.7-5.7 s at a load
# average of 11 on this 2-core machine), which would count against the student's 5 s time limit
# (tests/test_grader_limits.py tests the limit itself).
WARM_UP = """for _exercise in EXERCISES.values():
    _exercise.reference(*_exercise.make_cases(np.random.default_rng(0))[0].args)"""


@pytest.mark.slow
def test_the_notebook_passes_with_the_reference_solutions_and_fails_a_wrong_one():
    build = _load_build()
    nb = nbformat.read(NOTEBOOK, as_version=4)
    wrong = ("softmax_backward", "def softmax_backward(dout, cache):\n    return cache * dout")
    filled = with_solutions(nb, wrong)
    # as a user's Jupyter runs it: no NPGPT_FIGURES_DIR, so nothing is saved (tests/test_notebooks.py
    # checks that the notebooks write nothing into the repository)
    env = {k: v for k, v in os.environ.items() if k != "NPGPT_FIGURES_DIR"}
    env.update(NPGPT_FAST="1", MPLBACKEND="Agg", **SINGLE_THREADED)
    build.execute(filled, NOTEBOOK.name, env)
    text = "\n".join(o.get("text", "") for c in filled.cells if c.cell_type == "code" for o in c.outputs)
    for name in IN_NOTEBOOK:
        expected = f"{name}: FAILED" if name == wrong[0] else f"{name}: passed on all"
        assert expected in text, f"{expected!r} is not in the notebook's output"


def test_the_substitution_reaches_every_blank():
    nb = with_solutions(nbformat.read(NOTEBOOK, as_version=4))
    for name, (i, node) in exercise_cells(nb).items():
        assert "NotImplementedError" not in ast.unparse(node) and f'solution("{name}")' in nb.cells[i].source
