"""Early-Learning Regularisation (Liu et al., "Early-Learning Regularization Prevents
Memorization of Noisy Labels", NeurIPS 2020), in its multi-label (per-entry binary) form."""

from __future__ import annotations

import torch

from spml_rs.dataset_info import DatasetInfo
from spml_rs.methods.base import Batch, SPMLLoss
from spml_rs.methods.functional import an_targets, bce
from spml_rs.methods.state import ema_update

#: probabilities are clamped so that log(1 - <t, p>) stays finite
PROB_CLAMP = 1e-4


class EarlyLearningRegularization(SPMLLoss):
    """AN BCE plus a pull toward per-sample running targets of the early predictions.

    Running targets t (N, C) start at 0; for the batch's samples, first
    t_i <- beta t_i + (1 - beta) sg(p_i), then, with p clamped to [1e-4, 1 - 1e-4],
        L = mean_{i,c} BCE(x_ic, AN) + lambda mean_{i,c} log(1 - [t p + (1-t)(1-p)]).
    The regulariser's logit gradient is -lambda (2t - 1) p (1-p) / (1 - [..]) / (BC):
    it pushes p up where the running target is above 0.5, cancelling AN's push-down
    on false negatives the network learnt early. ``lam = 0`` is AN.

    Args:
        beta: momentum of the running targets.
        lam: weight of the regulariser (lambda).
    """

    running_target: torch.Tensor

    def __init__(self, *, info: DatasetInfo, beta: float = 0.7, lam: float = 0.1) -> None:
        super().__init__(info=info)
        if not 0.0 <= beta < 1.0:
            raise ValueError(f"elr: beta must lie in [0, 1), got {beta}")
        self.beta, self.lam = beta, lam
        self.register_buffer("running_target", torch.zeros(self.num_samples, self.num_classes))

    def forward(self, logits: torch.Tensor, batch: Batch) -> dict[str, torch.Tensor]:
        index = batch["index"]
        p = torch.sigmoid(logits.float()).clamp(PROB_CLAMP, 1.0 - PROB_CLAMP)
        ema_update(self.running_target, index, p.detach(), self.beta)
        t = self.running_target[index]
        agreement = t * p + (1.0 - t) * (1.0 - p)
        reg = self.lam * torch.log(1.0 - agreement).mean()
        an = bce(logits, an_targets(batch["target"])).mean()
        return {"loss": an + reg, "an": an.detach(), "reg": reg.detach()}
