"""MkDocs hooks of the site (``hooks:`` in the configs ``npgpt site build`` writes).

mkdocs-jupyter draws a notebook page's table of contents from the notebook converted to Markdown
(Python-Markdown's slugs: ``questions``, ``questions_1``, ... for repeated headings; ``_1`` for a
heading with no Latin letter, as every Chinese one), but the page's headings get their ids from
nbconvert (``questions`` every time; an empty id for a Chinese heading), so most of the contents'
links led nowhere. Both list the same headings in the same order, so each heading takes its
table-of-contents id, in order."""
from __future__ import annotations

import re

HEADING = re.compile(r'<h([1-6])\b([^>]*?)\bid="([^"]*)"(.*?)</h\1>', re.S)


def toc_ids(items) -> list[str]:
    """The anchors of a table of contents, depth first, as the page lists its headings."""
    found = []
    for item in items:
        found.append(item.id)
        found += toc_ids(item.children)
    return found


def on_page_content(html: str, page, config, files) -> str:
    """Give a notebook page's headings the ids its table of contents links to."""
    if not page.file.src_path.endswith(".ipynb"):
        return html
    wanted = toc_ids(page.toc.items)
    headings = list(HEADING.finditer(html))
    if len(headings) != len(wanted):
        raise ValueError(f"{page.file.src_path}: {len(headings)} headings with ids on the page but "
                         f"{len(wanted)} in its table of contents; their ids cannot be matched")
    pieces, start = [], 0
    for match, anchor in zip(headings, wanted):
        level, before, old, inner = match.groups()
        inner = inner.replace(f'href="#{old}"', f'href="#{anchor}"')     # nbconvert's ¶ link
        pieces += [html[start:match.start()], f'<h{level}{before}id="{anchor}"{inner}</h{level}>']
        start = match.end()
    return "".join(pieces) + html[start:]
