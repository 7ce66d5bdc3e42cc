"""Execute the notebooks top to bottom and write their outputs back: the committed, full-mode run.

    python notebooks/build.py                            # both editions: notebooks/*.ipynb, then zh/
    python notebooks/build.py 04_attention_and_loss ...  # only these (with or without .ipynb)
    python notebooks/build.py zh/03_sequence_models      # a notebook of the Chinese edition
    python notebooks/build.py zh                         # every notebooks/zh/*.ipynb

Each notebook runs in a fresh "python3" kernel with its own folder as the working directory (as
Jupyter starts it: notebooks/ or notebooks/zh/), in full mode (NPGPT_FAST is removed from the
kernel's environment).

The Chinese edition (notebooks/zh/, issue 26) runs with NPGPT_LANG=zh, so its figures are labelled
in Chinese (npgpt.plots.labels), and saves no figure file: figures/ holds the English figures the
README shows, and a Chinese notebook's figures live in its outputs.

This script is the one writer of the committed figures: it sets NPGPT_FIGURES_DIR to the
repository's figures/ for the kernels of the English notebooks it runs, so the notebooks regenerate their figures there. A
notebook run any other way (in Jupyter, or by the tests) saves no figure unless its user sets
NPGPT_FIGURES_DIR (see npgpt.plots.figures.figure_path).

Jupyter launches the "python3" kernel with the interpreter that runs this script, so run it with
the project's Python (ipykernel must be installed there); the script checks this before it starts.

A notebook is written back (atomically) only when every cell succeeded. On a failing or timed-out
cell the script stops, leaves that notebook untouched, and exits with status 1, naming the notebook
and the cell.
"""
import argparse
import os
import sys
from pathlib import Path

import nbformat
from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel
from nbclient import NotebookClient

from npgpt.atomic import atomic_write_text

NOTEBOOK_DIR = Path(__file__).resolve().parent
ZH_DIR = NOTEBOOK_DIR / "zh"                      # the Chinese edition, the same file names
FIGURES_DIR = NOTEBOOK_DIR.parent / "figures"     # the committed figures
KERNEL = "python3"
CELL_TIMEOUT = 600   # seconds per cell


class NotebookError(RuntimeError):
    """A cell of a notebook failed (raised, or ran past the timeout)."""


def check_kernel(kernel_name=KERNEL):
    """Raise unless ``kernel_name`` launches this interpreter.

    jupyter_client replaces a kernelspec's ``python``/``python3`` command by ``sys.executable``;
    any other command would run the notebooks with a different Python (and npgpt).
    """
    try:
        argv0 = KernelSpecManager().get_kernel_spec(kernel_name).argv[0]
    except NoSuchKernel:
        raise NotebookError(f"no Jupyter kernel named {kernel_name!r}; install ipykernel in this "
                            f"environment ({sys.executable} -m pip install ipykernel)") from None
    major, minor = sys.version_info[:2]
    this_python = {"python", f"python{major}", f"python{major}.{minor}"}
    if argv0 not in this_python and Path(argv0).resolve() != Path(sys.executable).resolve():
        raise NotebookError(f"kernel {kernel_name!r} runs {argv0}, not this interpreter "
                            f"({sys.executable}); install ipykernel in this environment")


def _describe(nb, index):
    source = nb.cells[index].source.strip().splitlines()
    return f"cell {index} ({source[0][:60]!r})" if source else f"cell {index} (empty)"


def execute(nb, name, env, timeout=CELL_TIMEOUT, cwd=NOTEBOOK_DIR):
    """Run every cell of ``nb`` in place, in a fresh kernel with environment ``env`` and working
    directory ``cwd``. Raises NotebookError naming the notebook and the failing cell."""
    current = {"index": None}

    def on_cell_start(cell, cell_index):
        current["index"] = cell_index

    client = NotebookClient(nb, kernel_name=KERNEL, timeout=timeout, record_timing=False,
                            resources={"metadata": {"path": str(cwd)}}, on_cell_start=on_cell_start)
    try:
        client.execute(env=env)
    except Exception as err:
        where = "before the first cell" if current["index"] is None else _describe(nb, current["index"])
        raise NotebookError(f"{name}: {where} failed:\n{err}") from err
    return nb


def full_mode_env() -> dict:
    """This process's environment without NPGPT_FAST, with NPGPT_FIGURES_DIR set to the
    repository's figures/ (whatever it was), so the build rewrites the committed figures."""
    env = dict(os.environ)
    env.pop("NPGPT_FAST", None)
    env["NPGPT_FIGURES_DIR"] = str(FIGURES_DIR)
    return env


def chinese_env() -> dict:
    """The full-mode environment of a Chinese notebook: NPGPT_LANG=zh, and no NPGPT_FIGURES_DIR,
    so nothing is written into figures/ (whatever the caller's shell exports)."""
    env = full_mode_env()
    env.pop("NPGPT_FIGURES_DIR")
    env["NPGPT_LANG"] = "zh"
    return env


def is_chinese(path: Path) -> bool:
    """True for a notebook of the Chinese edition (in notebooks/zh/)."""
    return Path(path).resolve().parent == ZH_DIR


def notebook_paths(names):
    """The notebooks named: ``NAME`` in notebooks/, ``zh/NAME`` in notebooks/zh/, ``zh`` for every
    Chinese notebook; with no names, every English notebook and then every Chinese one."""
    if not names:
        return sorted(NOTEBOOK_DIR.glob("*.ipynb")) + sorted(ZH_DIR.glob("*.ipynb"))
    paths = []
    for name in names:
        name = name.strip("/")
        if name == "zh":
            paths += sorted(ZH_DIR.glob("*.ipynb"))
            continue
        folder, stem = (ZH_DIR, name[3:]) if name.startswith("zh/") else (NOTEBOOK_DIR, name)
        if not stem or "/" in stem:
            raise NotebookError(f"notebook name {name!r}: expected NAME or zh/NAME (e.g. zh/03_sequence_models)")
        paths.append(folder / (stem if stem.endswith(".ipynb") else stem + ".ipynb"))
    missing = [str(p.relative_to(NOTEBOOK_DIR)) for p in paths if not p.exists()]
    if missing:
        raise NotebookError(f"no such notebook in {NOTEBOOK_DIR}: {', '.join(missing)}")
    return paths


def build(path, timeout=CELL_TIMEOUT):
    """Execute one notebook in full mode and write it back with its outputs."""
    nb = nbformat.read(path, as_version=4)
    env = chinese_env() if is_chinese(path) else full_mode_env()
    execute(nb, str(path.relative_to(NOTEBOOK_DIR)), env, timeout, cwd=path.parent)
    atomic_write_text(path, nbformat.writes(nb) + "\n")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("names", nargs="*", help="notebooks to build: NAME, zh/NAME or zh "
                                                  "(default: every notebook of both editions)")
    parser.add_argument("--timeout", type=int, default=CELL_TIMEOUT, help="seconds allowed per cell")
    args = parser.parse_args(argv)
    try:
        check_kernel()
        for path in notebook_paths(args.names):
            print(f"building {path.relative_to(NOTEBOOK_DIR)} ...", flush=True)
            build(path, args.timeout)
    except NotebookError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
