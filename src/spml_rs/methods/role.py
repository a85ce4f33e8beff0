"""Regularised Online Label Estimation (Cole et al., "Multi-Label Learning from
Single Positive Labels", CVPR 2021, method "ROLE")."""

from __future__ import annotations

import math

import torch
from torch import nn

from spml_rs.dataset_info import DatasetInfo
from spml_rs.methods.base import Batch, SPMLLoss
from spml_rs.methods.epr import expected_positives
from spml_rs.methods.functional import (
    bce,
    expected_positive_penalty,
    negative_mask,
    observed_terms,
    positive_mask,
)
from spml_rs.methods.state import assign


def _logit(p: float) -> float:
    return math.log(p / (1.0 - p))


class RegularizedOnlineLabelEstimation(SPMLLoss):
    """Classifier p and a learnable label estimate q = sigmoid(g_i) trained jointly.

    g is an (N, C) logit matrix, one row per training image (``batch["index"]``).
    Per entry (B, C):
        0.5 [z(-log p) + z(-log q)] + 0.5 [BCE(p; sg(q)) + BCE(q; sg(p))]
    averaged over B*C, plus 0.5 [R(p) + R(q)] with R the EPR penalty. g learns at
    ``lr_scale`` (10) times the network's learning rate (its own optimiser group).

    Initialisation: unknown entries uniform so that q is in (0.5 - init_width,
    0.5 + init_width); observed positives (negatives) at logit(0.995)
    (logit(0.005)). The loss only learns which entries are observed when a sample
    is first seen, so observed entries of a row are set then (``initialised`` mask).

    Args:
        k: expected positives per image; ``None`` = ``info.mean_positives_per_image``.
        init_width: half-width of the initial q interval around 0.5.
    """

    lr_scale = 10.0
    initialised: torch.Tensor

    def __init__(
        self, *, info: DatasetInfo, k: float | None = None, init_width: float = 0.1
    ) -> None:
        super().__init__(info=info)
        if not 0.0 <= init_width < 0.5:
            raise ValueError(f"role: init_width must lie in [0, 0.5), got {init_width}")
        self.k = expected_positives(info, k)
        bound = _logit(0.5 + init_width)
        init = (2.0 * torch.rand(self.num_samples, self.num_classes) - 1.0) * bound
        self.label_logits = nn.Parameter(init)
        self.register_buffer("initialised", torch.zeros(self.num_samples, dtype=torch.bool))

    @torch.no_grad()
    def _initialise_observed(self, index: torch.Tensor, target: torch.Tensor) -> None:
        """Set the observed entries of rows seen for the first time (identically on all ranks)."""
        rows = self.label_logits.detach()[index].clone()
        fresh = ~self.initialised[index]
        rows[fresh] = torch.where(positive_mask(target[fresh]) > 0, _logit(0.995), rows[fresh])
        rows[fresh] = torch.where(negative_mask(target[fresh]) > 0, _logit(0.005), rows[fresh])
        assign(self.label_logits.data, index, rows)
        assign(self.initialised, index, torch.ones_like(fresh))

    def forward(self, logits: torch.Tensor, batch: Batch) -> dict[str, torch.Tensor]:
        target, index = batch["target"], batch["index"]
        self._initialise_observed(index, target)
        g = self.label_logits[index]
        p, q = torch.sigmoid(logits.float()), torch.sigmoid(g)
        observed = 0.5 * (observed_terms(logits, target) + observed_terms(g, target)).mean()
        cross = 0.5 * (bce(logits, q.detach()) + bce(g, p.detach())).mean()
        reg = 0.5 * (expected_positive_penalty(p, self.k) + expected_positive_penalty(q, self.k))
        loss = observed + cross + reg
        return {
            "loss": loss,
            "observed": observed.detach(),
            "cross": cross.detach(),
            "reg": reg.detach(),
        }
