"""The index (notebooks/00_index.ipynb) cannot rot: every notebook part, npgpt name and test its
tables name must exist, every section of the document has its table, and the checker itself fails on
a name that does not exist. A name whose module imports an optional reference that is not installed
(npgpt.verify.twins needs torch) skips, as every reference test does."""
import ast
import importlib
import re
from functools import cache
from pathlib import Path

import nbformat
import pytest
from references import REFERENCES, missing_reference

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
INDEX = NOTEBOOKS / "00_index.ipynb"
MAP_HEADER = "| document step | notebook, part | npgpt | test |"
GLOSSARY_HEADER = "| 中文 (the article) | English | npgpt | first taught in | note |"
SECTIONS = {"1": "背景介绍", "2": "核心概念与联系", "3": "核心算法原理具体操作步骤", "4": "数学模型和公式详细讲解举例说明",
            "4 code": "项目实践：代码实例和详细解释说明", "5": "实际应用场景", "6": "工具和资源推荐",
            "7": "总结：未来发展趋势与挑战", "8": "附录：常见问题与解答"}

NOTEBOOK_PART = re.compile(r"`(\w+)`\s+parts?\s+([\d.]+(?:\s*-\s*[\d.]+)?(?:\s*,\s*[\d.]+(?:\s*-\s*[\d.]+)?)*)")
NPGPT_NAME = re.compile(r"`(npgpt(?:\.\w+)*)`")
TEST_NAME = re.compile(r"`(tests/[\w/]+\.py)::(\w+(?:::\w+)?)`")


# ---------------------------------------------------------------------- reading the tables
def tables(markdown_cells, header):
    """{section heading: [rows]} for every table with ``header``; a row is its list of cells. The
    heading is the last ``###`` line above the table ("" if none)."""
    found = {}
    for source in markdown_cells:
        heading, lines = "", source.splitlines()
        for i, line in enumerate(lines):
            if line.startswith("#"):
                heading = line.lstrip("#").strip()
            if line.strip() == header:
                rows = []
                for row in lines[i + 2:]:
                    if not row.startswith("|"):
                        break
                    rows.append([cell.strip() for cell in row.strip().strip("|").split("|")])
                found.setdefault(heading, []).extend(rows)
    return found


@cache
def index_markdown():
    nb = nbformat.read(INDEX, as_version=4)
    return tuple(cell.source for cell in nb.cells if cell.cell_type == "markdown")


def map_rows():
    """(section heading, row) for every row of every map table of the index."""
    return [(heading, row) for heading, rows in tables(index_markdown(), MAP_HEADER).items() for row in rows]


# ---------------------------------------------------------------------- checking one name
@cache
def notebook_parts(name):
    """The part numbers ("2", "2.3", ...) of notebook ``name``'s headings, or None if it does not exist."""
    path = NOTEBOOKS / f"{name}.ipynb"
    if not path.exists():
        return None
    nb = nbformat.read(path, as_version=4)
    parts = set()
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            for line in cell.source.splitlines():
                match = re.match(r"^#{2,4}\s+(\d+(?:\.\d+)*)\.?(?:\s|$)", line)
                if match:
                    parts.add(match.group(1))
    return parts


def expand_parts(spec):
    """ "2.1-2.2, 5" -> ["2.1", "2.2", "5"]; a range runs over the last number."""
    out = []
    for piece in spec.split(","):
        piece = piece.strip()
        if "-" in piece:
            first, last = (p.strip() for p in piece.split("-"))
            head, _, a = first.rpartition(".")
            b = last.rpartition(".")[2]
            out += [f"{head}.{k}" if head else str(k) for k in range(int(a), int(b) + 1)]
        else:
            out.append(piece)
    return out


def notebook_problems(cell):
    refs = NOTEBOOK_PART.findall(cell)
    if not refs:
        return [f"no notebook part named in {cell!r}"]
    problems = []
    for name, spec in refs:
        parts = notebook_parts(name)
        if parts is None:
            problems.append(f"notebook {name}.ipynb does not exist")
            continue
        problems += [f"{name} has no part {p}" for p in expand_parts(spec) if p not in parts]
    return problems


def resolve(dotted):
    """The object a dotted name ``npgpt.x.y.Z.attr`` names (ImportError or AttributeError if none).
    A module that exists but cannot be imported raises its own error: the ModuleNotFoundError of a
    package it needs, for instance, whose ``.name`` says which."""
    parts = dotted.split(".")
    for i in range(len(parts), 0, -1):
        module = ".".join(parts[:i])
        try:
            obj = importlib.import_module(module)
        except ModuleNotFoundError as err:
            if err.name is None or not (module == err.name or module.startswith(err.name + ".")):
                raise                   # the module is there; something it imports is not
            continue                    # no such module: ``parts[i - 1]`` may be an attribute
        for attr in parts[i:]:
            obj = getattr(obj, attr)
        return obj
    raise ImportError(dotted)


def npgpt_problems(cell, required=True, needs=None):
    """Problems with the npgpt names in ``cell``. With a dict ``needs``, a name whose module imports an
    optional reference that is absent is no problem: ``needs[package] = name`` records it instead."""
    names = NPGPT_NAME.findall(cell)
    if not names:
        return [f"no npgpt name in {cell!r}"] if required else []
    problems = []
    for name in names:
        try:
            resolve(name)
        except ModuleNotFoundError as err:
            # the package from the error, not from the module's path (torch_twin may move); a
            # top-level name only, as optional_reference: "safetensors.numpy" absent is a broken install
            if needs is not None and err.name in REFERENCES:
                needs[err.name] = name
            else:
                problems.append(f"{name} does not exist ({type(err).__name__}: {err})")
        except (ImportError, AttributeError) as err:
            problems.append(f"{name} does not exist ({type(err).__name__}: {err})")
    return problems


@cache
def defined_tests(path):
    """{"name", "Class::name"} of the test functions defined in ``path``, or None if it is missing."""
    file = ROOT / path
    if not file.exists():
        return None
    names = set()
    for node in ast.parse(file.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.FunctionDef):
            names.add(node.name)
        elif isinstance(node, ast.ClassDef):
            names |= {f"{node.name}::{f.name}" for f in node.body if isinstance(f, ast.FunctionDef)}
    return names


def named_test_problems(cell):
    refs = TEST_NAME.findall(cell)
    if not refs:
        return [f"no test named in {cell!r}"]
    problems = []
    for path, name in refs:
        defined = defined_tests(path)
        if defined is None:
            problems.append(f"{path} does not exist")
        elif name not in defined:
            problems.append(f"{path} has no test {name}")
    return problems


def row_problems(heading, row, needs=None):
    if len(row) != 4:
        return [f"{heading}: a row needs 4 cells, got {len(row)}: {row}"]
    step, notebook, names, tests = row
    return [f"{heading} / {step[:50]}: {p}" for p in
            notebook_problems(notebook) + npgpt_problems(names, needs=needs) + named_test_problems(tests)]


def assert_no_problems(problems, needs):
    """Fail on any problem; otherwise skip (or fail, NPGPT_REQUIRE_REFERENCES=1) if a name needs an
    optional reference that is not installed."""
    assert not problems, "\n".join(problems)
    for package, name in sorted(needs.items()):
        missing_reference(package, reason=f"the index names {name}, which imports it")


# ---------------------------------------------------------------------- the tests
def test_every_section_of_the_document_has_its_table():
    headings = list(tables(index_markdown(), MAP_HEADER))
    for number, chinese in SECTIONS.items():
        titled = [h for h in headings if h.startswith(f"§{number} {chinese}")]
        assert titled, f"no map table under a heading '§{number} {chinese} — ...'; headings: {headings}"
        assert " — " in titled[0], f"heading {titled[0]!r} needs an English title after ' — '"
    assert len(headings) == len(SECTIONS), f"unexpected map tables: {headings}"
    assert len(map_rows()) >= 50


@pytest.mark.parametrize("heading, row", map_rows(), ids=lambda x: x[0][:40] if isinstance(x, list) else x.split(" ")[0])
def test_every_name_in_the_map_exists(heading, row):
    needs = {}
    assert_no_problems(row_problems(heading, row, needs), needs)


def test_every_name_in_the_glossary_exists():
    rows = [row for rows in tables(index_markdown(), GLOSSARY_HEADER).values() for row in rows]
    assert len(rows) >= 25, "the glossary table is missing or short"
    problems, needs = [], {}
    for chinese, english, names, taught, _ in rows:
        assert re.search(r"[\u4e00-\u9fff]", chinese), f"glossary row {english!r} has no Chinese term"
        problems += [f"{chinese}: {p}" for p in npgpt_problems(names, required=False, needs=needs) +
                     notebook_problems(taught)]
    assert_no_problems(problems, needs)


def test_every_notebook_is_in_the_map_or_listed_as_arriving():
    """A notebook on disk is mapped in a table or listed under "Arriving"; one listed as arriving is
    in no table (it moves into the tables when it lands, and the list loses it)."""
    markdown = index_markdown()
    arriving = "".join(s for s in markdown if s.startswith("## Arriving"))
    mapped = "".join(s for s in markdown if MAP_HEADER in s)
    assert MAP_HEADER not in arriving
    for path in sorted(NOTEBOOKS.glob("*.ipynb")):
        name = f"`{path.stem}`"
        if path.stem in ("00_index", "exercises"):
            continue
        assert (name in mapped) != (name in arriving), f"{path.stem}: mapped and arriving, or neither"


def test_the_checker_fails_on_names_that_do_not_exist():
    """The index can rot only if the checker cannot fail: feed it one broken name of each kind."""
    good = ["a step", "`04b_backward` part 3", "`npgpt.ops.layernorm_backward`",
            "`tests/test_ops.py::test_layernorm_gradcheck`"]
    assert row_problems("§4", good) == []
    broken = {1: "`04c_backward` part 3", 2: "`npgpt.ops.layernorm_backwards`", 3: "`tests/test_ops.py::test_layernorm_grad`"}
    expected = {1: "notebook 04c_backward.ipynb does not exist", 2: "npgpt.ops.layernorm_backwards does not exist",
                3: "tests/test_ops.py has no test test_layernorm_grad"}
    for column, cell in broken.items():
        problems = row_problems("§4", [*good[:column], cell, *good[column + 1:]])
        assert len(problems) == 1 and expected[column] in problems[0], problems
    assert row_problems("§4", [good[0], "`04b_backward` part 12", good[2], good[3]]) == \
        ["§4 / a step: 04b_backward has no part 12"]
    assert row_problems("§4", [good[0], "`04b_backward` parts 8-10", good[2], good[3]]) == \
        ["§4 / a step: 04b_backward has no part 10"]
    assert "no test named" in row_problems("§4", [*good[:3], "tests/test_ops.py"])[0]
    assert "tests/test_nope.py does not exist" in row_problems("§4", [*good[:3], "`tests/test_nope.py::test_x`"])[0]
    assert expand_parts("2.1-2.3, 5") == ["2.1", "2.2", "2.3", "5"]


def test_a_name_needing_an_absent_reference_skips_and_a_broken_import_still_fails(tmp_path, monkeypatch):
    """Two modules put inside npgpt.verify for the test: one imports an optional reference that is not
    installed (the row skips, naming it), one a package that is no reference (the row fails)."""
    import npgpt.verify
    (tmp_path / "index_probe_reference.py").write_text("import npgpt_absent_reference\n")
    (tmp_path / "index_probe_broken.py").write_text("import npgpt_absent_dependency\n")
    monkeypatch.setattr(npgpt.verify, "__path__", [*npgpt.verify.__path__, str(tmp_path)])
    monkeypatch.setitem(REFERENCES, "npgpt_absent_reference", "torch")
    monkeypatch.delenv("NPGPT_REQUIRE_REFERENCES", raising=False)
    good = ["a step", "`04b_backward` part 3", "`npgpt.ops.layernorm_backward`",
            "`tests/test_ops.py::test_layernorm_gradcheck`"]

    needs = {}
    row = [*good[:2], "`npgpt.ops.layernorm_backward`, `npgpt.verify.index_probe_reference.Thing`", good[3]]
    assert row_problems("§6", row, needs) == []
    assert needs == {"npgpt_absent_reference": "npgpt.verify.index_probe_reference.Thing"}
    with pytest.raises(pytest.skip.Exception, match="npgpt_absent_reference .*npgpt.verify.index_probe_reference"):
        assert_no_problems([], needs)
    monkeypatch.setenv("NPGPT_REQUIRE_REFERENCES", "1")
    with pytest.raises(pytest.fail.Exception, match="npgpt_absent_reference"):
        assert_no_problems([], needs)
    # without a place to record it (the checker's own strict use), it is a problem like any other
    assert "No module named 'npgpt_absent_reference'" in row_problems("§6", row)[0]

    needs = {}
    problems = row_problems("§6", [*good[:2], "`npgpt.verify.index_probe_broken.Thing`", good[3]], needs)
    assert needs == {} and len(problems) == 1, problems
    assert "npgpt.verify.index_probe_broken.Thing does not exist (ModuleNotFoundError: No module named " \
           "'npgpt_absent_dependency')" in problems[0]
    # a module that is not there at all is still "does not exist", not a missing reference
    needs = {}
    problems = row_problems("§6", [*good[:2], "`npgpt.verify.index_probe_nowhere`", good[3]], needs)
    assert needs == {} and "npgpt.verify.index_probe_nowhere does not exist" in problems[0], problems
