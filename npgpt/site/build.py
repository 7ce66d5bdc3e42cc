"""Build the course's website: both editions of every notebook, the README as "get started", the API
from the docstrings, and search, into ``site/_build/html``, with nothing fetched from a network.

The tools (requirements-site.txt): MkDocs with the Material theme, because it is a Python-only chain
(``pip install`` is the whole set-up, as for the rest of npgpt), its search works offline and
segments Chinese with jieba, and mkdocs-jupyter renders each notebook's committed outputs as they
are (nothing is executed at build time); mkdocstrings renders the docstrings' formulas through the
same Markdown as the README. The two editions are two MkDocs builds of pages with the same paths,
English at the root and Chinese under ``zh/``, so the language switch leads to the same page.

Staging (``site/_build/docs/<edition>``): each notebook is copied with its links rewritten from
repository paths (``02_text_encoding.ipynb``, ``../README.md``, ``zh/00_index.ipynb``) to the pages
that show those files; a link to a file the site has no page for stops the build with its name,
so a new link cannot silently break.
"""
from __future__ import annotations

import json
import logging
import os
import posixpath
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..checks import UsageError

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[2]           # the clone: notebooks/, README.md, site/
SITE = ROOT / "site"
BUILD = SITE / "_build"
HTML = BUILD / "html"
REQUIREMENTS = "requirements-site.txt"
# import name -> the distribution in requirements-site.txt that brings it
TOOLS = {"mkdocs": "mkdocs", "material": "mkdocs-material", "mkdocs_jupyter": "mkdocs-jupyter",
         "mkdocstrings_handlers.python": "mkdocstrings-python", "mathjax": "django-static-mathjax",
         "jieba": "jieba"}
# The API reference: one page per floor of npgpt, each module of it on that page.
API_PACKAGES = ("ops", "kernels", "models", "text", "training", "decoding", "evaluation", "allocation",
                "verify", "io", "exercises", "apps", "plots", "perf", "runtime")


@dataclass(frozen=True)
class Edition:
    """One language of the site: where its notebooks and README are, and where its pages go."""
    lang: str                  # the HTML language and Material's interface language
    name: str                  # as the language switch shows it
    notebooks: Path
    readme: Path
    prefix: str                # its pages' path from the site's root: "" or "zh/"
    labels: dict[str, str]     # nav section titles


EDITIONS = (
    Edition("en", "English", ROOT / "notebooks", ROOT / "README.md", "",
            {"start": "Get started", "course": "The course", "api": "API reference",
             "maintaining": "Maintaining the notebooks"}),
    Edition("zh", "中文", ROOT / "notebooks" / "zh", ROOT / "README.zh-CN.md", "zh/",
            {"start": "开始使用", "course": "课程", "api": "API 参考（英文）",
             "maintaining": "维护笔记本（英文）"}),
)


def missing_tools() -> list[str]:
    """The distributions of requirements-site.txt whose modules cannot be imported."""
    import importlib.util
    missing = []
    for module, distribution in TOOLS.items():
        try:
            found = importlib.util.find_spec(module) is not None
        except ModuleNotFoundError:          # a dotted name whose parent is absent
            found = False
        if not found:
            missing.append(distribution)
    return missing


def page_of(repo_path: str) -> str | None:
    """The site path (from the site's root, "" for the home page) of the page that shows the
    repository file ``repo_path`` ("notebooks/zh/04b_backward.ipynb"), or None if no page does."""
    for edition in EDITIONS:
        folder = edition.notebooks.relative_to(ROOT).as_posix()
        if posixpath.dirname(repo_path) == folder and repo_path.endswith(".ipynb"):
            stem = posixpath.basename(repo_path)[:-len(".ipynb")]
            return edition.prefix + ("" if stem == "00_index" else stem + "/")
        if repo_path == edition.readme.relative_to(ROOT).as_posix():
            return edition.prefix + "get_started/"
    if repo_path == "notebooks/README.md":
        return "maintaining/"            # English in both editions: the page is for contributors
    if repo_path.startswith("figures/") and (ROOT / repo_path).is_file():
        return "assets/" + repo_path
    return None


LINK = re.compile(r"(\]\(|href=\"|src=\")([^)\"\s]+)")


def rewrite_links(text: str, source: str, page: str, where: str) -> str:
    """``text`` (Markdown of the repository file ``source``) with every relative link pointing at the
    page that shows its target, relative to ``page`` (the site path ``text`` is shown at)."""
    def replace(match: re.Match) -> str:
        opening, target = match.groups()
        if re.match(r"[a-z][a-z0-9+.-]*:|#", target):           # https:, mailto:, data:, #anchor
            return match.group(0)
        path, _, anchor = target.partition("#")
        repo_path = posixpath.normpath(posixpath.join(posixpath.dirname(source), path))
        destination = page_of(repo_path)
        if destination is None:
            raise UsageError(f"{where} links to {target!r} ({repo_path}), which the site has no page for; "
                             f"link to a notebook, README.md or figures/, or to a full https:// address")
        href = posixpath.relpath(destination or ".", page or ".")
        if destination.endswith("/") or not destination:          # a page (a folder), not a file
            href += "/"
        return opening + href + ("#" + anchor if anchor else "")
    return LINK.sub(replace, text)


def stage_notebook(source: Path, target: Path, page: str) -> None:
    """Copy the notebook ``source`` to ``target`` with the links of its Markdown cells rewritten."""
    notebook = json.loads(source.read_text(encoding="utf-8"))
    repo_path = source.relative_to(ROOT).as_posix()
    for number, cell in enumerate(notebook["cells"]):
        if cell["cell_type"] == "markdown":
            text = "".join(cell["source"])
            cell["source"] = rewrite_links(text, repo_path, page, f"{repo_path} cell {number}")
    target.write_text(json.dumps(notebook, ensure_ascii=False), encoding="utf-8")


def api_pages(docs: Path) -> list[str]:
    """Write one Markdown page per floor of npgpt (mkdocstrings renders its modules' docstrings)."""
    package = ROOT / "npgpt"
    (docs / "api").mkdir()
    pages = []
    for floor in API_PACKAGES:
        modules = sorted(p.stem for p in (package / floor).glob("*.py") if not p.stem.startswith("_"))
        # the package's docstring (what the floor is), then each module with its members
        lines = [f"# npgpt.{floor}", f"::: npgpt.{floor}\n    options:\n      members: false\n"
                                     f"      show_root_heading: false"]
        lines += [f"::: npgpt.{floor}.{module}" for module in modules]
        (docs / "api" / f"{floor}.md").write_text("\n\n".join(lines) + "\n", encoding="utf-8")
        pages.append(f"api/{floor}.md")
    return pages


def stage(edition: Edition, docs: Path) -> list:
    """Fill ``docs`` with one edition's pages; returns its navigation (MkDocs' ``nav``)."""
    docs.mkdir(parents=True)
    course = []
    for source in sorted(edition.notebooks.glob("*.ipynb")):
        name = "index.ipynb" if source.stem == "00_index" else source.name
        page = edition.prefix + ("" if source.stem == "00_index" else source.stem + "/")
        stage_notebook(source, docs / name, page)
        if name != "index.ipynb":
            course.append(name)
    readme = edition.readme.read_text(encoding="utf-8")
    where = edition.readme.relative_to(ROOT).as_posix()
    (docs / "get_started.md").write_text(rewrite_links(readme, where, edition.prefix + "get_started/", where),
                                         encoding="utf-8")
    notes = "notebooks/README.md"
    (docs / "maintaining.md").write_text(rewrite_links((ROOT / notes).read_text(encoding="utf-8"), notes,
                                                       edition.prefix + "maintaining/", notes), encoding="utf-8")
    shutil.copytree(ROOT / "figures", docs / "assets" / "figures")
    shutil.copytree(SITE / "assets", docs / "assets", dirs_exist_ok=True)
    import mathjax  # django-static-mathjax: MathJax 3's release files (its es5/ folder)
    shutil.copytree(Path(mathjax.__file__).parent / "static" / "mathjax" / "es5", docs / "assets" / "mathjax")
    return ["index.ipynb", {edition.labels["start"]: "get_started.md"}, {edition.labels["course"]: course},
            {edition.labels["api"]: api_pages(docs)}, {edition.labels["maintaining"]: "maintaining.md"}]


def config_text(edition: Edition, nav: list, out: Path) -> str:
    """This edition's MkDocs config: the shared ``site/mkdocs.yml`` and what differs."""
    # the other edition's root, relative to this one's ("zh/" from the root, "../" from zh/)
    up = "../" * edition.prefix.count("/")
    others = [{"name": other.name, "lang": other.lang, "link": "" if other is edition else up + other.prefix}
              for other in EDITIONS]
    config = {
        "INHERIT": str(SITE / "mkdocs.yml"),
        "docs_dir": str(out / "docs" / edition.lang),
        "site_dir": str(out / "html" / edition.prefix),
        "theme": {"language": edition.lang, "custom_dir": str(SITE / "overrides")},
        "nav": nav,
        "hooks": [str(Path(__file__).with_name("hooks.py"))],
        "extra": {"alternate": others},
        "plugins": [
            {"search": {"lang": [edition.lang] if edition.lang == "en" else ["zh", "en"]}},
            {"mkdocs-jupyter": {"execute": False, "include_source": False, "ignore_h1_titles": False,
                                "cache_dir": str(out / "cache" / edition.lang),
                                # nbconvert's template loads MathJax 2 from a CDN unless given an
                                # address: an empty script, since every page loads the local MathJax 3
                                "custom_mathjax_url": "data:text/javascript,"}},
            {"mkdocstrings": {"handlers": {"python": {"paths": [str(ROOT)], "options": {
                "docstring_style": None, "show_source": False, "members_order": "source",
                "show_signature_annotations": True, "separate_signature": True, "heading_level": 2,
                "show_root_heading": True, "show_root_full_path": True}}}}},
        ],
    }
    return json.dumps(config, ensure_ascii=False, indent=1)    # JSON is YAML


def build(out: Path = BUILD, progress: Callable[[str], None] = log.info) -> Path:
    """Build the site into ``out``/html (replacing an earlier build there); returns that folder.
    ``out`` also keeps the staged pages (docs/), the configs and mkdocs-jupyter's cache (cache/)."""
    if not (ROOT / "notebooks").is_dir() or not (SITE / "mkdocs.yml").is_file():
        raise UsageError(f"the site is built from a clone of npgpt's repository (notebooks/, site/); "
                         f"{ROOT} has none")
    missing = missing_tools()
    if missing:
        raise UsageError(f"building the site needs {', '.join(missing)}: "
                         f"pip install -r {REQUIREMENTS}")
    for earlier in (out / "html", out / "docs"):     # out / "cache" keeps converted notebooks
        if earlier.exists():
            shutil.rmtree(earlier)
    os.environ.setdefault("NO_MKDOCS_2_WARNING", "1")    # Material's notice about MkDocs 2, once a build
    import jieba
    jieba.setLogLevel(logging.WARNING)                  # its dictionary-loading lines, once an edition
    from mkdocs.commands.build import build as mkdocs_build
    from mkdocs.config import load_config
    for edition in EDITIONS:
        nav = stage(edition, out / "docs" / edition.lang)
        config_file = out / f"mkdocs.{edition.lang}.yml"
        config_file.write_text(config_text(edition, nav, out), encoding="utf-8")
        progress(f"building the {edition.name} edition into {out / 'html' / edition.prefix}")
        mkdocs_build(load_config(str(config_file)))
    return out / "html"
