"""Metrics against scikit-learn on seeded inputs; key style; classes without positives."""

from __future__ import annotations

import re
import warnings

import numpy as np
import pytest
import torch
from sklearn.metrics import average_precision_score, f1_score

from spml_rs.metrics import MultilabelScores, best_f1_thresholds

NAMES = [f"class {i}" for i in range(6)]


def _seeded(n: int = 200, c: int = 6, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    rng = np.random.default_rng(seed)
    labels = (rng.random((n, c)) < 0.3).astype(np.int64)
    # Informative but imperfect scores, with ties to exercise AP's tie handling.
    scores = np.clip(0.5 * labels + rng.random((n, c)) * 0.7, 0, 1).round(2)
    return torch.tensor(scores, dtype=torch.float32), torch.tensor(labels)


def _compute(probs: torch.Tensor, labels: torch.Tensor, batches: int = 3) -> dict[str, float]:
    scores = MultilabelScores(NAMES)
    for p, y in zip(probs.chunk(batches), labels.chunk(batches), strict=True):
        scores.update(p, y)
    return {k: float(v) for k, v in scores.compute("val").items()}


def test_map_and_f1_match_sklearn() -> None:
    probs, labels = _seeded()
    got = _compute(probs, labels)
    p, y = probs.numpy(), labels.numpy()
    per_class = average_precision_score(y, p, average=None)
    assert got["val/mAP_macro"] == pytest.approx(per_class.mean(), abs=1e-5)
    assert got["val/mAP_micro"] == pytest.approx(
        average_precision_score(y, p, average="micro"), abs=1e-5
    )
    pred = (p > 0.5).astype(int)
    assert got["val/F1_macro"] == pytest.approx(f1_score(y, pred, average="macro"), abs=1e-5)
    assert got["val/F1_micro"] == pytest.approx(f1_score(y, pred, average="micro"), abs=1e-5)
    for i, name in enumerate(NAMES):
        assert got[f"val/AP/{name}"] == pytest.approx(per_class[i], abs=1e-5)


def test_class_without_positives_is_excluded_with_one_warning() -> None:
    probs, labels = _seeded(seed=1)
    labels[:, 2] = 0
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        got = _compute(probs, labels)
    ours = [w for w in caught if "no positive examples" in str(w.message)]
    assert len(ours) == 1 and "class 2" in str(ours[0].message)
    assert np.isnan(got["val/AP/class 2"])
    keep = [0, 1, 3, 4, 5]
    p, y = probs.numpy(), labels.numpy()
    expected = average_precision_score(y[:, keep], p[:, keep], average="macro")
    assert got["val/mAP_macro"] == pytest.approx(expected, abs=1e-5)
    pred = (p[:, keep] > 0.5).astype(int)
    assert got["val/F1_macro"] == pytest.approx(
        f1_score(y[:, keep], pred, average="macro"), abs=1e-5
    )


def test_reset_forgets_previous_epoch() -> None:
    probs, labels = _seeded(seed=2)
    scores = MultilabelScores(NAMES)
    scores.update(1 - probs, labels)  # a bad epoch
    scores.compute("val")
    scores.reset()
    scores.update(probs, labels)
    fresh = _compute(probs, labels, batches=1)
    assert float(scores.compute("val")["val/mAP_macro"]) == pytest.approx(fresh["val/mAP_macro"])


def test_metric_keys_follow_one_style() -> None:
    probs, labels = _seeded()
    scores = MultilabelScores(NAMES)
    scores.update(probs, labels, thresholds=torch.full((len(NAMES),), 0.3))
    keys = scores.compute("test").keys()
    assert "test/F1_macro_valthr" in keys
    pattern = re.compile(
        r"^(val|test)/(mAP_macro|mAP_micro|F1_macro|F1_micro|F1_macro_valthr|AP/.+)$"
    )
    assert all(pattern.match(k) for k in keys), keys


def _brute_force_best_f1(scores: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """(best F1, highest threshold reaching it) over every cut ``p >= s`` at an observed score."""
    best, at = -1.0, 0.0
    for cut in sorted(set(scores.tolist()), reverse=True):
        f1 = f1_score(labels, scores >= cut, zero_division=0)
        if f1 > best + 1e-12:
            best, at = f1, cut
    return best, at


def test_tuned_thresholds_reach_the_best_f1_of_a_brute_force_search() -> None:
    probs, labels = _seeded(n=300, seed=3)  # scores rounded to 0.01: many ties
    thresholds = best_f1_thresholds(probs, labels)
    p, y = probs.numpy(), labels.numpy()
    for c in range(len(NAMES)):
        best, at = _brute_force_best_f1(p[:, c], y[:, c])
        assert f1_score(y[:, c], p[:, c] > thresholds[c].item()) == pytest.approx(best), c
        # the highest threshold among the maximisers, halfway to the next lower score
        lower = p[:, c][p[:, c] < at].max()
        assert thresholds[c].item() == pytest.approx((at + lower) / 2, abs=1e-6), c


def test_class_without_validation_positives_keeps_half() -> None:
    probs, labels = _seeded(seed=4)
    labels[:, 1] = 0
    thresholds = best_f1_thresholds(probs, labels)
    assert thresholds[1].item() == 0.5
    assert all(thresholds[c].item() != 0.5 for c in (0, 2, 3, 4, 5))


def test_tuned_threshold_separates_adjacent_floats_and_the_lowest_score() -> None:
    upper = torch.tensor(0.25)
    lower = torch.nextafter(upper, torch.tensor(0.0))
    # class 0: positives exactly at the higher of two adjacent floats; class 1: all positive
    probs = torch.stack(
        [torch.stack([upper, upper, lower, lower]), torch.tensor([0.9, 0.4, 0.2, 0.1])], 1
    )
    labels = torch.tensor([[1, 1], [1, 1], [0, 1], [0, 1]])
    thresholds = best_f1_thresholds(probs, labels)
    assert torch.equal(probs[:, 0] > thresholds[0], torch.tensor([True, True, False, False]))
    assert bool((probs[:, 1] > thresholds[1]).all())


def test_f1_at_validation_thresholds_matches_sklearn() -> None:
    probs, labels = _seeded(seed=5)
    thresholds = torch.tensor([0.2, 0.35, 0.5, 0.6, 0.45, 0.3])
    scores = MultilabelScores(NAMES)
    for p, y in zip(probs.chunk(4), labels.chunk(4), strict=True):
        scores.update(p, y, thresholds=thresholds)
    got = float(scores.compute("test")["test/F1_macro_valthr"])
    pred = (probs > thresholds).numpy()
    assert got == pytest.approx(f1_score(labels.numpy(), pred, average="macro"), abs=1e-6)


def test_f1_at_validation_thresholds_is_left_out_when_they_were_never_tuned() -> None:
    probs, labels = _seeded(seed=6)
    scores = MultilabelScores(NAMES)
    scores.update(probs, labels, thresholds=torch.full((len(NAMES),), float("nan")))
    assert "test/F1_macro_valthr" not in scores.compute("test")


def test_validation_scores_tune_on_everything_they_saw() -> None:
    probs, labels = _seeded(seed=7)
    scores = MultilabelScores(NAMES, keep_predictions=True)
    for p, y in zip(probs.chunk(3), labels.chunk(3), strict=True):
        scores.update(p, y)
    assert torch.equal(scores.tuned_thresholds(), best_f1_thresholds(probs, labels))
    scores.reset()
    scores.update(probs[:50], labels[:50])
    assert torch.equal(scores.tuned_thresholds(), best_f1_thresholds(probs[:50], labels[:50]))
