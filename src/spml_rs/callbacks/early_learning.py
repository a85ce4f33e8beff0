"""Early-learning detection: when does the network start memorising the noisy AN labels?

AdaGC (Liu et al.) switches from the Assume-Negative warm-up to gradient
calibration at a trigger epoch detected from a training-dynamics signal, after
AIO2 (Liu et al., IEEE TGRS 2024). The signal s_1, s_2, ... (one value per
epoch, epochs 1-indexed) rises fast while the network learns the clean
patterns, flattens, and rises again once it memorises the missing labels the
AN targets call negative. The detector (``docs/methods.md``):

1. for each window w in W, the slope of a least-squares line with slope >= 0
   through the last w values; each window keeps its slope history;
2. a window fires when its current slope exceeds the minimum of its history and
   that minimum lies more than mean(W) epochs in the past; its detection is the
   epoch of the minimum (the end of the flattest window);
3. once every window fired, dep = mean of the detections; fit
   f(x) = a (1 - exp(-b x^c)), a in [0, 1], b >= 0, c in [0, 1], to s_1..s_dep;
   thr = (f(dep) - f(1)) / (dep - 1); mid = #{x in 1..dep : f'(x) > thr};
   trigger = floor((dep + mid) / 2);
4. fallbacks: ``max_warmup_epochs`` (switch anyway) and ``fixed`` (ablation).

:class:`EarlyLearningDetector` is the pure numpy/scipy core; the Lightning side
is :class:`EarlyLearningCallback` below.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from scipy.optimize import curve_fit

from spml_rs.callbacks.ema_teacher import EMATeacher, clean_predictions, find_callback
from spml_rs.callbacks.pseudo_labels import adagc_loss
from spml_rs.methods.base import Batch
from spml_rs.methods.state import gather_cat


def nonnegative_slope(values: Sequence[float]) -> float:
    """Slope of the least-squares line y = k x + d through ``values`` with k >= 0.

    The objective is a convex quadratic in k once d is profiled out, so the
    constrained optimum is the unconstrained slope clipped at 0.
    """
    y = np.asarray(values, dtype=np.float64)
    x = np.arange(len(y), dtype=np.float64)
    x -= x.mean()
    denom = float((x * x).sum())
    if denom == 0.0:
        return 0.0
    return max(0.0, float((x * (y - y.mean())).sum() / denom))


def saturating(x: np.ndarray, a: float, b: float, c: float) -> np.ndarray:
    """f(x) = a (1 - exp(-b x^c)): the early-learning curve model."""
    return a * (1.0 - np.exp(-b * np.power(x, c)))


def saturating_slope(x: np.ndarray, a: float, b: float, c: float) -> np.ndarray:
    """f'(x) = a b c x^(c-1) exp(-b x^c), for x > 0."""
    return a * b * c * np.power(x, c - 1.0) * np.exp(-b * np.power(x, c))


def fit_saturating(signal: Sequence[float]) -> tuple[float, float, float] | None:
    """Fit (a, b, c) of :func:`saturating` to ``signal`` at epochs 1..n; None if it fails."""
    y = np.asarray(signal, dtype=np.float64)
    if len(y) < 3 or not np.all(np.isfinite(y)):
        return None
    x = np.arange(1, len(y) + 1, dtype=np.float64)
    start = (float(np.clip(y.max(), 1e-3, 1.0)), 0.5, 0.5)
    try:
        params, _ = curve_fit(
            saturating, x, y, p0=start, bounds=([0.0, 0.0, 0.0], [1.0, np.inf, 1.0]), maxfev=5000
        )
    except (RuntimeError, ValueError):
        return None
    a, b, c = (float(v) for v in params)
    return a, b, c


def trigger_from_fit(dep: float, params: tuple[float, float, float]) -> tuple[int, int]:
    """(mid, trigger) from the fitted curve over epochs 1..dep (step 3 above)."""
    f1 = float(saturating(np.array([1.0]), *params)[0])
    fdep = float(saturating(np.array([dep]), *params)[0])
    thr = (fdep - f1) / (dep - 1.0)
    epochs = np.arange(1, math.floor(dep) + 1, dtype=np.float64)
    mid = int((saturating_slope(epochs, *params) > thr).sum())
    return mid, math.floor((dep + mid) / 2)


@dataclass
class EarlyLearningDetector:
    """Stateful detector fed one signal value per epoch; decides the stage-2 switch.

    Args:
        windows: window sizes W (epochs); each must be >= 2.
        max_warmup_epochs: switch at the end of this epoch if nothing fired (None: never).
        fixed: ablation: switch at the end of this epoch, ignoring the signal.

    After :meth:`update` returns True, ``trigger_epoch`` is the epoch whose end
    state stage 2 should start from (<= the current epoch), ``reason`` says why
    (``detected``, ``fallback``, ``fixed``) and ``dep``, ``mid``, ``fit`` describe
    the detection. Epochs are 1-indexed throughout.
    """

    windows: tuple[int, ...] = (2, 3, 4)
    max_warmup_epochs: int | None = None
    fixed: int | None = None
    signal: list[float] = field(default_factory=list)
    slopes: dict[int, list[float]] = field(default_factory=dict)
    detections: dict[int, int] = field(default_factory=dict)
    trigger_epoch: int | None = None
    reason: str | None = None
    dep: float | None = None
    mid: int | None = None
    fit: tuple[float, float, float] | None = None

    def __post_init__(self) -> None:
        self.windows = tuple(int(w) for w in self.windows)
        if not self.windows or min(self.windows) < 2:
            raise ValueError(f"early-learning windows must be integers >= 2, got {self.windows}")
        for name in ("max_warmup_epochs", "fixed"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"early-learning {name} must be >= 1 or null, got {value}")
        self.slopes = {int(w): list(v) for w, v in self.slopes.items()}
        self.detections = {int(w): int(v) for w, v in self.detections.items()}

    @property
    def epoch(self) -> int:
        """Number of epochs seen so far (= the current epoch, 1-indexed)."""
        return len(self.signal)

    @property
    def triggered(self) -> bool:
        return self.trigger_epoch is not None

    def update(self, value: float) -> bool:
        """Add the signal of the epoch that just ended; True when stage 2 starts now."""
        if self.triggered:
            self.signal.append(float(value))
            return False
        self.signal.append(float(value))
        self._update_windows()
        if self.fixed is not None:
            return self._decide(self.fixed, "fixed") if self.epoch >= self.fixed else False
        if len(self.detections) == len(self.windows):
            return self._detect()
        if self.max_warmup_epochs is not None and self.epoch >= self.max_warmup_epochs:
            return self._decide(self.epoch, "fallback")
        return False

    def _update_windows(self) -> None:
        lag = float(np.mean(self.windows))
        for w in self.windows:
            if self.epoch < w or w in self.detections:
                continue
            history = self.slopes.setdefault(w, [])
            history.append(nonnegative_slope(self.signal[-w:]))
            # history[k] belongs to the window ending at epoch w + k
            k_min = int(np.argmin(history))
            min_epoch = w + k_min
            if history[-1] > history[k_min] and self.epoch - min_epoch > lag:
                self.detections[w] = min_epoch

    def _detect(self) -> bool:
        dep = float(np.mean(list(self.detections.values())))
        self.dep = dep
        self.fit = fit_saturating(self.signal[: math.floor(dep)]) if dep > 1 else None
        if self.fit is None:
            # too few points or a failed fit: start from the flattest point itself
            self.mid = None
            return self._decide(max(1, math.floor(dep)), "detected")
        self.mid, trigger = trigger_from_fit(dep, self.fit)
        return self._decide(max(1, trigger), "detected")

    def _decide(self, trigger: int, reason: str) -> bool:
        self.trigger_epoch = min(trigger, self.epoch)
        self.reason = reason
        return True

    # ------------------------------------------------------------ persistence
    def state_dict(self) -> dict[str, Any]:
        """Plain Python values only: loadable from a ``weights_only`` checkpoint."""
        return {
            "signal": list(self.signal),
            "slopes": {int(w): list(v) for w, v in self.slopes.items()},
            "detections": dict(self.detections),
            "trigger_epoch": self.trigger_epoch,
            "reason": self.reason,
            "dep": self.dep,
            "mid": self.mid,
            "fit": list(self.fit) if self.fit is not None else None,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.signal = [float(v) for v in state["signal"]]
        self.slopes = {int(w): [float(s) for s in v] for w, v in state["slopes"].items()}
        self.detections = {int(w): int(v) for w, v in state["detections"].items()}
        self.trigger_epoch = state["trigger_epoch"]
        self.reason = state["reason"]
        self.dep = state["dep"]
        self.mid = state["mid"]
        self.fit = tuple(state["fit"]) if state["fit"] is not None else None  # type: ignore[assignment]


def default_windows(max_epochs: int) -> tuple[int, ...]:
    """Windows scaled to the run length: about 1/8, 1/6 and 1/4 of it, at least 2 epochs.

    12 epochs -> (2, 3); 100 epochs -> (12, 17, 25). Short runs need short
    windows, or the detector cannot fire before the run ends.
    """
    sizes = {max(2, round(max_epochs * r)) for r in (1 / 8, 1 / 6, 1 / 4)}
    return tuple(sorted(sizes))


def samplewise_f1(probs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """F1 (B,) of predictions p >= 0.5 against the AN targets (target == 1); 1 if both empty."""
    predicted = probs >= 0.5
    actual = target == 1
    overlap = (predicted & actual).sum(dim=1).float()
    total = (predicted.sum(dim=1) + actual.sum(dim=1)).float()
    return torch.where(total > 0, 2.0 * overlap / total.clamp_min(1.0), 1.0)


def samplewise_top1(probs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """1.0 (B,) where the highest-scored class is an observed positive, else 0.0.

    Threshold-free: unlike F1 at 0.5 it does not dip in the first epochs while the
    network learns AN's "everything is negative" prior (all p < 0.5 gives F1 = 0,
    which the detector mistakes for a plateau). Under Random single positives a
    network that learnt only the clean patterns cannot tell which of an image's
    classes was drawn, so the signal flattens near 1 / (positives per image);
    its second rise is the memorisation of the draw.
    """
    top = probs.argmax(dim=1, keepdim=True)
    return (target.gather(1, top) == 1).squeeze(1).float()


#: training-dynamics signals, per sample; the epoch's value is their mean
SIGNALS = {"f1": samplewise_f1, "top1": samplewise_top1}


class EarlyLearningCallback(L.Callback):
    """Feed the detector the per-epoch signal and switch AdaGC to stage 2.

    Signal: the mean over the epoch's clean training images of a sample-wise
    agreement of the ``source``'s predictions with the AN training targets
    (``signal``). An epoch is
    processed at its end, or at the next epoch start when a checkpoint taken at
    validation end was resumed, so a resumed run switches exactly as an
    uninterrupted one. The detector, the accumulators and the switch epoch are
    the callback's checkpoint state; the stage is also saved with the loss.

    Args:
        windows: detector window sizes (None: :func:`default_windows` of max_epochs).
        max_warmup_epochs: latest switch (None: ceil(max_warmup_fraction * max_epochs)).
        max_warmup_fraction: see ``max_warmup_epochs``.
        fixed: ablation: switch at the end of this epoch (1-indexed), ignoring the signal.
        rollback: on a detection, restore student, teacher, loss state and optimiser
            moments to the end of the trigger epoch (as AIO2 does). Keeps one snapshot
            per warm-up epoch in ``<run dir>/early_learning/`` until the switch.
        source: ``teacher`` or ``student`` (the ``adagc_no_teacher`` ablation).
        signal: ``f1`` (sample-wise F1 at 0.5 against the AN targets) or ``top1``
            (the top-scored class is the observed positive), see :data:`SIGNALS`.
        plot: write ``<run dir>/early_learning.png`` (and log it to W&B).
    """

    def __init__(
        self,
        windows: list[int] | None = None,
        max_warmup_epochs: int | None = None,
        max_warmup_fraction: float = 0.75,
        fixed: int | None = None,
        rollback: bool = False,
        source: str = "teacher",
        signal: str = "f1",
        plot: bool = True,
    ) -> None:
        if signal not in SIGNALS:
            raise ValueError(f"EarlyLearningCallback signal must be one of {sorted(SIGNALS)}")
        self.signal_name = signal
        self.signal = SIGNALS[signal]
        self.windows = windows
        self.max_warmup_epochs = max_warmup_epochs
        self.max_warmup_fraction = max_warmup_fraction
        self.fixed = fixed
        self.rollback = rollback
        self.source = source
        self.plot = plot
        self.detector: EarlyLearningDetector | None = None
        self.switch_epoch: int | None = None
        self._sum = 0.0
        self._count = 0
        self._pending: dict[str, Any] | None = None

    # --------------------------------------------------------------- set-up
    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage != "fit" or self.detector is not None:
            return
        max_epochs = max(1, trainer.max_epochs or 1)
        windows = tuple(self.windows) if self.windows else default_windows(max_epochs)
        latest = self.max_warmup_epochs or math.ceil(self.max_warmup_fraction * max_epochs)
        self.detector = EarlyLearningDetector(windows, max_warmup_epochs=latest, fixed=self.fixed)
        if self._pending is not None:
            self.load_state_dict(self._pending)

    def run_dir(self, trainer: L.Trainer) -> Path:
        return Path(trainer.default_root_dir)

    # ------------------------------------------------------------ the signal
    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._count:  # an epoch accumulated before a checkpoint, not yet processed
            self._process(trainer, pl_module)

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Batch, idx: int
    ) -> None:
        probs = clean_predictions(trainer, pl_module, batch, self.source)
        values = self.signal(probs, batch["target"])
        self._sum += float(values.sum())
        self._count += int(values.numel())

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._count:
            self._process(trainer, pl_module)

    # ------------------------------------------------------------- decisions
    def _process(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        assert self.detector is not None
        totals = gather_cat(
            torch.tensor(
                [[self._sum, float(self._count)]], dtype=torch.float64, device=pl_module.device
            )
        ).sum(dim=0)
        signal = float(totals[0] / totals[1])
        self._sum, self._count = 0.0, 0
        epoch = self.detector.epoch + 1
        stage = adagc_loss(pl_module).stage  # the stage this epoch trained with
        if self.rollback and not self.detector.triggered:
            self._save_snapshot(trainer, pl_module, epoch)
        if self.detector.update(signal):
            self._switch(trainer, pl_module, epoch)
        self._log(pl_module, signal, stage)

    def _switch(self, trainer: L.Trainer, pl_module: L.LightningModule, epoch: int) -> None:
        assert self.detector is not None and self.detector.trigger_epoch is not None
        trigger = self.detector.trigger_epoch
        if self.rollback:
            if trigger < epoch:
                self._load_snapshot(trainer, pl_module, trigger)
            self._clear_snapshots(trainer)
        self.switch_epoch = epoch
        adagc_loss(pl_module).stage = 2
        self._write_plot(trainer)

    def _log(self, pl_module: L.LightningModule, signal: float, stage: int) -> None:
        assert self.detector is not None
        values = {"adagc/signal": signal, "adagc/stage": float(stage)}
        for name in ("trigger_epoch", "dep", "mid"):
            value = getattr(self.detector, name)
            if value is not None:
                values[f"adagc/{name}"] = float(value)
        values["adagc/windows_fired"] = float(len(self.detector.detections))
        pl_module.log_dict(values, on_step=False, on_epoch=True)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._write_plot(trainer)

    def _write_plot(self, trainer: L.Trainer) -> None:
        if not self.plot or not trainer.is_global_zero or self.detector is None:
            return
        from spml_rs.callbacks.plots import log_image_to_wandb, plot_early_learning

        path = plot_early_learning(
            self.detector,
            self.run_dir(trainer) / "early_learning.png",
            self.switch_epoch,
            signal_label=f"signal: {self.signal_name} of the {self.source} vs AN targets",
        )
        log_image_to_wandb(trainer.loggers, "adagc/early_learning", path)

    # -------------------------------------------------------------- rollback
    def _snapshot_path(self, trainer: L.Trainer, epoch: int) -> Path:
        return (
            self.run_dir(trainer)
            / "early_learning"
            / f"epoch{epoch:04d}_rank{trainer.global_rank}.pt"
        )

    def _save_snapshot(self, trainer: L.Trainer, pl_module: L.LightningModule, epoch: int) -> None:
        teacher = find_callback(trainer, EMATeacher)
        state = {
            "module": pl_module.state_dict(),
            "teacher": teacher.state_dict() if teacher is not None else {},
            "optimizers": [opt.state_dict()["state"] for opt in trainer.optimizers],
        }
        path = self._snapshot_path(trainer, epoch)
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(state, path)

    def _load_snapshot(self, trainer: L.Trainer, pl_module: L.LightningModule, epoch: int) -> None:
        path = self._snapshot_path(trainer, epoch)
        if not path.is_file():
            raise FileNotFoundError(
                f"early-learning rollback: no snapshot {path} of trigger epoch {epoch}; was the run "
                "directory moved or cleaned? Resume in the same directory or set rollback=false"
            )
        state = torch.load(path, map_location=pl_module.device, weights_only=True)
        pl_module.load_state_dict(state["module"])
        teacher = find_callback(trainer, EMATeacher)
        if teacher is not None:
            teacher.load_state_dict(state["teacher"])
        for opt, moments in zip(trainer.optimizers, state["optimizers"], strict=True):
            # moments only: learning rates stay with the scheduler's current epoch
            current = opt.state_dict()
            current["state"] = moments
            opt.load_state_dict(current)

    def _clear_snapshots(self, trainer: L.Trainer) -> None:
        for path in (self.run_dir(trainer) / "early_learning").glob(
            f"*_rank{trainer.global_rank}.pt"
        ):
            path.unlink()

    # ----------------------------------------------------------- checkpoints
    def state_dict(self) -> dict[str, Any]:
        if self.detector is None:
            return {}
        return {
            "detector": self.detector.state_dict(),
            "switch_epoch": self.switch_epoch,
            "sum": self._sum,
            "count": self._count,
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if not state_dict:
            return
        if self.detector is None:  # restored before setup: apply in setup
            self._pending = state_dict
            return
        self.detector.load_state_dict(state_dict["detector"])
        self.switch_epoch = state_dict["switch_epoch"]
        self._sum = float(state_dict["sum"])
        self._count = int(state_dict["count"])
        self._pending = None
