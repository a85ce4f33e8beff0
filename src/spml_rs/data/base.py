"""The datamodule base: label modes, splits to loaders, device-side preprocessing.

A datamodule receives a :class:`~spml_rs.data.index.DatasetIndex` (what the
files say: ids, full labels, class names) and turns it into training targets
(``label_mode``), :class:`~spml_rs.data.splits.SplitDataset` loaders and
batched, on-device normalisation and augmentation
(:meth:`SPMLDataModule.on_after_batch_transfer`). The sample contract is in
:mod:`spml_rs.data.splits`.
"""

from __future__ import annotations

import abc
import difflib
import inspect
from collections.abc import Sequence
from typing import Any, ClassVar, Generic, TypedDict, TypeVar

import lightning as L
import numpy as np
import torch
from lightning.pytorch.utilities import rank_zero_warn
from torch.utils.data import DataLoader, Sampler

from spml_rs import labels as spl
from spml_rs.data.index import SPLITS, DatasetIndex
from spml_rs.data.splits import (
    BatchReads,
    EpochSeededSampler,
    SplitDataset,
    SplitSubset,
    pass_batch,
)
from spml_rs.data.verify import check_level, read_every_sample
from spml_rs.dataset_info import DatasetInfo
from spml_rs.label_files import read_single_positives

VAL_LABEL_MODES = ("full", "single")
UNLABELLED = ("error", "drop")
#: splits each Lightning stage reads (any other stage: all)
STAGE_SPLITS = {"fit": ("train", "val"), "validate": ("val",), "test": ("test",)}
#: exceptions a split's reader raises for a missing or unreadable item (verify=full)
READ_ERRORS: tuple[type[Exception], ...] = (KeyError, OSError, ValueError, RuntimeError)

IndexT = TypeVar("IndexT", bound=DatasetIndex)


class DataModuleOptions(TypedDict, total=False):
    """The keyword arguments every datamodule passes on to :class:`SPMLDataModule`.

    Datamodules take them as ``**options: Unpack[DataModuleOptions]``, so mypy checks
    them; their meaning and defaults are in :class:`SPMLDataModule`.
    """

    label_mode: str
    label_seed: int
    label_path: str | None
    batch_size: int
    eval_batch_size: int | None
    num_workers: int
    pin_memory: bool
    augment: bool
    sampler_seed: int
    val_label_mode: str
    unlabelled: str
    verify: str


class SPMLDataModule(L.LightningDataModule, abc.ABC, Generic[IndexT]):
    """Splits, label modes, batching and device-side preprocessing.

    Subclasses build their dataset's index, pass it here with the options below,
    and implement :meth:`_build_split` (a split's reader) and :meth:`normalize`.

    Args:
        index: the dataset's ids, labels and class names.
        label_mode: one of ``full``, ``random``, ``dominant``, ``manual``.
        label_seed: seed of the Random draw.
        label_path: single-positive file (required for ``manual``; optional for
            the others, where it replaces the generated labels).
        batch_size: training batch size per process.
        eval_batch_size: batch size of validation and test (default: 2x training).
        num_workers: DataLoader workers per process.
        pin_memory: DataLoader ``pin_memory``.
        augment: random flips and 90-degree rotations of training batches, on device.
        sampler_seed: seed of the training order (the run seed by default).
        val_label_mode: ``full`` validates against the full labels; ``single`` against one
            random true positive per validation image, the other classes counted as
            negatives: what an SPML user can observe, for tuning with noisy labels
            (``docs/experiments.md``). Test always uses the full labels.
        unlabelled: what to do with training images a label file does not cover
            (a partly annotated split): ``error`` (default) or ``drop`` them.
        verify: checks of the files of every split in use at setup, before training
            (``fit`` also checks ``test``): ``keys`` (default; cheap, e.g. LMDB keys,
            image headers), ``full`` (also decode every sample) or ``none``
            (:mod:`spml_rs.data.verify`).
        unexpected: catches misspelled keys, only to name them with the real parameters.
    """

    #: the index class, built by ``prepare`` from this datamodule's config alone
    index_class: ClassVar[type[DatasetIndex]]

    def __init__(
        self,
        index: IndexT,
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
        verify: str = "keys",
        **unexpected: object,
    ) -> None:
        if unexpected:
            raise TypeError(unknown_parameters_message(type(self), sorted(unexpected)))
        super().__init__()
        self.index: IndexT = index
        self.name: str = index.name
        self.class_names: tuple[str, ...] = index.class_names
        _check_label_mode(index, label_mode, label_path)
        _check_choice("val_label_mode", val_label_mode, VAL_LABEL_MODES)
        _check_choice("unlabelled", unlabelled, UNLABELLED)
        check_level(verify)
        self.label_mode = label_mode
        self.label_seed = label_seed
        self.label_path = label_path
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size or 2 * batch_size
        self.num_workers = num_workers
        self.pin_memory = pin_memory
        self.augment = augment
        self.sampler_seed = sampler_seed
        self.val_label_mode = val_label_mode
        self.unlabelled = unlabelled
        self.verify = verify
        self.datasets: dict[str, SplitDataset] = {}
        self._verified: set[str] = set()

    # --------------------------------------------------------- dataset hooks
    @property
    @abc.abstractmethod
    def in_chans(self) -> int:
        """Number of image channels after device-side preprocessing."""

    @abc.abstractmethod
    def _build_split(self, split: str, targets: np.ndarray | None) -> SplitDataset:
        """Build the dataset of ``split``; ``targets`` None means observed = full labels."""

    @abc.abstractmethod
    def normalize(self, image: torch.Tensor) -> torch.Tensor:
        """Device-side: raw batch (B, ...) -> float (B, in_chans, H, W), normalised."""

    def check_files(self, splits: Sequence[str]) -> None:
        """``verify=keys``: cheap checks that every item of ``splits`` is there and readable.

        Raises :class:`~spml_rs.data.verify.SplitCheckError` naming the files and ids.
        Datasets held in memory have nothing to check.
        """

    #: what to do about samples ``verify=full`` could not read (the last line of its error)
    unreadable_hint: ClassVar[str] = (
        "fix or replace these items, or set dataset.datamodule.verify=none"
    )

    # ----------------------------------------------------------- label modes
    def train_targets(self) -> np.ndarray:
        """Observed targets of the training split under ``label_mode``."""
        image_ids, labels = self.index.split_labels("train")
        if self.label_mode == "full":
            return spl.full_targets(labels)
        if self.label_path:
            positives = self._file_positives(image_ids)
        elif self.label_mode == "random":
            positives = spl.random_positives(labels, self.label_seed, ids=image_ids)
        else:  # dominant without a file; manual always has one (checked in __init__)
            positives = self.index.dominant_positives("train")
        if self.label_mode != "manual":
            # Random and Dominant must pick true labels; humans may be wrong.
            spl.check_positives_are_true(positives, labels, list(image_ids))
        return spl.single_positive_targets(positives, len(self.class_names))

    def _file_positives(self, image_ids: np.ndarray) -> np.ndarray:
        """(N,) positives of ``label_path`` aligned with the train ids.

        Rows of the index's :meth:`~DatasetIndex.also_labelled` ids are read and
        dropped; a ``.npy`` file has no ids and is aligned with the split.
        """
        assert self.label_path is not None
        return read_single_positives(
            self.label_path,
            image_ids,
            self.class_names,
            allow_missing=self.unlabelled == "drop",
            ignored_ids=self.index.also_labelled("train"),
        )

    def info(self) -> DatasetInfo:
        _, labels = self.index.split_labels("train")
        return DatasetInfo(
            name=self.name,
            class_names=tuple(self.class_names),
            in_chans=self.in_chans,
            num_train_samples=len(labels),
            mean_positives_per_image=float(labels.sum(axis=1).mean()),
        )

    # --------------------------------------------------------------- loaders
    def setup(self, stage: str | None = None) -> None:
        wanted = STAGE_SPLITS.get(stage or "", SPLITS)
        # fit checks test too: the run tests at the end, and a bad test item should stop
        # it now, not after training
        self.verify_splits(SPLITS if stage == "fit" else wanted)
        for split in wanted:
            if split not in self.datasets:
                targets = self.train_targets() if split == "train" else None
                self.datasets[split] = self._build_split(split, targets)
                if split == "train":
                    self.datasets[split] = self._drop_unlabelled(self.datasets[split])
                if split == "val" and self.val_label_mode == "single":
                    self._single_positive_val_labels(self.datasets[split])

    def verify_splits(self, splits: Sequence[str]) -> None:
        """Check the files of ``splits`` at the ``verify`` level, once per split."""
        todo = [split for split in splits if split not in self._verified]
        if self.verify == "none" or not todo:
            return
        self.check_files(todo)
        if self.verify == "full":
            datasets = {split: self._build_split(split, None) for split in todo}
            read_every_sample(datasets, self.unreadable_hint, READ_ERRORS)
        self._verified.update(todo)

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
        positives = spl.random_positives(dataset.labels, self.label_seed + 1, ids=dataset.image_ids)
        one_hot = spl.single_positive_targets(positives, dataset.labels.shape[1]) == 1
        dataset.labels = one_hot.astype(np.uint8)

    def _loader(self, split: str, sampler: Sampler[int] | None = None) -> DataLoader[Any]:
        """A batch-reading loader of ``split`` (:class:`~spml_rs.data.splits.BatchReads`).

        ``batch_size`` and ``sampler`` stay the DataLoader's own, so Lightning can
        swap in its ``DistributedSampler`` under DDP; each worker gets a batch's
        indices and reads them in one go, nothing is collated per sample.
        """
        return DataLoader(
            BatchReads(self.datasets[split], pin=self.pin_memory),
            batch_size=self.batch_size if split == "train" else self.eval_batch_size,
            sampler=sampler,
            shuffle=False,
            num_workers=self.num_workers,
            collate_fn=pass_batch,
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


def _check_label_mode(index: DatasetIndex, mode: str, path: str | None) -> None:
    index.check_label_mode(mode)
    if mode == "dominant" and not path and not index.derives_dominant:
        raise ValueError(index.dominant_needs_file())
    if mode == "manual" and not path:
        raise ValueError(
            "label_mode=manual needs a label file: set label_mode.path=/path/to/labels.csv "
            "(written by the annotator or in our single-positive format)"
        )


def _check_choice(key: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"{key} must be one of {choices}, got {value!r}")


def unknown_parameters_message(cls: type, unknown: list[str]) -> str:
    """``cls`` was given keys it does not take: name them, a close match, and the real ones."""
    own = [
        name for name, p in inspect.signature(cls).parameters.items() if p.kind is p.KEYWORD_ONLY
    ]
    known = sorted({*own, *DataModuleOptions.__annotations__})
    guesses = {key: difflib.get_close_matches(key, known, n=1) for key in unknown}
    hints = "".join(f" ({k!r}: did you mean {g[0]!r}?)" for k, g in guesses.items() if g)
    return f"{cls.__name__} got unknown parameter(s) {unknown}{hints}; its parameters are {known}"


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
