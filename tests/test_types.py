"""Type annotations (issue 24, item 7): mypy, pinned in requirements-ref.txt, finds no error in the
paths that pyproject.toml's [tool.mypy] ``files`` lists, with the settings there (every function
under them annotated: disallow_untyped_defs). That list is the one place saying what is checked:
annotate a folder, then add it there.

mypy is optional, as the other references are: without it these tests skip (CI's first phase) and
CI's second phase, which installs requirements-ref.txt, runs them. mypy's incremental cache lives in
the temporary folder, never in the repository: a first run takes about 7 s, a repeated one under 1 s.
"""
import hashlib
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

import pytest
from references import optional_reference

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = ROOT / "pyproject.toml"
# One cache per checkout (a shared one would only be rebuilt each time the checkout changes).
CACHE = Path(tempfile.gettempdir()) / f"npgpt-mypy-cache-{hashlib.sha256(str(ROOT).encode()).hexdigest()[:12]}"


def mypy_settings() -> dict:
    return tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))["tool"]["mypy"]


@pytest.fixture
def mypy():
    """mypy's version, or a skip naming its pin (a failure with NPGPT_REQUIRE_REFERENCES=1)."""
    optional_reference("mypy", reason="the type checker")
    return optional_reference("mypy.version", reason="the type checker").__version__


def run_mypy(*paths: str) -> subprocess.CompletedProcess:
    """``python -m mypy`` with the project's settings, on ``paths`` (none: the configured ``files``)."""
    command = [sys.executable, "-m", "mypy", "--config-file", str(PYPROJECT), "--cache-dir", str(CACHE), *paths]
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)


def test_the_annotated_paths_type_check(mypy):
    done = run_mypy()
    assert done.returncode == 0, f"mypy {mypy} on {mypy_settings()['files']}:\n{done.stdout}{done.stderr}"
    assert "Success: no issues found" in done.stdout, done.stdout


def test_the_settings_refuse_a_missing_annotation_and_a_type_error(mypy, tmp_path):
    """What a newcomer would write wrong, in a module checked with the project's settings."""
    probe = tmp_path / "npgpt_types_probe.py"
    probe.write_text("def unannotated(x):\n    return x\n\n\n"
                     "def half_annotated(x: int, y):\n    return x\n\n\n"
                     "def wrong(x: int) -> str:\n    return x\n", encoding="utf-8")
    done = run_mypy(str(probe))
    assert done.returncode == 1, done.stdout + done.stderr
    for line, code in ((1, "no-untyped-def"), (5, "no-untyped-def"), (10, "return-value")):
        assert f"npgpt_types_probe.py:{line}: error:" in done.stdout and f"[{code}]" in done.stdout, done.stdout


def test_the_checked_paths_exist_and_the_annotations_ship():
    """No mypy needed: a mistyped path in ``files``, or a wheel without py.typed (PEP 561: without
    it, a project using npgpt ignores its annotations)."""
    missing = [path for path in mypy_settings()["files"] if not (ROOT / path).exists()]
    assert not missing, f"pyproject.toml's [tool.mypy] files names paths that do not exist: {missing}"
    assert (ROOT / "npgpt" / "py.typed").is_file()
    package_data = tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))["tool"]["setuptools"]["package-data"]
    assert "py.typed" in package_data["npgpt"], package_data
