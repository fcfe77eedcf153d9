"""The progress display (tqdm on the `cmp_progress` hook) and the evaluators' progress reports."""

from __future__ import annotations

import io
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from cmp.api.contracts import Features
from cmp_plugins import progress
from cmp_plugins.evaluators import KNN, LinearProbe, fit_linear, knn_scores


class Terminal(io.StringIO):
    """A stderr that says it is a terminal."""

    def isatty(self) -> bool:
        return True


RUN = SimpleNamespace(dir=Path("/runs/x/simclr-abc"), name="simclr")


@pytest.fixture(autouse=True)
def shown(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CMP_PROGRESS", "1")
    progress._tasks.clear()


def report(task: str, steps: list[int], total: int) -> None:
    for done in steps:
        progress.cmp_progress(run=RUN, task=task, done=done, total=total)


def test_away_from_a_terminal_a_plain_line_per_quarter(capsys: pytest.CaptureFixture[str]) -> None:
    report("train", list(range(43, 101)), 100)  # first heard of at 43%
    err = capsys.readouterr().err
    lines = err.splitlines()
    assert "\r" not in err and len(lines) == 4
    assert lines[0].startswith("simclr train:  43% 43/100 [") and "?step/s" in lines[0]  # no rate yet, not 0.0/s
    assert lines[-1].startswith("simclr train: 100% 100/100 [") and "step/s]" in lines[-1]
    assert not progress._tasks  # finished tasks are forgotten


def test_on_a_terminal_a_tqdm_bar(monkeypatch: pytest.MonkeyPatch) -> None:
    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    report("features/train", [1024, 2048, 3000], 3000)
    text = terminal.getvalue()
    assert "\r" in text and "simclr features/train" in text and "100%" in text and "3000/3000" in text
    assert "img/s" in text


def test_a_failed_run_closes_its_bar_and_a_new_task_starts_clean(capsys: pytest.CaptureFixture[str]) -> None:
    report("train", [10, 20], 100)
    progress.cmp_run_end(run=RUN, result=None)
    assert not progress._tasks
    report("train", [5], 100)
    assert capsys.readouterr().err.splitlines()[-1].startswith("simclr train:   5% 5/100")


def test_cmp_progress_0_silences_it(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("CMP_PROGRESS", "0")
    report("train", [50, 100], 100)
    assert capsys.readouterr().err == ""


def test_the_linear_probe_reports_each_lbfgs_iteration() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(300, 8, generator=g)
    y = (x[:, 0] > 0).long()
    calls: list[tuple[int, int]] = []
    fit_linear(x, y, 2, 1e-4, 50, progress=lambda done, total: calls.append((done, total)))
    assert len(calls) > 3 and {total for _, total in calls} == {50}
    done = [d for d, _ in calls]
    assert done == sorted(done) and done[-1] == 50 and done[-2] < 50  # converged early, then closed

    probe = LinearProbe(1e-4, 50)
    probe.progress = lambda done, total: calls.append((done, -total))
    probe(Features(x, y, 2), Features(x, y, 2))
    assert calls[-1] == (50, -50)


def test_the_knn_reports_blocks_of_test_rows(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("cmp_plugins.evaluators.KNN_BLOCK", 16)
    g = torch.Generator().manual_seed(0)
    train, test = torch.randn(64, 4, generator=g), torch.randn(40, 4, generator=g)
    labels = torch.randint(0, 3, (64,), generator=g)
    calls: list[tuple[int, int]] = []
    blocked = knn_scores(train, labels, test, 3, 5, 0.1, lambda done, total: calls.append((done, total)))
    assert calls == [(16, 40), (32, 40), (40, 40)]
    monkeypatch.setattr("cmp_plugins.evaluators.KNN_BLOCK", 4096)
    assert torch.equal(blocked, knn_scores(train, labels, test, 3, 5, 0.1))
    knn = KNN(5, 0.1)
    assert knn.progress is None  # until the engine sets it


def test_an_evaluation_nests_below_the_training_bar_of_its_run(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "stderr", Terminal())
    report("train", [10, 20], 100)
    report("features/train", [500], 1000)
    assert set(k[2] for k in progress._tasks) == {"train", "features/train"}
    report("features/train", [1000], 1000)
    report("train", [30], 100)
    assert progress._tasks[(str(RUN.dir), RUN.name, "train")].bar.n == 30  # the same bar, not a new one
    other = SimpleNamespace(dir=Path("/runs/x/moco-def"), name="moco")
    progress.cmp_progress(run=other, task="train", done=1, total=10)
    assert [k[1] for k in progress._tasks] == ["moco"]  # a bar left open by a failed run is closed
