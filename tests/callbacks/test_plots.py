"""The early-learning plot explains itself (issue 17, item 6): words, fit, distinct lines."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.axes import Axes
from PIL import Image

from spml_rs.callbacks.plots import early_learning_figure, plot_early_learning
from spml_rs.methods.early_learning import EarlyLearningDetector


def run(detector: EarlyLearningDetector, curve: list[float]) -> int | None:
    """Feed the whole curve; the epoch of the switch (as the callback records it), or None."""
    switch = None
    for value in curve:
        if detector.update(value) and switch is None:
            switch = detector.epoch
    return switch


def rising(epochs: int) -> list[float]:
    x = np.arange(1, epochs + 1, dtype=np.float64)
    return list(0.8 * (1.0 - np.exp(-0.3 * x**0.8)))


def memorising(epochs: int = 30) -> list[float]:
    x = np.arange(1, epochs + 1, dtype=np.float64)
    return list(0.6 * (1.0 - np.exp(-0.5 * x)) + 0.03 * np.clip(x - 16, 0, None) ** 1.2)


def axes_of(detector: EarlyLearningDetector, switch: int | None) -> Axes:
    return early_learning_figure(detector, switch, "signal").axes[0]


def caption(ax: Axes) -> str:
    return " ".join(ax.get_title(loc="left").split())


def lines(ax: Axes) -> dict[str, tuple[np.ndarray, str, float]]:
    """Label -> (x data, line style, width) of every line drawn."""
    return {
        str(line.get_label()): (
            np.asarray(line.get_xdata(), dtype=float),
            str(line.get_linestyle()),
            float(line.get_linewidth()),
        )
        for line in ax.get_lines()
    }


def test_a_fallback_switch_is_said_in_words_and_its_lines_stay_apart(tmp_path: Path) -> None:
    detector = EarlyLearningDetector(windows=(3, 4, 5), max_warmup_epochs=15)
    switch = run(detector, rising(20))
    assert switch == 15 and detector.reason == "fallback"
    ax = axes_of(detector, switch)
    text = caption(ax)
    # epochs as users read them: 0-based (the detector's epoch 15 is the 15th, shown as 14)
    assert "detector did not fire by epoch 14" in text
    assert "switched at the fallback after epoch 14 (stage 2 from epoch 15)" in text
    assert "no curve fit was made" in text
    drawn = lines(ax)
    assert not any(label.startswith("fit") for label in drawn)
    # trigger and switch fall on the same epoch: different style and width, both named
    (x_trigger, style_trigger, width_trigger) = drawn["trigger = 14"]
    (x_switch, style_switch, width_switch) = drawn["switch = 14"]
    assert x_trigger[0] == x_switch[0] == 14
    assert style_trigger != style_switch and width_trigger != width_switch
    names = [t.get_text() for t in ax.texts]
    assert "trigger" in names and "switch" in names
    offsets = {t.get_text(): t.xyann for t in ax.texts}  # type: ignore[attr-defined]
    assert offsets["trigger"] != offsets["switch"]  # stacked, not printed over each other
    assert ax.get_xlabel() == "epoch (0 = first)"
    # the same words travel with the PNG, for scripts
    path = plot_early_learning(detector, tmp_path / "early_learning.png", switch)
    description = Image.open(path).text["Description"]  # type: ignore[attr-defined]
    assert "detector did not fire by epoch 14" in description


def test_the_fit_is_drawn_whenever_one_was_made() -> None:
    detector = EarlyLearningDetector(windows=(3, 4, 5))
    switch = run(detector, memorising())
    assert detector.reason == "detected" and detector.fit is not None and switch is not None
    ax = axes_of(detector, switch)
    fit = [x for label, (x, _, _) in lines(ax).items() if label.startswith("fit")]
    assert detector.dep is not None and detector.mid is not None
    assert len(fit) == 1 and fit[0][0] == 0.0 and fit[0][-1] == detector.dep - 1
    text = caption(ax)
    assert f"detector fired after epoch {switch - 1} (stage 2 from epoch {switch})" in text
    assert f"dep = {detector.dep - 1}" in text and f"mid = {detector.mid - 1}" in text
    assert f"trigger = {detector.trigger_epoch - 1}" in text
    styles = {label.split(" =")[0]: (s, w) for label, (_, s, w) in lines(ax).items()}
    marks = [styles[name] for name in ("dep", "mid", "trigger", "switch")]
    assert len(set(marks)) == 4  # every vertical line has its own look


def test_a_failed_fit_and_the_other_outcomes_are_said_in_words() -> None:
    failed = EarlyLearningDetector(windows=(2,))
    switch = run(failed, [1.0, 1.0, 1.05, 1.1, 1.15])
    assert failed.fit is None and switch == 5
    ax = axes_of(failed, switch)
    assert "the curve fit failed, so trigger = dep" in caption(ax)
    assert not any(label.startswith("fit") for label in lines(ax))

    fixed = EarlyLearningDetector(windows=(3, 4, 5), fixed=6)
    text = caption(axes_of(fixed, run(fixed, rising(8))))
    assert "fixed switch after epoch 5 (stage 2 from epoch 6) (ablation)" in text

    never = EarlyLearningDetector(windows=(3, 4, 5))
    assert run(never, rising(12)) is None
    assert "detector did not fire in 12 epochs" in caption(axes_of(never, None))
    assert "no switch" in caption(axes_of(never, None))
