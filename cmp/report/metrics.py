"""Which metrics a report shows and how, from what the evaluators declared.

Every `RunResult` carries `metric_info` (the evaluators' `MetricInfo`, by metric name), so
a metric of a new evaluator plugin gets its column, label and plot without any change to
cmp. A metric nobody described is labelled by its name and shown as a percentage, as the
engine does.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from cmp.api.results import BaselineResult, MetricInfo, RunResult
from cmp.report.stats import Estimate


@dataclass(frozen=True)
class ReportMetric:
    """A metric's name (its key in `RunResult.metrics`) and how it is shown."""

    name: str
    info: MetricInfo

    @property
    def label(self) -> str:
        """The declared label, with its unit: `kNN top-1 (%)`."""
        return f"{self.info.label} (%)" if self.info.percent else self.info.label

    @property
    def scale(self) -> float:
        """Factor from the stored value to the shown one (100 for a fraction shown in %)."""
        return 100.0 if self.info.percent else 1.0

    @property
    def digits(self) -> int:
        return 2 if self.info.percent else 3

    def format(self, estimate: Estimate | None) -> str:
        """`82.00 ± 4.97` for a percentage, `0.873 ± 0.012` otherwise, `-` for no value."""
        return "-" if estimate is None else estimate.format(scale=self.scale, digits=self.digits)

    def format_value(self, value: float | None) -> str:
        return "-" if value is None else f"{value * self.scale:.{self.digits}f}"


def report_metrics(results: Iterable[RunResult], baselines: Iterable[BaselineResult] = ()) -> list[ReportMetric]:
    """Every metric the results declare or hold, then the baselines', in first-seen order.

    A metric's info is the first declaration found; without one it is `MetricInfo(name)`.
    """
    info: dict[str, MetricInfo] = {}
    names: list[str] = []
    for result in results:
        for name, declared in result.metric_info.items():
            info.setdefault(name, declared)
        for name in [*result.metric_info, *result.metrics]:
            if name not in names:
                names.append(name)
    for baseline in baselines:
        for name in baseline.metrics:
            if name not in names:
                names.append(name)
    return [ReportMetric(name, info.get(name, MetricInfo(name))) for name in names]
