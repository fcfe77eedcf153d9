"""The report's figures, read back from the artists drawn: distinct series styles, points for
one-epoch runs, baselines as labelled reference lines, a loss panel per loss, a panel column
per training budget, and a legend for every series."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

import pytest  # noqa: E402
from matplotlib.figure import Figure as MatplotlibFigure  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402

from cmp.api.results import BaselineResult, RunResult  # noqa: E402
from cmp.report.figure_data import curve_panels  # noqa: E402
from cmp.report.figures import batch_size_figure, curves_figure, series_style  # noqa: E402
from cmp.report.groups import group_results, result_order  # noqa: E402
from cmp.report.metrics import report_metrics  # noqa: E402
from tests.cmp.report.synthetic import baseline, budget_cell, budget_sweep  # noqa: E402


@pytest.fixture
def saved(monkeypatch: pytest.MonkeyPatch) -> dict[str, MatplotlibFigure]:
    """Every matplotlib figure saved, by file name, to be read back after it is written."""
    figures: dict[str, MatplotlibFigure] = {}
    save = MatplotlibFigure.savefig

    def recording_save(self: MatplotlibFigure, path: Any, *args: Any, **kwargs: Any) -> None:
        figures[Path(path).name] = self
        save(self, path, *args, **kwargs)

    monkeypatch.setattr(MatplotlibFigure, "savefig", recording_save)
    return figures


@pytest.fixture
def baselines() -> list[BaselineResult]:
    return [baseline("raw_pixels", 0.796, 0.81), baseline("random_init", 0.40, 0.45, seed=0),
            baseline("random_init", 0.42, 0.46, seed=1)]


def draw(results: list[RunResult], tmp_path: Path, baselines: list[BaselineResult] = ()) -> dict[str, Any]:  # type: ignore[assignment]
    results = sorted(results, key=result_order)
    groups, metrics = group_results(results), report_metrics(results, baselines)
    return {"batch": batch_size_figure(groups, metrics, tmp_path / "batch_size.png", baselines),
            "curves": curves_figure(groups, metrics, tmp_path / "curves.png", baselines)}


def panels(fig: MatplotlibFigure) -> list[Any]:
    return [ax for ax in fig.axes if ax.get_visible()]


def series_lines(ax: Any) -> list[Line2D]:
    """The lines of the runs on a panel (errorbar data lines included), not baselines."""
    lines = [c.lines[0] for c in ax.containers if hasattr(c, "lines")]
    return lines + [line for line in ax.get_lines() if not line.get_label().startswith("_") and line.get_gid() != "baseline"]


def series_labels(ax: Any) -> list[str]:
    return [c.get_label() for c in ax.containers if hasattr(c, "lines")] + [
        line.get_label() for line in ax.get_lines() if not line.get_label().startswith("_") and line.get_gid() != "baseline"]


def baseline_lines(ax: Any) -> list[Line2D]:
    return [line for line in ax.get_lines() if line.get_gid() == "baseline"]


def has_marker(line: Line2D) -> bool:
    return line.get_visible() and line.get_marker() not in (None, "", " ", "None", "none") and line.get_markersize() > 0


def legend_texts(fig: MatplotlibFigure, ax: Any) -> set[str]:
    legends = [ax.get_legend(), *fig.legends]
    return {t.get_text() for legend in legends if legend is not None for t in legend.get_texts()}


# --- styles -------------------------------------------------------------------------------------------


def test_sixteen_series_have_sixteen_distinct_colour_and_line_style_pairs() -> None:
    styles = [series_style(i) for i in range(16)]
    assert len({(s["color"], s["linestyle"]) for s in styles}) == 16
    assert all(a["color"] != b["color"] and a["linestyle"] != b["linestyle"] and a["marker"] != b["marker"]
               for a, b in zip(styles, styles[1:]))  # neighbours differ in all three


def test_sixteen_drawn_series_are_told_apart_and_keep_their_style_on_every_panel(
        tmp_path: Path, saved: dict[str, MatplotlibFigure]) -> None:
    results = [budget_cell(f"method{i:02d}", 0, batch, 0.5 + 0.01 * i, epochs=3)
               for i in range(16) for batch in (256, 512)]
    draw(results, tmp_path)
    for name in ("curves.png", "batch_size.png"):
        fig = saved[name]
        styles_by_label: dict[str, set[tuple[Any, ...]]] = {}
        for ax in panels(fig):
            lines, labels = series_lines(ax), series_labels(ax)
            if not lines:
                continue
            assert len({(line.get_color(), line.get_linestyle()) for line in lines}) == len(lines), name
            for line, label in zip(lines, labels):
                styles_by_label.setdefault(label, set()).add((line.get_color(), line.get_linestyle(), line.get_marker()))
        assert all(len(styles) == 1 for styles in styles_by_label.values()), name
    # the curves figure has 32 series (16 methods x 2 batch sizes): 32 distinct pairs on the loss panel
    loss_ax = next(ax for ax in panels(saved["curves.png"]) if "loss" in ax.get_ylabel())
    assert len({(line.get_color(), line.get_linestyle()) for line in series_lines(loss_ax)}) == 32


# --- one-epoch runs -------------------------------------------------------------------------------------


def test_a_one_epoch_run_is_drawn_as_points(tmp_path: Path, saved: dict[str, MatplotlibFigure]) -> None:
    results = [budget_cell("simclr", seed, 256, 0.3 + 0.01 * seed, epochs=1) for seed in range(3)]
    figure = draw(results, tmp_path)["curves"]
    assert figure is not None and "single marker" in figure.caption
    fig = saved["curves.png"]
    loss_ax, knn_ax = panels(fig)
    assert loss_ax.get_ylabel() == "training loss (own loss of each run)" and knn_ax.get_ylabel() == "kNN top-1 (%)"
    for ax in (loss_ax, knn_ax):
        [line] = series_lines(ax)
        assert len(line.get_xdata()) == 1 and has_marker(line)
    assert series_lines(knn_ax)[0].get_ydata()[0] == pytest.approx(31.0)


def test_a_metric_evaluated_only_after_training_gets_a_panel_of_points(
        tmp_path: Path, saved: dict[str, MatplotlibFigure]) -> None:
    results = [budget_cell("simclr", seed, 256, 0.6, epochs=10, eval_epochs=(10,)) for seed in range(2)]
    results += [budget_cell("moco", seed, 256, 0.5, epochs=10) for seed in range(2)]
    groups, metrics = group_results(results), report_metrics(results)
    assert [m.name for m in curve_panels(groups, metrics)] == ["knn_top1"]
    draw(results, tmp_path)
    knn_ax = next(ax for ax in panels(saved["curves.png"]) if ax.get_ylabel() == "kNN top-1 (%)")
    by_method = {label.split(" ")[0]: line for label, line in zip(series_labels(knn_ax), series_lines(knn_ax))}
    once = by_method["simclr"]
    assert list(once.get_xdata()) == [10] and has_marker(once)
    assert len(by_method["moco"].get_xdata()) == 10


# --- baselines ------------------------------------------------------------------------------------------


def test_baselines_are_labelled_grey_reference_lines_on_every_metric_panel(
        tmp_path: Path, saved: dict[str, MatplotlibFigure], baselines: list[BaselineResult]) -> None:
    figures = draw(budget_sweep(methods=("simclr",), losses=("nt_xent",), steps=None), tmp_path, baselines)
    assert all("dashed grey lines: baselines" in f.caption for f in figures.values())
    expected = {"kNN top-1 (%)": {"raw_pixels 79.6": 79.6, "random_init 41.0": 41.0},
                "linear top-1 (%)": {"raw_pixels 81.0": 81.0, "random_init 45.5": 45.5}}
    for name in ("batch_size.png", "curves.png"):
        metric_axes = [ax for ax in panels(saved[name]) if ax.get_ylabel() in expected]
        assert metric_axes, name
        for ax in metric_axes:
            lines = baseline_lines(ax)
            assert {line.get_label(): line.get_ydata()[0] for line in lines} == pytest.approx(expected[ax.get_ylabel()])
            assert {t.get_text() for t in ax.texts} >= set(expected[ax.get_ylabel()])  # written at the line
            dashes = [line._unscaled_dash_pattern for line in lines]  # (offset, on-off sequence)
            assert len({str(d) for d in dashes}) == 2 and all(d[1] for d in dashes)  # dashed, each its own way
            for line in lines:
                red, green, blue, _ = matplotlib.colors.to_rgba(line.get_color())
                assert red == green == blue  # grey
        for ax in panels(saved[name]):
            if ax.get_ylabel() not in expected:  # the loss panel has no baseline
                assert not baseline_lines(ax)


def test_without_baselines_there_are_no_reference_lines(tmp_path: Path, saved: dict[str, MatplotlibFigure]) -> None:
    figures = draw(budget_sweep(methods=("simclr",), losses=("nt_xent",), steps=None), tmp_path)
    assert not any("baselines" in f.caption for f in figures.values())
    assert not any(baseline_lines(ax) for fig in saved.values() for ax in fig.axes)


# --- losses ---------------------------------------------------------------------------------------------


def test_each_loss_gets_its_own_loss_panel(tmp_path: Path, saved: dict[str, MatplotlibFigure]) -> None:
    figure = draw(budget_sweep(losses=("nt_xent", "margin_triplet"), steps=None, seeds=2), tmp_path)["curves"]
    assert figure is not None and "one row per loss" in figure.caption
    fig = saved["curves.png"]
    loss_axes = {ax.get_title(): ax for ax in panels(fig) if ax.get_ylabel() == "training loss"}
    assert set(loss_axes) == {"training loss: nt_xent", "training loss: margin_triplet"}
    margin, xent = loss_axes["training loss: margin_triplet"], loss_axes["training loss: nt_xent"]
    assert len(series_lines(margin)) == len(series_lines(xent)) == 6  # 2 methods x 3 batch sizes each
    assert margin.get_ylim()[1] < 0.25 and xent.get_ylim()[0] > 3.0  # each loss on its own scale
    # the metric panels follow the losses' rows, with their y axes shared
    knn = [ax for ax in panels(fig) if ax.get_ylabel() == "kNN top-1 (%)"]
    assert sorted(ax.get_title() for ax in knn) == ["kNN top-1: margin_triplet", "kNN top-1: nt_xent"]
    assert knn[0].get_shared_y_axes().joined(knn[0], knn[1])
    assert not margin.get_shared_y_axes().joined(margin, xent)


def test_a_result_without_a_recorded_loss_still_gets_its_loss_panel(
        tmp_path: Path, saved: dict[str, MatplotlibFigure]) -> None:
    result = budget_cell("simclr", 0, 256, 0.6, epochs=3)
    result = result.model_copy(update={"config": {"train": result.config["train"]}})
    draw([result], tmp_path)
    loss_ax = panels(saved["curves.png"])[0]
    assert loss_ax.get_title() == "training loss" and len(series_lines(loss_ax)) == 1


# --- training budgets -----------------------------------------------------------------------------------


def test_fixed_epoch_and_fixed_step_cells_are_in_different_panel_columns(
        tmp_path: Path, saved: dict[str, MatplotlibFigure]) -> None:
    figure = draw(budget_sweep(losses=("nt_xent",)), tmp_path)["batch"]
    assert figure is not None
    assert "fixed epochs (10 epochs)" in figure.caption and "fixed steps (400 steps)" in figure.caption
    fig = saved["batch_size.png"]
    by_title = {ax.get_title(): ax for ax in panels(fig)}
    assert set(by_title) == {"kNN top-1 at 10 epochs", "kNN top-1 at 400 steps",
                             "linear top-1 at 10 epochs", "linear top-1 at 400 steps"}
    epochs, steps = by_title["kNN top-1 at 10 epochs"], by_title["kNN top-1 at 400 steps"]
    assert epochs.get_position().x0 < steps.get_position().x0  # columns: epochs, then steps
    assert by_title["linear top-1 at 10 epochs"].get_position().x0 == pytest.approx(epochs.get_position().x0)
    assert epochs.get_position().y0 > by_title["linear top-1 at 10 epochs"].get_position().y0  # rows: metrics
    assert epochs.get_shared_y_axes().joined(epochs, steps)
    # synthetic kNN rises with the batch size at fixed epochs and falls at fixed steps: the columns hold different cells
    simclr_epochs = dict(zip(series_labels(epochs), series_lines(epochs)))["simclr (loss=nt_xent)"]
    simclr_steps = dict(zip(series_labels(steps), series_lines(steps)))["simclr (loss=nt_xent)"]
    assert list(simclr_epochs.get_xdata()) == list(simclr_steps.get_xdata()) == [256, 1024, 4096]
    assert list(simclr_epochs.get_ydata()) == pytest.approx([81.0, 83.0, 85.0])
    assert list(simclr_steps.get_ydata()) == pytest.approx([81.0, 78.0, 75.0])
    for ax in panels(fig):
        assert ax.get_xscale() == "log" and list(ax.get_xticks()) == [256, 1024, 4096]
        assert len(series_lines(ax)) == 2  # simclr, moco: the budget is not a line of its own


def test_one_budget_is_one_panel_per_metric(tmp_path: Path, saved: dict[str, MatplotlibFigure]) -> None:
    draw(budget_sweep(losses=("nt_xent",), steps=None), tmp_path)
    assert [ax.get_title() for ax in panels(saved["batch_size.png"])] == ["kNN top-1 at 10 epochs", "linear top-1 at 10 epochs"]


def test_no_batch_size_figure_without_a_line_of_several_batch_sizes(tmp_path: Path) -> None:
    # one batch size per budget: the two budgets of a batch size must not make a line
    results = [budget_cell("simclr", 0, 256, 0.6, epochs=10), budget_cell("simclr", 0, 256, 0.6, steps=400)]
    assert draw(results, tmp_path)["batch"] is None


# --- legends --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("methods,losses", [(("simclr",), ("nt_xent",)), (("simclr", "moco"), ("nt_xent", "margin_triplet"))])
def test_every_series_is_in_a_legend(tmp_path: Path, saved: dict[str, MatplotlibFigure], baselines: list[BaselineResult],
                                     methods: tuple[str, ...], losses: tuple[str, ...]) -> None:
    draw(budget_sweep(methods=methods, losses=losses), tmp_path, baselines)
    for name, fig in saved.items():
        for ax in panels(fig):
            labels = series_labels(ax)
            assert labels, f"{name}: an empty panel"
            assert ax.get_legend() is not None or fig.legends, f"{name}: a panel without a legend"
            assert set(labels) <= legend_texts(fig, ax), name


def test_a_crowded_figure_has_its_legend_outside_the_panels(
        tmp_path: Path, saved: dict[str, MatplotlibFigure]) -> None:
    draw(budget_sweep(methods=("simclr", "moco", "byol", "swav"), losses=("nt_xent", "margin_triplet"), seeds=1), tmp_path)
    fig = saved["batch_size.png"]  # 8 lines on every panel
    assert not any(ax.get_legend() for ax in fig.axes)
    [legend] = fig.legends
    fig.canvas.draw()
    legend_box = legend.get_window_extent()
    for ax in panels(fig):
        assert not legend_box.overlaps(ax.get_window_extent())
