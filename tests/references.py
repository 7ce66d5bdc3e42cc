"""Optional references: the packages some tests compare npgpt against, which the library never needs
(requirements-ref.txt). Every test asks for one through ``optional_reference()``, never
``pytest.importorskip``, so that one switch decides what a missing reference means:

- by default the test (or the whole module, when asked at import time) skips, and the reason names
  the package and the pin that installs it;
- ``NPGPT_REQUIRE_REFERENCES=1``: a missing reference fails the test, so a run that is meant to have
  the references (CI's second phase) cannot pass by skipping;
- ``NPGPT_REFERENCE_SKIPS=<file>``: the node id of every test or module skipped for want of a
  reference is appended to the file, one per line, so CI can rerun exactly those tests
  (``python -m pytest @file``) once the references are installed.

tests/conftest.py registers the hooks below, which do the recording and keep a run whose modules all
skipped at import from exiting 5 ("no tests collected")."""
import importlib
import os
import re
from pathlib import Path
from types import ModuleType
from typing import NoReturn

import pytest

ROOT = Path(__file__).resolve().parents[1]
REQUIREMENTS_REF = ROOT / "requirements-ref.txt"
REQUIRE = "NPGPT_REQUIRE_REFERENCES"
SKIPS = "NPGPT_REFERENCE_SKIPS"
# Every skip reason starts with this, which is how the hooks tell a reference skip from the others
# (two cores, root for a tmpfs, NPGPT_GPT2_DIR unset).
MARK = "optional reference missing:"

# Top-level import name (or, for mpich, the package that brings mpiexec) -> the distribution in
# requirements-ref.txt that installs it. tests/test_references.py checks each one is pinned there.
REFERENCES = {
    "torch": "torch",
    "tiktoken": "tiktoken",
    "sacrebleu": "sacrebleu",
    "rouge_score": "rouge-score",
    "nltk": "rouge-score",              # rouge-score's stemmer
    "transformers": "transformers",
    "safetensors": "safetensors",
    "tokenizers": "transformers",
    "mpi4py": "mpi4py",
    "mpich": "mpich",                   # mpiexec, not a module
    "mypy": "mypy",                     # the type checker (tests/test_types.py)
    # the website's tools (requirements-site.txt, which requirements-ref.txt includes): tests/test_site.py
    "mkdocs": "mkdocs",
    "material": "mkdocs-material",
    "mkdocs_jupyter": "mkdocs-jupyter",
    "mkdocstrings_handlers": "mkdocstrings-python",
    "jieba": "jieba",
    "mathjax": "django-static-mathjax",
    "playwright": "playwright",
    "chromium": "chromium",             # Debian's browser, not a module: apt-get install -y chromium
}


def requirement_lines(path: Path = REQUIREMENTS_REF) -> list[str]:
    """The lines of a requirements file and of the files it includes (``-r other.txt``)."""
    lines = []
    for line in path.read_text(encoding="utf-8").splitlines():
        included = re.match(r"\s*-r\s+(\S+)", line)
        lines += requirement_lines(path.parent / included.group(1)) if included else [line]
    return lines


def pin(distribution: str) -> str:
    """``name==version`` as requirements-ref.txt (or a file it includes) pins ``distribution`` (the
    bare name if it does not); chromium is installed by apt, so its install command is returned."""
    if distribution == "chromium":
        return "apt-get install -y chromium"
    for line in requirement_lines():
        match = re.match(r"\s*([A-Za-z0-9_.-]+)\s*==\s*([^\s#;]+)", line)
        if match and match.group(1).lower() == distribution.lower():
            return f"{match.group(1)}=={match.group(2)}"
    return distribution


def missing_reference(package: str, reason: str) -> NoReturn:
    """Skip (or, with NPGPT_REQUIRE_REFERENCES=1, fail) because optional reference ``package`` is absent."""
    __tracebackhide__ = True            # the skip is reported at the test's line, not this one
    if package not in REFERENCES:
        raise ValueError(f"{package!r} is not an optional reference; expected one of {sorted(REFERENCES)}")
    how = pin(REFERENCES[package])
    how = how if how.startswith("apt-get") else f"pip install {how}"
    message = (f"{MARK} {package} ({reason}); install it with `{how}`, "
               f"or every reference with `pip install -r requirements-ref.txt`")
    if os.environ.get(REQUIRE) == "1":
        raise pytest.fail.Exception(f"{REQUIRE}=1, but {message}", pytrace=False) from None
    # allow_module_level: a module asking at import time is skipped whole, as importorskip does
    raise pytest.skip.Exception(message, allow_module_level=True) from None


def optional_reference(module: str, reason: str) -> ModuleType:
    """Import ``module`` ("torch", "safetensors.numpy", ...), which belongs to an optional reference.

    If it, or an optional reference it imports (rouge_score's nltk), is not installed, the test skips
    or fails as the module docstring says. Any other import error (a dependency that is no reference,
    or a submodule missing from an installed reference) is a broken install and is raised."""
    __tracebackhide__ = True
    top = module.partition(".")[0]
    if top not in REFERENCES:
        raise ValueError(f"{module!r} is not part of an optional reference; expected one of "
                         f"{sorted(REFERENCES)}")
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as err:
        if err.name not in REFERENCES:      # "safetensors.numpy" absent while safetensors is there
            raise
        missing_reference(err.name, reason)


def is_reference_skip(report: pytest.TestReport | pytest.CollectReport) -> bool:
    """Whether ``report`` is a skip raised by ``missing_reference``."""
    longrepr = report.longrepr
    # a skip's longrepr is (path, line, "Skipped: <message>")
    return report.skipped and isinstance(longrepr, tuple) and MARK in str(longrepr[2])


def record(report: pytest.TestReport | pytest.CollectReport) -> None:
    path = os.environ.get(SKIPS)
    if path and is_reference_skip(report):
        with open(path, "a", encoding="utf-8") as file:
            file.write(report.nodeid + "\n")


# ----------------------------------------------------------------------------- hooks (conftest.py)
def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    record(report)


def pytest_collectreport(report: pytest.CollectReport) -> None:
    record(report)                      # a module that skipped at import (test_torch_reference.py)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """A run whose every module skipped at import exits 0, as a run of skipped tests does, not 5.

    pytest counts a module skipped at import as no test collected; `pytest tests/test_torch_reference.py`
    without torch would otherwise look like a mistyped path."""
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = reporter.stats.get("skipped", []) if reporter is not None else []
    if exitstatus == pytest.ExitCode.NO_TESTS_COLLECTED and any(
            isinstance(report, pytest.CollectReport) for report in skipped):
        session.exitstatus = pytest.ExitCode.OK
