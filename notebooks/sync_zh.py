"""Bring a Chinese notebook's code in step with the English one (issue 26).

    python notebooks/sync_zh.py 03_sequence_models [04_attention_and_loss ...]
    python notebooks/sync_zh.py --all               # every notebooks/zh/*.ipynb

The Chinese edition (notebooks/zh/NAME.ipynb) has the English notebook's code cells, identical and
in the same order; only its markdown is its own. After an English code cell changes, this copies
every English code cell's source into the Chinese notebook's code cells, in order, and leaves its
markdown and outputs alone; then rebuild it (``python notebooks/build.py zh/NAME``) so the outputs
come from the new code. When the two notebooks have different numbers of code cells (a cell was
added or removed in English), it refuses, naming the first place they differ: add or remove that
cell in the Chinese notebook (with nbformat), then run it again.
"""
import argparse
import sys
from pathlib import Path

import nbformat

from npgpt.atomic import atomic_write_text

NOTEBOOK_DIR = Path(__file__).resolve().parent
ZH_DIR = NOTEBOOK_DIR / "zh"


class SyncError(ValueError):
    """The two notebooks cannot be matched code cell for code cell."""


def code_cells(nb) -> list[int]:
    """Indices of ``nb``'s code cells."""
    return [i for i, c in enumerate(nb.cells) if c.cell_type == "code"]


def _head(nb, i: int) -> str:
    lines = nb.cells[i].source.strip().splitlines()
    return repr(lines[0][:50]) if lines else "(empty)"


def _first_line_differing(en: str, zh: str) -> str:
    """'line n: English '...', Chinese '...'' for the first line where two sources differ."""
    x, y = en.splitlines(), zh.splitlines()
    n = next((n for n, (p, q) in enumerate(zip(x, y)) if p != q), min(len(x), len(y)))
    def at(lines: list[str]) -> str:
        return repr(lines[n].strip()[:50]) if n < len(lines) else "(no such line)"
    return f"line {n + 1}: English {at(x)}, Chinese {at(y)}"


def first_difference(en, zh) -> str | None:
    """Where the code cells of ``en`` and ``zh`` first differ, in words, or None when identical."""
    a, b = code_cells(en), code_cells(zh)
    for k, (i, j) in enumerate(zip(a, b)):
        if en.cells[i].source != zh.cells[j].source:
            return (f"code cell {k + 1}: English cell {i} {_head(en, i)}, "
                    f"Chinese cell {j} {_head(zh, j)}, {_first_line_differing(en.cells[i].source, zh.cells[j].source)}")
    if len(a) != len(b):
        k = min(len(a), len(b))
        extra = f"English cell {a[k]} {_head(en, a[k])}" if len(a) > k else f"Chinese cell {b[k]} {_head(zh, b[k])}"
        return f"code cell {k + 1}: only in one notebook, {extra}"
    return None


def sync_cells(en, zh) -> list[int]:
    """Copy ``en``'s code cell sources into ``zh`` in order; the indices of the zh cells changed.
    Raises SyncError when the counts of code cells differ."""
    a, b = code_cells(en), code_cells(zh)
    if len(a) != len(b):
        raise SyncError(f"{len(a)} code cells in English, {len(b)} in Chinese; they first differ at "
                        f"{first_difference(en, zh)}")
    changed = [j for i, j in zip(a, b) if zh.cells[j].source != en.cells[i].source]
    for i, j in zip(a, b):
        zh.cells[j].source = en.cells[i].source
    return changed


def sync(name: str) -> list[int]:
    """Sync notebooks/zh/NAME.ipynb from notebooks/NAME.ipynb and write it when anything changed."""
    stem = name.removesuffix(".ipynb").removeprefix("zh/")
    en_path, zh_path = NOTEBOOK_DIR / f"{stem}.ipynb", ZH_DIR / f"{stem}.ipynb"
    for path in (en_path, zh_path):
        if not path.exists():
            raise SyncError(f"no {path.relative_to(NOTEBOOK_DIR.parent)} (expected NAME such as "
                            f"03_sequence_models, with both notebooks/NAME.ipynb and notebooks/zh/NAME.ipynb)")
    en, zh = nbformat.read(en_path, as_version=4), nbformat.read(zh_path, as_version=4)
    try:
        changed = sync_cells(en, zh)
    except SyncError as err:
        raise SyncError(f"zh/{stem}.ipynb: {err}") from None
    if changed:
        atomic_write_text(zh_path, nbformat.writes(zh) + "\n")
    return changed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("names", nargs="*", help="notebooks to sync, e.g. 03_sequence_models")
    parser.add_argument("--all", action="store_true", help="every notebook of notebooks/zh/")
    args = parser.parse_args(argv)
    names = [p.stem for p in sorted(ZH_DIR.glob("*.ipynb"))] if args.all else args.names
    if not names:
        parser.error("name a notebook (e.g. 03_sequence_models) or pass --all")
    status = 0
    for name in names:
        try:
            changed = sync(name)
        except SyncError as err:
            print(f"error: {err}", file=sys.stderr)
            status = 1
            continue
        stem = name.removesuffix(".ipynb").removeprefix("zh/")
        if changed:
            print(f"zh/{stem}.ipynb: {len(changed)} code cells updated (cells {changed}); now run "
                  f"python notebooks/build.py zh/{stem}")
        else:
            print(f"zh/{stem}.ipynb: code cells already identical")
    return status


if __name__ == "__main__":
    sys.exit(main())
