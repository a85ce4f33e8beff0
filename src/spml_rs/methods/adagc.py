"""AdaGC: adaptive gradient calibration for single-positive multi-label learning.

Two stages (``docs/methods.md``, section AdaGC; ``docs/adagc.md``):

* stage 1, warm-up: Assume Negative, L = mean_{i,c} BCE(x_ic, 1[z_ic = 1]);
* stage 2, gradient calibration (GC): the AN gradient on unknown entries is
  calibrated toward dual-EMA pseudo-labels t (EMA teacher -> per-sample
  temporal EMA of its predictions), in one of two forms:

  - ``target``: L = mean_{i,c} BCE(x_ic, T_ic) with T = 1 on observed positives,
    0 on observed negatives, t on unknowns: dL/dx = (p - T) / (BC);
  - ``elr``: L = mean BCE(x, AN) + lambda mean_{i,c} u_ic log(1 - t_ic p_ic),
    u the unknown mask: on unknowns dL/dx = (p - lambda t p (1-p) / (1 - t p)) / (BC).

The stage switch (:meth:`AdaGCLoss.start_calibration`), the teacher, the
temporal EMA and Mixup are driven by the callbacks in ``spml_rs.callbacks``;
this module holds the per-sample state (checkpointed as a buffer), the
calibration and the loss. The stage is saved
with the module's ``state_dict`` (``get_extra_state``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from spml_rs.dataset_info import DatasetInfo
from spml_rs.methods.base import Batch, SPMLLoss
from spml_rs.methods.functional import an_targets, bce, unknown_mask
from spml_rs.methods.state import assign, ema_update

FORMS = ("target", "elr")
#: ``rescale`` options of the pseudo-labels (see :meth:`AdaGCLoss.estimate_label_frequency`)
RESCALES = ("none", "label_frequency")
#: floor of the estimated label frequency, so that t = s / c stays finite
MIN_LABEL_FREQUENCY = 1e-3
#: p is clamped in the ``elr`` form so that log(1 - t p) stays finite when t = 1
PROB_CLAMP = 1e-4
#: the one batch key AdaGC's callbacks write (``methods/base.py``, "Batch contract")
ADAGC_KEY = "adagc"


@dataclass
class GCTargets:
    """Calibrated targets of a batch, all float (B, C) in [0, 1].

    target: T, the full calibrated vector (observed positives 1, unknowns t);
    observed: the AN targets; unknown: weight of the unknown entries;
    mixup_lambda: the lambda they were mixed with (None: not mixed). Mixing
    mixes all three with the same (perm, lambda), so (target - observed) /
    unknown stays a convex combination of the pseudo-labels of the two images.
    """

    target: torch.Tensor
    observed: torch.Tensor
    unknown: torch.Tensor
    mixup_lambda: float | None = None

    def mixed(self, perm: torch.Tensor, lam: float) -> GCTargets:
        target, observed, unknown = (
            mixup(v, perm, lam) for v in (self.target, self.observed, self.unknown)
        )
        return GCTargets(target, observed, unknown, mixup_lambda=lam)

    def to_batch(self, batch: Batch) -> None:
        """Hand the targets to the loss: ``batch["adagc"].gc = self``."""
        adagc_batch(batch).gc = self


@dataclass
class AdaGCBatch:
    """All that AdaGC's callbacks add to a training batch, under ``batch["adagc"]``.

    clean_probs: ``{source: (B, C) float}``, the probabilities of the teacher
        and/or the student on the batch's clean images (before Mixup); written
        by the first caller of ``callbacks.adagc_common.clean_predictions``,
        read by the early-learning signal and the pseudo-labeller.
    gc: stage 2 only, the calibrated (and, with Mixup, mixed) targets; written
        by the ``PseudoLabels`` callback, read by :class:`AdaGCLoss`.
    """

    clean_probs: dict[str, torch.Tensor] = field(default_factory=dict)
    gc: GCTargets | None = None


def adagc_batch(batch: Batch) -> AdaGCBatch:
    """The batch's :class:`AdaGCBatch` (``batch["adagc"]``), created on first use."""
    state = batch.setdefault(ADAGC_KEY, AdaGCBatch())
    if not isinstance(state, AdaGCBatch):
        raise TypeError(
            f"batch[{ADAGC_KEY!r}] is reserved for AdaGC's callbacks (an AdaGCBatch), "
            f"got {type(state).__name__}"
        )
    return state


def sample_mixup(
    batch_size: int, alpha: float, keep_larger: bool, rng: np.random.Generator
) -> tuple[float, torch.Tensor]:
    """Draw lambda ~ Beta(alpha, alpha) (optionally max(l, 1-l)) and a partner permutation (B,).

    ``rng`` is keyed by (seed, epoch, batch) by the caller, so the draws do not
    depend on how much of the global RNG stream something else consumed: a
    resumed run mixes exactly as an uninterrupted one.
    """
    lam = float(rng.beta(alpha, alpha))
    if keep_larger:
        lam = max(lam, 1.0 - lam)
    return lam, torch.from_numpy(rng.permutation(batch_size))


def mixup(x: torch.Tensor, perm: torch.Tensor, lam: float) -> torch.Tensor:
    """Multi-label Mixup (Zhang et al., ICLR 2018): x~_i = lam x_i + (1 - lam) x_perm(i).

    Works for images (B, ...) and for target vectors (B, C) alike: every class of
    either image keeps a share of its target, unlike one-hot Mixup.
    """
    return lam * x + (1.0 - lam) * x[perm]


def gc_target_loss(logits: torch.Tensor, gc: GCTargets) -> torch.Tensor:
    """``target`` form: mean_{i,c} BCE(x_ic, T_ic)."""
    return bce(logits, gc.target).mean()


def gc_elr_loss(logits: torch.Tensor, gc: GCTargets, lam: float) -> tuple[torch.Tensor, ...]:
    """``elr`` form: (loss, an, reg) with reg = lambda mean_{i,c} u log(1 - t p).

    t = (T - observed) / u is the pseudo-label on the unknown part (0 where u = 0).
    """
    p = torch.sigmoid(logits.float()).clamp(PROB_CLAMP, 1.0 - PROB_CLAMP)
    u = gc.unknown
    t = torch.where(u > 0, (gc.target - gc.observed) / u.clamp_min(1e-12), torch.zeros_like(u))
    reg = lam * (u * torch.log(1.0 - t.clamp(0.0, 1.0) * p)).mean()
    an = bce(logits, gc.observed).mean()
    return an + reg, an, reg


class AdaGCLoss(SPMLLoss):
    """AN in stage 1, gradient calibration toward dual-EMA pseudo-labels in stage 2.

    Per-sample state: ``score_state`` (N, C + 1) holds the temporal EMA of the
    teacher's probabilities in its first C columns and the EMA of a constant 1
    in the last, so score = state[:, :C] / state[:, C] is the bias-corrected
    EMA (Adam-style: the zero start does not drag early scores toward 0).
    ``observed_positive`` (N, C) records each sample's observed positives as it
    is seen, for the label-frequency estimate.

    Args:
        form: ``target`` or ``elr`` (see the module docstring).
        lam: lambda of the ``elr`` form.
        tau_pos: pseudo-labels t >= tau_pos become 1 (None: keep soft).
        tau_neg: pseudo-labels t <= tau_neg become 0 (None: keep soft).
        rescale: ``label_frequency`` divides the scores by the per-class label
            frequency c (Elkan & Noto), t = min(1, s / c); ``none`` keeps t = s.
    """

    def __init__(
        self,
        *,
        info: DatasetInfo,
        form: str = "target",
        lam: float = 1.0,
        tau_pos: float | None = None,
        tau_neg: float | None = None,
        rescale: str = "none",
    ) -> None:
        super().__init__(info=info)
        if form not in FORMS:
            raise ValueError(f"adagc: loss.form must be one of {FORMS}, got {form!r}")
        if rescale not in RESCALES:
            raise ValueError(f"adagc: loss.rescale must be one of {RESCALES}, got {rescale!r}")
        if tau_pos is not None and tau_neg is not None and tau_neg >= tau_pos:
            raise ValueError(f"adagc: need tau_neg < tau_pos, got {tau_neg} >= {tau_pos}")
        self.form, self.lam, self.tau_pos, self.tau_neg = form, lam, tau_pos, tau_neg
        self.rescale = rescale
        self.stage = 1
        self.score_state: torch.Tensor
        self.observed_positive: torch.Tensor
        self.label_frequency: torch.Tensor
        n, c = self.num_samples, self.num_classes
        self.register_buffer("score_state", torch.zeros(n, c + 1))
        self.register_buffer("observed_positive", torch.zeros(n, c, dtype=torch.bool))
        self.register_buffer("label_frequency", torch.ones(c))

    # ------------------------------------------------------------ stage
    @property
    def calibrating(self) -> bool:
        """True in stage 2 (gradient calibration), False in the AN warm-up."""
        return self.stage == 2

    def start_calibration(self) -> None:
        """Switch to stage 2; called once, by the early-learning detection (never undone)."""
        self.stage = 2

    # ------------------------------------------------------------ state
    def get_extra_state(self) -> dict[str, Any]:
        return {"stage": self.stage}

    def set_extra_state(self, state: dict[str, Any]) -> None:
        self.stage = int(state["stage"])

    def update_scores(
        self,
        index: torch.Tensor,
        probs: torch.Tensor,
        momentum: float,
        target: torch.Tensor | None = None,
    ) -> None:
        """s_i <- momentum s_i + (1 - momentum) p_i for the batch's samples (all ranks).

        ``target`` (B, C), when given, records the samples' observed positives.
        """
        ones = probs.new_ones(probs.shape[0], 1)
        ema_update(self.score_state, index, torch.cat([probs.float(), ones], dim=1), momentum)
        if target is not None:
            assign(self.observed_positive, index, target == 1)

    @torch.no_grad()
    def estimate_label_frequency(self) -> torch.Tensor:
        """Per-class label frequency c_k = mean score s_ik over the observed positives (C,).

        Elkan & Noto, "Learning classifiers from only positive and unlabeled data",
        KDD 2008 (estimator e1): if the observed positive is picked independently of
        the image given its classes, a classifier of "observed positive" (what AN
        learns) outputs P(z = 1 | x) = c P(y = 1 | x), with c = P(z = 1 | y = 1). In
        SPML c is about 1 / (positives per image), so the raw scores of hidden
        positives sit near c, far below 0.5; s / c puts them back on the scale of
        P(y = 1 | x). Classes without a seen observed positive keep c = 1.
        """
        seen = self.score_state[:, -1] > 0
        mask = (self.observed_positive & seen[:, None]).float()
        count = mask.sum(dim=0)
        mean = (self.scores() * mask).sum(dim=0) / count.clamp_min(1.0)
        c = torch.where(count > 0, mean, torch.ones_like(mean))
        return c.clamp(MIN_LABEL_FREQUENCY, 1.0)

    def on_train_epoch_end(self) -> None:
        """Refresh the label-frequency estimate from the whole score table (used next epoch)."""
        if self.rescale == "label_frequency":
            self.label_frequency.copy_(self.estimate_label_frequency())

    def scores(self, index: torch.Tensor | slice = slice(None)) -> torch.Tensor:
        """Bias-corrected temporal EMA (B, C) of the samples (default: all); 0 if never seen."""
        state = self.score_state[index]
        weight = state[:, -1:]
        return torch.where(weight > 0, state[:, :-1] / weight.clamp_min(1e-12), 0.0)

    def calibrated(self, index: torch.Tensor, target: torch.Tensor) -> GCTargets:
        """GC targets of a batch from the current scores and the observed ``target`` (B, C)."""
        t = self.scores(index)
        if self.rescale == "label_frequency":
            t = (t / self.label_frequency).clamp(max=1.0)
        if self.tau_pos is not None:
            t = torch.where(t >= self.tau_pos, 1.0, t)
        if self.tau_neg is not None:
            t = torch.where(t <= self.tau_neg, 0.0, t)
        observed = an_targets(target)
        unknown = unknown_mask(target)
        return GCTargets(target=observed + unknown * t, observed=observed, unknown=unknown)

    # ------------------------------------------------------------- loss
    def forward(self, logits: torch.Tensor, batch: Batch) -> dict[str, torch.Tensor]:
        if not self.calibrating:
            return {"loss": bce(logits, an_targets(batch["target"])).mean()}
        state = batch.get(ADAGC_KEY)
        gc = state.gc if isinstance(state, AdaGCBatch) else None
        if gc is None:
            raise KeyError(
                f"adagc stage 2 needs batch[{ADAGC_KEY!r}].gc, the calibrated targets filled by the "
                "PseudoLabels callback: add it to the method's callbacks (configs/method/adagc.yaml)"
            )
        if self.form == "target":
            return {"loss": gc_target_loss(logits, gc)}
        loss, an, reg = gc_elr_loss(logits, gc, self.lam)
        return {"loss": loss, "an": an.detach(), "reg": reg.detach()}
