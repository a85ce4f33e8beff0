"""The early-learning detector on hand-made curves (pure numpy/scipy core)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from spml_rs.methods.early_learning import (
    SIGNALS,
    EarlyLearningDetector,
    default_windows,
    fit_saturating,
    saturating,
    trigger_from_fit,
    window_slope,
)

#: fast rise (early learning) until ~epoch 8, flat plateau, memorisation from epoch 16 on
PLATEAU_START, MEMORISATION_START = 8, 16


def memorising_curve(epochs: int = 30) -> list[float]:
    x = np.arange(1, epochs + 1, dtype=np.float64)
    early = 0.6 * (1.0 - np.exp(-0.5 * x))
    memorise = 0.03 * np.clip(x - MEMORISATION_START, 0.0, None) ** 1.2
    return list(early + memorise)


def monotone_curve(epochs: int = 40) -> list[float]:
    x = np.arange(1, epochs + 1, dtype=np.float64)
    return list(0.8 * (1.0 - np.exp(-0.3 * x**0.8)))


def feed(detector: EarlyLearningDetector, curve: list[float]) -> int | None:
    """Epoch (1-indexed) at which the detector asks for the switch, or None."""
    for value in curve:
        if detector.update(value):
            return detector.epoch
    return None


def test_window_slope_is_the_bounded_fit() -> None:
    """Changed with the AIO2-exact fit (was: the clipped closed form, exactly 0 when falling).

    A rising window gets the least-squares slope; a falling or flat one a small positive
    residue of the bounded 'trf' fit, not 0 (the detector compares those residues).
    """
    rising = [0.1, 0.3, 0.4, 0.8]
    assert window_slope(rising, 4) == pytest.approx(np.polyfit(range(4), rising, 1)[0], rel=1e-6)
    falling = window_slope([0.9, 0.5, 0.4, 0.1], 4)
    flat = window_slope([0.5] * 4, 4)
    assert 0.0 < falling < 1e-6 and 0.0 < flat < 1e-3
    # only the last w values count (fitted at their epochs, so equal up to rounding)
    assert window_slope([5.0, 3.0, *rising], 4) == pytest.approx(window_slope(rising, 4), rel=1e-9)


def test_memorisation_curve_triggers_inside_plateau() -> None:
    detector = EarlyLearningDetector(windows=(3, 4, 5))
    switch = feed(detector, memorising_curve())
    assert switch is not None and detector.reason == "detected"
    assert len(detector.detections) == 3
    # the detections sit at the flattest point, before memorisation starts
    assert all(PLATEAU_START <= d <= MEMORISATION_START for d in detector.detections.values())
    assert detector.trigger_epoch is not None
    assert PLATEAU_START - 2 <= detector.trigger_epoch <= MEMORISATION_START
    assert detector.trigger_epoch <= switch
    assert detector.fit is not None and detector.mid is not None


def test_trigger_follows_the_formula() -> None:
    """dep, thr, mid and the trigger recomputed naively from the stored fit.

    Changed with the AIO2-exact detector: dep is the truncated mean (was: the mean).
    """
    detector = EarlyLearningDetector(windows=(3, 4, 5))
    feed(detector, memorising_curve())
    assert detector.dep == int(np.mean(list(detector.detections.values())))
    a, b, c = detector.fit
    dep = detector.dep

    def f(x: float) -> float:
        return a * (1 - math.exp(-b * x**c))

    def df(x: float) -> float:
        return a * b * c * x ** (c - 1) * math.exp(-b * x**c)

    thr = (f(dep) - f(1)) / (dep - 1)
    mid = sum(df(x) > thr for x in range(1, dep + 1))
    assert detector.mid == mid
    assert detector.trigger_epoch == max(1, math.floor((dep + mid) / 2))


def test_fit_recovers_a_saturating_curve() -> None:
    x = np.arange(1, 13, dtype=np.float64)
    params = fit_saturating(list(saturating(x, 0.7, 0.4, 0.9)))
    assert params is not None
    assert np.allclose(params, (0.7, 0.4, 0.9), atol=1e-3)
    # changed with the AIO2-exact fit (was: None below 3 points): AIO2 fits whatever dep
    # gives, 2 points included; a fit fails only where scipy does not converge, as on a
    # signal at a's bound 1 from the start (b -> inf)
    two = fit_saturating([0.1, 0.2])
    assert two is not None and 0 <= two[0] <= 1 and two[1] >= 0 and 0 <= two[2] <= 1
    assert fit_saturating([1.0, 1.0]) is None
    mid, trigger = trigger_from_fit(10, params)
    assert 0 <= mid <= 10 and trigger == math.floor((10 + mid) / 2)


def test_a_failed_fit_starts_from_dep() -> None:
    """Our addition to AIO2 (which would stop with scipy's error): trigger = dep."""
    detector = EarlyLearningDetector(windows=(2,))
    # the flat window ending at epoch 2 is the flattest; detected at epoch 5 (5 - 2 > 2)
    assert feed(detector, [1.0, 1.0, 1.05, 1.1, 1.15, 1.2]) == 5
    assert detector.detections == {2: 2} and detector.dep == 2
    assert detector.fit is None and detector.mid is None
    assert detector.trigger_epoch == 2 and detector.reason == "detected"


def test_monotone_curve_never_triggers_and_fallback_applies() -> None:
    curve = monotone_curve()
    assert feed(EarlyLearningDetector(windows=(3, 4, 5)), curve) is None
    detector = EarlyLearningDetector(windows=(3, 4, 5), max_warmup_epochs=15)
    assert feed(detector, curve) == 15
    assert detector.reason == "fallback" and detector.trigger_epoch == 15


def test_fixed_trigger_ignores_the_signal() -> None:
    detector = EarlyLearningDetector(windows=(3, 4, 5), fixed=6)
    assert feed(detector, memorising_curve()) == 6
    assert detector.reason == "fixed" and detector.trigger_epoch == 6
    # after the switch the signal is still recorded (for the plot), nothing re-fires
    assert not detector.update(0.5) and detector.epoch == 7


@pytest.mark.parametrize("curve", [memorising_curve(), monotone_curve()])
def test_state_round_trip_between_epochs_changes_nothing(curve: list[float]) -> None:
    reference = EarlyLearningDetector(windows=(3, 4, 5), max_warmup_epochs=25)
    decisions = [reference.update(v) for v in curve]
    state = EarlyLearningDetector(windows=(3, 4, 5), max_warmup_epochs=25).state_dict()
    restored_decisions = []
    for value in curve:
        # a fresh detector per epoch, restored from a JSON round trip of the last state
        detector = EarlyLearningDetector(windows=(3, 4, 5), max_warmup_epochs=25)
        detector.load_state_dict(json.loads(json.dumps(state)))
        restored_decisions.append(detector.update(value))
        state = detector.state_dict()
    assert restored_decisions == decisions
    assert state == reference.state_dict()


def test_default_windows_scale_with_the_run() -> None:
    assert default_windows(12) == (2, 3)
    assert default_windows(24) == (2, 3)
    assert default_windows(100) == (8, 12)
    assert min(default_windows(3)) >= 2


def test_bad_settings_are_rejected() -> None:
    with pytest.raises(ValueError, match="windows"):
        EarlyLearningDetector(windows=(1, 3))
    with pytest.raises(ValueError, match="fixed"):
        EarlyLearningDetector(windows=(2,), fixed=0)
    with pytest.raises(ValueError, match="signal of epoch 1 is nan"):
        EarlyLearningDetector(windows=(2,)).update(float("nan"))


def test_signals_score_agreement_with_the_an_targets() -> None:
    target = torch.tensor([[1, -1, -1], [-1, 1, -1], [-1, -1, 1]], dtype=torch.int8)
    probs = torch.tensor([[0.4, 0.1, 0.2], [0.6, 0.3, 0.1], [0.1, 0.2, 0.9]])
    # top1: the top class is the observed positive in rows 0 and 2, whatever the scale
    assert SIGNALS["top1"](probs, target).tolist() == [1.0, 0.0, 1.0]
    assert SIGNALS["top1"](probs * 0.1, target).tolist() == [1.0, 0.0, 1.0]
    # f1 at 0.5: row 0 predicts nothing (F1 0), row 1 the wrong class, row 2 exactly right
    assert SIGNALS["f1"](probs, target).tolist() == pytest.approx([0.0, 0.0, 1.0])
