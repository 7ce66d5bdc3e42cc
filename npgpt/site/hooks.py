"""MkDocs hooks of the site (``hooks:`` in the configs ``npgpt site build`` writes).

mkdocs-jupyter draws a notebook page's table of contents from the notebook converted to Markdown
(Python-Markdown's slugs: ``questions``, ``questions_1``, ... for repeated headings; ``_1`` for a
heading with no Latin letter, as every Chinese one), but the page's headings get their ids from
nbconvert (``questions`` every time; an empty id for a Chinese heading), so most of the contents'
links led nowhere. Both list the same headings in the same order, so each heading takes its
table-of-contents id, in order; and each entry of the contents takes its heading's text, because the
Markdown conversion drops a heading's inline code (``3.1 The sinusoidal position table (§4 code, ,
)`` for ``... `PositionalEncoding`)``). On the API pages, the docstrings' Sphinx roles (``:func:``), which
Markdown does not know, are dropped before the code they name."""
from __future__ import annotations

import html
import re

HEADING = re.compile(r'<h([1-6])\b([^>]*?)\bid="([^"]*)"(.*?)</h\1>', re.S)


def toc_entries(items) -> list:
    """The entries of a table of contents, depth first, as the page lists its headings."""
    found = []
    for item in items:
        found.append(item)
        found += toc_entries(item.children)
    return found


def heading_text(inner: str) -> str:
    """The text of a heading's HTML (after its opening tag), without tags and nbconvert's ¶ link."""
    inner = re.sub(r'<a class="anchor-link".*?</a>', "", inner.partition(">")[2], flags=re.S)
    return html.escape(html.unescape(re.sub(r"<[^>]+>", "", inner)).strip(), quote=False)


# A Sphinx role in a docstring (:func:`name`) reaches the page as ":func:" before the code it names.
ROLE = re.compile(r":(?:func|class|meth|mod|attr|data|obj|exc|const):(?=<code>)")


def on_page_content(content: str, page, config, files) -> str:
    """Give a notebook page's headings the ids its table of contents links to, and its contents
    their headings' text; drop the docstrings' Sphinx roles from an API page."""
    if page.file.src_path.startswith("api/"):
        return ROLE.sub("", content)
    if not page.file.src_path.endswith(".ipynb"):
        return content
    wanted = toc_entries(page.toc.items)
    headings = list(HEADING.finditer(content))
    if len(headings) != len(wanted):
        raise ValueError(f"{page.file.src_path}: {len(headings)} headings with ids on the page but "
                         f"{len(wanted)} in its table of contents; their ids cannot be matched")
    pieces, start = [], 0
    for match, entry in zip(headings, wanted):
        level, before, old, inner = match.groups()
        anchor, entry.title = entry.id, heading_text(inner)
        inner = inner.replace(f'href="#{old}"', f'href="#{anchor}"')     # nbconvert's ¶ link
        pieces += [content[start:match.start()], f'<h{level}{before}id="{anchor}"{inner}</h{level}>']
        start = match.end()
    return "".join(pieces) + content[start:]
