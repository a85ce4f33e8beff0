"""Generalised cross-entropy (Zhang & Sabuncu, "Generalized Cross Entropy Loss for
Training Deep Neural Networks with Noisy Labels", NeurIPS 2018), binary form on AN targets."""

from __future__ import annotations

import torch

from spml_rs.dataset_info import DatasetInfo
from spml_rs.methods.base import Batch, SPMLLoss
from spml_rs.methods.functional import an_targets, bce


class GeneralizedCrossEntropy(SPMLLoss):
    """L = mean_{i,c} (1 - p_t^q) / q, p_t = p for an AN target 1 and 1 - p for 0; (B, C).

    p_t^q = exp(-q BCE(x, y)) keeps it finite at any logit. As q -> 0 it tends to BCE
    (AN); q = 1 gives the (noise-robust, slow) MAE 1 - p_t.

    Args:
        q: exponent in (0, 1].
    """

    def __init__(self, *, info: DatasetInfo, q: float = 0.1) -> None:
        super().__init__(info=info)
        if not 0.0 < q <= 1.0:
            raise ValueError(f"gce: q must lie in (0, 1], got {q}")
        self.q = q

    def forward(self, logits: torch.Tensor, batch: Batch) -> dict[str, torch.Tensor]:
        neg_log_pt = bce(logits, an_targets(batch["target"]))
        return {"loss": (-torch.expm1(-self.q * neg_log_pt) / self.q).mean()}
