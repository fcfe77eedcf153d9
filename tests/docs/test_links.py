"""Every relative link of the Markdown pages a reader follows points to a file that exists,
and a link to a heading (`page.md#heading`) to a heading that exists."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", ROOT / "CHANGELOG.md", ROOT / "benchmarks" / "README.md",
         ROOT / "tools" / "mutation-summary.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
CODE = re.compile(r"```.*?```|`[^`\n]*`", re.S)


def anchors(page: Path) -> set[str]:
    """GitHub's ids of a page's headings: lower case, punctuation dropped, spaces as hyphens."""
    text = CODE.sub(lambda m: m.group(0).replace("#", "") if m.group(0).startswith("```") else m.group(0),
                    page.read_text(encoding="utf-8"))
    headings = re.findall(r"^#{1,6} (.+?)\s*$", text, flags=re.M)
    return {re.sub(r"[^\w\- ]", "", h.lower()).replace(" ", "-") for h in headings}


def links(page: Path) -> list[str]:
    return [t for t in LINK.findall(CODE.sub("", page.read_text(encoding="utf-8")))
            if not re.match(r"[a-z]+:", t)]


def test_the_anchor_rule_matches_githubs() -> None:
    assert "budgets-claims-and-what-a-report-says" in anchors(ROOT / "docs" / "usage.md")
    assert "many-gpus-and-machines-torchdistributed" in anchors(ROOT / "docs" / "distributed.md")


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_resolves(page: Path) -> None:
    for target in links(page):
        path, _, anchor = target.partition("#")
        file = (page.parent / path).resolve() if path else page
        assert file.exists(), f"{page.relative_to(ROOT)}: {target} (no such file)"
        if anchor and file.suffix == ".md":
            assert anchor in anchors(file), f"{page.relative_to(ROOT)}: {target} (no such heading)"
