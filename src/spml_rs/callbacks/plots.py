"""The early-learning plot: users look at this curve to trust AdaGC's stage switch.

It shows the signal per epoch, the fitted curve f(x) = a (1 - exp(-b x^c))
whenever the detector made a fit, vertical lines at dep, mid, the trigger and the
switch, and says in words what happened: fired, fell back, fixed, or never switched.
Epochs are shown 0-based (0 = the first), as everywhere a user reads them (progress
bar, ``metrics.csv``, checkpoint names); the detector itself counts from 1, as AIO2
does, and :func:`shown` converts at this boundary. Lines that fall on the same epoch stay
distinguishable (own style and width, labels stacked at the top). The caption
is also stored as the PNG's ``Description`` text, for scripts.
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from spml_rs.fileio import atomic_write_bytes
from spml_rs.methods.early_learning import EarlyLearningDetector, saturating


@dataclass(frozen=True)
class Mark:
    """A vertical line at an epoch: name, colour, line style and width."""

    name: str
    epoch: float
    color: str
    style: str
    width: float


EpochT = TypeVar("EpochT", float, np.ndarray)


def shown(epoch: EpochT) -> EpochT:
    """The detector's 1-based epoch(s) (or epoch positions) as users see them: 0-based."""
    return epoch - 1


def _fmt(epoch: float | None) -> str:
    return "none" if epoch is None else f"{shown(epoch):g}"


def describe(detector: EarlyLearningDetector, switch_epoch: int | None) -> str:
    """What happened, in words (0-based epochs): the plot's caption."""
    fired = f"{len(detector.detections)} of {len(detector.windows)} windows fired"
    after = (
        f" after epoch {_fmt(switch_epoch)} (stage 2 from epoch {switch_epoch})"
        if switch_epoch is not None
        else ""
    )
    if detector.reason == "detected":
        fit = (
            f"curve fitted up to dep, mid = {_fmt(detector.mid)}"
            if detector.fit is not None
            else "the curve fit failed, so trigger = dep"
        )
        return (
            f"detector fired{after} (all windows {list(detector.windows)} past their flattest "
            f"point): dep = {_fmt(detector.dep)}, {fit}, trigger = "
            f"{_fmt(detector.trigger_epoch)}"
        )
    if detector.reason == "fallback":
        return (
            f"detector did not fire by epoch {_fmt(detector.trigger_epoch)} ({fired}); switched "
            f"at the fallback{after} (max_warmup_epochs); no curve fit was made"
        )
    if detector.reason == "fixed":
        return f"fixed switch{after} (ablation): the detector was not used; no curve fit was made"
    return (
        f"detector did not fire in {detector.epoch} epochs ({fired}); no switch: every "
        "epoch trained stage 1 (AN)"
    )


#: colour, line style and width of each vertical line: all differ, so lines on one epoch show
MARK_STYLES = {
    "dep": ("tab:gray", ":", 1.5),
    "mid": ("tab:green", "-.", 1.5),
    "trigger": ("tab:red", "-", 4.0),
    "switch": ("tab:purple", "--", 1.5),
}


def marks(detector: EarlyLearningDetector, switch_epoch: int | None) -> list[Mark]:
    """The vertical lines that apply (dep and mid only after a detection)."""
    epochs = {
        "dep": detector.dep,
        "mid": detector.mid,
        "trigger": detector.trigger_epoch,
        "switch": switch_epoch,
    }
    return [
        Mark(name, shown(float(epoch)), *MARK_STYLES[name])
        for name, epoch in epochs.items()
        if epoch is not None
    ]


def draw_marks(ax: Axes, lines: list[Mark]) -> None:
    """Vertical lines, wide ones below thin ones (a thin line on a wide one stays visible),
    named at the top; names of lines on the same epoch are stacked, not printed over each
    other."""
    rows: dict[float, int] = {}
    for mark in lines:
        wide = mark.width > 2
        ax.axvline(
            mark.epoch, color=mark.color, linestyle=mark.style, linewidth=mark.width,
            alpha=0.45 if wide else 1.0, zorder=1 if wide else 2.5,
            label=f"{mark.name} = {mark.epoch:g}",
        )  # fmt: skip
        row = rows.get(mark.epoch, 0)
        rows[mark.epoch] = row + 1
        ax.annotate(
            mark.name, xy=(mark.epoch, 1.0), xycoords=("data", "axes fraction"),
            xytext=(3, -10 - 10 * row), textcoords="offset points", fontsize=7, color=mark.color,
        )  # fmt: skip


def early_learning_figure(
    detector: EarlyLearningDetector, switch_epoch: int | None = None, signal_label: str = "signal"
) -> Figure:
    """The figure of :func:`plot_early_learning` (a bare Figure: no pyplot state)."""
    fig = Figure(figsize=(6.4, 4.4), dpi=110, layout="constrained")
    ax = fig.add_subplot()
    epochs = shown(np.arange(1, len(detector.signal) + 1))
    ax.plot(epochs, detector.signal, "o-", color="tab:blue", label=signal_label)
    if detector.fit is not None and detector.dep is not None:
        # the fit's x is the detector's 1-based epoch
        x = np.linspace(1.0, max(float(detector.dep), 1.0), 200)
        a, b, c = detector.fit
        label = f"fit a={a:.2f} b={b:.2f} c={c:.2f}"
        ax.plot(shown(x), saturating(x, *detector.fit), "--", color="tab:orange", label=label)
    draw_marks(ax, marks(detector, switch_epoch))
    ax.set_xlabel("epoch (0 = first)")
    ax.set_ylabel("training-dynamics signal")
    fig.suptitle(f"AdaGC early-learning detection ({detector.reason or 'no switch'})")
    ax.set_title(textwrap.fill(describe(detector, switch_epoch), 95), fontsize=7, loc="left")
    ax.legend(loc="best", fontsize=7)
    ax.grid(alpha=0.3)
    return fig


def plot_early_learning(
    detector: EarlyLearningDetector,
    path: str | Path,
    switch_epoch: int | None = None,
    signal_label: str = "signal",
) -> Path:
    """Save :func:`early_learning_figure` as a PNG at ``path``, atomically. Returns ``path``."""
    fig = early_learning_figure(detector, switch_epoch, signal_label)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    buffer = BytesIO()
    fig.savefig(buffer, format="png", metadata={"Description": describe(detector, switch_epoch)})
    atomic_write_bytes(path, buffer.getvalue())
    return path


def log_image_to_wandb(loggers: list[Any], key: str, path: Path) -> None:
    """Send the image to every W&B logger of the trainer (no-op without one)."""
    from lightning.pytorch.loggers import WandbLogger

    for logger in loggers:
        if isinstance(logger, WandbLogger):
            logger.log_image(key=key, images=[str(path)])
