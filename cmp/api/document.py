"""The report's document model: sections of text, tables and figures.

cmp's own sections and those a plugin returns from `cmp_report_sections` are built from
these classes; `cmp.report.markdown` and `cmp.report.html` render the same list, so
report.md and report.html never differ in content. They are part of the plugin API (a
report-section plugin returns them), so they live here, below `cmp.report`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Union


@dataclass
class Table:
    """A table: header cells, rows of cells (shown with `str`), an optional caption.

    The first column is read as the row's name (left-aligned), the others as values.
    """

    header: list[str]
    rows: list[list[str]]
    caption: str = ""


@dataclass
class Figure:
    """A PNG image already written to `path` (under the report's directory), with a caption.

    report.md links to it; report.html embeds it, so the page stands alone.
    """

    path: Path
    caption: str


Block = Union[str, Table, Figure]
"""One block of a section; a string is a paragraph of Markdown text (`code` spans allowed)."""


@dataclass
class Section:
    """A titled part of the report: its blocks, in order."""

    title: str
    blocks: list[Block] = field(default_factory=list)
