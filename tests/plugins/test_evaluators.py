"""kNN against a brute-force loop; the linear probe against scikit-learn."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression

from cmp.api.contracts import Features
from cmp_plugins.evaluators import fit_linear, knn, knn_scores, linear


def blobs(n: int, d: int, classes: int, seed: int, spread: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(classes, d, generator=g) * 2
    y = torch.randint(0, classes, (n,), generator=g)
    return centres[y] + spread * torch.randn(n, d, generator=g), y


def knn_brute_force(train_x, train_y, test_x, classes, k, t):  # type: ignore[no-untyped-def]
    """For each test point: cosine similarity to every training point, the k largest vote exp(s/t)."""
    predictions = []
    for q in test_x.tolist():
        sims = []
        for idx, x in enumerate(train_x.tolist()):
            dot = sum(a * b for a, b in zip(q, x))
            sims.append((dot / (math.sqrt(sum(a * a for a in q)) * math.sqrt(sum(b * b for b in x))), idx))
        sims.sort(reverse=True)
        votes = [0.0] * classes
        for s, idx in sims[:k]:
            votes[int(train_y[idx])] += math.exp(s / t)
        predictions.append(max(range(classes), key=lambda c: votes[c]))
    return predictions


def test_knn_matches_brute_force() -> None:
    train_x, train_y = blobs(150, 6, 4, seed=0, spread=2.0)
    test_x, _ = blobs(40, 6, 4, seed=1, spread=2.0)
    for k, t in [(1, 0.1), (7, 0.1), (20, 0.5), (500, 0.07)]:
        scores = knn_scores(train_x, train_y, test_x, 4, k, t)
        assert scores.argmax(1).tolist() == knn_brute_force(train_x, train_y, test_x, 4, min(k, 150), t)


def test_knn_weights_are_exp_similarity_over_temperature() -> None:
    train_x = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    train_y = torch.tensor([0, 1, 1])
    scores = knn_scores(train_x, train_y, torch.tensor([[2.0, 0.0]]), 2, k=3, temperature=0.5)
    assert scores[0, 0].item() == pytest.approx(math.exp(1 / 0.5))
    assert scores[0, 1].item() == pytest.approx(math.exp(0 / 0.5) + math.exp(math.sqrt(0.5) / 0.5))


def test_knn_evaluator_reports_top1() -> None:
    x, y = blobs(400, 8, 3, seed=2, spread=3.0)  # overlapping classes: about 2 in 3 right
    result = knn(k=10, temperature=0.1)(Features(x[:300], y[:300], 3), Features(x[300:], y[300:], 3))
    predicted = knn_brute_force(x[:300], y[:300], x[300:], 3, 10, 0.1)
    assert result == {"top1": sum(p == t for p, t in zip(predicted, y[300:].tolist())) / 100}


def test_linear_probe_matches_scikit_learn() -> None:
    x, y = blobs(600, 10, 5, seed=3, spread=2.5)
    x64 = x.double()
    wd = 1e-3
    model = fit_linear(x64, y, 5, weight_decay=wd, max_iter=500)
    reference = LogisticRegression(C=1 / (len(y) * wd), tol=1e-10, max_iter=5000).fit(x64.numpy(), y.numpy())
    ours = model(x64.float()).argmax(1).numpy()
    assert (ours == reference.predict(x64.numpy())).mean() > 0.99
    # same objective, same optimum: the weights agree up to a shared shift of the logits
    w = model.weight.detach().numpy()
    np.testing.assert_allclose(w - w.mean(0), reference.coef_ - reference.coef_.mean(0), atol=2e-3)


def test_linear_evaluator_separates_separable_classes() -> None:
    x, y = blobs(500, 16, 4, seed=4, spread=0.5)
    result = linear()(Features(x[:400], y[:400], 4), Features(x[400:], y[400:], 4))
    assert result == {"top1": 1.0}


@pytest.mark.parametrize("seed", [4, 5])
def test_linear_evaluator_top1_is_scikit_learns_on_the_standardised_features(seed: int) -> None:
    """Overlapping classes, features of different scales: the probe's top-1 is that of
    scikit-learn's logistic regression (same objective, C = 1 / (N * weight_decay)) on the
    features standardised with the training mean and std."""
    x, y = blobs(500, 16, 4, seed=seed, spread=3.0)
    x = x * torch.linspace(0.1, 10, 16) + 3
    result = linear()(Features(x[:400], y[:400], 4), Features(x[400:], y[400:], 4))
    train = x[:400].double().numpy()
    mean, std = train.mean(axis=0), train.std(axis=0, ddof=1)
    reference = LogisticRegression(C=1 / (400 * 1e-4), tol=1e-10, max_iter=10000).fit((train - mean) / std, y[:400].numpy())
    accuracy = (reference.predict((x[400:].double().numpy() - mean) / std) == y[400:].numpy()).mean()
    assert result["top1"] == pytest.approx(accuracy, abs=1e-12) and accuracy < 0.95


def test_the_linear_probe_standardises_both_splits_with_the_training_statistics(monkeypatch: pytest.MonkeyPatch) -> None:
    """What reaches the fit: each training feature at mean 0 and (unbiased) std 1; what the
    fitted model sees at test time: the test features shifted and scaled by the *training*
    mean and std, computed here with numpy. Features of very different scales and offsets,
    one of them constant in training (std 0: left at 0, not divided by 0)."""
    import cmp_plugins.evaluators as evaluators

    x, y = blobs(300, 5, 3, seed=6, spread=1.0)
    scale = torch.tensor([0.01, 0.5, 3.0, 200.0, 1.0])
    offset = torch.tensor([5.0, -40.0, 0.0, 1000.0, 0.0])
    x = x * scale + offset
    x[:, 4] = 7.0  # constant in training
    train_x, test_x = x[:200].clone(), x[200:].clone()
    test_x[:, 4] = 9.0
    seen: dict[str, torch.Tensor] = {}
    real_fit = evaluators.fit_linear

    def recording_fit(inputs, *args, **kwargs):  # type: ignore[no-untyped-def]
        seen["train"] = inputs.clone()
        model = real_fit(inputs, *args, **kwargs)

        def record_test(module, args):  # type: ignore[no-untyped-def]
            seen["test"] = args[0].clone()

        model.register_forward_pre_hook(record_test)
        return model

    monkeypatch.setattr(evaluators, "fit_linear", recording_fit)
    linear(weight_decay=1e-3, max_iter=50)(Features(train_x, y[:200], 3), Features(test_x, y[200:], 3))

    tx = train_x.double().numpy()
    mean, std = tx.mean(axis=0), np.maximum(tx.std(axis=0, ddof=1), 1e-6)
    np.testing.assert_allclose(seen["train"].double().numpy(), (tx - mean) / std, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(seen["train"][:, :4].double().numpy().std(axis=0, ddof=1), np.ones(4), rtol=1e-4)
    assert (seen["train"][:, 4] == 0).all()
    expected_test = (test_x.double().numpy() - mean) / std
    np.testing.assert_allclose(seen["test"][:, :4].double().numpy(), expected_test[:, :4], rtol=1e-4, atol=1e-3)
    assert seen["test"].shape == test_x.shape


def test_linear_probe_progress_counts_iterations_up_to_the_end() -> None:
    x, y = blobs(300, 6, 3, seed=7, spread=1.5)
    calls: list[tuple[int, int]] = []
    probe = linear(max_iter=40)
    probe.progress = lambda done, total: calls.append((done, total))
    probe(Features(x[:200], y[:200], 3), Features(x[200:], y[200:], 3))
    assert calls[0] == (0, 40) and calls[-1] == (40, 40)
    done = [d for d, _ in calls]
    assert done == sorted(done) and all(type(d) is int and 0 <= d <= 40 for d in done)
    assert all(total == 40 for _, total in calls)
    assert any(0 < d < 40 for d in done)  # the iterations are counted as they happen


def test_evaluator_defaults_are_the_documented_protocol() -> None:
    default_knn, default_linear = knn(), linear()
    assert (default_knn.k, default_knn.temperature) == (200, 0.1)
    assert (default_linear.weight_decay, default_linear.max_iter) == (1e-4, 1000)


def test_knn_searches_in_blocks_and_reports_each(monkeypatch: pytest.MonkeyPatch) -> None:
    import cmp_plugins.evaluators as evaluators

    train_x, train_y = blobs(60, 6, 3, seed=8, spread=2.0)
    test_x, test_y = blobs(20, 6, 3, seed=9, spread=2.0)
    whole = knn_scores(train_x, train_y, test_x, 3, 5, 0.1)
    monkeypatch.setattr(evaluators, "KNN_BLOCK", 7)  # 20 test rows: blocks of 7, 7 and 6
    calls: list[tuple[int, int]] = []
    blocked = knn_scores(train_x, train_y, test_x, 3, 5, 0.1, lambda done, total: calls.append((done, total)))
    torch.testing.assert_close(blocked, whole, rtol=0, atol=0)
    assert calls == [(7, 20), (14, 20), (20, 20)]
    evaluator = knn(k=5, temperature=0.1)
    seen: list[tuple[int, int]] = []
    evaluator.progress = lambda done, total: seen.append((done, total))
    result = evaluator(Features(train_x, train_y, 3), Features(test_x, test_y, 3))
    assert seen == [(7, 20), (14, 20), (20, 20)]
    assert result == {"top1": (whole.argmax(dim=1) == test_y).double().mean().item()}


def test_knn_of_no_test_rows_is_no_scores() -> None:
    train_x, train_y = blobs(30, 4, 3, seed=10)
    calls: list[tuple[int, int]] = []
    scores = knn_scores(train_x, train_y, train_x[:0], 3, 5, 0.1, lambda done, total: calls.append((done, total)))
    assert scores.shape == (0, 3) and scores.dtype == torch.float64 and calls == []
