"""Every notebook runs top to bottom in fast mode, and its committed copy carries a clean full run.

The fast run executes an in-memory copy of each notebook (nothing is written back) with
NPGPT_FAST=1, MPLBACKEND=Agg and NPGPT_FIGURES_DIR pointing at a temporary directory, so the
committed figures are never replaced by fast-mode ones.
"""
import importlib.util
import os
import sys
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK_DIR = ROOT / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))
CELL_TIMEOUT = 600   # seconds


# Tests check behaviour, not speed: one thread each for BLAS and numba, so a busy machine cannot
# make threads spin-wait on each other (a fast-mode notebook took 80-140 s that way, 8 s without).
SINGLE_THREADED = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "NUMBA_NUM_THREADS": "1"}


def _load_build():
    """notebooks/build.py, imported by path (``build`` alone would clash with the PyPI package)."""
    spec = importlib.util.spec_from_file_location("npgpt_notebooks_build", NOTEBOOK_DIR / "build.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


build = _load_build()


def _figure_snapshot():
    return {p.name: (p.stat().st_size, p.stat().st_mtime_ns) for p in (ROOT / "figures").glob("*")}


def _code_cells(nb):
    return [(i, c) for i, c in enumerate(nb.cells) if c.cell_type == "code" and c.source.strip()]


def test_there_are_notebooks():
    assert NOTEBOOKS, f"no notebooks found in {NOTEBOOK_DIR}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_committed_notebook_has_a_clean_full_run(path):
    nb = nbformat.read(path, as_version=4)
    cells = _code_cells(nb)
    errors = [f"cell {i}: {o.ename}: {o.evalue}" for i, c in cells for o in c.outputs
              if o.output_type == "error"]
    assert not errors, f"{path.name} was committed with error outputs (rebuild it with " \
                       f"notebooks/build.py): {errors}"
    counts = [c.execution_count for _, c in cells]
    assert counts == list(range(1, len(cells) + 1)), \
        f"{path.name} was not executed top to bottom in one kernel (execution counts {counts}); " \
        f"rebuild it with notebooks/build.py"
    assert any(c.outputs for _, c in cells), f"{path.name} has no outputs"


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_in_fast_mode(path, tmp_path):
    nb = nbformat.read(path, as_version=4)
    env = dict(os.environ, NPGPT_FAST="1", MPLBACKEND="Agg", NPGPT_FIGURES_DIR=str(tmp_path / "figures"),
               **SINGLE_THREADED)
    before = _figure_snapshot()
    try:
        build.execute(nb, path.name, env, timeout=CELL_TIMEOUT)
    except build.NotebookError as err:
        nbformat.write(nb, tmp_path / path.name)   # the partial run, kept for inspection
        pytest.fail(f"{err}\n(partial run saved to {tmp_path / path.name})", pytrace=False)
    assert _figure_snapshot() == before, f"{path.name} wrote to figures/ in fast mode; " \
                                         f"save figures under NPGPT_FIGURES_DIR"


@pytest.mark.slow
def test_kernel_runs_this_interpreter(tmp_path):
    build.check_kernel()
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("import sys; print(sys.executable)")])
    build.execute(nb, "kernel.ipynb", dict(os.environ), timeout=60, cwd=tmp_path)
    assert nb.cells[0].outputs[0].text.strip() == sys.executable


@pytest.mark.slow
def test_a_failing_cell_is_named(tmp_path):
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("x = 1"),
                                         nbformat.v4.new_code_cell("1 / 0  # boom")])
    with pytest.raises(build.NotebookError, match=r"demo\.ipynb: cell 1 \('1 / 0  # boom'\)"):
        build.execute(nb, "demo.ipynb", dict(os.environ), timeout=60, cwd=tmp_path)
