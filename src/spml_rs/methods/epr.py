"""Expected Positive Regularisation (Cole et al., "Multi-Label Learning from Single
Positive Labels", CVPR 2021, baseline "EPR")."""

from __future__ import annotations

import torch

from spml_rs.dataset_info import DatasetInfo
from spml_rs.methods.base import Batch, SPMLLoss
from spml_rs.methods.functional import expected_positive_penalty, observed_terms


def expected_positives(info: DatasetInfo, k: float | None) -> float:
    """EPR's k: the configured value, else the training labels' mean positives per image."""
    value = info.mean_positives_per_image if k is None else float(k)
    if not 0.0 < value <= info.num_classes:
        raise ValueError(
            f"expected number of positives per image k={value} must lie in (0, {info.num_classes}] "
            f"(dataset {info.name}); set method.loss.k"
        )
    return value


class ExpectedPositiveRegularizer(SPMLLoss):
    """Positive term plus a penalty on the batch's expected number of positives.

    L = mean_{i,c} z_ic=1 (-log p_ic) + ((1/B) sum_{i,c} p_ic - k)^2 / C^2, logits (B, C).
    Unknown entries get no direct term; the regulariser is added to the mean, not averaged.

    Args:
        k: expected positives per image; ``None`` = ``info.mean_positives_per_image``
            (an oracle statistic of the full training labels, as in the paper).
    """

    def __init__(self, *, info: DatasetInfo, k: float | None = None) -> None:
        super().__init__(info=info)
        self.k = expected_positives(info, k)

    def forward(self, logits: torch.Tensor, batch: Batch) -> dict[str, torch.Tensor]:
        observed = observed_terms(logits, batch["target"]).mean()
        reg = expected_positive_penalty(torch.sigmoid(logits.float()), self.k)
        return {"loss": observed + reg, "observed": observed.detach(), "reg": reg.detach()}
