"""The house rules, checked: each floor imports only from the floors below it, only the backend
switch and the kernels know which backend runs, the library never reaches into benchmarks/ or
tests/, and every model keeps one protocol."""
import ast
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import npgpt
from npgpt.models import Model

PACKAGE = Path(npgpt.__file__).parent

# The public names of npgpt before the package was reshaped into floors: all must stay importable.
PUBLIC_BEFORE = [
    "GPT", "GPTConfig", "PRESETS", "GradcheckReport", "check_model", "check_op", "gradcheck", "jitter",
    "get_backend", "set_backend", "use_backend", "BPETokenizer", "CharTokenizer", "CorpusUnavailableError",
    "Dataset", "load_text", "resolve_corpus", "WordVectors", "train_glove", "train_word2vec", "SGD", "AdamW",
    "clip_grad_norm", "lr_schedule", "TrainConfig", "Trainer", "KVCache", "beam_search", "generate",
    "next_token_distribution", "RNN", "LSTM", "GRU", "RecurrentConfig", "RecurrentLM", "RecurrentState",
    "MultiheadAttention", "Transformer", "DocumentModel"]


def imports_of(path):
    """(level, module) of every import statement in a file: level 0 is absolute, 1 is ``from .``."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            found.append((node.level, node.module or ""))
        elif isinstance(node, ast.Import):
            found += [(0, alias.name) for alias in node.names]
    return found


def test_every_public_name_is_still_importable():
    missing = [name for name in PUBLIC_BEFORE if not hasattr(npgpt, name)]
    assert not missing and set(PUBLIC_BEFORE) <= set(npgpt.__all__), missing


def test_ops_import_nothing_from_another_floor():
    for path in sorted((PACKAGE / "ops").glob("*.py")):
        for level, module in imports_of(path):
            assert level in (0, 1), f"{path.name} reaches up: from {'.' * level}{module} import ..."
            assert level == 1 or not module.startswith("npgpt"), f"{path.name} imports {module}"


def backend_questions(path):
    """Places in a file's code that ask which backend runs: a call of get_backend(), a comparison
    with the string "numba" or "numpy", an import of the kernels."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", "")) == "get_backend":
            found.append(f"line {node.lineno}: get_backend()")
        asks = isinstance(node, ast.Compare) and all(isinstance(op, (ast.Eq, ast.NotEq)) for op in node.ops)
        if asks and any(isinstance(c, ast.Constant) and c.value in ("numba", "numpy")
                        for c in [node.left, *node.comparators]):
            found.append(f"line {node.lineno}: compares with a backend name")
    found += [f"imports {name}" for name in kernel_imports(path)]
    return found


def kernel_imports(path):
    """What a file imports from npgpt/kernels/ other than the backend switch (kernels.backend), which
    every floor above may ask for the active functions without knowing which they are."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            names = [f"{node.module}.{alias.name}" if node.module else alias.name for alias in node.names]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        else:
            continue
        found += [name for name in names if "kernels" in name.split(".")
                  and not name.endswith("kernels.backend") and ".kernels.backend." not in f".{name}"]
    return found


@pytest.mark.slow
def test_only_the_switch_and_the_kernels_know_the_backend():
    """Nothing above npgpt/kernels/backend.py and npgpt/kernels/ asks which backend is active."""
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.name == "backend.py" or "kernels" in path.parts:
            continue
        assert not backend_questions(path), f"{path.relative_to(PACKAGE)}: {backend_questions(path)}"


def test_the_backend_check_can_fail(tmp_path):
    path = tmp_path / "leaky.py"
    path.write_text("from .kernels import decode\nfrom .kernels import backend\nfrom .kernels.backend import ops\n"
                    "if backend.get_backend() == 'numba':\n    pass\n")
    assert sorted(backend_questions(path)) == ["imports kernels.decode", "line 4: compares with a backend name",
                                               "line 4: get_backend()"]


def test_the_library_never_imports_benchmarks_or_tests():
    for path in sorted(PACKAGE.rglob("*.py")):
        for _, module in imports_of(path):
            assert not module.startswith(("benchmarks", "tests")), f"{path.relative_to(PACKAGE)}: {module}"


@pytest.mark.slow
def test_importing_npgpt_loads_neither_torch_nor_matplotlib():
    code = "import sys, npgpt; print(sorted({'torch', 'matplotlib'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def tiny_models():
    """One small instance of every model, float64, with an input to run it on."""
    rng = np.random.default_rng(0)
    ids = rng.integers(0, 11, (2, 5))
    gpt = npgpt.GPT(npgpt.GPTConfig(vocab_size=11, block_size=8, n_layer=1, n_head=2, n_embd=8), dtype=np.float64)
    lstm = npgpt.RecurrentLM(npgpt.RecurrentConfig(vocab_size=11, block_size=8, n_embd=4, n_hidden=6,
                                                   n_layer=1), dtype=np.float64)
    doc = npgpt.DocumentModel(num_tokens=11, embed_dim=8, num_heads=2, num_layers=1, max_seq_len=8,
                              num_decoder_layers=1, dim_feedforward=12, dtype=np.float64)
    return [(gpt, (ids, ids)), (lstm, (ids, ids)), (doc, (ids.T, ids.T, ids.T))]


@pytest.mark.parametrize("model, inputs", tiny_models(), ids=["gpt", "lstm", "document"])
def test_every_model_keeps_the_protocol(model, inputs):
    assert isinstance(model, Model)
    assert model.num_params() == sum(p.size for p in model.params.values())
    _, loss = model.forward(*inputs)
    grads = model.backward()
    assert grads is model.grads and grads.keys() == model.params.keys()
    assert all(g.shape == model.params[k].shape for k, g in grads.items())
    assert model.eval() is model and not model.training and model.train().training
    state = model.state_dict()
    first = next(iter(state))
    state[first] = state[first] + 1.0
    bad = dict(state, unexpected=np.zeros(1))
    with pytest.raises(ValueError, match="unexpected keys: unexpected"):
        model.load_state_dict(bad)
    assert not np.array_equal(model.params[first], state[first])      # all or nothing
    model.load_state_dict(state)
    np.testing.assert_array_equal(model.params[first], state[first])
    with pytest.raises(ValueError, match="expects a dict of name -> array, got list"):
        model.load_state_dict([])


@pytest.mark.parametrize("model, inputs", tiny_models()[:2], ids=["gpt", "lstm"])
def test_language_models_continue_a_sequence_through_their_cache(model, inputs):
    ids = inputs[0]
    whole, _ = model.forward(ids)
    cache = model.new_cache(batch_size=2)
    first, _ = model.forward(ids[:, :3], cache=cache)
    second, _ = model.forward(ids[:, 3:4], cache=cache)
    third, _ = model.forward(ids[:, 4:], cache=cache)
    assert cache.length == 5
    np.testing.assert_allclose(np.concatenate([first, second, third], axis=1), whole, rtol=1e-10)


def test_a_model_without_steps_says_so():
    model = tiny_models()[2][0]
    with pytest.raises(ValueError, match="DocumentModel does not decode step by step"):
        model.new_cache()


@pytest.mark.slow
def test_every_subpackage_is_reachable_from_a_plain_import():
    code = ("import npgpt; print(npgpt.apps.resolve('translate').APP, npgpt.allocation.__name__, "
            "npgpt.verify.__name__, npgpt.ops.layernorm_forward.__name__)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["translation", "npgpt.allocation", "npgpt.verify", "layernorm_forward"]
    with pytest.raises(AttributeError, match="module 'npgpt' has no attribute 'nope'"):
        npgpt.nope  # noqa: B018


# ----------------------------------------------------------------------------- floors, circles, import-time effects
# The floors are the folders of the package docstring's table, in its order; npgpt/checks.py and
# npgpt/atomic.py are below them all. A module imports only from its own folder, the floors listed
# before it and those two; function-level (lazy) imports count too.
BASE_MODULES = ("checks", "atomic", "locks")
# Upward arrows kept on purpose, each with why. Nothing else may reach up.
ALLOWED_UPWARD = {
    ("npgpt.models.gpt", "npgpt.io.gpt2_files"):
        "GPT.from_pretrained / GPT.save_pretrained keep Hugging Face's method names and delegate to io/",
}


def floors_of(package: Path) -> list[str]:
    """The folder names of the package docstring's map table, in order."""
    doc = ast.get_docstring(ast.parse((package / "__init__.py").read_text(encoding="utf-8"))) or ""
    return re.findall(rf"^\| `{package.name}/(\w+)/` \|", doc, re.M)


def module_name(path: Path, package: Path) -> str:
    parts = list(path.relative_to(package.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def module_graph(package: Path) -> dict[str, set[str]]:
    """Module -> the package's modules it imports (``from .x import y`` counts ``x.y`` when y is a
    module, else ``x``), at any depth of the file."""
    names = {module_name(p, package) for p in package.rglob("*.py")}
    graph = {}
    for path in sorted(package.rglob("*.py")):
        here = module_name(path, package).split(".")
        here_package = here if path.name == "__init__.py" else here[:-1]
        found = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom):
                base = here_package[:len(here_package) - node.level + 1] if node.level else []
                target = ".".join(base + ([node.module] if node.module else []))
                if target.split(".")[0] != package.name:
                    continue
                for alias in node.names:
                    found.add(f"{target}.{alias.name}" if f"{target}.{alias.name}" in names else target)
            elif isinstance(node, ast.Import):
                found |= {a.name for a in node.names if a.name.split(".")[0] == package.name}
        graph[".".join(here)] = found - {".".join(here)}
    return graph


def floor_rank(module: str, floors: list[str]) -> int:
    parts = module.split(".")
    if len(parts) == 1 or parts[1] == "__main__":
        return len(floors)                       # the package root and `python -m`: above everything
    if parts[1] in BASE_MODULES:
        return -1
    return floors.index(parts[1]) if parts[1] in floors else len(floors)


def upward_imports(package: Path) -> list[str]:
    floors = floors_of(package)
    found = []
    for module, imported in module_graph(package).items():
        for target in sorted(imported):
            same_folder = module.split(".")[:2] == target.split(".")[:2]
            if not same_folder and floor_rank(target, floors) > floor_rank(module, floors) \
                    and (module, target) not in ALLOWED_UPWARD:
                found.append(f"{module} imports {target}, a floor above it")
    return found


def import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected set of more than one module (Tarjan's algorithm)."""
    index, low, stack, on_stack, cycles = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in graph:
                continue
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))
    for v in sorted(graph):
        if v not in index:
            visit(v)
    return cycles


def cycles_below_the_root(package: Path) -> list[list[str]]:
    """Import cycles, leaving out the package root's re-exports (``npgpt/__init__.py`` imports the
    public names; a module importing the root is caught as an upward import)."""
    graph = {m: {t for t in ts if t != package.name} for m, ts in module_graph(package).items() if m != package.name}
    return import_cycles(graph)


# What writes process-wide state: assigning into these, or calling these (reading is fine).
PROCESS_TARGETS = re.compile(r"^(os\.environ|sys\.path|numba\.config\.\w+|np\.random\.\w+)$")
PROCESS_CALLS = re.compile(r"^(os\.environ\.(setdefault|update|pop|popitem|clear)|os\.(putenv|unsetenv|umask|chdir)|"
                           r"sys\.path\.(insert|append|extend)|signal\.signal|warnings\.(filterwarnings|simplefilter)|"
                           r"logging\.basicConfig|numba\.set_num_threads|np\.seterr|np\.random\.seed|matplotlib\.use|"
                           r"threadpool_limits|\w*\.?mallopt)$")


def import_time_effects(path: Path) -> list[str]:
    """What a module does to the process when it is imported: a bare call at module level (an
    action, not a definition), or an assignment into process-wide state."""
    found = []

    def dotted(node):
        while isinstance(node, (ast.Call, ast.Subscript)):
            node = node.func if isinstance(node, ast.Call) else node.value
        return ast.unparse(node) if isinstance(node, (ast.Name, ast.Attribute)) else ""

    def walk(statements):
        for node in statements:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                continue
            if isinstance(node, ast.Expr) and isinstance(node.value, ast.Call):
                found.append(f"line {node.lineno}: calls {dotted(node.value) or ast.unparse(node.value)[:40]} on import")
            targets = node.targets if isinstance(node, ast.Assign) else \
                [node.target] if isinstance(node, (ast.AugAssign, ast.AnnAssign)) else []
            found.extend(f"line {node.lineno}: sets {dotted(t)} on import" for t in targets if PROCESS_TARGETS.match(dotted(t)))
            for value in ast.walk(node) if not isinstance(node, ast.Expr) else ():
                if isinstance(value, ast.Call) and PROCESS_CALLS.match(dotted(value)):
                    found.append(f"line {node.lineno}: calls {dotted(value)} on import")
            for field in ("body", "orelse", "finalbody", "handlers"):
                inner = getattr(node, field, None)
                if inner and not isinstance(node, (ast.FunctionDef, ast.ClassDef)):
                    walk(inner if field != "handlers" else [s for h in inner for s in h.body])

    tree = ast.parse(path.read_text(encoding="utf-8"))
    body = tree.body[1:] if tree.body and isinstance(tree.body[0], ast.Expr) and \
        isinstance(tree.body[0].value, ast.Constant) else tree.body
    walk([s for s in body if not (isinstance(s, ast.If) and ast.unparse(s.test) == "__name__ == '__main__'")])
    return found


def test_no_module_imports_a_floor_above_its_own():
    assert floors_of(PACKAGE)[0] == "runtime" and floors_of(PACKAGE)[-1] == "cli"
    found = set(upward_imports(PACKAGE))
    assert not found, "\n".join(sorted(found))


def test_no_import_cycle_between_modules():
    cycles = cycles_below_the_root(PACKAGE)
    assert not cycles, cycles


def test_nothing_changes_the_process_on_import():
    found = {str(p.relative_to(PACKAGE)): import_time_effects(p) for p in sorted(PACKAGE.rglob("*.py"))}
    found = {k: v for k, v in found.items() if v}
    assert not found, found


def test_one_command_line_package():
    """argparse parsers are built in npgpt/cli/ and nowhere else in the library."""
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if "cli" in path.relative_to(PACKAGE).parts:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            name = getattr(getattr(node, "func", None), "attr", getattr(getattr(node, "func", None), "id", ""))
            if isinstance(node, ast.Call) and name in ("ArgumentParser", "add_parser", "add_subparsers", "add_argument"):
                found.append(f"{path.relative_to(PACKAGE)}:{node.lineno} {name}")
    assert not found, found


def plant(tmp_path, files: dict[str, str]) -> Path:
    """A small package ``pkg`` in tmp_path with floors a, b (in that order) and the given files."""
    package = tmp_path / "pkg"
    table = "| folder | what |\n|---|---|\n| `pkg/a/` | low |\n| `pkg/b/` | high |\n"
    files = {"__init__.py": f'"""A planted package.\n\n{table}"""\n', "a/__init__.py": "", "b/__init__.py": "",
             **files}
    for name, text in files.items():
        (package / name).parent.mkdir(parents=True, exist_ok=True)
        (package / name).write_text(text, encoding="utf-8")
    return package


def test_the_floor_checks_fail_on_a_planted_upward_import_circle_and_import_time_write(tmp_path):
    package = plant(tmp_path, {"a/low.py": "def f():\n    from ..b import high\n    return high\n",
                               "b/high.py": "from ..a import low\n",
                               "b/one.py": "from . import two\n", "b/two.py": "from .one import x\n",
                               "b/env.py": "import os\nos.environ['OMP_NUM_THREADS'] = '1'\n",
                               "b/call.py": "def share():\n    pass\n\n\nshare()\n",
                               "b/clean.py": '"""Doc."""\nimport os\nX = os.environ.get("A")\nif __name__ == "__main__":\n    print(1)\n'})
    assert floors_of(package) == ["a", "b"]
    assert upward_imports(package) == ["pkg.a.low imports pkg.b.high, a floor above it"]
    assert cycles_below_the_root(package) == [["pkg.a.low", "pkg.b.high"], ["pkg.b.one", "pkg.b.two"]]
    assert import_time_effects(package / "b" / "env.py") == ["line 2: sets os.environ on import"]
    assert import_time_effects(package / "b" / "call.py") == ["line 5: calls share on import"]
    assert import_time_effects(package / "b" / "clean.py") == []
