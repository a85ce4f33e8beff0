"""What AdaGC's callbacks share: the loss they drive, each other, the clean predictions.

The EMA teacher (:mod:`~spml_rs.callbacks.ema_teacher`), the pseudo-labeller
(:mod:`~spml_rs.callbacks.pseudo_labels`) and the early-learning detector
(:mod:`~spml_rs.callbacks.early_learning`) cooperate through three things, all
here: the module's :class:`~spml_rs.methods.adagc.AdaGCLoss`
(:func:`adagc_loss`), the trainer's callback list (:func:`find_callback`) and
the probabilities on the batch's clean images (:func:`clean_predictions`),
computed once per batch and shared.
"""

from __future__ import annotations

from typing import TypeVar

import lightning as L
import torch
from torch import nn

from spml_rs.callbacks.ema_teacher import EMATeacher, memory_format_of
from spml_rs.methods.adagc import AdaGCLoss, adagc_batch
from spml_rs.methods.base import Batch

#: who predicts for the pseudo-labels and the detector signal
SOURCES = ("teacher", "student")
CallbackT = TypeVar("CallbackT", bound=L.Callback)


def adagc_loss(pl_module: L.LightningModule) -> AdaGCLoss:
    """The module's loss, which must be AdaGC's (a clear error for any other method)."""
    loss = getattr(pl_module, "loss", None)
    if not isinstance(loss, AdaGCLoss):
        raise TypeError(
            f"AdaGC callbacks need method.loss = spml_rs.methods.adagc.AdaGCLoss, got {type(loss)}"
        )
    return loss


def find_callback(trainer: L.Trainer, kind: type[CallbackT]) -> CallbackT | None:
    """The trainer's first callback of type ``kind``, or None."""
    return next((cb for cb in trainer.callbacks if isinstance(cb, kind)), None)  # type: ignore[attr-defined]


def check_source(source: str, owner: str) -> None:
    if source not in SOURCES:
        raise ValueError(f"{owner} source must be one of {SOURCES}, got {source!r}")


@torch.no_grad()
def predict_probs(net: nn.Module, image: torch.Tensor) -> torch.Tensor:
    """sigmoid(net(image)) in eval mode, float (B, C); the net's mode is restored.

    The input takes the weights' memory format (channels-last on CUDA, or with
    ``model.channels_last=on``), as the student's forward does.
    """
    was_training = net.training
    net.eval()
    try:
        image = image.contiguous(memory_format=memory_format_of(net))
        return torch.sigmoid(net(image).float())
    finally:
        net.train(was_training)


def source_net(trainer: L.Trainer, pl_module: L.LightningModule, source: str) -> nn.Module:
    """The network that predicts for ``source``: the EMA teacher's copy or the student."""
    if source == "student":
        return pl_module.net  # type: ignore[return-value]
    teacher = find_callback(trainer, EMATeacher)
    if teacher is None:
        raise ValueError(
            "source=teacher needs the EMATeacher callback in the method's callbacks "
            "(method.callbacks.ema_teacher); use source=student to run without one"
        )
    return teacher.net


def clean_predictions(
    trainer: L.Trainer, pl_module: L.LightningModule, batch: Batch, source: str = "teacher"
) -> torch.Tensor:
    """Probabilities (B, C) of ``source`` on the batch's clean images, cached in the batch.

    The cache is ``batch["adagc"].clean_probs[source]``. Call before anything
    replaces ``batch["image"]`` (Mixup): the first caller computes, later
    callers (the detector, the pseudo-labeller) reuse the cache.
    """
    check_source(source, "prediction")
    cache = adagc_batch(batch).clean_probs
    if source not in cache:
        net = source_net(trainer, pl_module, source)
        # the trainer's autocast (bf16-mixed etc.) covers training_step only; use it here too
        with trainer.precision_plugin.forward_context():
            cache[source] = predict_probs(net, batch["image"])
    return cache[source]
