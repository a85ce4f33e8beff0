"""Entropy Maximisation and Asymmetric Pseudo-Labelling (Zhou et al., "Acknowledging
the Unknown for Multi-Label Learning with Single Positive Labels", ECCV 2022)."""

from __future__ import annotations

import math

import torch

from spml_rs.dataset_info import DatasetInfo
from spml_rs.methods.base import Batch, SPMLLoss
from spml_rs.methods.functional import bce, binary_entropy, observed_terms, unknown_mask
from spml_rs.methods.state import assign


class EntropyMaximization(SPMLLoss):
    """EM: observed positives -log p; unknown entries -alpha H(p) (entropy maximised).

    L = mean_{i,c} [ z=1: -log p ; z=0: -log(1-p) ; z=-1: -alpha H(p) ], logits (B, C).
    The unknown term pulls p toward 0.5 instead of toward 0. With ``alpha = 0`` only
    the observed terms remain (the positive-only loss), not AN.

    Args:
        alpha: weight of the entropy term on unknown entries.
    """

    def __init__(self, *, info: DatasetInfo, alpha: float = 0.1) -> None:
        super().__init__(info=info)
        self.alpha = alpha

    def entry_losses(
        self, logits: torch.Tensor, target: torch.Tensor, entropy_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """(B, C) loss matrix before the mean; the entropy term on ``entropy_mask`` (unknowns)."""
        mask = unknown_mask(target) if entropy_mask is None else entropy_mask.float()
        return observed_terms(logits, target) - self.alpha * mask * binary_entropy(logits)

    def forward(self, logits: torch.Tensor, batch: Batch) -> dict[str, torch.Tensor]:
        return {"loss": self.entry_losses(logits, batch["target"]).mean()}


class EntropyMaximizationAPL(EntropyMaximization):
    """EM + Asymmetric Pseudo-Labelling: unknown entries with the lowest predictions
    progressively become soft negatives.

    Soft negatives get ``beta * BCE(p; p_hat)`` (p_hat: their prediction when
    chosen) instead of the entropy term. Rounds follow the epochs t = T0 .. T-1
    (1-indexed, T = planned epochs): after epoch t, per class c, the
    n_c = floor(theta * U_c / (T - T0)) still-unknown entries with the lowest last
    prediction are chosen, U_c the number of unknown entries of class c, so about
    theta * U_c entries are pseudo-labelled in the end. No positive pseudo-labels.

    The last prediction of every entry is recorded in training forward passes
    (``last_pred``). A round runs in :meth:`set_epoch` at the start of the next
    epoch, not in ``on_train_epoch_end``: Lightning writes the epoch's checkpoint
    before the module's epoch-end hook, so a round done there would be lost on
    resume. ``last_round`` makes the round happen exactly once per epoch.

    Args:
        alpha: weight of the entropy term on unknown entries.
        theta: fraction of each class's unknown entries pseudo-labelled by the end.
        beta: weight of the soft-negative BCE.
        warmup_epochs: T0, epochs of plain EM before the first round.
    """

    last_pred: torch.Tensor
    unknown: torch.Tensor
    soft_target: torch.Tensor
    last_round: torch.Tensor

    def __init__(
        self,
        *,
        info: DatasetInfo,
        alpha: float = 0.1,
        theta: float = 0.9,
        beta: float = 0.2,
        warmup_epochs: int = 2,
    ) -> None:
        super().__init__(info=info, alpha=alpha)
        if not 0.0 <= theta <= 1.0 or warmup_epochs < 1:
            raise ValueError(
                f"em_apl: need theta in [0, 1] and warmup_epochs >= 1, got {theta}, {warmup_epochs}"
            )
        self.theta, self.beta, self.warmup_epochs = theta, beta, warmup_epochs
        shape = (self.num_samples, self.num_classes)
        self.register_buffer("last_pred", torch.zeros(shape))
        self.register_buffer("unknown", torch.zeros(shape, dtype=torch.bool))
        # soft negative target p_hat, or -1 where the entry is not a soft negative
        self.register_buffer("soft_target", torch.full(shape, -1.0))
        self.register_buffer("last_round", torch.tensor(0))

    def forward(self, logits: torch.Tensor, batch: Batch) -> dict[str, torch.Tensor]:
        target, index = batch["target"], batch["index"]
        soft = self.soft_target[index]
        chosen = soft >= 0
        em = self.entry_losses(logits, target, (target == -1) & ~chosen)
        pseudo = self.beta * chosen.float() * bce(logits, soft.clamp(min=0.0))
        assign(self.last_pred, index, torch.sigmoid(logits.detach().float()))
        assign(self.unknown, index, target == -1)
        return {"loss": (em + pseudo).mean(), "pseudo": pseudo.detach().mean()}

    def set_epoch(self, epoch: int, max_epochs: int) -> None:
        super().set_epoch(epoch, max_epochs)
        if self.warmup_epochs <= epoch < max_epochs and int(self.last_round) < epoch:
            self.pseudo_label_round()
            self.last_round.fill_(epoch)

    @torch.no_grad()
    def pseudo_label_round(self) -> None:
        """Turn the lowest-predicted still-unknown entries of each class into soft negatives."""
        rounds = self.max_epochs - self.warmup_epochs
        still = self.unknown & (self.soft_target < 0)
        for c in range(self.num_classes):
            count = math.floor(self.theta * int(self.unknown[:, c].sum()) / rounds)
            candidates = still[:, c].nonzero().squeeze(1)
            count = min(count, candidates.numel())
            if count == 0:
                continue
            scores = self.last_pred[candidates, c]
            lowest = candidates[scores.topk(count, largest=False).indices]
            self.soft_target[lowest, c] = self.last_pred[lowest, c]
