"""A plugin adds report sections through `cmp_report_sections`; both report.md and report.html show them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pluggy
import pytest

from cmp import hookimpl
from cmp.api.hookspecs import LifecycleSpecs, RegistrationSpecs, ReportSpecs
from cmp.api.results import BaselineResult, RunResult
from cmp.report import write_report
from cmp.report.document import Figure, Section, Table
from tests.cmp.report.synthetic import baseline, synthetic_results

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


class ProbeReport:
    """A report plugin: a section with text, a table of what it was given, and a figure it wrote."""

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    @hookimpl
    def cmp_report_sections(self, results: list[RunResult], baselines: list[BaselineResult], out_dir: Path) -> list[Section]:
        self.calls.append({"results": results, "baselines": baselines, "out_dir": out_dir})
        figure = out_dir / "probe" / "probe.png"
        figure.parent.mkdir(exist_ok=True)
        figure.write_bytes(PNG_SIGNATURE)
        finished = sum(r.ok for r in results)
        return [Section("Probe diagnostics", [
            "Probe diagnostics by the `probe` plugin.",
            Table(["what", "count"], [["finished cells", str(finished)], ["baselines", str(len(baselines))]], "What the probe saw."),
            Figure(figure, "The probe's own figure."),
        ])]


class SilentPlugin:
    """A plugin that implements the hook but has nothing to add."""

    @hookimpl
    def cmp_report_sections(self, results: list[RunResult]) -> None:
        return None


probe_report = ProbeReport()


@pytest.fixture
def hooks() -> Any:
    plugins = pluggy.PluginManager("cmp")
    for specs in (RegistrationSpecs, LifecycleSpecs, ReportSpecs):
        plugins.add_hookspecs(specs)
    probe_report.calls.clear()
    plugins.register(probe_report)
    plugins.register(SilentPlugin())
    return plugins.hook


def test_a_plugin_section_follows_cmps_own_in_both_documents(tmp_path: Path, hooks: Any) -> None:
    results = synthetic_results()
    paths = write_report("synthetic", results, [baseline("raw_pixels", 0.75, 0.8)], tmp_path, hooks=hooks)
    (call,) = probe_report.calls
    assert call["out_dir"] == tmp_path and len(call["results"]) == len(results)
    assert all(isinstance(r, RunResult) for r in call["results"]) and len(call["baselines"]) == 1
    md = paths["markdown"].read_text()
    assert md.index("## Failed cells") < md.index("## Probe diagnostics")
    assert "Probe diagnostics by the `probe` plugin." in md
    assert "| what | count |" in md and "| finished cells | 18 |" in md and "| baselines | 1 |" in md
    assert "*What the probe saw.*" in md and "](probe/probe.png)" in md
    page = paths["html"].read_text()
    assert "<h2>Probe diagnostics</h2>" in page
    assert "<p>Probe diagnostics by the <code>probe</code> plugin.</p>" in page
    assert "<tr><td>finished cells</td><td>18</td></tr>" in page and "<caption>What the probe saw.</caption>" in page
    assert page.count("data:image/png;base64,") == 4  # batch size, curves, accuracy against time, the plugin's figure


def test_without_hooks_there_are_only_cmps_sections(tmp_path: Path) -> None:
    md = write_report("synthetic", synthetic_results(), [], tmp_path)["markdown"].read_text()
    assert "Probe diagnostics" not in md
