"""The method contract: a loss module called as ``loss(logits, batch) -> dict``.

A method is one :class:`SPMLLoss` subclass plus optional callbacks, both named in
``configs/method/<name>.yaml``. The module never branches on the method: it
only calls the hooks below.

* ``forward(logits, batch)`` returns ``{"loss": scalar, <part>: scalar, ...}``;
  parts are logged as ``train/<part>``.
* ``set_epoch(epoch, max_epochs)`` is called at every training epoch start with
  the trainer's epoch (0-indexed), so schedules never drift on resume.
* ``on_train_epoch_end()`` runs once per epoch (e.g. EM+APL's pseudo-labelling).
* Learnable per-sample state (ROLE's label matrix) is an ``nn.Parameter`` of the
  loss; it gets its own optimiser group with learning rate ``lr * lr_scale``.
* Per-sample state lives in buffers indexed by ``batch["index"]``; buffers and
  parameters are part of the module's ``state_dict`` and so of every checkpoint.
"""

from __future__ import annotations

import abc
from typing import Any

import torch
from torch import nn

from spml_rs.dataset_info import DatasetInfo

Batch = dict[str, Any]


class SPMLLoss(nn.Module, abc.ABC):
    """Base class of every method's loss.

    Args:
        info: what the dataset tells the method (classes, training-set size and
            label statistics); injected by the entry points, not configured.
    """

    #: learning-rate multiplier of the loss's own parameters (ROLE: 10)
    lr_scale: float = 1.0

    def __init__(self, *, info: DatasetInfo) -> None:
        super().__init__()
        self.num_classes = info.num_classes
        self.num_samples = info.num_train_samples
        self.epoch = 0
        self.max_epochs = 1

    def set_epoch(self, epoch: int, max_epochs: int) -> None:
        """Trainer epoch (0-indexed) and planned number of epochs."""
        self.epoch = epoch
        self.max_epochs = max_epochs

    def on_train_epoch_end(self) -> None:
        """Per-epoch state update; no-op unless the method has a schedule."""

    @abc.abstractmethod
    def forward(self, logits: torch.Tensor, batch: Batch) -> dict[str, torch.Tensor]:
        """(B, C) logits and the batch -> ``{"loss": scalar, <part>: scalar}``."""
