"""One split as a torch ``Dataset``, its subsets, and the training order.

A sample is a dict:

* ``image``  -- the raw array as stored (uint8/uint16/float), cast on the device;
* ``target`` -- int8 (C,): 1 observed positive, 0 observed negative, -1 unknown;
* ``label``  -- uint8 (C,) full ground truth (evaluation and diagnostics only);
* ``index``  -- int64 position in its split, for per-sample method state.

CPU workers only read and decode; everything else runs batched on the device
(:meth:`spml_rs.data.base.SPMLDataModule.on_after_batch_transfer`).
"""

from __future__ import annotations

import abc
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler


class SplitDataset(Dataset[dict[str, Any]], abc.ABC):
    """One split: full labels, observed targets and an image reader.

    Subclasses implement :meth:`read_image` (the only per-dataset I/O). Labels and
    targets are dense numpy arrays, never per-row Python objects.
    """

    def __init__(
        self, image_ids: Sequence[str] | np.ndarray, labels: np.ndarray, targets: np.ndarray
    ) -> None:
        if len(image_ids) == 0:
            raise ValueError(f"{type(self).__name__}: the split is empty")
        if labels.shape != targets.shape or labels.shape[0] != len(image_ids):
            raise ValueError(
                f"labels {labels.shape}, targets {targets.shape} and {len(image_ids)} ids disagree"
            )
        self.image_ids = np.asarray(image_ids)
        self.labels = np.ascontiguousarray(labels, dtype=np.uint8)
        self.targets = np.ascontiguousarray(targets, dtype=np.int8)

    def __len__(self) -> int:
        return len(self.image_ids)

    @abc.abstractmethod
    def read_image(self, index: int) -> np.ndarray:
        """Return the raw image (channels first) of row ``index``."""

    def __getitem__(self, index: int) -> dict[str, Any]:
        return {
            "image": torch.from_numpy(np.ascontiguousarray(self.read_image(index))),
            "target": torch.from_numpy(self.targets[index]),
            "label": torch.from_numpy(self.labels[index]),
            "index": index,
        }


class SplitSubset(SplitDataset):
    """The rows ``rows`` of a split; samples keep their ``index`` in the full split."""

    def __init__(self, dataset: SplitDataset, rows: np.ndarray) -> None:
        super().__init__(dataset.image_ids[rows], dataset.labels[rows], dataset.targets[rows])
        self.dataset = dataset
        self.rows = np.asarray(rows)

    def read_image(self, index: int) -> np.ndarray:
        return self.dataset.read_image(int(self.rows[index]))

    def __getitem__(self, index: int) -> dict[str, Any]:
        return self.dataset[int(self.rows[index])]


class EpochSeededSampler(Sampler[int]):
    """Random permutation that depends only on ``(seed, epoch)``.

    Lightning calls ``set_epoch`` before every epoch, so a run resumed from a
    checkpoint sees exactly the order an uninterrupted run would have seen.
    Under DDP Lightning swaps in a ``DistributedSampler``, which behaves alike.
    """

    def __init__(self, num_samples: int, seed: int = 0) -> None:
        self.num_samples = num_samples
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.num_samples

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        yield from torch.randperm(self.num_samples, generator=generator).tolist()
