"""Weak Assume Negative (Cole et al., "Multi-Label Learning from Single Positive
Labels", CVPR 2021, baseline "WAN")."""

from __future__ import annotations

import torch

from spml_rs.dataset_info import DatasetInfo
from spml_rs.methods.base import Batch, SPMLLoss
from spml_rs.methods.functional import neg_log_one_minus_sigmoid, observed_terms, unknown_mask


class WeakAssumeNegative(SPMLLoss):
    """AN with the unknown entries down-weighted.

    L = mean_{i,c} [ z_ic=1: -log p_ic ; z_ic=-1: -w log(1 - p_ic) ] over (B, C);
    observed negatives (z=0) keep weight 1. With ``w = 1`` this is exactly AN.

    Args:
        weight: weight of the unknown term; ``None`` = 1 / (C - 1), the expected
            fraction of negatives that are true negatives when one of C classes is given.
    """

    def __init__(self, *, info: DatasetInfo, weight: float | None = None) -> None:
        super().__init__(info=info)
        if info.num_classes < 2:
            raise ValueError(f"wan needs at least 2 classes, dataset {info.name} has 1")
        self.weight = 1.0 / (info.num_classes - 1) if weight is None else float(weight)

    def forward(self, logits: torch.Tensor, batch: Batch) -> dict[str, torch.Tensor]:
        target = batch["target"]
        unknown = self.weight * unknown_mask(target) * neg_log_one_minus_sigmoid(logits)
        return {"loss": (observed_terms(logits, target) + unknown).mean()}
