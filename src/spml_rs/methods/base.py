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

Batch contract
--------------
A batch is a ``dict`` (:data:`Batch`): the samples' keys, stacked by the
loader, moved to the device, then normalised (and in training augmented) by the
datamodule's ``on_after_batch_transfer``. B = batch size, C = classes.

* ``image``: float (B, bands, H, W). A training callback may replace it in
  place (AdaGC's Mixup); the clean images are then gone for later readers.
* ``target``: int8 (B, C), the observed labels: 1 positive, 0 observed
  negative, -1 unknown. What every loss trains on.
* ``label``: uint8 (B, C), the full ground truth (0/1). Evaluation and
  diagnostics only; no training loss reads it (except ``full``).
* ``index``: int64 (B,), the sample's row in its split: the row of every
  per-sample state tensor.

A method's callbacks may add keys in ``on_train_batch_start`` (after the
datamodule, before ``training_step``), for the loss and for each other: at
most one key per method, named after it, holding one documented object, never
loose tensors. The keys in use:

* ``adagc``: :class:`spml_rs.methods.adagc.AdaGCBatch`, with
  - ``clean_probs[source]``: float (B, C) probabilities of the EMA teacher
    (``"teacher"``) or the student (``"student"``) on the clean images.
    Written by the first caller of ``callbacks.adagc_common.clean_predictions``
    (``PseudoLabels`` or ``EarlyLearningCallback``, whichever runs first);
    read by both.
  - ``gc`` (stage 2 only, else None): ``GCTargets``, float (B, C) ``target``,
    ``observed`` and ``unknown`` and the float ``mixup_lambda`` (None without
    Mixup). Written by ``PseudoLabels`` after Mixup; read by
    ``AdaGCLoss.forward``.

``docs/batch_contract.md`` has the same contract, with the reasons.
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
