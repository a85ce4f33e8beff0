"""AN with label smoothing (Cole et al., "Multi-Label Learning from Single Positive
Labels", CVPR 2021, baseline "AN-LS")."""

from __future__ import annotations

import torch

from spml_rs.dataset_info import DatasetInfo
from spml_rs.methods.base import Batch, SPMLLoss
from spml_rs.methods.functional import an_targets, bce


class AssumeNegativeLabelSmoothing(SPMLLoss):
    """BCE against AN targets smoothed symmetrically: 1 -> 1 - eps, 0 -> eps.

    L = mean_{i,c} BCE(x_ic, (1 - eps) y_ic + eps (1 - y_ic)), y = AN targets (B, C).
    With ``eps = 0`` this is exactly AN.

    Args:
        eps: smoothing coefficient in [0, 0.5).
    """

    def __init__(self, *, info: DatasetInfo, eps: float = 0.1) -> None:
        super().__init__(info=info)
        if not 0.0 <= eps < 0.5:
            raise ValueError(f"an_ls: eps must lie in [0, 0.5), got {eps}")
        self.eps = eps

    def forward(self, logits: torch.Tensor, batch: Batch) -> dict[str, torch.Tensor]:
        y = an_targets(batch["target"])
        return {"loss": bce(logits, (1.0 - self.eps) * y + self.eps * (1.0 - y)).mean()}
