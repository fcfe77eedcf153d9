"""The document model rendered as Markdown (report.md); figures are linked PNG files."""

from __future__ import annotations

from pathlib import Path

from cmp.report.document import Figure, Section, Table


def render_markdown(title: str, intro: list[str], sections: list[Section], base_dir: Path | None = None) -> str:
    """The whole report; figure links are relative to `base_dir` (report.md's directory) when inside it."""
    out = [f"# {title}", "", *intro, ""]
    for section in sections:
        out += [f"## {section.title}", ""]
        for block in section.blocks:
            if isinstance(block, Table):
                out += _table(block)
            elif isinstance(block, Figure):
                out += [f"![{block.caption}]({_link(block.path, base_dir)})", "", f"*{block.caption}*"]
            else:
                out.append(str(block))
            out.append("")
    return "\n".join(out)


def _table(table: Table) -> list[str]:
    lines = ["| " + " | ".join(_cell(h) for h in table.header) + " |",
             "|" + "|".join(["---"] + ["---:"] * (len(table.header) - 1)) + "|"]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in table.rows]
    if table.caption:
        lines += ["", f"*{table.caption}*"]
    return lines


def _cell(value: object) -> str:
    """A table cell on one line, its pipes escaped so they do not split the cell."""
    return " ".join(str(value).split("\n")).replace("|", "\\|")


def _link(path: Path, base_dir: Path | None) -> str:
    """The figure's path relative to `base_dir`; its file name without one; absolute when outside it."""
    if base_dir is None:
        return path.name
    try:
        return path.resolve().relative_to(base_dir.resolve()).as_posix()
    except ValueError:
        return path.resolve().as_posix()
