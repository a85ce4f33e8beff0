"""Generalized Robust loss (Chen et al., "Boosting Single Positive Multi-label
Classification with Generalized Robust Loss", IJCAI 2024).

Expected-risk view of an unknown entry: it is positive with probability k, so its
loss is k L2(p) + (1 - k) L3(p), weighted by v. GR estimates k from the prediction
itself with a logistic curve k_hat(p; w, b), weights the entry by a Gaussian
v(p; mu, sigma), and uses robust Box-Cox (GCE-type) terms for both targets. The
curve and the weight move linearly from their start to their end values over the
epochs (the paper's beta^(0) -> beta^(T), alpha^(0) -> alpha^(T)).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from spml_rs.dataset_info import DatasetInfo
from spml_rs.methods.base import Batch, SPMLLoss
from spml_rs.methods.functional import observed_terms, unknown_mask

Pair = Sequence[float]


def box_cox(log_prob: torch.Tensor, q: float) -> torch.Tensor:
    """(1 - P^q) / q from log P (entry-wise); q = 0 is its limit -log P.

    P^q = exp(q log P), so the value and its gradient stay finite for any logit.
    q = 1 gives the mean absolute error 1 - P; q -> 0 the cross-entropy.
    """
    if q == 0.0:
        return -log_prob
    return -torch.expm1(q * log_prob) / q


def linear_schedule(pair: Pair, epoch: int, max_epochs: int) -> float:
    """start + (end - start) * t / T at epoch t (0-indexed) of T: the start value at the
    first epoch, the end value approached at the last one (paper: beta^(t), alpha^(t))."""
    start, end = float(pair[0]), float(pair[1])
    if start == end:  # a constant, possibly infinite (b = -inf, sigma = inf): inf - inf is NaN
        return start
    return start + (end - start) * epoch / max_epochs


def _check_pair(name: str, pair: Pair) -> None:
    if len(pair) != 2:
        raise ValueError(f"gr: method.loss.{name} must be [start, end], got {list(pair)}")
    if any(math.isnan(float(v)) for v in pair):
        raise ValueError(f"gr: method.loss.{name} must not be NaN, got {list(pair)}")


class GeneralizedRobustLoss(SPMLLoss):
    """GR loss, entry-wise on (B, C) logits x, p = sigmoid(x), target z:

        z = 1:  L1(p) = -log p                      z = 0 (observed): -log(1 - p)
        z = -1: v(p) [ k(p) L2(p) + (1 - k(p)) L3(p) ]
        k(p) = sigmoid(w_t p + b_t)                 (soft pseudo-label k_hat(p; beta))
        v(p) = exp(-(p - mu_t)^2 / (2 sigma_t^2))   (weight v(p; alpha))
        L2(p) = (1 - p^q2) / q2,  L3(p) = (1 - (1 - p)^q3) / q3

    L = mean over the B x C entries. k and v are computed from the detached
    prediction (constants for the gradient, as in the authors' code). Each of
    w, b, mu, sigma is a pair [value at the first epoch, value at epoch T]
    followed linearly, theta_t = theta_0 + (theta_T - theta_0) t / T, t the
    0-indexed trainer epoch, T = trainer.max_epochs.

    Reducing cases: b = -inf (k = 0), sigma = inf (v = 1), q3 = 0 is AN; with
    w = 0, b = logit(eps), sigma = inf and q2 = q3 = 0 the unknown term is
    BCE(p; eps), label smoothing of the unknowns toward eps.

    Args:
        w, b: slope and bias of the pseudo-label curve, [start, end] (paper: [0, 2], [-2, -2]).
        mu, sigma: centre and width of the weight, [start, end] (paper: [0.5, 0.8], [2, 0.5]).
        q2: exponent of the loss toward positive, in [0, 1] (0.01: nearly -log p).
        q3: exponent of the loss toward negative, in [0, 1] (1: the MAE p).
    """

    def __init__(
        self,
        *,
        info: DatasetInfo,
        w: Pair = (0.0, 2.0),
        b: Pair = (-2.0, -2.0),
        mu: Pair = (0.5, 0.8),
        sigma: Pair = (2.0, 0.5),
        q2: float = 0.01,
        q3: float = 1.0,
    ) -> None:
        super().__init__(info=info)
        for name, pair in (("w", w), ("b", b), ("mu", mu), ("sigma", sigma)):
            _check_pair(name, pair)
        if min(sigma) <= 0:
            raise ValueError(
                f"gr: method.loss.sigma must be > 0 (inf: weight 1), got {list(sigma)}"
            )
        for name, q in (("q2", q2), ("q3", q3)):
            if not 0.0 <= q <= 1.0:
                raise ValueError(f"gr: method.loss.{name} must lie in [0, 1], got {q}")
        self.w, self.b = tuple(map(float, w)), tuple(map(float, b))
        self.mu, self.sigma = tuple(map(float, mu)), tuple(map(float, sigma))
        self.q2, self.q3 = q2, q3

    def schedule(self) -> dict[str, float]:
        """w_t, b_t, mu_t, sigma_t at the current epoch."""
        pairs = {"w": self.w, "b": self.b, "mu": self.mu, "sigma": self.sigma}
        return {k: linear_schedule(v, self.epoch, self.max_epochs) for k, v in pairs.items()}

    def pseudo_label_and_weight(self, logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """k(p) and v(p), (B, C), from the detached prediction at the current epoch."""
        s = self.schedule()
        p = torch.sigmoid(logits.detach().float())
        k = torch.sigmoid(s["w"] * p + s["b"])
        v = torch.exp(-0.5 * ((p - s["mu"]) / s["sigma"]) ** 2)
        return k, v

    def unknown_terms(self, logits: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """v [k L2 + (1 - k) L3] for every entry, (B, C); the loss keeps it on unknowns."""
        x = logits.float()
        toward_positive = box_cox(-F.softplus(-x), self.q2)  # from log p
        toward_negative = box_cox(-F.softplus(x), self.q3)  # from log(1 - p)
        return v * (k * toward_positive + (1.0 - k) * toward_negative)

    def forward(self, logits: torch.Tensor, batch: Batch) -> dict[str, torch.Tensor]:
        target = batch["target"]
        unknown = unknown_mask(target)
        k, v = self.pseudo_label_and_weight(logits)
        losses = observed_terms(logits, target) + unknown * self.unknown_terms(logits, k, v)
        count = unknown.sum().clamp(min=1.0)
        return {
            "loss": losses.mean(),
            "pseudo_label": (k * unknown).sum() / count,
            "weight": (v * unknown).sum() / count,
        }
