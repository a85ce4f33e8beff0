"""Shared helpers for the method tests: seeded batches, DatasetInfo, extreme-logit checks."""

from __future__ import annotations

import io
from typing import Any

import torch

from spml_rs.dataset_info import DatasetInfo
from spml_rs.methods.base import SPMLLoss

NUM_CLASSES = 6
NUM_SAMPLES = 20
BATCH = 8
#: logits at which every loss must stay finite, with finite gradients
EXTREME_LOGITS = (-1e4, -50.0, 50.0, 1e4)


def make_info(num_classes: int = NUM_CLASSES, num_samples: int = NUM_SAMPLES) -> DatasetInfo:
    return DatasetInfo(
        name="unit",
        class_names=tuple(f"c{i}" for i in range(num_classes)),
        in_chans=3,
        num_train_samples=num_samples,
        mean_positives_per_image=2.0,
    )


def make_batch(
    seed: int = 0, batch: int = BATCH, num_classes: int = NUM_CLASSES, start: int = 0
) -> dict[str, Any]:
    """A single-positive batch: one observed 1 per row, -1 elsewhere, indices start..start+B."""
    g = torch.Generator().manual_seed(seed)
    target = torch.full((batch, num_classes), -1, dtype=torch.int8)
    target[torch.arange(batch), torch.randint(num_classes, (batch,), generator=g)] = 1
    return {"target": target, "index": torch.arange(start, start + batch)}


def make_logits(
    seed: int = 0, batch: int = BATCH, num_classes: int = NUM_CLASSES, scale: float = 3.0
) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed + 1000)
    return (scale * torch.randn(batch, num_classes, generator=g)).requires_grad_(True)


def logit_grad(loss: SPMLLoss, logits: torch.Tensor, batch: dict[str, Any]) -> torch.Tensor:
    """d loss / d logits for a fresh leaf copy of ``logits``."""
    leaf = logits.detach().clone().requires_grad_(True)
    loss(leaf, batch)["loss"].backward()
    assert leaf.grad is not None
    return leaf.grad


def assert_finite_at_extremes(loss: SPMLLoss, batch: dict[str, Any]) -> None:
    """Value and logit gradient finite for constant and mixed-sign extreme logits."""
    shape = batch["target"].shape
    mixed = torch.tensor(EXTREME_LOGITS).repeat(shape[0] * shape[1] // len(EXTREME_LOGITS) + 1)
    cases = [torch.full(shape, v) for v in EXTREME_LOGITS] + [mixed[: shape.numel()].view(shape)]
    for logits in cases:
        leaf = logits.clone().requires_grad_(True)
        value = loss(leaf, batch)["loss"]
        value.backward()
        assert torch.isfinite(value), (type(loss).__name__, logits.flatten()[:4])
        assert leaf.grad is not None and torch.isfinite(leaf.grad).all()
        for p in loss.parameters():
            assert p.grad is None or torch.isfinite(p.grad).all()


def roundtrip(loss: SPMLLoss, fresh: SPMLLoss) -> SPMLLoss:
    """Save ``loss``'s state_dict through bytes and load it into ``fresh``."""
    buffer = io.BytesIO()
    torch.save(loss.state_dict(), buffer)
    buffer.seek(0)
    fresh.load_state_dict(torch.load(buffer))
    for key, value in loss.state_dict().items():
        assert torch.equal(fresh.state_dict()[key], value), key
    return fresh


def an_value(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Naive AN: mean of -y log p - (1-y) log(1-p), y = 1[z = 1]."""
    y = (target == 1).float()
    p = torch.sigmoid(logits.double())
    return (-(y * torch.log(p) + (1 - y) * torch.log(1 - p))).mean()
