"""One split as a torch ``Dataset``, its subsets, and the training order.

A sample is a dict:

* ``image``  -- the raw array as stored (uint8/uint16/float), cast on the device;
* ``target`` -- int8 (C,): 1 observed positive, 0 observed negative, -1 unknown;
* ``label``  -- uint8 (C,) full ground truth (evaluation and diagnostics only);
* ``index``  -- int64 position in its split, for per-sample method state.

CPU workers only read and decode; everything else runs batched on the device
(:meth:`spml_rs.data.base.SPMLDataModule.on_after_batch_transfer`).

Training loaders read a batch at a time (:class:`BatchReads`): the DataLoader
hands a worker the batch's indices, :meth:`SplitDataset.read_batch` writes
the images straight into one batch tensor (in shared memory inside a worker,
so it is sent without a copy; pinned in the main process when asked for and
CUDA is there) and slices the label arrays once, and :func:`pass_batch`
replaces ``default_collate``: no per-sample dicts are built or collated.
Indexing a split (``dataset[i]``) still gives one sample's dict.
"""

from __future__ import annotations

import abc
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler, get_worker_info


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

    def read_images(self, rows: np.ndarray, pin: bool = False) -> torch.Tensor:
        """(B, ...) raw images of ``rows`` in one :func:`empty_batch` tensor.

        This default copies :meth:`read_image` of each row into the batch; readers
        that can write a batch in place (reBEN) override it.
        """
        first = np.asarray(self.read_image(int(rows[0])))
        out = empty_batch((len(rows), *first.shape), first.dtype, pin)
        images = out.numpy()
        images[0] = first
        for position, row in enumerate(rows[1:], start=1):
            image = np.asarray(self.read_image(int(row)))
            if image.shape != first.shape:
                raise ValueError(
                    f"{type(self).__name__}: image {str(self.image_ids[row])!r} (row {row}) is "
                    f"{image.shape}, the batch's first image {first.shape}: images of one batch "
                    "must share one shape"
                )
            images[position] = image
        return out

    def read_batch(self, rows: Sequence[int] | np.ndarray, pin: bool = False) -> dict[str, Any]:
        """The samples of ``rows`` as one batch: the keys of a sample, stacked.

        Args:
            rows: positions in this split (a batch sampler's list of indices).
            pin: allocate the images in pinned memory (main process only, with CUDA).
        """
        rows = np.asarray(rows, dtype=np.int64)
        if rows.ndim != 1 or len(rows) == 0:
            raise ValueError(f"read_batch needs a non-empty list of rows, got shape {rows.shape}")
        return {
            "image": self.read_images(rows, pin),
            "target": torch.from_numpy(self.targets[rows]),
            "label": torch.from_numpy(self.labels[rows]),
            "index": torch.from_numpy(rows),
        }

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

    def read_batch(self, rows: Sequence[int] | np.ndarray, pin: bool = False) -> dict[str, Any]:
        return self.dataset.read_batch(self.rows[np.asarray(rows, dtype=np.int64)], pin)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return self.dataset[int(self.rows[index])]


def empty_batch(shape: tuple[int, ...], dtype: np.dtype[Any] | type, pin: bool) -> torch.Tensor:
    """An uninitialised batch tensor, allocated where the batch goes next.

    Inside a DataLoader worker: in shared memory, so sending it to the main
    process moves no bytes (``default_collate`` does the same; without it the
    worker's queue would copy the batch into shared memory). In the main process:
    pinned when ``pin`` and CUDA is available (the DataLoader's ``pin_memory``
    then has nothing left to copy), else ordinary memory.
    """
    torch_dtype = torch.from_numpy(np.empty(0, dtype=dtype)).dtype
    if get_worker_info() is not None:
        nbytes = int(np.prod(shape)) * torch_dtype.itemsize
        storage: torch.UntypedStorage = torch.UntypedStorage._new_shared(nbytes)
        strides = np.cumprod((*shape[1:], 1)[::-1])[::-1].tolist()  # C order, in elements
        return torch.empty(0, dtype=torch_dtype).set_(storage, 0, shape, strides)
    if pin and torch.cuda.is_available():
        return torch.empty(shape, dtype=torch_dtype, pin_memory=True)
    return torch.empty(shape, dtype=torch_dtype)


class BatchReads(Dataset[dict[str, Any]]):
    """A split as the training loaders read it: a batch of indices at a time.

    The DataLoader passes a batch sampler's list of indices to ``__getitems__``
    (PyTorch >= 2.1), which returns :meth:`SplitDataset.read_batch`; the loader's
    ``collate_fn`` must be :func:`pass_batch`. The split itself keeps the usual
    per-sample ``__getitem__``, so other code may wrap it in a plain DataLoader.
    Samplers (``EpochSeededSampler``, Lightning's ``DistributedSampler``) see
    only ``len``, so resume order and DDP sharding are those of per-sample loading.

    Args:
        dataset: the split.
        pin: pinned batches in the main process (the loader's ``pin_memory``).
    """

    def __init__(self, dataset: SplitDataset, pin: bool = False) -> None:
        self.dataset = dataset
        self.pin = pin

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return self.dataset.read_batch([index], self.pin)

    def __getitems__(self, indices: list[int]) -> dict[str, Any]:
        return self.dataset.read_batch(indices, self.pin)


def pass_batch(batch: Any) -> dict[str, Any]:
    """``collate_fn`` of :class:`BatchReads` loaders: the batch is already stacked."""
    if not isinstance(batch, dict):
        raise TypeError(
            f"pass_batch expects the batch dict of BatchReads.__getitems__, got {type(batch).__name__}"
        )
    return batch


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
