"""A tiny document model for the report, rendered both as Markdown and as HTML.

The report is composed once as a :class:`Document` of sections holding text,
tables, images and image grids; :func:`to_markdown` and :func:`to_html` both
write images as links relative to the run folder (``plots/``,
``report_assets/``), so the page stays a few hundred kilobytes and opens from
the run folder or a copy of it.  :func:`broken_links` lists the links of an
HTML or Markdown page that do not resolve.  Text supports only ``**bold**`` and
```code``` inline marks, which read the same in both formats.
"""

from __future__ import annotations

import html
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

__all__ = ["Text", "Table", "Figure", "Grid", "Details", "Section", "Document", "to_markdown", "to_html",
           "broken_links"]


@dataclass
class Text:
    """A paragraph; ``**bold**`` and ```code``` marks are honoured."""

    text: str


@dataclass
class Table:
    """A table of already formatted cells (strings); ``numeric`` columns are right-aligned."""

    frame: pd.DataFrame
    numeric: tuple[str, ...] = ()


@dataclass
class Figure:
    """A PNG file shown with a caption."""

    path: Path
    caption: str
    width: int | None = None


@dataclass
class Grid:
    """Rows of pictures under column headers (the comparison grid).

    ``rows`` holds ``(row label, [(image path or None, caption), ...])``.
    """

    columns: list[str]
    rows: list[tuple[str, list[tuple[Path | None, str]]]]
    width: int = 260  # four columns and the row labels fit the page's 1250 px


@dataclass
class Details:
    """Blocks that HTML folds away behind a summary line (Markdown shows them)."""

    summary: str
    blocks: list = field(default_factory=list)


@dataclass
class Section:
    """A titled part of the report with the command that reproduces it."""

    anchor: str
    title: str
    blocks: list = field(default_factory=list)
    commands: list[str] = field(default_factory=list)


@dataclass
class Document:
    """The whole report: a title, a headline (list of paragraphs) and sections."""

    title: str
    headline: list[str]
    sections: list[Section]
    meta: str = ""


_BOLD = re.compile(r"\*\*(.+?)\*\*")
_CODE = re.compile(r"`([^`]+)`")


def _inline_html(text: str) -> str:
    out = html.escape(text, quote=False)
    out = _CODE.sub(r"<code>\1</code>", out)
    return _BOLD.sub(r"<strong>\1</strong>", out)


def _md_cell(value: object) -> str:
    # A pipe inside a cell would end it early.
    return str(value).replace("|", "\\|").replace("\n", " ")


def _md_table(table: Table) -> str:
    frame = table.frame
    columns = [str(c) for c in frame.columns]
    lines = ["| " + " | ".join(_md_cell(c) for c in columns) + " |",
             "|" + "|".join("---:" if c in table.numeric else "---" for c in columns) + "|"]
    for row in frame.itertuples(index=False):
        lines.append("| " + " | ".join(_md_cell(v) for v in row) + " |")
    return "\n".join(lines)


def _rel(path: Path, root: Path) -> str:
    return Path(os.path.relpath(path, root)).as_posix()


def _md_grid(grid: Grid, root: Path) -> str:
    lines = ["| image | " + " | ".join(_md_cell(c) for c in grid.columns) + " |",
             "|---|" + "|".join("---" for _ in grid.columns) + "|"]
    for label, cells in grid.rows:
        shown = []
        for path, caption in cells:
            if path is None:
                shown.append(_md_cell(caption))
                continue
            shown.append(f"![{_md_cell(caption)}]({_rel(path, root)})<br>{_md_cell(caption)}")
        lines.append(f"| {_md_cell(label)} | " + " | ".join(shown) + " |")
    return "\n".join(lines)


def _md_blocks(blocks: list, root: Path) -> list[str]:
    parts = []
    for block in blocks:
        if isinstance(block, Text):
            parts.append(block.text)
        elif isinstance(block, Table):
            parts.append(_md_table(block))
        elif isinstance(block, Figure):
            parts.append(f"![{block.caption}]({_rel(block.path, root)})\n\n*{block.caption}*")
        elif isinstance(block, Grid):
            parts.append(_md_grid(block, root))
        elif isinstance(block, Details):
            parts.append(f"**{block.summary}**")
            parts.extend(_md_blocks(block.blocks, root))
    return parts


def to_markdown(doc: Document, root: Path) -> str:
    """The report as Markdown; image links are relative to ``root`` (the run folder)."""
    parts = [f"# {doc.title}", *([f"*{doc.meta}*"] if doc.meta else []), *doc.headline, "## Contents",
             "\n".join(f"- [{s.title}](#{s.anchor})" for s in doc.sections)]
    for section in doc.sections:
        parts.append(f'<a id="{section.anchor}"></a>\n\n## {section.title}')
        if section.commands:
            parts.append("Reproduce:\n\n```sh\n" + "\n".join(section.commands) + "\n```")
        parts.extend(_md_blocks(section.blocks, root))
    return "\n\n".join(parts) + "\n"


def _html_table(table: Table) -> str:
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in table.frame.columns)
    rows = []
    for row in table.frame.itertuples(index=False):
        cells = []
        for column, value in zip(table.frame.columns, row):
            cls = ' class="num"' if column in table.numeric else ""
            cells.append(f"<td{cls}>{_inline_html(str(value))}</td>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return f'<div class="scroll"><table><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table></div>'


def _html_grid(grid: Grid, root: Path) -> str:
    head = "<th>image</th>" + "".join(f"<th>{html.escape(c)}</th>" for c in grid.columns)
    rows = []
    for label, cells in grid.rows:
        shown = []
        for path, caption in cells:
            text = f"<div class=\"cap\">{_inline_html(caption)}</div>"
            if path is None:
                shown.append(f"<td>{text}</td>")
                continue
            img = (f'<img src="{html.escape(_rel(path, root))}" alt="{html.escape(caption)}" '
                   f'width="{grid.width}" height="{grid.width}" loading="lazy">')
            shown.append(f"<td>{img}{text}</td>")
        rows.append(f"<tr><th class=\"rowlabel\">{_inline_html(label)}</th>{''.join(shown)}</tr>")
    return f'<div class="scroll"><table class="grid"><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table></div>'


def _html_blocks(blocks: list, root: Path) -> list[str]:
    parts = []
    for block in blocks:
        if isinstance(block, Text):
            parts.append(f"<p>{_inline_html(block.text)}</p>")
        elif isinstance(block, Table):
            parts.append(_html_table(block))
        elif isinstance(block, Figure):
            style = f' style="max-width:min(100%,{block.width}px)"' if block.width else ""
            parts.append(f'<figure><img src="{html.escape(_rel(block.path, root))}" '
                         f'alt="{html.escape(block.caption)}"{style}>'
                         f"<figcaption>{_inline_html(block.caption)}</figcaption></figure>")
        elif isinstance(block, Grid):
            parts.append(_html_grid(block, root))
        elif isinstance(block, Details):
            inner = "\n".join(_html_blocks(block.blocks, root))
            parts.append(f"<details><summary>{_inline_html(block.summary)}</summary>{inner}</details>")
    return parts


_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;max-width:1250px;margin:1.5em auto;
 padding:0 1.2em;color:#1d1d1f;line-height:1.45}
h1{margin-bottom:.3em}h2{border-bottom:2px solid #e3e3e8;padding-bottom:.2em;margin-top:2em}
.headline{background:#eef6ee;border-left:6px solid #2e8b57;padding:.6em 1.1em;border-radius:4px;font-size:1.08em}
.headline p{margin:.45em 0}
.repro{background:#f5f5f7;border:1px solid #e0e0e5;border-radius:4px;padding:.4em .8em;margin:.6em 0}
.repro span{font-size:.85em;color:#555;text-transform:uppercase;letter-spacing:.04em}
.repro pre{margin:.2em 0;white-space:pre-wrap;word-break:break-all}
code{background:#f0f0f3;padding:0 .25em;border-radius:3px;font-size:.92em}
.repro code{background:none;padding:0}
table{border-collapse:collapse;margin:.6em 0;font-size:.92em}
th,td{border:1px solid #d8d8de;padding:.28em .6em;text-align:left;vertical-align:top}
th{background:#f3f3f6}td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
tbody tr:nth-child(even){background:#fafafc}
.scroll{overflow-x:auto}
figure{margin:1em 0}figure img{max-width:100%;height:auto;border:1px solid #e3e3e8}
figcaption{color:#444;font-size:.92em;margin-top:.3em}
details{margin:.6em 0}summary{cursor:pointer;font-weight:600}
nav ul{columns:2;font-size:.95em}
table.grid td{padding:.2em;text-align:center}table.grid img{border:1px solid #ccc;display:block;max-width:none}
table.grid .cap{font-size:.8em;color:#333;max-width:260px}th.rowlabel{max-width:11em;font-weight:500;font-size:.85em}
.meta{color:#555;font-size:.92em}
"""


def to_html(doc: Document, root: Path) -> str:
    """The report as one HTML page; images are linked relative to ``root`` (the page's own folder)."""
    body = [f"<h1>{html.escape(doc.title)}</h1>",
            *([f'<p class="meta">{_inline_html(doc.meta)}</p>'] if doc.meta else []),
            '<div class="headline">' + "".join(f"<p>{_inline_html(p)}</p>" for p in doc.headline) + "</div>",
            "<nav><h2>Contents</h2><ul>" + "".join(f'<li><a href="#{s.anchor}">{html.escape(s.title)}</a></li>'
                                                  for s in doc.sections) + "</ul></nav>"]
    for section in doc.sections:
        body.append(f'<section id="{section.anchor}"><h2>{html.escape(section.title)}</h2>')
        if section.commands:
            commands = html.escape("\n".join(section.commands))
            body.append(f'<div class="repro"><span>Reproduce</span><pre><code>{commands}</code></pre></div>')
        body.extend(_html_blocks(section.blocks, root))
        body.append("</section>")
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<title>{html.escape(doc.title)}</title><style>{_CSS}</style></head><body>\n"
            + "\n".join(body) + "\n</body></html>\n")


def _slug(heading: str) -> str:
    """The anchor GitHub gives a Markdown heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[`*]|<[^>]+>", "", heading.strip().lower())
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def _anchors(text: str) -> set[str]:
    """The anchors a page defines: ``id=`` / ``name=`` attributes and, in Markdown, its headings."""
    found = set(re.findall(r'\s(?:id|name)="([^"]+)"', text))
    found |= {_slug(m) for m in re.findall(r"^#{1,6}\s+(.+?)\s*#*$", text, flags=re.MULTILINE)}
    return found


def _targets(page: Path, text: str) -> list[str]:
    """The ``<img src>`` / ``<a href>`` targets of a page and, for Markdown, its ``[...](...)`` targets."""
    from html.parser import HTMLParser

    targets: list[str] = []

    class _Collect(HTMLParser):
        def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
            wanted = {"img": "src", "a": "href"}.get(tag)
            for key, value in attrs:
                if key == wanted and value is not None:
                    targets.append(value)

    if page.suffix.lower() != ".md":
        _Collect().feed(text)
        return targets
    # Code is not a link: drop fenced blocks and inline code spans first.
    prose = re.sub(r"`[^`\n]*`", "", re.sub(r"^```.*?^```", "", text, flags=re.MULTILINE | re.DOTALL))
    _Collect().feed(re.sub(r"\]\([^)]*\)", "]", prose))
    targets += [m.split()[0] for m in re.findall(r"\]\(([^)\s][^)]*)\)", prose)]
    return targets


def broken_links(page: Path) -> list[str]:
    """The link and image targets of an HTML or Markdown page that do not resolve.

    A target resolves when it is a ``data:image/...;base64,`` URI that
    decodes, an ``http(s):`` or ``mailto:`` link (not checked), or a file
    that exists relative to the page's folder; in a Markdown page a
    ``#anchor`` (alone or after a ``.md`` file) must also name a heading or
    an ``id`` of that page.  Links inside Markdown code are not links.

    Parameters
    ----------
    page : Path
        The ``.html`` or ``.md`` file.

    Returns
    -------
    list of str
        The unresolved targets (empty when all resolve): HTML tags' first,
        then Markdown links', each in page order.
    """
    import base64
    import binascii
    from urllib.parse import unquote

    page = Path(page)
    text = page.read_text(encoding="utf-8")
    markdown = page.suffix.lower() == ".md"
    broken = []
    for target in _targets(page, text):
        if target.startswith(("http://", "https://", "mailto:")):
            continue
        if target.startswith("data:"):
            head, _, payload = target.partition(",")
            try:
                ok = head.startswith("data:image/") and bool(base64.b64decode(payload, validate=True))
            except (binascii.Error, ValueError):
                ok = False
            if not ok:
                broken.append(target[:40])
            continue
        file, _, anchor = target.partition("#")
        path = page if not file else page.parent / unquote(file)
        # Anchors are checked from Markdown pages (the README, docs/, report.md); an HTML page's
        # own "#..." links are its generated table of contents.
        checked = anchor and markdown and path.suffix.lower() in (".md", ".html") and path.is_file()
        if not path.exists() or (checked and anchor not in _anchors(path.read_text(encoding="utf-8"))):
            broken.append(target)
    return broken
