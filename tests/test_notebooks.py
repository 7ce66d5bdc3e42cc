"""Every notebook runs top to bottom in fast mode without touching the repository, writes files only
where it may, and its committed copy carries a clean full run.

The fast run executes an in-memory copy of each notebook (nothing is written back) with NPGPT_FAST=1
and MPLBACKEND=Agg, and, as a user's Jupyter does, without NPGPT_FIGURES_DIR: afterwards
``git status`` must list nothing new. Only notebooks/build.py (or a user who sets
NPGPT_FIGURES_DIR) writes the committed figures.

The full mode is too slow to run here, so a static rule covers its write paths (see
:func:`write_findings`).

The Chinese edition (notebooks/zh/, issue 26) is held to the same checks: its kernels start in
notebooks/zh (as Jupyter starts them), so they speak Chinese (npgpt.runtime.language), and the
code's relative paths must resolve from there too.
"""
import ast
import importlib.util
import itertools
import os
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK_DIR = ROOT / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))
ZH_DIR = NOTEBOOK_DIR / "zh"
BOTH_EDITIONS = NOTEBOOKS + sorted(ZH_DIR.glob("*.ipynb"))   # the English notebooks, then the Chinese ones


def _id(path):
    """'03_sequence_models', or 'zh/03_sequence_models' for the Chinese edition."""
    return f"zh/{path.stem}" if path.parent.name == "zh" else path.stem
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


def user_env(**extra):
    """This process's environment as a user's Jupyter kernel would have it: no NPGPT_FIGURES_DIR
    (a developer's shell may export one), plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if k != "NPGPT_FIGURES_DIR"}
    return dict(env, MPLBACKEND="Agg", **SINGLE_THREADED, **extra)


def _figure_snapshot(root=ROOT):
    return {p.name: (p.stat().st_size, p.stat().st_mtime_ns) for p in (root / "figures").glob("*")}


def git_status(root):
    """The lines of ``git status --porcelain --untracked-files=all`` in ``root`` (tracked changes and
    untracked files that are not ignored), or None when ``root`` is not the top of a git checkout."""
    if shutil.which("git") is None:
        return None
    top = subprocess.run(["git", "-C", str(root), "rev-parse", "--show-toplevel"], capture_output=True, text=True)
    if top.returncode != 0 or Path(top.stdout.strip()).resolve() != Path(root).resolve():
        return None
    done = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=all"],
                          capture_output=True, text=True, check=True)
    return set(done.stdout.splitlines())


def run_leaving_the_repository_as_it_was(nb, name, env, root=ROOT, tmp_path=None, cwd=None):
    """Execute ``nb`` (working directory ``cwd``, default ``root``/notebooks) and fail if ``git status`` afterwards has
    an entry it did not have before. Other engineers may have changes of their own in the tree, so
    only new entries count (an edit someone makes during the run is new too: the message names the
    files, and a clean checkout, as in CI, has no such race). Returns False when ``root`` is no git
    checkout (nothing was compared)."""
    before = git_status(root)
    try:
        build.execute(nb, name, env, timeout=CELL_TIMEOUT, cwd=root / "notebooks" if cwd is None else cwd)
    except build.NotebookError as err:
        if tmp_path is not None:
            nbformat.write(nb, tmp_path / Path(name).name)   # the partial run, kept for inspection
        saved = f"\n(partial run saved to {tmp_path / Path(name).name})" if tmp_path is not None else ""
        pytest.fail(f"{err}{saved}", pytrace=False)
    if before is None:
        return False
    new = sorted(git_status(root) - before)
    assert not new, f"running {name} changed the repository (git status, new entries): {new}; a notebook " \
                    f"saves figures through npgpt.plots.figures.figure_path and temporary files in tempfile folders"
    return True


def _code_cells(nb):
    return [(i, c) for i, c in enumerate(nb.cells) if c.cell_type == "code" and c.source.strip()]


# ----------------------------------------------------------------- the static write rule
# A notebook code cell writes a file only to
#   - figure_path(name), the helper of npgpt.plots.figures (None when nothing is to be saved), or
#   - a folder made by tempfile (tempfile.mkdtemp(), tempfile.TemporaryDirectory().name), or
#   - a folder of the repository that .gitignore ignores as a directory (runs/), named by a constant.
# A write is recognised by the call that makes it (the tables below: open() in a writing mode,
# write_text, save_pretrained, save_figure, np.save, shutil.copy, os.remove, ckpt=/out_dir= keyword
# arguments, "--out-dir" in a command line ...). Its destination must be built from one of the three,
# directly or through variables (a variable's value is its last assignment before the write, in cell
# order). matplotlib's savefig is not allowed at all (save_figure writes atomically), nor a cell that
# defines its own figure_path/save_figure or reads NPGPT_FIGURES_DIR: only the helper reads it.
# Library code that writes by itself is invisible here; the fast-mode git-status test covers it.
WRITE_MODE_CHARS = set("wax+")
RECEIVER_WRITERS = {"write_text", "write_bytes", "touch", "mkdir", "unlink", "rmdir"}   # Path methods
FIRST_ARG_WRITERS = {"save_pretrained", "save_checkpoint", "write_checkpoint", "save_app", "save",
                     "savez", "savez_compressed", "savetxt", "tofile", "atomic_write_text", "atomic_write_bytes",
                     "atomic_writer", "os.makedirs", "os.mkdir", "os.remove", "os.unlink", "os.rmdir",
                     "shutil.rmtree"}
SECOND_ARG_WRITERS = {"save_figure", "shutil.copy", "shutil.copy2", "shutil.copyfile", "shutil.copytree",
                      "shutil.move", "os.rename", "os.replace"}   # save_figure(fig, path)
DESTINATION_KEYWORDS = {"ckpt", "checkpoint_path", "out_dir", "output_dir"}
DESTINATION_FLAGS = {"--out-dir", "--ckpt"}
PATH_WRAPPERS = {"str", "Path", "pathlib.Path", "os.fspath", "os.path.join", "os.path.abspath",
                 "os.path.realpath"}
TEMP_FOLDERS = {"tempfile.mkdtemp", "tempfile.TemporaryDirectory", "mkdtemp", "TemporaryDirectory"}
HELPERS = {"figure_path", "save_figure", "figures_destination"}
# The one test a path may depend on: which edition's folder the kernel runs in (notebooks/ or
# notebooks/zh/), e.g. Path("../..") if Path.cwd().name == "zh" else Path(".."); the rule folds it
# for the folder it judges.
IN_ZH_FOLDER = ast.unparse(ast.parse('Path.cwd().name == "zh"', mode="eval").body)
ALLOWED_MAGICS = {"%matplotlib"}


def _ignored_folders(root=ROOT):
    """The plain directory patterns of .gitignore ('runs/' -> 'runs'), which match at any depth."""
    path = root / ".gitignore"
    lines = path.read_text(encoding="utf-8").splitlines() if path.exists() else []
    return {line.strip().strip("/") for line in lines
            if line.strip().endswith("/") and not any(ch in line for ch in "*?[!#")}


class WriteRule:
    """Findings of the write rule for one notebook (a list of 'cell i, line n: ...' strings)."""

    def __init__(self, nb, notebook_dir=NOTEBOOK_DIR, root=ROOT):
        self.notebook_dir, self.root = Path(notebook_dir), Path(root)
        self.ignored = _ignored_folders(self.root)
        self.findings, self.assignments, trees = [], [], []
        for i, cell in enumerate(nb.cells):
            if cell.cell_type == "code":
                tree = self._parse(i, cell.source)
                if tree is not None:
                    trees.append((i, tree))
                    self._collect_assignments(i, tree)
        for i, tree in trees:
            for node in ast.walk(tree):
                self._check(i, node)

    # -- reading the cells
    def _parse(self, i, source):
        lines = source.splitlines()
        for n, line in enumerate(lines):
            stripped = line.strip()
            if stripped.startswith(("%", "!")):
                if stripped.split()[0] not in ALLOWED_MAGICS:
                    self.findings.append(f"cell {i}, line {n + 1}: {stripped[:60]!r}: a magic or shell "
                                         f"command the rule cannot check")
                lines[n] = ""
        try:
            return ast.parse("\n".join(lines))
        except SyntaxError as err:
            self.findings.append(f"cell {i}: does not parse ({err.msg}, line {err.lineno})")
            return None

    def _collect_assignments(self, i, tree):
        """(where the binding takes effect, name, value or None when unknown), in cell order."""
        def bind(target, value, end):
            if isinstance(target, ast.Name):
                self.assignments.append(((i, *end), target.id, value))
            elif isinstance(target, (ast.Tuple, ast.List)):
                for t in target.elts:
                    bind(t, None, end)
        for node in ast.walk(tree):
            end = (getattr(node, "end_lineno", 0), getattr(node, "end_col_offset", 0))
            if isinstance(node, ast.Assign):
                for target in node.targets:
                    bind(target, node.value, end)
            elif isinstance(node, (ast.AnnAssign, ast.NamedExpr)):
                bind(node.target, node.value, end)
            elif isinstance(node, (ast.For, ast.comprehension)):
                bind(node.target, None, (node.iter.end_lineno, node.iter.end_col_offset))
            elif isinstance(node, ast.withitem) and node.optional_vars is not None:
                bind(node.optional_vars, node.context_expr,
                     (node.context_expr.end_lineno, node.context_expr.end_col_offset))
            elif isinstance(node, (ast.FunctionDef, ast.Lambda)):
                args = node.args
                for a in [*args.posonlyargs, *args.args, *args.kwonlyargs, args.vararg, args.kwarg]:
                    if a is not None:
                        self.assignments.append(((i, a.lineno, a.col_offset), a.arg, None))
            if isinstance(node, (ast.FunctionDef, ast.Assign)):
                names = [node.name] if isinstance(node, ast.FunctionDef) else \
                        [t.id for t in node.targets if isinstance(t, ast.Name)]
                for name in set(names) & HELPERS:
                    self.findings.append(f"cell {i}, line {node.lineno}: defines its own {name}; import it "
                                         f"from npgpt.plots.figures")
            if isinstance(node, ast.Constant) and node.value == "NPGPT_FIGURES_DIR":
                self.findings.append(f"cell {i}, line {node.lineno}: reads NPGPT_FIGURES_DIR; use "
                                     f"npgpt.plots.figures.figure_path")
        self.assignments.sort(key=lambda a: a[0])

    def _value_of(self, name, where):
        earlier = [a for a in self.assignments if a[1] == name and a[0] < where]
        return earlier[-1] if earlier else None

    # -- judging a destination
    def _fold(self, node, where):
        """The constant path ``node`` spells, or None."""
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            return node.value
        if isinstance(node, ast.Name):
            found = self._value_of(node.id, where)
            return None if found is None or found[2] is None else self._fold(found[2], found[0])
        if isinstance(node, ast.IfExp) and ast.unparse(node.test) == IN_ZH_FOLDER:
            return self._fold(node.body if self.notebook_dir.name == "zh" else node.orelse, where)
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div):
            parts = [self._fold(node.left, where), self._fold(node.right, where)]
        elif isinstance(node, ast.Call) and ast.unparse(node.func) in PATH_WRAPPERS and node.args:
            parts = [self._fold(a, where) for a in node.args]
        else:
            return None
        return None if None in parts else os.path.join(*parts)

    def _judge(self, node, where):
        """None when writing to ``node`` is allowed, else why not."""
        if isinstance(node, ast.Constant) and node.value is None:
            return None
        if isinstance(node, ast.Call):
            func = ast.unparse(node.func)
            if func.split(".")[-1] == "figure_path":
                return None
            if func in TEMP_FOLDERS:
                return None
            if func in PATH_WRAPPERS and node.args:
                return self._judge_root(node.args[0], node, where)
            if isinstance(node.func, ast.Attribute) and node.func.attr in ("resolve", "absolute"):
                return self._judge(node.func.value, where)
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div):
            return self._judge_root(node.left, node, where)
        if isinstance(node, ast.Attribute) and node.attr == "name":   # TemporaryDirectory().name
            return self._judge(node.value, where)
        if isinstance(node, ast.Name):
            found = self._value_of(node.id, where)
            if found is None or found[2] is None:
                return f"{node.id} is not a figure_path, tempfile or git-ignored path here"
            return self._judge(found[2], found[0])
        return self._judge_constant(node, where)

    def _judge_root(self, root_node, whole, where):
        """A path built on ``root_node`` (a join, a '/'): allowed when its root is, or when it all
        folds to an allowed constant."""
        if self._judge(root_node, where) is None:
            return None
        return self._judge_constant(whole, where)

    def _judge_constant(self, node, where):
        path = self._fold(node, where)
        if path is None:
            return f"{ast.unparse(node)[:60]} is not a figure_path, tempfile or git-ignored path"
        full = Path(os.path.normpath(self.notebook_dir / path))
        try:
            parts = full.relative_to(self.root).parts
        except ValueError:
            return f"{path} is outside the repository but not a tempfile folder"
        if any(part in self.ignored for part in parts[:-1] or parts):
            return None
        return f"{path} is in the repository and not git-ignored"

    # -- finding the writes
    def _destinations(self, call):
        func = ast.unparse(call.func)
        method = call.func.attr if isinstance(call.func, ast.Attribute) else func
        is_module = isinstance(call.func, ast.Attribute) and isinstance(call.func.value, ast.Name) and \
            call.func.value.id in ("os", "shutil", "io", "np", "numpy", "json")
        kw = {k.arg: k.value for k in call.keywords if k.arg}
        if method == "open":
            if isinstance(call.func, ast.Attribute) and not is_module:   # Path.open(mode)
                target, mode = call.func.value, (call.args[0] if call.args else kw.get("mode"))
            else:
                target, mode = (call.args[0] if call.args else kw.get("file")), \
                               (call.args[1] if len(call.args) > 1 else kw.get("mode"))
            written = isinstance(mode, ast.Constant) and WRITE_MODE_CHARS & set(str(mode.value))
            if written or (mode is not None and not isinstance(mode, ast.Constant)):
                yield target
        elif method in RECEIVER_WRITERS and not is_module:
            yield call.func.value
        elif func in FIRST_ARG_WRITERS or (method in FIRST_ARG_WRITERS and not func.startswith(("os.", "shutil."))):
            if call.args:
                yield call.args[0]
            for name in ("path", "file", "fname"):
                if name in kw:
                    yield kw[name]
        elif (func in SECOND_ARG_WRITERS or method == "save_figure") and len(call.args) > 1:
            yield call.args[1]
        for name, value in kw.items():
            if name in DESTINATION_KEYWORDS or (name == "path" and (method.startswith("plot_") or
                                                                   method == "save_figure")):
                yield value

    def _check(self, i, node):
        where = (i, getattr(node, "lineno", 0), getattr(node, "col_offset", 0))
        if isinstance(node, ast.Call):
            if isinstance(node.func, ast.Attribute) and node.func.attr == "savefig":
                self.findings.append(f"cell {i}, line {node.lineno}: {ast.unparse(node)[:70]}: use "
                                     f"save_figure(fig, figure_path(name)) instead of savefig")
                return
            for dest in self._destinations(node):
                why = self._judge(dest, where)
                if why is not None:
                    self.findings.append(f"cell {i}, line {node.lineno}: {ast.unparse(node)[:70]}: {why}")
        elif isinstance(node, (ast.List, ast.Tuple)):
            elts = node.elts
            for flag, dest in itertools.pairwise(elts):
                if isinstance(flag, ast.Constant) and flag.value in DESTINATION_FLAGS:
                    why = self._judge(dest, where)
                    if why is not None:
                        self.findings.append(f"cell {i}, line {node.lineno}: {flag.value} {ast.unparse(dest)}: {why}")


def write_findings(nb, notebook_dir=NOTEBOOK_DIR, root=ROOT):
    """Where the code cells of ``nb`` write files they should not (see the rule above)."""
    return WriteRule(nb, notebook_dir, root).findings


def test_there_are_notebooks():
    assert NOTEBOOKS, f"no notebooks found in {NOTEBOOK_DIR}"


@pytest.mark.parametrize("path", BOTH_EDITIONS, ids=_id)
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


@pytest.mark.parametrize("path", BOTH_EDITIONS, ids=_id)
def test_no_cell_shows_one_figure_twice(path):
    # a pyplot figure that a cell also returns is shown twice under %matplotlib inline: once as the
    # cell's value and once by the backend at the cell's end (the same image, byte for byte)
    twice = [i for i, c in _code_cells(nbformat.read(path, as_version=4))
             if len(images := [o.data["image/png"] for o in c.outputs if "image/png" in o.get("data", {})])
             != len(set(images))]
    assert not twice, f"{path.name}: code cells {twice} show the same image twice (build the figure with " \
                      f"matplotlib.figure.Figure, or plt.close it before returning it)"


@pytest.mark.parametrize("path", BOTH_EDITIONS, ids=_id)
def test_notebook_writes_only_through_the_helper_or_into_temporary_folders(path):
    findings = write_findings(nbformat.read(path, as_version=4), notebook_dir=path.parent)
    assert not findings, f"{path.name} writes where a notebook must not (see the rule in " \
                         f"tests/test_notebooks.py):\n" + "\n".join(findings)


def _notebook(*sources):
    return nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(s) for s in sources])


ALLOWED_WRITES = '''%matplotlib inline
import os, shutil, tempfile
from pathlib import Path
from npgpt.plots.figures import figure_path, save_figure
save_figure(fig, figure_path("loss.png"))
plot_loss_curve(history, path=figure_path("curve.png"))
work = tempfile.mkdtemp(prefix="x-")
with open(os.path.join(work, "corpus.txt"), "w") as f:
    f.write("text")
keep = tempfile.TemporaryDirectory()
folder = Path(keep.name)
model.save_pretrained(folder / "gpt2")
RUNS = Path("..") / "runs" / "apps"
app.train(ckpt=str(RUNS / app.APP / "ckpt.npz"))
subprocess.run([sys.executable, "-m", "npgpt", "train", "--out-dir", os.path.join(work, "one")])
with open(os.path.join("..", "benchmarks", "results", "scaling.json"), encoding="utf-8") as f:
    study = json.load(f)
'''

# Each line writes where it must not: the old boilerplate included.
OFFENDERS = {
    "savefig": 'fig.savefig(figure_path("x.png"))',
    "open w": 'open(os.path.join("..", "figures", "x.png"), "wb").write(data)',
    "open a": 'with open("../benchmarks/results/x.json", mode="a") as f: pass',
    "Path.open": 'Path("../README.md").open("w")',
    "write_text": 'Path("..", "benchmarks", "results", "x.json").write_text("{}")',
    "save_pretrained": 'model.save_pretrained("../gpt2")',
    "np.save": 'np.save("../x.npy", a)',
    "fixed /tmp": 'app.train(ckpt="/tmp/apps_fast/ckpt.npz")',
    "--out-dir": 'subprocess.run(["python", "-m", "npgpt", "train", "--out-dir", "../out_of_tree"])',
    "copy": 'shutil.copy(src, "../figures/x.png")',
    "remove": 'os.remove("../figures/x.png")',
    "plot path": 'plotting.plot_loss_curve(h, path="../figures/loss.png")',
    "module save_figure": 'plotting.save_figure(fig, os.path.join("..", "figures", "x.png"))',
    "unknown": 'save_figure(fig, somewhere)',
    "reassigned": 'work = tempfile.mkdtemp()\nwork = ".."\nopen(os.path.join(work, "x"), "w")',
    "shell": '!echo hi > ../x.txt',
    "old boilerplate": 'FIGURES = os.environ.get("NPGPT_FIGURES_DIR", os.path.join("..", "figures"))\n'
                       'def figure_path(name):\n    return os.path.join(FIGURES, name)',
    "old show": 'FIGURES = os.path.join("..", "figures")\n'
                'def show(fig, name):\n    save_figure(fig, os.path.join(FIGURES, name))',
}


def test_the_write_rule_allows_the_helper_temporary_and_ignored_folders():
    assert write_findings(_notebook(ALLOWED_WRITES)) == []


EITHER_EDITION = 'RUNS = (Path("../..") if Path.cwd().name == "zh" else Path("..")) / "runs"\n' \
                 'app.train(ckpt=str(RUNS / "ckpt.npz"))'


def test_the_write_rule_judges_a_path_from_the_folder_of_each_edition():
    assert write_findings(_notebook(EITHER_EDITION)) == []
    assert write_findings(_notebook(EITHER_EDITION), notebook_dir=ZH_DIR) == []
    swapped = EITHER_EDITION.replace('Path("../..") if', 'Path("../../..") if')   # leaves the repository
    assert write_findings(_notebook(swapped)) == []
    assert any("outside the repository" in f for f in write_findings(_notebook(swapped), notebook_dir=ZH_DIR))


@pytest.mark.parametrize("source", OFFENDERS.values(), ids=OFFENDERS.keys())
def test_the_write_rule_catches_a_planted_offender(source):
    findings = write_findings(_notebook("import os\nfrom npgpt.plots.figures import figure_path", source))
    assert findings and all(f.startswith("cell 1") for f in findings), findings


# A tiny notebook as a user's Jupyter runs it (full mode, no NPGPT_FIGURES_DIR) with the old
# boilerplate: it writes into ../figures, which the git-status check must see.
OLD_BOILERPLATE = '''import os
FAST = os.environ.get("NPGPT_FAST") == "1"
FIGURES = os.environ.get("NPGPT_FIGURES_DIR", os.path.join("..", "figures"))
SAVE = not FAST or "NPGPT_FIGURES_DIR" in os.environ
if SAVE:
    for name in ("tracked.png", "new.png"):
        with open(os.path.join(FIGURES, name), "wb") as f:
            f.write(b"a fresh figure")
'''


def _scratch_repository(root):
    """A git repository with a tracked figure, a git-ignored runs/ and some pre-existing dirt."""
    (root / "figures").mkdir(parents=True)
    (root / "notebooks").mkdir()
    (root / "figures" / "tracked.png").write_bytes(b"the committed figure")
    (root / "notes.txt").write_text("committed\n")
    (root / ".gitignore").write_text("runs/\n")
    git = ["git", "-C", str(root), "-c", "user.name=test", "-c", "user.email=test@example.invalid"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "scratch"], check=True)
    (root / "notes.txt").write_text("another engineer's edit\n")   # dirt that is not the notebook's


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")
def test_the_repository_check_sees_a_notebook_write_into_figures(tmp_path):
    root = tmp_path / "repo"
    _scratch_repository(root)
    harmless = _notebook('import os, tempfile\nopen(os.path.join(tempfile.mkdtemp(), "x"), "w").write("x")\n'
                         'os.makedirs("../runs/apps", exist_ok=True)\nopen("../runs/apps/ckpt", "w").write("x")')
    assert run_leaving_the_repository_as_it_was(harmless, "harmless.ipynb", user_env(), root=root)
    env = {k: v for k, v in user_env().items() if k != "NPGPT_FAST"}
    with pytest.raises(AssertionError) as caught:
        run_leaving_the_repository_as_it_was(_notebook(OLD_BOILERPLATE), "old.ipynb", env, root=root)
    message = str(caught.value)
    assert "' M figures/tracked.png'" in message and "'?? figures/new.png'" in message
    assert "notes.txt" not in message                             # pre-existing dirt is not blamed


@pytest.mark.slow
@pytest.mark.parametrize("path", BOTH_EDITIONS, ids=_id)
def test_notebook_runs_in_fast_mode_and_leaves_the_repository_as_it_was(path, tmp_path):
    nb = nbformat.read(path, as_version=4)
    before = _figure_snapshot()
    # in its own folder, as Jupyter runs it: a Chinese notebook's kernel speaks Chinese from there
    compared = run_leaving_the_repository_as_it_was(nb, str(path.relative_to(NOTEBOOK_DIR)), user_env(NPGPT_FAST="1"),
                                                    tmp_path=tmp_path, cwd=path.parent)
    # git status misses a figure rewritten with the same bytes; the file times do not
    assert _figure_snapshot() == before, f"{_id(path)} wrote to figures/; save figures through figure_path"
    if not compared:
        pytest.skip(f"{path.name} ran in fast mode; git status not compared: {ROOT} is not a git checkout")


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


def test_the_build_saves_figures_into_the_repository():
    env = build.full_mode_env()
    assert Path(env["NPGPT_FIGURES_DIR"]) == ROOT / "figures" and "NPGPT_FAST" not in env
