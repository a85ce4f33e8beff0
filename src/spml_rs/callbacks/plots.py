"""The early-learning plot: users look at this curve to trust AdaGC's stage switch."""

from __future__ import annotations

from io import BytesIO
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from spml_rs.fileio import atomic_write_bytes
from spml_rs.methods.early_learning import EarlyLearningDetector, saturating


def plot_early_learning(
    detector: EarlyLearningDetector,
    path: str | Path,
    switch_epoch: int | None = None,
    signal_label: str = "signal",
) -> Path:
    """Save the signal, the fitted f(x) = a (1 - exp(-b x^c)), dep, mid and the trigger.

    Epochs on the x axis are 1-indexed, as in the detector. Returns ``path``.
    """
    # a bare Figure (no pyplot): no global backend state, safe on headless nodes
    fig = Figure(figsize=(6.4, 4.0), dpi=110)
    ax = fig.add_subplot()
    epochs = np.arange(1, len(detector.signal) + 1)
    ax.plot(epochs, detector.signal, "o-", color="tab:blue", label=signal_label)
    if detector.fit is not None and detector.dep is not None:
        x = np.linspace(1.0, max(detector.dep, 1.0), 200)
        a, b, c = detector.fit
        label = f"fit a={a:.2f} b={b:.2f} c={c:.2f}"
        ax.plot(x, saturating(x, *detector.fit), "--", color="tab:orange", label=label)
    marks: list[tuple[str, float | None, str]] = [
        ("dep", detector.dep, "tab:gray"),
        ("mid", detector.mid, "tab:green"),
        ("trigger", detector.trigger_epoch, "tab:red"),
        ("switch", switch_epoch, "tab:purple"),
    ]
    for name, value, color in marks:
        if value is not None:
            ax.axvline(value, color=color, linestyle=":", label=f"{name} = {value:g}")
    ax.set_xlabel("epoch")
    ax.set_ylabel("training-dynamics signal")
    title = f"AdaGC early-learning detection ({detector.reason or 'not triggered'})"
    ax.set_title(title)
    ax.legend(loc="lower right", fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    buffer = BytesIO()
    fig.savefig(buffer, format="png")
    atomic_write_bytes(path, buffer.getvalue())
    return path


def log_image_to_wandb(loggers: list[Any], key: str, path: Path) -> None:
    """Send the image to every W&B logger of the trainer (no-op without one)."""
    from lightning.pytorch.loggers import WandbLogger

    for logger in loggers:
        if isinstance(logger, WandbLogger):
            logger.log_image(key=key, images=[str(path)])
