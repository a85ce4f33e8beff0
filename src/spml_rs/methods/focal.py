"""Hill and SPLC (Zhang et al., "Simple and Robust Loss Design for Multi-Label
Learning with Missing Labels", arXiv 2112.07368, 2021).

Both use a focal positive term with a margin: -(1 - p_m)^gamma log p_m,
p_m = sigmoid(x - m), which focuses on hard positives and loosens easy ones.
"""

from __future__ import annotations

import torch

from spml_rs.dataset_info import DatasetInfo
from spml_rs.methods.base import Batch, SPMLLoss
from spml_rs.methods.functional import neg_log_sigmoid, positive_mask, unknown_mask


def focal_positive(logits: torch.Tensor, gamma: float, margin: float = 0.0) -> torch.Tensor:
    """-(1 - p_m)^gamma log p_m with p_m = sigmoid(x - margin), entry-wise and stable."""
    shifted = logits.float() - margin
    return torch.sigmoid(-shifted) ** gamma * neg_log_sigmoid(shifted)


class HillLoss(SPMLLoss):
    """Hill: focal-margin positives, Hessian-shaped (lambda - p) p^2 on the rest.

    L = mean_{i,c} [ z=1: -(1 - p_m)^gamma log p_m ; else: (lambda - p) p^2 ], (B, C).
    The negative term's derivative p (2 lambda - 3 p) is positive but small for
    confident (likely false) negatives near p = 1 when lambda = 1.5, so they are
    pushed down less than by BCE. The paper sums; here the mean (methods.md).

    Args:
        lam: lambda of the negative term.
        margin: m of the positive term.
        gamma: focusing exponent of the positive term.
    """

    def __init__(
        self, *, info: DatasetInfo, lam: float = 1.5, margin: float = 1.0, gamma: float = 2.0
    ) -> None:
        super().__init__(info=info)
        self.lam, self.margin, self.gamma = lam, margin, gamma

    def forward(self, logits: torch.Tensor, batch: Batch) -> dict[str, torch.Tensor]:
        pos = positive_mask(batch["target"])
        p = torch.sigmoid(logits.float())
        negative = (self.lam - p) * p**2
        positive = focal_positive(logits, self.gamma, self.margin)
        return {"loss": (pos * positive + (1.0 - pos) * negative).mean()}


class SelfPacedLossCorrection(SPMLLoss):
    """SPLC: focal BCE with a positive margin; confident unknowns count as positive.

    From epoch ``correction_epoch`` (0-indexed) on, an unknown entry with
    p = sigmoid(x) > tau is a positive for this batch only (no state). Per entry:
        observed positive: -(1 - p_m)^gamma log p_m       (p_m = sigmoid(x - m))
        corrected unknown: -(1 - p)^gamma log p
        other:             -p^gamma log(1 - p)
    L = mean over (B, C). With gamma = 0, m = 0 and no correction it is AN.

    Args:
        tau: probability threshold of the correction.
        margin: m of the observed positives.
        gamma: focusing exponent.
        correction_epoch: first epoch (0-indexed) with corrections.
    """

    def __init__(
        self,
        *,
        info: DatasetInfo,
        tau: float = 0.6,
        margin: float = 1.0,
        gamma: float = 2.0,
        correction_epoch: int = 1,
    ) -> None:
        super().__init__(info=info)
        self.tau, self.margin, self.gamma = tau, margin, gamma
        self.correction_epoch = correction_epoch

    def forward(self, logits: torch.Tensor, batch: Batch) -> dict[str, torch.Tensor]:
        target = batch["target"]
        pos = positive_mask(target)
        corrected = torch.zeros_like(pos)
        if self.epoch >= self.correction_epoch:
            confident = (torch.sigmoid(logits.detach().float()) > self.tau).float()
            corrected = unknown_mask(target) * confident
        negative = 1.0 - pos - corrected
        losses = (
            pos * focal_positive(logits, self.gamma, self.margin)
            + corrected * focal_positive(logits, self.gamma)
            + negative * focal_positive(-logits, self.gamma)
        )
        return {"loss": losses.mean(), "corrected": corrected.sum() / target.shape[0]}
