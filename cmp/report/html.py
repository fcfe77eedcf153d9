"""The document model rendered as one self-contained HTML page (report.html)."""

from __future__ import annotations

import base64
import re
from html import escape

from cmp.report.document import Figure, Section, Table

STYLE = (
    "body{font-family:system-ui,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;color:#222}"
    ".wide{overflow-x:auto;margin:1em 0}table{border-collapse:collapse;font-size:0.9em}"
    "td,th{border:1px solid #ccc;padding:3px 7px;vertical-align:top}th{background:#f3f3f3;font-weight:600}"
    "td:first-child{min-width:12em;max-width:24em}td:not(:first-child){text-align:right}"
    "img{max-width:100%}caption{caption-side:bottom;text-align:left;font-style:italic;color:#555;padding-top:4px}"
    "code{background:#f3f3f3;padding:1px 4px}"
)
"""Tables sit in a container that scrolls sideways when they are wider than the page; long
cells wrap, an interval (`74.21 ± 0.38`) never splits."""


def render_html(title: str, intro: list[str], sections: list[Section]) -> str:
    """One page; figures are embedded as base64 PNG so the file stands alone."""
    out = [f"<!doctype html><html><head><meta charset='utf-8'><title>{escape(title)}</title>",
           f"<style>{STYLE}</style></head><body><h1>{escape(title)}</h1>"]
    out += [f"<p>{_inline(p)}</p>" for p in intro if p]
    for section in sections:
        out.append(f"<h2>{escape(section.title)}</h2>")
        for block in section.blocks:
            if isinstance(block, Table):
                out += _table(block)
            elif isinstance(block, Figure):
                data = base64.b64encode(block.path.read_bytes()).decode()
                out.append(f"<figure><img src='data:image/png;base64,{data}' alt='{escape(block.caption)}'>"
                           f"<figcaption><i>{escape(block.caption)}</i></figcaption></figure>")
            else:
                out.append(_paragraph(str(block)))
    out.append("</body></html>")
    return "\n".join(out)


def _table(table: Table) -> list[str]:
    out = ["<div class='wide'><table>"]
    if table.caption:
        out.append(f"<caption>{escape(table.caption)}</caption>")
    out.append("<tr>" + "".join(f"<th>{escape(str(h))}</th>" for h in table.header) + "</tr>")
    out += ["<tr>" + "".join(f"<td>{_cell(c)}</td>" for c in row) + "</tr>" for row in table.rows]
    out.append("</table></div>")
    return out


def _cell(value: object) -> str:
    """A cell's text, escaped, with its intervals and numbers kept whole (`±` and `=` joined by no-break spaces)."""
    text = escape(str(value))
    for joined in (" ± ", " = ", " < "):
        text = text.replace(joined, joined.replace(" ", "&nbsp;"))
    return text


def _paragraph(text: str) -> str:
    """A paragraph, or a list when every line starts with `- ` (the Markdown the report writes)."""
    lines = text.split("\n")
    if all(line.startswith("- ") for line in lines):
        return "<ul>" + "".join(f"<li>{_inline(line[2:])}</li>" for line in lines) + "</ul>"
    return f"<p>{_inline(text)}</p>"


def _inline(text: str) -> str:
    """Markdown's `code` spans to <code>, **bold** and *italic* outside them, the rest escaped."""
    parts = escape(text).split("`")
    return "".join(f"<code>{p}</code>" if i % 2 else _emphasis(p) for i, p in enumerate(parts))


def _emphasis(text: str) -> str:
    text = re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", text)
    return re.sub(r"(?<![\w*])\*(?!\s)(.+?)(?<!\s)\*(?![\w*])", r"<i>\1</i>", text)
