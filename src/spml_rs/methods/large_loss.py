"""Large Loss modification (Kim et al., "Large Loss Matters in Weakly Supervised
Multi-Label Classification", CVPR 2022): LL-R, LL-Ct and LL-Cp.

AN training, but per batch the unknown entries with the largest AN loss are
likely false negatives the network has not memorised yet; they are rejected
(LL-R) or flipped to positive, for this batch (LL-Ct) or for good (LL-Cp).
"""

from __future__ import annotations

import math

import torch

from spml_rs.dataset_info import DatasetInfo
from spml_rs.methods.base import Batch, SPMLLoss
from spml_rs.methods.functional import an_targets, bce, neg_log_sigmoid
from spml_rs.methods.state import assign


def largest_unknown(losses: torch.Tensor, unknown: torch.Tensor, count: int) -> torch.Tensor:
    """Bool (B, C) mask of the ``count`` unknown entries with the largest ``losses``.

    Observed entries can never be chosen, even when ``count`` exceeds the unknowns.
    """
    count = min(count, int(unknown.sum()))
    chosen = torch.zeros_like(unknown)
    if count > 0:
        ranked = torch.where(unknown, losses.detach(), float("-inf")).flatten()
        chosen.view(-1)[ranked.topk(count).indices] = True
    return chosen


class LargeLoss(SPMLLoss):
    """AN loss with the largest unknown losses modified; subclasses say how.

    At epoch t (1-indexed) a fraction r_t of the batch's B*C entries is modified,
    r_t = (t - 1) * delta_rel / 100 (``increasing_rate``), or r_t = delta_rel / 100
    from the second epoch on (the authors' schedule for LL-Cp, whose corrections
    accumulate). k = ceil(r_t * B * C) entries, chosen among unknowns only.
    L = mean over (B, C) of the modified AN loss matrix. ``delta_rel = 0`` is AN.

    Args:
        delta_rel: rate increment, in percent of the batch's entries.
        increasing_rate: linear schedule (True) or constant after epoch 1 (False).
    """

    def __init__(
        self, *, info: DatasetInfo, delta_rel: float = 0.2, increasing_rate: bool = True
    ) -> None:
        super().__init__(info=info)
        if delta_rel < 0:
            raise ValueError(f"large loss: delta_rel must be >= 0 (percent), got {delta_rel}")
        self.delta_rel, self.increasing_rate = delta_rel, increasing_rate

    def modified_fraction(self) -> float:
        """r_t for the current epoch (t = epoch + 1)."""
        steps = self.epoch if self.increasing_rate else min(self.epoch, 1)
        return steps * self.delta_rel / 100.0

    def effective_target(self, batch: Batch) -> torch.Tensor:
        """Observed targets as this method sees them (LL-Cp adds its corrections)."""
        return batch["target"]

    def forward(self, logits: torch.Tensor, batch: Batch) -> dict[str, torch.Tensor]:
        target = self.effective_target(batch)
        losses = bce(logits, an_targets(target))
        count = math.ceil(self.modified_fraction() * target.numel() - 1e-9)
        chosen = largest_unknown(losses, target == -1, count)
        losses = torch.where(chosen, self.modified_loss(logits), losses)
        self.record(batch, chosen)
        return {"loss": losses.mean(), "modified": chosen.float().sum() / target.shape[0]}

    def modified_loss(self, logits: torch.Tensor) -> torch.Tensor:
        """Loss of a chosen entry: the BCE toward positive (correction)."""
        return neg_log_sigmoid(logits)

    def record(self, batch: Batch, chosen: torch.Tensor) -> None:
        """Per-sample bookkeeping of the chosen entries (only LL-Cp keeps any)."""


class LargeLossRejection(LargeLoss):
    """LL-R: chosen entries get loss 0 (see :class:`LargeLoss`)."""

    def __init__(
        self, *, info: DatasetInfo, delta_rel: float = 0.4, increasing_rate: bool = True
    ) -> None:
        super().__init__(info=info, delta_rel=delta_rel, increasing_rate=increasing_rate)

    def modified_loss(self, logits: torch.Tensor) -> torch.Tensor:
        return torch.zeros_like(logits, dtype=torch.float32)


class LargeLossTemporaryCorrection(LargeLoss):
    """LL-Ct: chosen entries count as positive for this batch (see :class:`LargeLoss`)."""


class LargeLossPermanentCorrection(LargeLoss):
    """LL-Cp: chosen entries become positive in the per-sample labels for good.

    ``flipped`` (N, C) marks corrected entries; they are observed positives in every
    later batch, so they are never chosen again. (The authors' public code loses the
    correction and so runs LL-Ct; here it persists, and is in the checkpoint.)
    """

    flipped: torch.Tensor

    def __init__(
        self, *, info: DatasetInfo, delta_rel: float = 0.2, increasing_rate: bool = False
    ) -> None:
        super().__init__(info=info, delta_rel=delta_rel, increasing_rate=increasing_rate)
        shape = (self.num_samples, self.num_classes)
        self.register_buffer("flipped", torch.zeros(shape, dtype=torch.bool))

    def effective_target(self, batch: Batch) -> torch.Tensor:
        target = batch["target"]
        return torch.where(self.flipped[batch["index"]], torch.ones_like(target), target)

    def record(self, batch: Batch, chosen: torch.Tensor) -> None:
        index = batch["index"]
        assign(self.flipped, index, self.flipped[index] | chosen)
