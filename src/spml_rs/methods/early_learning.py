"""Early-learning detection: when does the network start memorising the noisy AN labels?

AdaGC (Liu et al.) switches from the Assume-Negative warm-up to gradient
calibration at a trigger epoch detected from a training-dynamics signal, after
AIO2 (Liu et al., IEEE TGRS 2024, the adaptive correction trigger). The signal
s_1, s_2, ... (one value per epoch, epoch 1 = the first) rises fast while the
network learns the clean patterns, flattens, and rises again once it memorises
the missing labels the AN targets call negative. The detector decides as
AIO2's does (``docs/methods.md``, "Early-learning detection"):

1. at the end of epoch n, for each window w in W with n >= w: the slope k of
   the line k x + d fitted to (x, s_x), x = n-w+1..n, by scipy's bounded
   nonlinear least squares ('trf', p0 = (1, 0), k in [0, inf)); appended to
   the window's history, whose entry 0 is the window ending at epoch w;
2. a window fires when its current slope exceeds the minimum of its history
   and that minimum's epoch (argmin + w) lies more than mean(W) epochs back;
   its detection is that epoch. Until all windows fired, every window is
   re-checked each epoch and its detection re-assigned when the test holds;
3. once all fired: dep = int(mean of the detections); fit
   f(x) = a (1 - exp(-b x^c)), a in [0, 1], b >= 0, c in [0, 1], 'trf',
   p0 = (1, 0.5, 0.5), to s_1..s_dep; thr = (f(dep) - f(1)) / (dep - 1);
   mid = #{x in 1..dep : f'(x) > thr}; trigger = int((dep + mid) / 2).

Our additions (not AIO2's): if that fit fails to converge, the trigger is dep
itself; ``max_warmup_epochs`` switches anyway if nothing fired by then;
``fixed`` switches at a given epoch, ignoring the signal (ablation).

This module is the pure part: the per-sample signals (:data:`SIGNALS`, torch)
and :class:`EarlyLearningDetector` (numpy/scipy). The Lightning wiring, which
feeds the detector one value per epoch and switches the loss, is
:class:`spml_rs.callbacks.early_learning.EarlyLearningCallback`.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from scipy.optimize import OptimizeWarning, curve_fit

#: starting points and bounds of the two fits (AIO2's)
LINE_START, LINE_BOUNDS = (1.0, 0.0), ([0.0, -np.inf], [np.inf, np.inf])
CURVE_START, CURVE_BOUNDS = (1.0, 0.5, 0.5), ([0.0, 0.0, 0.0], [1.0, np.inf, 1.0])


def line(x: np.ndarray, slope: float, intercept: float) -> np.ndarray:
    """y = slope x + intercept (the window fit's model)."""
    return slope * x + intercept


def saturating(x: np.ndarray, a: float, b: float, c: float) -> np.ndarray:
    """f(x) = a (1 - exp(-b x^c)): the early-learning curve model."""
    return a * (1.0 - np.exp(-b * np.power(x, c)))


def saturating_slope(x: np.ndarray, a: float, b: float, c: float) -> np.ndarray:
    """f'(x) = a c b exp(-b x^c) x^(c-1), for x > 0 (AIO2's order of the factors)."""
    return a * c * b * np.exp(-b * np.power(x, c)) * np.power(x, c - 1.0)


def bounded_fit(
    model: Any, x: np.ndarray, y: np.ndarray, start: tuple[float, ...], bounds: Any
) -> np.ndarray:
    """scipy's bounded nonlinear least squares ('trf', default budget); raises if it fails."""
    with warnings.catch_warnings():
        # the parameter covariance (unused) cannot be estimated from 2 points: not an error
        warnings.simplefilter("ignore", OptimizeWarning)
        params, _ = curve_fit(model, x, y, p0=start, method="trf", bounds=bounds)
    return np.asarray(params)


def window_slope(signal: Sequence[float], window: int) -> float:
    """Slope k >= 0 of the line fitted to the last ``window`` values at their epochs.

    x = n-window+1..n (1-based epochs of the last values). A bounded
    nonlinear fit, not the clipped closed form: where the unconstrained slope
    is negative, 'trf' stops at a small positive residue (1e-10..1e-3) rather
    than at 0, and the detector's argmin and "current > minimum" compare those
    residues, so only the same fit makes the same decisions as AIO2.
    """
    n = len(signal)
    x = np.arange(n - window + 1, n + 1, dtype=np.float64)
    y = np.asarray(signal[n - window :], dtype=np.float64)
    return float(bounded_fit(line, x, y, LINE_START, LINE_BOUNDS)[0])


def fit_saturating(signal: Sequence[float]) -> tuple[float, float, float] | None:
    """Fit (a, b, c) of :func:`saturating` to ``signal`` at epochs 1..n; None if it fails."""
    y = np.asarray(signal, dtype=np.float64)
    x = np.arange(1, len(y) + 1, dtype=np.float64)
    try:
        params = bounded_fit(saturating, x, y, CURVE_START, CURVE_BOUNDS)
    except RuntimeError:  # no convergence within scipy's budget
        return None
    a, b, c = (float(v) for v in params)
    return a, b, c


def trigger_from_fit(dep: int, params: tuple[float, float, float]) -> tuple[int, int]:
    """(mid, trigger) from the curve fitted over epochs 1..dep (step 3 above), dep >= 2."""
    x = np.arange(1, dep + 1, dtype=np.float64)
    fitted = saturating(x, *params)
    thr = (fitted[-1] - fitted[0]) / (x[-1] - x[0])
    mid = int(np.sum(saturating_slope(x, *params) > thr))
    return mid, int((dep + mid) / 2)


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
    the detection. Epochs are 1-based throughout (epoch 1 = the first).
    """

    windows: tuple[int, ...] = (2, 3, 4)
    max_warmup_epochs: int | None = None
    fixed: int | None = None
    signal: list[float] = field(default_factory=list)
    slopes: dict[int, list[float]] = field(default_factory=dict)
    detections: dict[int, int] = field(default_factory=dict)
    trigger_epoch: int | None = None
    reason: str | None = None
    dep: int | None = None
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
        """Number of epochs seen so far (= the current epoch, 1-based)."""
        return len(self.signal)

    @property
    def triggered(self) -> bool:
        return self.trigger_epoch is not None

    def update(self, value: float) -> bool:
        """Add the signal of the epoch that just ended; True when stage 2 starts now."""
        if not math.isfinite(value):
            raise ValueError(
                f"early-learning signal of epoch {self.epoch + 1} is {value}, expected a finite "
                "mean agreement in [0, 1]"
            )
        self.signal.append(float(value))
        if self.triggered:
            return False  # recorded for the plot; nothing decides any more
        self._update_windows()
        if self.fixed is not None:
            return self._decide(self.fixed, "fixed") if self.epoch >= self.fixed else False
        if len(self.detections) == len(self.windows):
            return self._detect()
        if self.max_warmup_epochs is not None and self.epoch >= self.max_warmup_epochs:
            return self._decide(self.epoch, "fallback")
        return False

    def _update_windows(self) -> None:
        """Steps 1-2: every window with enough epochs fits, and is re-checked (re-assigned)."""
        lag = float(np.mean(self.windows))
        for w in self.windows:
            if self.epoch < w:
                continue
            history = self.slopes.setdefault(w, [])
            history.append(window_slope(self.signal, w))
            k_min = int(np.argmin(history))  # the first minimum, as numpy breaks ties
            min_epoch = w + k_min  # history[k] is the window ending at epoch w + k
            if history[k_min] < history[-1] and self.epoch - min_epoch > lag:
                self.detections[w] = min_epoch

    def _detect(self) -> bool:
        """Step 3, once every window has a detection."""
        dep = int(np.mean([self.detections[w] for w in self.windows]))  # truncated, as AIO2
        self.dep = dep
        self.fit = fit_saturating(self.signal[:dep])
        if self.fit is None:  # our addition: a failed fit starts from dep itself
            self.mid = None
            return self._decide(dep, "detected")
        self.mid, trigger = trigger_from_fit(dep, self.fit)
        return self._decide(trigger, "detected")

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
    """Windows scaled to the run length: about 1/12 and 1/8 of it, at least 2 and 3 epochs.

    12 and 24 epochs -> (2, 3); 100 epochs -> (8, 12). Short runs need short windows,
    or the detector cannot fire before the run ends; windows that are too long fire
    after the memorisation has begun. On the pretrained synthetic benchmark (24
    epochs) these windows were chosen on validation mAP over the former 1/8, 1/6, 1/4
    (3, 4, 6) and over (2, 3, 4): docs/adagc.md, "Ablation".
    """
    sizes = {max(2, round(max_epochs / 12)), max(3, round(max_epochs / 8))}
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
