"""Multi-label evaluation: mAP (macro, micro), F1 (macro, micro), per-class AP.

Built on torchmetrics (exact, threshold-free AP; states synchronised under DDP).
A prediction counts as positive when p > threshold (torchmetrics' convention):

* ``F1_macro`` / ``F1_micro``: one threshold, 0.5, for every class;
* ``F1_macro_valthr``: per-class thresholds tuned on the validation split
  (:func:`best_f1_thresholds`), reported on the test split. Methods trained with
  assumed negatives (AN and its relatives) push every score down, so at 0.5
  they predict almost nothing and their F1 at 0.5 says little about the ranking
  they learnt; the tuned thresholds measure what a user who calibrates on
  validation data gets.

Classes with no positive in the evaluated split have an undefined AP; they are
excluded from the macro averages (AP and F1), with one warning naming them, and
their per-class AP is reported as NaN.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import torch
from torch import nn
from torchmetrics import Metric
from torchmetrics.classification import (
    MultilabelAveragePrecision,
    MultilabelF1Score,
)
from torchmetrics.utilities import rank_zero_warn
from torchmetrics.utilities.data import dim_zero_cat

F1_THRESHOLD = 0.5
#: the threshold of a class without a positive in the validation split
DEFAULT_THRESHOLD = F1_THRESHOLD


def best_f1_thresholds(
    probs: torch.Tensor, labels: torch.Tensor, default: float = DEFAULT_THRESHOLD
) -> torch.Tensor:
    """Per-class threshold that maximises F1 of ``probs > t`` against ``labels``.

    For class c with P > 0 positives, rank the N scores in decreasing order; cutting
    after rank k predicts the top k as positive, with TP_k true positives, and
    F1_k = 2 TP_k / (k + P) (= 2TP / (2TP + FP + FN)). A cut may not split tied scores.
    The first (highest-threshold) maximiser k* wins, and the threshold is placed
    halfway between the k*-th score and the next lower one, so that ``p > t`` and
    ``p >= t`` select the same validation images. A class without positives keeps
    ``default`` (0.5): no threshold can be tuned against nothing.

    Args:
        probs: (N, C) probabilities.
        labels: (N, C) binary labels.

    Returns:
        (C,) float32 thresholds, on the device of ``probs``.
    """
    probs, labels = probs.float(), labels.float()
    if probs.shape != labels.shape or probs.dim() != 2 or probs.shape[0] == 0:
        raise ValueError(
            f"probs {tuple(probs.shape)} and labels {tuple(labels.shape)}: expected the same "
            "non-empty (N, C) shape"
        )
    scores, order = probs.sort(dim=0, descending=True)
    hits = labels.gather(0, order)
    true_positives = hits.cumsum(dim=0)
    ranks = torch.arange(1, len(scores) + 1, device=probs.device, dtype=torch.float32)[:, None]
    positives = hits.sum(dim=0)
    f1 = 2 * true_positives / (ranks + positives)
    run_ends = torch.ones_like(scores, dtype=torch.bool)
    run_ends[:-1] = scores[:-1] != scores[1:]
    best = torch.where(run_ends, f1, torch.full_like(f1, -1.0)).argmax(dim=0, keepdim=True)
    upper = scores.gather(0, best)[0]
    below = (best + 1).clamp(max=len(scores) - 1)
    lower = torch.where(
        best[0] + 1 < len(scores),
        scores.gather(0, below)[0],
        torch.nextafter(upper, torch.full_like(upper, -float("inf"))),
    )
    middle = (upper + lower) / 2
    # Adjacent floats: the midpoint may round up to ``upper``; ``lower`` still separates them.
    threshold = torch.where(middle < upper, middle, lower)
    return torch.where(positives > 0, threshold, torch.full_like(threshold, default))


class PredictionStore(Metric):
    """All (probabilities, labels) of an epoch, gathered across processes on compute.

    What threshold tuning needs (:func:`best_f1_thresholds`); its states are not
    persistent, so checkpoints do not carry a validation split's predictions.
    """

    full_state_update = False
    probs: list[torch.Tensor]
    labels: list[torch.Tensor]

    def __init__(self) -> None:
        super().__init__()
        self.add_state("probs", default=[], dist_reduce_fx="cat")
        self.add_state("labels", default=[], dist_reduce_fx="cat")

    def update(self, probs: torch.Tensor, labels: torch.Tensor) -> None:
        self.probs.append(probs.float())
        self.labels.append(labels.float())

    def compute(self) -> tuple[torch.Tensor, torch.Tensor]:
        return dim_zero_cat(self.probs), dim_zero_cat(self.labels)


class MultilabelScores(nn.Module):
    """Accumulates probabilities and full labels; computes the metric dict.

    Keys (prefix ``val``/``test``): ``{prefix}/mAP_macro``, ``{prefix}/mAP_micro``,
    ``{prefix}/F1_macro``, ``{prefix}/F1_micro``, ``{prefix}/AP/<class name>`` and,
    when :meth:`update` was given thresholds, ``{prefix}/F1_macro_valthr``.

    Args:
        class_names: one per label column.
        keep_predictions: also keep every probability and label of the epoch, for
            :meth:`tuned_thresholds` (the validation scores do, the test scores need not).
    """

    positives: torch.Tensor
    ap_per_class: MultilabelAveragePrecision
    ap_micro: MultilabelAveragePrecision
    f1_per_class: MultilabelF1Score
    f1_micro: MultilabelF1Score
    f1_tuned: MultilabelF1Score

    def __init__(self, class_names: Sequence[str], keep_predictions: bool = False) -> None:
        super().__init__()
        self.class_names = list(class_names)
        num_labels = len(class_names)
        self.ap_per_class = MultilabelAveragePrecision(num_labels=num_labels, average="none")
        self.ap_micro = MultilabelAveragePrecision(num_labels=num_labels, average="micro")
        self.f1_per_class = MultilabelF1Score(
            num_labels=num_labels, average="none", threshold=F1_THRESHOLD
        )
        self.f1_micro = MultilabelF1Score(
            num_labels=num_labels, average="micro", threshold=F1_THRESHOLD
        )
        # Fed with predictions already thresholded per class (0/1), hence any threshold in (0, 1).
        self.f1_tuned = MultilabelF1Score(num_labels=num_labels, average="none", threshold=0.5)
        self.predictions = PredictionStore() if keep_predictions else None
        self.register_buffer("positives", torch.zeros(num_labels, dtype=torch.long))
        self._warned: set[tuple[str, ...]] = set()

    def _metrics(self) -> list[Metric]:
        extra = [self.predictions] if self.predictions is not None else []
        return [
            self.ap_per_class,
            self.ap_micro,
            self.f1_per_class,
            self.f1_micro,
            self.f1_tuned,
            *extra,
        ]

    def update(
        self, probs: torch.Tensor, labels: torch.Tensor, thresholds: torch.Tensor | None = None
    ) -> None:
        """probs: (B, C) in [0, 1]; labels: (B, C) binary full labels.

        thresholds: (C,) per-class thresholds for ``F1_macro_valthr``; None, or NaN
        (not tuned yet), leaves that score out.
        """
        labels = labels.long()
        probs = probs.float()
        for metric in (self.ap_per_class, self.ap_micro, self.f1_per_class, self.f1_micro):
            metric.update(probs, labels)
        if thresholds is not None and bool(torch.isfinite(thresholds).all()):
            self.f1_tuned.update((probs > thresholds.to(probs.device)).float(), labels)
        if self.predictions is not None:
            self.predictions.update(probs, labels)
        self.positives += labels.sum(dim=0)

    def compute(self, prefix: str) -> dict[str, torch.Tensor]:
        positives = self._synced_positives()
        has_positive = positives > 0
        self._warn_missing(prefix, has_positive)
        with warnings.catch_warnings():
            # torchmetrics warns per class without positives; we warn once, above.
            warnings.simplefilter("ignore", UserWarning)
            ap = self.ap_per_class.compute()
            f1 = self.f1_per_class.compute()
            ap_micro = self.ap_micro.compute()
            f1_tuned = self.f1_tuned.compute() if self.f1_tuned.update_called else None
        ap = torch.where(has_positive, ap, torch.full_like(ap, float("nan")))
        scores = {
            f"{prefix}/mAP_macro": ap[has_positive].mean(),
            f"{prefix}/mAP_micro": ap_micro,
            f"{prefix}/F1_macro": f1[has_positive].mean(),
            f"{prefix}/F1_micro": self.f1_micro.compute(),
        }
        if f1_tuned is not None:
            scores[f"{prefix}/F1_macro_valthr"] = f1_tuned[has_positive].mean()
        for name, value in zip(self.class_names, ap, strict=True):
            scores[f"{prefix}/AP/{name}"] = value
        return scores

    def tuned_thresholds(self) -> torch.Tensor:
        """(C,) F1-maximising thresholds of the epoch's predictions (:func:`best_f1_thresholds`)."""
        if self.predictions is None:
            raise RuntimeError("MultilabelScores(keep_predictions=False) keeps no predictions")
        probs, labels = self.predictions.compute()
        return best_f1_thresholds(probs, labels)

    def reset(self) -> None:
        for metric in self._metrics():
            metric.reset()
        self.positives.zero_()

    def _synced_positives(self) -> torch.Tensor:
        positives = self.positives.clone()
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.all_reduce(positives)
        return positives

    def _warn_missing(self, prefix: str, has_positive: torch.Tensor) -> None:
        missing = tuple(
            n for n, ok in zip(self.class_names, has_positive.tolist(), strict=True) if not ok
        )
        if missing and (prefix, *missing) not in self._warned:
            self._warned.add((prefix, *missing))
            rank_zero_warn(
                f"{prefix}: no positive examples for class(es) {list(missing)}; their AP is "
                "undefined (NaN) and they are excluded from the macro averages"
            )
