"""Dual-EMA pseudo-labels and Mixup for AdaGC's gradient calibration.

Dual EMA (``docs/methods.md``): (1) the EMA teacher's weights
(:class:`~spml_rs.callbacks.ema_teacher.EMATeacher`); (2) a per-sample temporal
EMA of its predictions, s_ic <- beta s_ic + (1 - beta) p^T_ic, updated each time
sample i is seen, in both stages (so stage 2 starts with a warm estimate). The
state is a buffer of the loss (:class:`~spml_rs.methods.adagc.AdaGCLoss`), so it
is checkpointed with the model and updated identically on every DDP rank.

Per training batch, in ``on_train_batch_start`` (after device-side
normalisation and augmentation): teacher probabilities on the clean images ->
temporal EMA update -> calibrated targets; in stage 2 they go to the loss as
``batch["adagc"].gc`` (:class:`~spml_rs.methods.adagc.GCTargets`), with Mixup
replacing ``batch["image"]`` by the mixed images and the targets by the mixed
targets (``methods/base.py``, "Batch contract").

Ablations by configuration: ``momentum=0`` is the single EMA (teacher only);
``source=student`` uses the student's own predictions (no teacher).
"""

from __future__ import annotations

import lightning as L
import numpy as np
import torch

from spml_rs.callbacks.adagc_common import adagc_loss, check_source, clean_predictions
from spml_rs.methods.adagc import mixup, sample_mixup
from spml_rs.methods.base import Batch
from spml_rs.methods.state import gather_cat


class PseudoLabels(L.Callback):
    """Temporal EMA of the teacher's predictions, calibrated targets and Mixup.

    Args:
        momentum: beta of the temporal EMA (0: single EMA, the teacher's current output).
        source: ``teacher`` (dual EMA) or ``student`` (no teacher).
        mixup: mix images and calibrated targets in stage 2.
        mixup_alpha: lambda ~ Beta(alpha, alpha).
        mixup_keep_larger: use max(lambda, 1 - lambda), so each mixed image keeps its
            own sample dominant.
        seed: Mixup draws come from a generator keyed by (seed, epoch, batch, rank).
    """

    def __init__(
        self,
        momentum: float = 0.9,
        source: str = "teacher",
        mixup: bool = True,
        mixup_alpha: float = 1.0,
        mixup_keep_larger: bool = False,
        seed: int = 0,
    ) -> None:
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"PseudoLabels momentum must lie in [0, 1), got {momentum}")
        check_source(source, "PseudoLabels")
        if mixup_alpha <= 0:
            raise ValueError(f"PseudoLabels mixup_alpha must be > 0, got {mixup_alpha}")
        self.momentum = momentum
        self.source = source
        self.mixup = mixup
        self.mixup_alpha = mixup_alpha
        self.mixup_keep_larger = mixup_keep_larger
        self.seed = seed
        # diagnostics: [true positives, predicted positives, actual positives] on unknown entries
        self._counts = torch.zeros(3)

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._counts = torch.zeros(3, device=pl_module.device)

    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Batch, batch_idx: int
    ) -> None:
        loss = adagc_loss(pl_module)
        probs = clean_predictions(trainer, pl_module, batch, self.source)
        loss.update_scores(batch["index"], probs, self.momentum, batch["target"])
        gc = loss.calibrated(batch["index"], batch["target"])
        self._count(gc.target, batch)
        if not loss.calibrating:
            return
        if self.mixup:
            key = [self.seed, trainer.current_epoch, batch_idx, trainer.global_rank]
            lam, perm = sample_mixup(
                probs.shape[0], self.mixup_alpha, self.mixup_keep_larger, np.random.default_rng(key)
            )
            perm = perm.to(probs.device)
            batch["image"] = mixup(batch["image"], perm, lam)
            gc = gc.mixed(perm, lam)
        gc.to_batch(batch)

    @torch.no_grad()
    def _count(self, calibrated: torch.Tensor, batch: Batch) -> None:
        """Pseudo-labels (t >= 0.5 on unknown entries) against the full labels (diagnostics)."""
        if "label" not in batch:
            return
        unknown = batch["target"] == -1
        predicted = (calibrated >= 0.5) & unknown
        actual = (batch["label"] > 0) & unknown
        counts = torch.stack([(predicted & actual).sum(), predicted.sum(), actual.sum()])
        self._counts = self._counts.to(counts.device) + counts.float()

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        tp, predicted, actual = gather_cat(self._counts[None]).sum(dim=0).tolist()
        if predicted:
            pl_module.log("adagc/pl_precision", tp / predicted, on_step=False, on_epoch=True)
        if actual:
            pl_module.log("adagc/pl_recall", tp / actual, on_step=False, on_epoch=True)
