"""The optional references mechanism (tests/references.py) and the files that pin the packages.

A test that asks for a reference skips without it, naming the package and its pin; fails instead with
NPGPT_REQUIRE_REFERENCES=1; and its node id lands in the NPGPT_REFERENCE_SKIPS file, from which
`python -m pytest @file` reruns exactly those tests (CI's second phase). These run pytest in a
subprocess on small test files in tmp_path that ask for a package that does not exist. Then: the pins
agree with pyproject's requires-python, and the files those pins' comments name exist."""
import ast
import importlib.metadata
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import references
from packaging.specifiers import SpecifierSet
from references import REFERENCES, missing_reference, optional_reference, pin

ROOT = Path(__file__).resolve().parents[1]
TESTS = ROOT / "tests"
PINS = [ROOT / "requirements.txt", ROOT / "requirements-ref.txt", ROOT / "requirements-site.txt"]

# The probe suite: its conftest registers the hooks as tests/conftest.py does, plus a fake reference
# that is never installed. PROBE_PACKAGE=json stands for "the reference is installed now".
CONFTEST = f"""
import sys
sys.path.insert(0, {str(TESTS)!r})
import references
references.REFERENCES["npgpt_absent_reference"] = "torch"
references.REFERENCES["json"] = "torch"
from references import pytest_collectreport, pytest_runtest_logreport, pytest_sessionfinish
"""
PROBE = """
import os
import pytest
from references import optional_reference

PACKAGE = os.environ.get("PROBE_PACKAGE", "npgpt_absent_reference")

def test_needs_it():
    optional_reference(PACKAGE, reason="the probe's reference")

@pytest.mark.parametrize("words", ["two words", "深度学习"])
def test_with_an_odd_id(words):
    optional_reference(PACKAGE, reason="the probe's reference")

@pytest.fixture
def needs_it():
    optional_reference(PACKAGE, reason="a fixture's reference")

def test_through_a_fixture(needs_it):
    pass

def test_skips_for_another_reason():
    pytest.skip("needs a machine with two cores")

def test_needs_nothing():
    pass
"""
PROBE_MODULE = """
import os
from references import optional_reference

optional_reference(os.environ.get("PROBE_PACKAGE", "npgpt_absent_reference") + ".decoder",
                   reason="the whole module")

def test_never_collected_without_it():
    pass
"""
RECORDED = {"test_probe.py::test_needs_it", "test_probe.py::test_with_an_odd_id[two words]",
            "test_probe.py::test_with_an_odd_id[\\u6df1\\u5ea6\\u5b66\\u4e60]",   # pytest escapes ids
            "test_probe.py::test_through_a_fixture", "test_probe_module.py"}


@pytest.fixture(scope="module")
def probe(tmp_path_factory):
    folder = tmp_path_factory.mktemp("probe")
    for name, text in {"conftest.py": CONFTEST, "test_probe.py": PROBE, "test_probe_module.py": PROBE_MODULE}.items():
        (folder / name).write_text(text, encoding="utf-8")
    return folder


@pytest.fixture(scope="module")
def recorded(probe):
    """The probe suite run as CI's first phase runs: (the run, the file of skipped node ids)."""
    skips = probe / "skips.txt"
    return run(probe, NPGPT_REFERENCE_SKIPS=str(skips)), skips


def run(folder: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    """pytest in ``folder`` (its own rootdir, no cache, no plugins to load: it starts faster), with the
    two variables set only as given."""
    base = {k: v for k, v in os.environ.items() if k not in (references.REQUIRE, references.SKIPS, "PROBE_PACKAGE")}
    base["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] = "1"
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-rs", *args],
                          cwd=folder, env={**base, **env}, capture_output=True, text=True, timeout=120)


def test_a_missing_reference_skips_with_its_pin_and_is_recorded(recorded):
    done, skips = recorded
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 passed, 6 skipped" in done.stdout, done.stdout
    assert ("optional reference missing: npgpt_absent_reference (the probe's reference); install it with "
            "`pip install torch==2.13.0`") in done.stdout
    assert "test_probe.py:9: optional reference missing" in done.stdout     # the test's line, not ours
    assert set(skips.read_text(encoding="utf-8").splitlines()) == RECORDED   # not the two-cores skip


def test_the_recorded_file_reruns_exactly_those_tests(probe, recorded):
    skips = recorded[1]
    done = run(probe, f"@{skips}", PROBE_PACKAGE="json", NPGPT_REQUIRE_REFERENCES="1")
    assert done.returncode == 0, done.stdout + done.stderr
    assert re.search(r"^5 passed in", done.stdout, re.M), done.stdout


@pytest.mark.slow
def test_required_references_fail_instead_of_skipping(probe):
    done = run(probe, "test_probe.py", NPGPT_REQUIRE_REFERENCES="1")
    assert done.returncode == 1 and "3 failed, 1 passed, 1 skipped, 1 error" in done.stdout, done.stdout
    assert "NPGPT_REQUIRE_REFERENCES=1, but optional reference missing: npgpt_absent_reference" in done.stdout
    done = run(probe, "test_probe_module.py", NPGPT_REQUIRE_REFERENCES="1")
    assert done.returncode != 0 and "ERROR collecting test_probe_module.py" in done.stdout, done.stdout


@pytest.mark.slow
def test_a_module_skipped_for_a_reference_exits_0_not_5(probe):
    """pytest counts a module skipped at import as no test collected (exit 5)."""
    done = run(probe, "test_probe_module.py")
    assert done.returncode == 0 and "1 skipped" in done.stdout, done.stdout
    assert "optional reference missing: npgpt_absent_reference (the whole module)" in done.stdout
    assert run(probe, "test_probe.py", "-k", "no_such_test").returncode == 5     # still 5 when nothing was there


def test_an_installed_reference_is_returned_and_a_broken_one_raises(tmp_path, monkeypatch):
    monkeypatch.setitem(REFERENCES, "json", "torch")
    import json
    assert optional_reference("json", reason="installed") is json
    # installed, but it needs a package that is no reference: a broken install shows its error
    (tmp_path / "npgpt_broken_reference.py").write_text("import npgpt_absent_dependency\n")
    monkeypatch.syspath_prepend(tmp_path)
    monkeypatch.setitem(REFERENCES, "npgpt_broken_reference", "torch")
    with pytest.raises(ModuleNotFoundError, match="npgpt_absent_dependency"):
        optional_reference("npgpt_broken_reference", reason="broken")


def test_bad_names_are_refused():
    with pytest.raises(ValueError, match="'numpyy' is not part of an optional reference; expected one of"):
        optional_reference("numpyy", reason="a typo")
    with pytest.raises(ValueError, match="'mpiexec' is not an optional reference"):
        missing_reference("mpiexec", reason="a typo")


def test_conftest_registers_the_hooks(request):
    plugins = request.config.pluginmanager.get_plugins()
    for hook in ("pytest_collectreport", "pytest_runtest_logreport", "pytest_sessionfinish"):
        assert any(getattr(p, hook, None) is getattr(references, hook) for p in plugins), hook


def test_every_reference_is_pinned_in_requirements_ref():
    for name, distribution in REFERENCES.items():
        if distribution == "chromium":           # a Debian package: the skip says the apt command
            assert pin(distribution) == "apt-get install -y chromium"
            continue
        assert "==" in pin(distribution), f"{name}: {distribution} is not pinned in requirements-ref.txt"


def test_no_test_asks_for_a_package_any_other_way():
    """importorskip would skip without being recorded and without failing under NPGPT_REQUIRE_REFERENCES."""
    offenders = []
    for path in sorted(TESTS.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Attribute) and node.attr == "importorskip":
                offenders.append(f"{path.name}:{node.lineno}: {node.attr}")
    assert not offenders, offenders


# ----------------------------------------------------------------------------- the pins
def pins() -> dict[str, str]:
    """{distribution: version} pinned with == in requirements.txt and requirements-ref.txt."""
    found = {}
    for path in PINS:
        for line in path.read_text(encoding="utf-8").splitlines():
            match = re.match(r"\s*([A-Za-z0-9_.-]+)\s*==\s*([^\s#;+]+)", line)
            if match:
                found[match.group(1)] = match.group(2)
    return found


def lowest_python(specifier: str) -> str:
    """The first 3.x minor version ``specifier`` allows."""
    allowed = [f"3.{minor}" for minor in range(6, 30) if SpecifierSet(specifier).contains(f"3.{minor}")]
    assert allowed, f"{specifier!r} allows no Python 3.6-3.29"
    return allowed[0]


def test_requires_python_is_what_the_pins_install_on():
    """The installed pins' own Requires-Python (read offline from their metadata): pyproject may not
    promise a Python that a pin has no release for (numpy 2.4.6 needs 3.11)."""
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["requires-python"]
    needs = {}
    for name, version in pins().items():
        try:
            metadata = importlib.metadata.metadata(name)
        except importlib.metadata.PackageNotFoundError:
            continue                                    # an optional reference not installed here
        if metadata["Version"].split("+")[0] == version and metadata["Requires-Python"]:
            needs[name] = lowest_python(metadata["Requires-Python"])
    assert "numpy" in needs, f"numpy is not installed at its pin {pins()['numpy']}"
    floor = max(needs.values(), key=lambda v: int(v.split(".")[1]))
    assert lowest_python(declared) == floor, \
        f"pyproject says requires-python {declared!r}, but the pins need {floor}: " \
        f"{sorted(n for n, v in needs.items() if v == floor)}"


def test_the_files_named_in_the_requirements_and_pyproject_exist():
    named = {}
    for path in [*PINS, ROOT / "pyproject.toml"]:
        for file in re.findall(r"(?<![\w/])((?:npgpt|tests)/[\w/]*\.py)\b", path.read_text(encoding="utf-8")):
            named.setdefault(file, path.name)
    assert "npgpt/training/distributed.py" in named         # the pattern finds what is there
    missing = [f"{source} names {file}" for file, source in sorted(named.items()) if not (ROOT / file).exists()]
    assert not missing, missing
