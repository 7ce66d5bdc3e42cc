"""The course as a website (npgpt/site): built from the committed notebooks into a temporary folder,
served on 127.0.0.1, and read page by page in a headless Chromium; and the check itself, shown to
catch a broken image, a broken link, an untypeset formula, a TeX error, unrendered bold and a request
off the site.

Needs the tools of requirements-site.txt and Debian's chromium: without them the tests skip (CI's
second phase installs them and reruns these tests, where a missing one fails)."""
import fcntl
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from references import missing_reference, optional_reference

from npgpt.site import build as site_build

ROOT = Path(__file__).resolve().parents[1]
def needs_the_tools() -> None:
    for module in ("mkdocs", "material", "mkdocs_jupyter", "mkdocstrings_handlers", "jieba", "mathjax", "playwright"):
        optional_reference(module, "the website's tools")
    from npgpt.checks import UsageError
    from npgpt.site.check import chromium_path
    try:
        chromium_path()
    except UsageError:
        missing_reference("chromium", "the browser the site is checked in")


@pytest.fixture(scope="session")
def built(tmp_path_factory) -> Path:
    """The site, built once for the whole run: xdist workers share the base temporary folder, and the
    first to take the lock builds while the others wait for it (xdist's own grouping of tests,
    --dist loadgroup, does nothing with pytest 9, whose node ids it can no longer suffix)."""
    needs_the_tools()
    run = tmp_path_factory.getbasetemp()             # under xdist, each worker's folder in the run's
    shared = (run.parent if os.environ.get("PYTEST_XDIST_WORKER") else run) / "npgpt-site"
    shared.mkdir(exist_ok=True)
    with open(shared / "lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)             # released when the file closes
        if not (shared / "built").exists():
            site_build.build(shared, progress=lambda line: None)
            (shared / "built").touch()
    return shared / "html"


@pytest.mark.slow
def test_the_whole_site_reads_cleanly_in_chromium(built):
    from npgpt.site.check import check
    shots = built.parent / "screenshots"
    report = check(built, shots)
    assert not report.problems, "\n".join(report.problems)
    # both editions: every notebook, get started, the API floors, the notebooks' notes
    notebooks = len(list((ROOT / "notebooks").glob("*.ipynb")))
    assert report.pages == 2 * (notebooks + 2 + len(site_build.API_PACKAGES)), report.pages
    names = sorted(path.name for path in report.screenshots)
    assert names == ["en-04_attention_and_loss.png", "en-home.png", "zh-04_attention_and_loss.png", "zh-home.png"]
    assert all(path.stat().st_size > 20_000 for path in report.screenshots)     # a page, not a blank


@pytest.mark.slow
def test_every_page_is_built_from_the_notebooks_of_its_edition(built):
    for edition, folder in (("", ROOT / "notebooks"), ("zh/", ROOT / "notebooks" / "zh")):
        for notebook in folder.glob("*.ipynb"):
            page = built / edition / ("" if notebook.stem == "00_index" else notebook.stem) / "index.html"
            assert page.is_file(), page
    api = (built / "api" / "ops" / "index.html").read_text(encoding="utf-8")
    assert "<code>attention_forward</code> keeps" in api and ":func:" not in api     # Sphinx roles dropped
    home = (built / "zh" / "index.html").read_text(encoding="utf-8")
    assert 'lang="zh"' in home and "目录" in home
    assert "cdn" not in "".join(re.findall(r'(?:src|href)="([^"]+)"', home)).lower()


def broken_copy(built: Path, tmp_path: Path) -> Path:
    """A copy of the site with one fault in each of six pages (the seventh stays whole)."""
    copy = tmp_path / "html"
    shutil.copytree(built, copy)

    def edit(page: str, old: str, new: str, count: int = 1) -> None:
        path = copy / page / "index.html"
        text = path.read_text(encoding="utf-8")
        assert old in text, f"{page}: {old!r} not found: the fault cannot be injected"
        path.write_text(text.replace(old, new, count), encoding="utf-8")
    marker = '<div class="jp-Cell-inputWrapper"'
    edit("04_attention_and_loss", 'src="data:image/png', 'src="no_such_figure.png" data-was="')  # a broken image
    edit("04b_backward", marker, '<p><a href="../no_such_page/">a link</a></p>' + marker)   # a broken link
    edit("02_text_encoding", 'src="../assets/mathjax/tex-chtml.js"', 'src="../assets/mathjax/gone.js"')
    edit("03_sequence_models", marker, r"<p>$x^2^3$ is not TeX</p>" + marker)     # a TeX error: double exponent
    edit("07_applications", marker, "<p>称为**“部分”**。</p>" + marker)          # bold Markdown could not render
    edit("05_the_documents_code", marker,
         '<img src="https://cdn.example.org/pixel.png" alt="an address off the site">' + marker)
    return copy


@pytest.mark.slow
def test_the_check_catches_each_kind_of_broken_page(built, tmp_path):
    from npgpt.site.check import check
    copy = broken_copy(built, tmp_path)
    pages = ["04_attention_and_loss/", "04b_backward/", "02_text_encoding/", "03_sequence_models/",
             "05_the_documents_code/", "07_applications/", "06_training_and_decoding/"]
    problems = check(copy, pages=pages, search=False).problems
    text = "\n".join(problems)
    assert re.search(r"^/04_attention_and_loss/: image did not load: no_such_figure.png", text, re.M), text
    assert re.search(r"^/04b_backward/: broken link to /no_such_page/", text, re.M), text
    assert re.search(r"^/02_text_encoding/: MathJax is not loaded", text, re.M), text
    assert re.search(r"^/02_text_encoding/: formula not typeset: ", text, re.M), text
    assert re.search(r"^/03_sequence_models/: TeX error: ", text, re.M), text
    assert re.search(r"^/05_the_documents_code/: asks for https://cdn.example.org/pixel.png outside the site",
                     text, re.M), text
    assert re.search(r"^/07_applications/: Markdown not rendered: ...称为\*\*“部分”\*\*。...", text, re.M), text
    assert not [line for line in problems if line.startswith("/06_training_and_decoding/")], text


@pytest.mark.slow
def test_the_language_switch_and_search_faults_are_caught(built, tmp_path):
    from npgpt.site.check import check
    copy = tmp_path / "html"
    shutil.copytree(built, copy)
    page = copy / "zh" / "01_concepts" / "index.html"
    page.write_text(page.read_text(encoding="utf-8").replace('href="../../01_concepts/" hreflang="en"',
                                                             'href="../../" hreflang="en"'), encoding="utf-8")
    (copy / "zh" / "search" / "search_index.json").write_text('{"config": {"lang": ["zh"]}, "docs": []}',
                                                             encoding="utf-8")
    problems = "\n".join(check(copy, pages=["zh/01_concepts/"]).problems)
    assert "/zh/01_concepts/: the en switch leads to /, expected /01_concepts/" in problems, problems
    assert "/zh/: the search finds nothing for '注意力'" in problems, problems


def test_a_link_to_a_file_the_site_does_not_show_stops_the_build():
    from npgpt.checks import UsageError
    with pytest.raises(UsageError, match=r"notebooks/01_concepts.ipynb cell 3 links to '../benchmarks/x.py'"):
        site_build.rewrite_links("see [x](../benchmarks/x.py)", "notebooks/01_concepts.ipynb", "01_concepts/",
                                 "notebooks/01_concepts.ipynb cell 3")


def test_links_lead_from_each_page_to_the_page_of_their_target():
    rewrite = site_build.rewrite_links
    assert rewrite("[a](02_text_encoding.ipynb#part-2)", "notebooks/01_concepts.ipynb", "01_concepts/", "") \
        == "[a](../02_text_encoding/#part-2)"
    assert rewrite("[a](zh/00_index.ipynb)", "notebooks/00_index.ipynb", "", "") == "[a](zh/)"
    assert rewrite("[a](../00_index.ipynb)", "notebooks/zh/00_index.ipynb", "zh/", "") == "[a](../)"
    assert rewrite("[a](../../README.zh-CN.md)", "notebooks/zh/00_index.ipynb", "zh/", "") == "[a](get_started/)"
    assert rewrite("![f](figures/isoflop.png)", "README.md", "get_started/", "") \
        == "![f](../assets/figures/isoflop.png)"
    assert rewrite("[h](https://huggingface.co/x) [s](#here)", "README.md", "get_started/", "") \
        == "[h](https://huggingface.co/x) [s](#here)"


def test_without_the_tools_the_command_says_what_to_install(tmp_path, monkeypatch):
    monkeypatch.setattr(site_build, "missing_tools", lambda: ["mkdocs", "playwright"])
    from npgpt.checks import UsageError
    with pytest.raises(UsageError, match=r"^building the site needs mkdocs, playwright: "
                                         r"pip install -r requirements-site.txt$"):
        site_build.build(tmp_path)
    assert not any(tmp_path.iterdir())          # refused before writing anything


def test_a_bad_port_is_one_line():
    done = subprocess.run([sys.executable, "-m", "npgpt", "site", "serve", "--port", "70000"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1] == \
        "npgpt site: error: argument --port: expected a port number in [0, 65535], got '70000'"
