"""Read every page of the built site in a headless Chromium and list what a reader would find broken.

For each page (every ``index.html`` under the site's folder), served on 127.0.0.1:

- it loads with no console error, no uncaught exception and no failed request, and asks for nothing
  outside the site (such a request is refused and reported: the site must work offline);
- every formula is typeset: MathJax has finished, no TeX error is shown, and no ``$...$``, ``\\(`` or
  ``\\[`` is left in the text outside code; no ``**`` either (bold that Markdown could not render);
- every image has loaded (its natural width is not 0);
- every link inside the site leads to a page or file of the site, and to an anchor that exists there;
- the language switch leads to the same page in the other edition.

Then the search of each edition finds a word of it ("attention", "注意力"), and screenshots of each
edition's home page and of one notebook page are written beside the site. Chromium is Debian's
``chromium`` (or ``$NPGPT_CHROMIUM``), driven through Playwright, which never downloads a browser here.
"""
from __future__ import annotations

import asyncio
import functools
import http.server
import os
import shutil
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlsplit

from ..checks import UsageError

EDITION_PREFIXES = ("", "zh/")
SEARCHES = {"": "attention", "zh/": "注意力"}
SCREENSHOT_PAGES = ("", "04_attention_and_loss/")
PAGES_AT_ONCE = 2            # browser tabs in flight: one per core of a 2-core machine
SEARCH_SECONDS = 10          # the search index loads and answers in under a second here
MATHJAX_SECONDS = 60         # the longest notebook page typesets in about 10 s on a loaded 2-core machine

# site/assets/mathjax-config.js marks the page when MathJax 3 has typeset it: it is then as a reader sees it.
# A page whose MathJax never loaded (only its configuration, no MathJax.version, once the page has
# loaded) is read at once.
MATHJAX_LOADED = "() => Boolean(window.MathJax && window.MathJax.version)"
MATHJAX_DONE = f"""() => document.documentElement.dataset.mathjax === "done"
                   || (document.readyState === "complete" && !({MATHJAX_LOADED})())"""

# What a page shows: TeX left untypeset outside code, ** left by Markdown, TeX errors, images that did
# not load, its links, its element ids (link anchors) and where its language switch leads.
READ_PAGE = r"""() => {
  const main = document.querySelector(".md-content") || document.body;
  // code, and the hidden copy of each code cell that mkdocs-jupyter's copy button reads
  const skip = "pre, code, script, style, mjx-container, .clipboard-copy-txt";
  const raw = [], unrendered = [];
  const walker = document.createTreeWalker(main, NodeFilter.SHOW_TEXT);
  for (let node = walker.nextNode(); node; node = walker.nextNode()) {
    if (node.parentElement.closest(skip)) continue;
    const text = node.textContent;
    const found = text.match(/\$[^$\s][^$]*\$|\\\(|\\\[/);
    if (found) raw.push(text.slice(Math.max(0, found.index - 30), found.index + 50).replace(/\s+/g, " "));
    const bold = text.indexOf("**");
    if (bold >= 0) unrendered.push(text.slice(Math.max(0, bold - 30), bold + 40).replace(/\s+/g, " "));
  }
  const errors = [...document.querySelectorAll("mjx-merror")]
    .map(e => (e.getAttribute("data-mjx-error") || e.textContent).slice(0, 120));
  const images = [...document.images].filter(i => !i.complete || i.naturalWidth === 0)
    .map(i => i.getAttribute("src").slice(0, 80));
  const links = [...document.querySelectorAll("a[href]")].map(a => a.href);
  const ids = [...document.querySelectorAll("[id], a[name]")].map(e => e.id || e.getAttribute("name"));
  const switches = [...document.querySelectorAll("a.md-select__link[hreflang]")]
    .map(a => [a.getAttribute("hreflang"), a.href]);
  return {raw, unrendered, errors, images, links, ids, switches};
}"""


@dataclass
class Report:
    """What the check found: one line per problem, and where the screenshots are."""
    pages: int = 0
    problems: list[str] = field(default_factory=list)
    screenshots: list[Path] = field(default_factory=list)


def chromium_path() -> str:
    """The Chromium executable: ``$NPGPT_CHROMIUM``, Debian's binary, or one on the PATH."""
    for candidate in (os.environ.get("NPGPT_CHROMIUM"), "/usr/lib/chromium/chromium",
                      shutil.which("chromium"), shutil.which("chromium-browser"), shutil.which("google-chrome")):
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return candidate
    raise UsageError("the site check needs Chromium: apt-get install -y chromium "
                     "(or set NPGPT_CHROMIUM to a Chromium or Chrome executable)")


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    """Serves the site's folder without a log line per request."""
    def log_message(self, format: str, *args) -> None:
        pass


class QuietServer(http.server.ThreadingHTTPServer):
    """A browser that closes a tab mid-download is no error of the site's: no traceback for it."""
    def handle_error(self, request, client_address) -> None:
        import sys
        if not isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):
            super().handle_error(request, client_address)


@contextmanager
def serving(folder: Path, port: int = 0) -> Iterator[str]:
    """Serve ``folder`` on 127.0.0.1 (``port`` 0: any free port) in a thread; yields its address."""
    handler = functools.partial(QuietHandler, directory=str(folder))
    try:
        server = QuietServer(("127.0.0.1", port), handler)
    except OSError as error:
        raise UsageError(f"cannot serve on 127.0.0.1:{port}: {error.strerror}; choose another --port") from None
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/"
    finally:
        server.shutdown()
        server.server_close()


def wait_forever() -> None:
    """Sleep until a signal ends the process (the server runs in its own thread)."""
    import time
    while True:
        time.sleep(3600)


def site_pages(folder: Path) -> list[str]:
    """The path of every page of the site from its root ("", "zh/", "04b_backward/", ...)."""
    pages = []
    for index in sorted(folder.rglob("index.html")):
        relative = index.parent.relative_to(folder).as_posix()
        if not relative.startswith("assets"):
            pages.append("" if relative == "." else relative + "/")
    return pages


def file_of(folder: Path, path: str) -> Path:
    """The file the server answers ``path`` (a URL path from the site's root) with."""
    target = folder / unquote(path).lstrip("/")
    return target / "index.html" if path.endswith("/") or target.is_dir() else target


def same_page_elsewhere(page: str, lang: str) -> str:
    """Where the language switch of ``page`` should lead for the edition of language ``lang``."""
    here = page[len("zh/"):] if page.startswith("zh/") else page
    return ("zh/" if lang == "zh" else "") + here


async def read_page(browser, base: str, page: str, report: Report, shots: Path | None) -> dict:
    """Open one page, wait for MathJax, record its problems; returns what it shows (READ_PAGE)."""
    tab = await browser.new_page(viewport={"width": 1280, "height": 900})
    problems = report.problems
    tab.on("console", lambda m: m.type == "error" and problems.append(f"/{page}: console error: {m.text[:160]}"))
    tab.on("pageerror", lambda e: problems.append(f"/{page}: uncaught exception: {str(e)[:160]}"))
    tab.on("requestfailed", lambda r: r.url.startswith(base) and problems.append(
        f"/{page}: request failed: {r.url[len(base) - 1:]} ({r.failure})"))
    tab.on("response", lambda r: r.status >= 400 and problems.append(
        f"/{page}: {r.status} for {r.url[len(base) - 1:] if r.url.startswith(base) else r.url}"))

    async def offline(route) -> None:
        url = route.request.url
        if url.startswith(base) or url.startswith("data:"):
            await route.continue_()
        else:
            problems.append(f"/{page}: asks for {url[:120]} outside the site")
            await route.abort()
    await tab.route("**/*", offline)
    await tab.goto(base + page, wait_until="load")
    try:
        await tab.wait_for_function(MATHJAX_DONE, timeout=MATHJAX_SECONDS * 1000, polling=200)
    except Exception as error:      # playwright's TimeoutError; the page is still read below
        problems.append(f"/{page}: MathJax did not finish typesetting in {MATHJAX_SECONDS} s ({type(error).__name__})")
    if not await tab.evaluate(MATHJAX_LOADED):
        problems.append(f"/{page}: MathJax is not loaded")
    shown = await tab.evaluate(READ_PAGE)
    problems += [f"/{page}: formula not typeset: ...{text}..." for text in shown["raw"]]
    problems += [f"/{page}: TeX error: {text}" for text in shown["errors"]]
    # CommonMark leaves ** as text when it cannot open or close bold, e.g. 为**“部分”**: punctuation
    # right after the opening ** and a letter before it
    problems += [f"/{page}: Markdown not rendered: ...{text}..." for text in shown["unrendered"]]
    problems += [f"/{page}: image did not load: {src}" for src in shown["images"]]
    if shots is not None and page.removeprefix("zh/") in SCREENSHOT_PAGES:
        name = ("zh-" if page.startswith("zh/") else "en-") + (page.removeprefix("zh/").strip("/") or "home") + ".png"
        await tab.screenshot(path=str(shots / name))
        report.screenshots.append(shots / name)
    await tab.close()
    return shown


def check_links(folder: Path, base: str, page: str, links: list[str], ids: dict[str, set], report: Report) -> None:
    """Every link of ``page`` that stays on the site leads to a file, and its anchor exists there."""
    for link in links:
        if not link.startswith(base):
            continue                         # an address elsewhere: a link for the reader, never fetched
        parts = urlsplit(link)
        path = parts.path
        target = file_of(folder, path)
        if not target.is_file():
            report.problems.append(f"/{page}: broken link to {path}")
            continue
        target_page = path.lstrip("/") if path.endswith("/") else None
        if parts.fragment and target_page in ids and unquote(parts.fragment) not in ids[target_page]:
            report.problems.append(f"/{page}: link to {path}#{parts.fragment}: no such anchor there")


def check_switch(page: str, base: str, switches: list, report: Report) -> None:
    """The language switch of ``page`` names both editions and leads to this page in each."""
    if sorted(lang for lang, _ in switches) != ["en", "zh"]:
        report.problems.append(f"/{page}: the language switch offers {switches}, expected en and zh")
    for lang, href in switches:
        expected = base + same_page_elsewhere(page, lang)
        if href != expected:
            report.problems.append(f"/{page}: the {lang} switch leads to {href[len(base) - 1:]}, "
                                   f"expected /{same_page_elsewhere(page, lang)}")


async def check_search(browser, base: str, prefix: str, word: str, report: Report) -> None:
    """The search box of an edition's home page finds ``word``."""
    tab = await browser.new_page()
    await tab.goto(base + prefix, wait_until="load")
    await tab.fill("input.md-search__input", word)
    try:
        await tab.wait_for_selector(".md-search-result__item", timeout=SEARCH_SECONDS * 1000)
        found = await tab.locator(".md-search-result__item").count()
    except Exception:
        found = 0
    if not found:
        report.problems.append(f"/{prefix}: the search finds nothing for {word!r}")
    await tab.close()


async def check_in_browser(folder: Path, base: str, pages: list[str], report: Report, shots: Path | None,
                           progress: Callable[[str], None], search: bool) -> None:
    from playwright.async_api import async_playwright
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=chromium_path(), args=["--no-sandbox"])
        tabs = asyncio.Semaphore(PAGES_AT_ONCE)
        shown: dict[str, dict] = {}

        async def one(page: str) -> None:
            async with tabs:
                shown[page] = await read_page(browser, base, page, report, shots)
                progress(f"read /{page} ({len(shown)} of {len(pages)})")
        await asyncio.gather(*(one(page) for page in pages))
        for prefix, word in SEARCHES.items() if search else ():
            await check_search(browser, base, prefix, word, report)
        await browser.close()
    ids = {page: set(seen["ids"]) for page, seen in shown.items()}
    for page, seen in shown.items():
        check_links(folder, base, page, seen["links"], ids, report)
        check_switch(page, base, seen["switches"], report)


def check(folder: Path, screenshots: Path | None = None, progress: Callable[[str], None] = lambda line: None,
          pages: list[str] | None = None, search: bool = True) -> Report:
    """Read every page of the site in ``folder`` (or only ``pages``, paths from its root) in a headless
    Chromium, and try its search unless ``search`` is False; see the module's docstring."""
    if not (folder / "index.html").is_file():
        raise UsageError(f"{folder} has no index.html: build the site first (python -m npgpt site build)")
    try:
        import playwright  # noqa: F401 (only to say what is missing before starting)
    except ModuleNotFoundError:
        raise UsageError("the site check needs playwright: pip install -r requirements-site.txt") from None
    chromium_path()
    if screenshots is not None:
        screenshots.mkdir(parents=True, exist_ok=True)
    pages = site_pages(folder) if pages is None else pages
    report = Report(pages=len(pages))
    with serving(folder) as base:
        asyncio.run(check_in_browser(folder, base, pages, report, screenshots, progress, search))
    report.problems = list(dict.fromkeys(report.problems))       # one line per distinct problem
    return report
