"""Shared data layer: the sample contract, split datasets and the datamodule base.

A sample is a dict (``docs/design.md``):

* ``image``  -- the raw array as stored (uint8/uint16/float), cast on the device;
* ``target`` -- int8 (C,): 1 observed positive, 0 observed negative, -1 unknown;
* ``label``  -- uint8 (C,) full ground truth (evaluation and diagnostics only);
* ``index``  -- int64 position in its split, for per-sample method state.

CPU workers only read and decode. Casting, resampling, normalisation and
augmentation run batched on the device in :meth:`SPMLDataModule.on_after_batch_transfer`.
"""

from __future__ import annotations

import abc
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.utilities import rank_zero_warn
from torch.utils.data import DataLoader, Dataset, Sampler

from spml_rs import labels as spl
from spml_rs.dataset_info import DatasetInfo
from spml_rs.label_files import read_single_positives

SPLITS = ("train", "val", "test")
VAL_LABEL_MODES = ("full", "single")


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


class SPMLDataModule(L.LightningDataModule, abc.ABC):
    """Splits, label modes, batching and device-side preprocessing.

    Subclasses describe a dataset through :meth:`_load_split` (ids, labels, reader)
    and :meth:`normalize`; the base turns the train split's labels into observed
    targets according to ``label_mode``.

    Args:
        label_mode: one of ``full``, ``random``, ``dominant``, ``manual``.
        label_seed: seed of the Random draw.
        label_path: single-positive file (required for ``manual``; optional for
            the others, where it replaces the generated labels).
        batch_size: training batch size per process.
        eval_batch_size: batch size of validation and test (default: 2x training).
        num_workers: DataLoader workers per process.
        augment: random flips and 90-degree rotations of training batches, on device.
        sampler_seed: seed of the training order (the run seed by default).
        unlabelled: what to do with training images a label file does not cover
            (a partly annotated split): ``error`` (default) or ``drop`` them.
        val_label_mode: ``full`` validates against the full labels; ``single`` against one
            random true positive per validation image, the other classes counted as
            negatives: what an SPML user can observe, for tuning with noisy labels
            (``docs/experiments.md``). Test always uses the full labels.
    """

    name: str = "base"
    class_names: tuple[str, ...] = ()
    supported_label_modes: tuple[str, ...] = spl.LABEL_MODES
    #: whether :meth:`dominant_positives` can derive Dominant labels without a file
    derives_dominant: bool = False

    def __init__(
        self,
        *,
        label_mode: str = "random",
        label_seed: int = 0,
        label_path: str | None = None,
        batch_size: int = 64,
        eval_batch_size: int | None = None,
        num_workers: int = 0,
        pin_memory: bool = False,
        augment: bool = True,
        sampler_seed: int = 0,
        val_label_mode: str = "full",
        unlabelled: str = "error",
    ) -> None:
        super().__init__()
        self._check_label_mode(label_mode, label_path)
        self.label_mode = label_mode
        self.label_seed = label_seed
        self.label_path = label_path
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size or 2 * batch_size
        self.num_workers = num_workers
        self.pin_memory = pin_memory
        self.augment = augment
        self.sampler_seed = sampler_seed
        if val_label_mode not in VAL_LABEL_MODES:
            raise ValueError(
                f"val_label_mode must be one of {VAL_LABEL_MODES}, got {val_label_mode!r}"
            )
        self.val_label_mode = val_label_mode
        if unlabelled not in ("error", "drop"):
            raise ValueError(f"unlabelled must be 'error' or 'drop', got {unlabelled!r}")
        self.unlabelled = unlabelled
        self.datasets: dict[str, SplitDataset] = {}

    # ----------------------------------------------------------------- checks
    def _check_label_mode(self, mode: str, path: str | None) -> None:
        if mode not in spl.LABEL_MODES:
            raise ValueError(f"label_mode must be one of {spl.LABEL_MODES}, got {mode!r}")
        if mode not in self.supported_label_modes:
            raise ValueError(
                f"label_mode={mode!r} is not available for dataset {self.name!r} "
                f"(supported: {list(self.supported_label_modes)}). {self.unsupported_mode_hint(mode)}"
            )
        if mode == "dominant" and not path and not self.derives_dominant:
            raise ValueError(self._dominant_needs_file())
        if mode == "manual" and not path:
            raise ValueError(
                "label_mode=manual needs a label file: set label_mode.path=/path/to/labels.csv "
                "(written by the annotator or in our single-positive format)"
            )

    def unsupported_mode_hint(self, mode: str) -> str:
        """Extra sentence for the error raised when a dataset cannot serve ``mode``."""
        return ""

    # --------------------------------------------------------- dataset hooks
    @property
    @abc.abstractmethod
    def in_chans(self) -> int:
        """Number of image channels after device-side preprocessing."""

    @abc.abstractmethod
    def _build_split(self, split: str, targets: np.ndarray | None) -> SplitDataset:
        """Build the dataset of ``split``; ``targets`` None means observed = full labels."""

    @abc.abstractmethod
    def _split_labels(self, split: str) -> tuple[np.ndarray, np.ndarray]:
        """(image ids, (N, C) full labels) of ``split``, cheap enough to call before setup."""

    def dominant_positives(self, image_ids: np.ndarray) -> np.ndarray:
        """Dominant class per training image when no label file is given."""
        raise ValueError(self._dominant_needs_file())

    def _dominant_needs_file(self) -> str:
        return (
            f"label_mode=dominant on dataset {self.name!r} needs a label file: generate it with "
            "`python -m spml_rs.prepare spml-labels --mode dominant ...` and set label_mode.path"
        )

    @abc.abstractmethod
    def normalize(self, image: torch.Tensor) -> torch.Tensor:
        """Device-side: raw batch (B, ...) -> float (B, in_chans, H, W), normalised."""

    # ----------------------------------------------------------- label modes
    def train_targets(self) -> np.ndarray:
        """Observed targets of the training split under ``label_mode``."""
        image_ids, labels = self._split_labels("train")
        if self.label_mode == "full":
            return spl.full_targets(labels)
        if self.label_path:
            positives = read_single_positives(
                self.label_path,
                list(image_ids),
                self.class_names,
                allow_missing=self.unlabelled == "drop",
            )
        elif self.label_mode == "random":
            positives = spl.random_positives(labels, self.label_seed)
        else:  # dominant without a file; manual always has one (checked in __init__)
            positives = self.dominant_positives(image_ids)
        if self.label_mode != "manual":
            # Random and Dominant must pick true labels; humans may be wrong.
            spl.check_positives_are_true(positives, labels, list(image_ids))
        return spl.single_positive_targets(positives, len(self.class_names))

    def info(self) -> DatasetInfo:
        _, labels = self._split_labels("train")
        return DatasetInfo(
            name=self.name,
            class_names=tuple(self.class_names),
            in_chans=self.in_chans,
            num_train_samples=len(labels),
            mean_positives_per_image=float(labels.sum(axis=1).mean()),
        )

    # --------------------------------------------------------------- loaders
    def setup(self, stage: str | None = None) -> None:
        wanted = {"fit": ("train", "val"), "validate": ("val",), "test": ("test",)}
        for split in wanted.get(stage or "", SPLITS):
            if split not in self.datasets:
                targets = self.train_targets() if split == "train" else None
                self.datasets[split] = self._build_split(split, targets)
                if split == "train":
                    self.datasets[split] = self._drop_unlabelled(self.datasets[split])
                if split == "val" and self.val_label_mode == "single":
                    self._single_positive_val_labels(self.datasets[split])

    def _drop_unlabelled(self, dataset: SplitDataset) -> SplitDataset:
        """Keep the training images with an observed positive (``unlabelled=drop``).

        Kept samples keep their ``index`` in the full split, so per-sample method
        state stays sized and indexed by the split.
        """
        labelled = np.flatnonzero((dataset.targets == 1).any(axis=1))
        if len(labelled) == len(dataset):
            return dataset
        if len(labelled) == 0:
            raise ValueError(f"{self.label_path}: no training image has a label")
        rank_zero_warn(
            f"{self.label_path}: {len(dataset) - len(labelled)} of {len(dataset)} training images "
            "have no label and are left out (label_mode.unlabelled=drop)"
        )
        return SplitSubset(dataset, labelled)

    def _single_positive_val_labels(self, dataset: SplitDataset) -> None:
        """Replace the val labels by one random true positive per image (one-hot)."""
        positives = spl.random_positives(dataset.labels, self.label_seed + 1)
        one_hot = spl.single_positive_targets(positives, dataset.labels.shape[1]) == 1
        dataset.labels = one_hot.astype(np.uint8)

    def _loader(self, split: str, sampler: Sampler[int] | None = None) -> DataLoader[Any]:
        return DataLoader(
            self.datasets[split],
            batch_size=self.batch_size if split == "train" else self.eval_batch_size,
            sampler=sampler,
            shuffle=False,
            num_workers=self.num_workers,
            pin_memory=self.pin_memory,
            persistent_workers=self.num_workers > 0,
            drop_last=False,
            # Its own generator: creating an iterator draws a base seed, and drawing it from the
            # global RNG would shift the augmentation stream of a resumed run (Lightning creates
            # the iterator before on_train_epoch_start when resuming, after it otherwise).
            generator=torch.Generator().manual_seed(self.sampler_seed),
        )

    def train_dataloader(self) -> DataLoader[Any]:
        sampler = EpochSeededSampler(len(self.datasets["train"]), seed=self.sampler_seed)
        return self._loader("train", sampler)

    def val_dataloader(self) -> DataLoader[Any]:
        return self._loader("val")

    def test_dataloader(self) -> DataLoader[Any]:
        return self._loader("test")

    def dataloader(self, split: str) -> DataLoader[Any]:
        """Evaluation loader (fixed order) of any split, ``train`` included, set up on demand."""
        stages = {"train": "fit", "val": "validate", "test": "test"}
        if split not in stages:
            raise ValueError(f"unknown split {split!r}: expected one of {sorted(stages)}")
        self.setup(stages[split])
        return self._loader(split)

    # ------------------------------------------------- device-side transforms
    def on_after_batch_transfer(self, batch: dict[str, Any], dataloader_idx: int) -> dict[str, Any]:
        image = self.normalize(batch["image"])
        if self.augment and self.trainer is not None and self.trainer.training:
            # Draws keyed by (seed, step, rank), not the global RNG: a resumed run
            # augments every batch exactly as an uninterrupted one would.
            key = (self.sampler_seed * 1_000_003 + self.trainer.global_step) * 64
            generator = torch.Generator().manual_seed(key + self.trainer.global_rank)
            image = random_dihedral(image, generator)
        batch["image"] = image
        return batch


def random_dihedral(image: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Random flip + 90-degree rotation per sample (the 8 symmetries of a square).

    Overhead views have no canonical orientation, so every element of the
    dihedral group is a valid augmentation. Vectorised: one gather per group
    element present in the batch.
    """
    choice = torch.randint(0, 8, (image.shape[0],), generator=generator).to(image.device)
    out = image.clone()
    for k in range(8):
        mask = choice == k
        if not bool(mask.any()):
            continue
        view = image[mask]
        if k >= 4:
            view = view.flip(-1)
        out[mask] = torch.rot90(view, k % 4, dims=(-2, -1))
    return out


def cache_dir(root: str | Path | None) -> Path:
    """Directory for generated artefacts (synthetic scenes, cached labels)."""
    path = Path(root) if root else Path.home() / ".cache" / "spml_rs"
    path.mkdir(parents=True, exist_ok=True)
    return path
