"""``python -m npgpt site build|serve|check``: the course as a website (npgpt/site), built from the
committed notebooks of a clone, served on this machine, and read page by page in a headless Chromium."""
import logging

from ..checks import UsageError
from .flags import add, command

log = logging.getLogger(__name__)


def register(subparsers) -> None:
    """Register ``site`` on the subcommands of ``python -m npgpt``."""
    p = command(
        subparsers, "site", help="the course as a website: build it, serve it here, check it in a browser",
        description="'build' makes the website of the course into site/_build/html from the committed "
                    "notebooks (both editions, nothing executed), the README and the docstrings, with MathJax "
                    "and search on the site itself, so it works offline. 'serve' serves that folder on "
                    "127.0.0.1 for your browser. 'check' reads every page in a headless Chromium (no console "
                    "error or failed request, every formula typeset, every image and internal link whole, the "
                    "language switch, the search) and writes screenshots to site/_build/screenshots. Needs a "
                    "clone of the repository and pip install -r requirements-site.txt; 'check' also needs "
                    "Chromium (apt-get install -y chromium).")
    p.add_argument("action", choices=["build", "serve", "check"], help="what to do")
    add(p, "--port", type=port, default=8000, help="serve: the port on 127.0.0.1 (0: any free port)")
    p.set_defaults(run=run)


def port(text: str) -> int:
    """An argparse ``type``: a TCP port number, 0 to 65535."""
    import argparse
    value = int(text) if text.isdigit() else -1
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"expected a port number in [0, 65535], got {text!r}")
    return value


def run(args) -> int:
    from ..site import build, check
    if args.action == "build":
        folder = build.build(progress=log.info)
        log.info(f"the site is in {folder}; serve it with: python -m npgpt site serve")
        return 0
    if not (build.HTML / "index.html").is_file():
        raise UsageError(f"{build.HTML} has no site yet: python -m npgpt site build")
    if args.action == "serve":
        with check.serving(build.HTML, args.port) as address:
            log.info(f"serving {build.HTML} at {address} (Ctrl-C stops)")
            check.wait_forever()
        return 0
    report = check.check(build.HTML, build.BUILD / "screenshots", progress=log.debug)
    for problem in report.problems:
        print(problem)
    shots = ", ".join(str(path) for path in report.screenshots)
    if report.problems:
        log.error(f"{len(report.problems)} problems on {report.pages} pages (screenshots: {shots})")
        return 1
    log.info(f"{report.pages} pages read in Chromium: no problem found; screenshots: {shots}")
    return 0
