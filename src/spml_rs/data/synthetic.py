"""Synthetic scenes as a dataset: ``dataset=synthetic`` / ``synthetic_rgb``.

The scenes (and how they are drawn) are :mod:`spml_rs.data.synthetic_scenes`';
:class:`SceneCache` is their index, the datamodule batches and normalises them.
Full labels and per-class areas are known, so every label mode works.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from spml_rs.data.base import SPMLDataModule
from spml_rs.data.index import DatasetIndex
from spml_rs.data.splits import SplitDataset
from spml_rs.data.synthetic_scenes import (
    SIZE_KEYS,
    ScenePreset,
    SceneSplit,
    load_or_generate,
    scene_ids,
    sized_preset,
)

if TYPE_CHECKING:
    from typing_extensions import Self, Unpack

    from spml_rs.data.base import DataModuleOptions


class SceneCache(DatasetIndex):
    """The scenes of one preset and seed, generated once and cached under ``root``.

    Args:
        preset: the scenes' look and split sizes (:func:`sized_preset` from a name).
        seed: world and image seed; the data are a pure function of (preset, seed).
        root: cache folder (default ``~/.cache/spml_rs``).
    """

    derives_dominant = True  # areas are known from generation
    reads_files = False

    def __init__(
        self, preset: ScenePreset, *, seed: int = 0, root: str | Path | None = None
    ) -> None:
        self.preset = preset
        self.name = f"synthetic_{preset.name}"
        self.class_names = preset.class_names
        self.seed = seed
        self.root = root
        self._scenes: dict[str, SceneSplit] | None = None

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> Self:
        """From the datamodule's keys: the preset by name, its size overrides, seed, root."""
        sizes = {key: config[key] for key in SIZE_KEYS}
        return cls(
            sized_preset(config["preset"], **sizes), seed=config["seed"], root=config["root"]
        )

    @property
    def scenes(self) -> dict[str, SceneSplit]:
        """train / val / test arrays, from the cache (generated on first use)."""
        if self._scenes is None:
            self._scenes = load_or_generate(self.preset, self.seed, self.root)
        return self._scenes

    def split_labels(self, split: str) -> tuple[np.ndarray, np.ndarray]:
        labels = self.scenes[split].labels
        return scene_ids(len(labels)), labels

    def dominant_positives(self, split: str) -> np.ndarray:
        return self.scenes[split].dominant


class SceneDataset(SplitDataset):
    """In-memory synthetic split."""

    def __init__(self, scenes: SceneSplit, targets: np.ndarray | None) -> None:
        observed = scenes.labels.astype(np.int8) if targets is None else targets
        super().__init__(scene_ids(len(scenes.labels)), scenes.labels, observed)
        self.images = scenes.images

    def read_image(self, index: int) -> np.ndarray:
        return self.images[index]


class SyntheticDataModule(SPMLDataModule[SceneCache]):
    """Synthetic scenes (``dataset=synthetic`` / ``synthetic_rgb``).

    Args:
        preset: ``multispectral`` (10 bands, the 19 BigEarthNet classes), ``rgb``
            (3 bands, the 17 AID-multilabel classes) or ``pretrain`` (10 bands, the 32
            classes of the pretraining world, :mod:`spml_rs.data.pretraining`).
        seed: world and image seed; the data are a pure function of (preset, seed, sizes).
        num_train, num_val, num_test, image_size: override the preset's sizes.
        root: cache folder (default ``~/.cache/spml_rs``).
        **options: label mode and loader settings, see :class:`SPMLDataModule`.
    """

    index_class = SceneCache

    def __init__(
        self,
        *,
        preset: str = "multispectral",
        seed: int = 0,
        num_train: int | None = None,
        num_val: int | None = None,
        num_test: int | None = None,
        image_size: int | None = None,
        root: str | None = None,
        **options: Unpack[DataModuleOptions],
    ) -> None:
        scenes = SceneCache.from_config(locals())
        super().__init__(scenes, **options)
        self._stats: tuple[torch.Tensor, torch.Tensor] | None = None

    @property
    def scenes(self) -> dict[str, SceneSplit]:
        return self.index.scenes

    @property
    def in_chans(self) -> int:
        return self.index.preset.num_bands

    def _build_split(self, split: str, targets: np.ndarray | None) -> SplitDataset:
        return SceneDataset(self.scenes[split], targets)

    def prepare_data(self) -> None:
        # Generate once in the main process so DDP ranks and workers only read the cache.
        _ = self.scenes

    def normalize(self, image: torch.Tensor) -> torch.Tensor:
        image = image.float()
        mean, std = self._band_stats(image.device)
        return (image - mean) / std

    def _band_stats(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        if self._stats is None or self._stats[0].device != device:
            train = self.scenes["train"].images[:512].astype(np.float64)
            mean = train.mean(axis=(0, 2, 3))
            std = train.std(axis=(0, 2, 3)) + 1e-6
            shape = (1, -1, 1, 1)
            self._stats = (
                torch.tensor(mean, dtype=torch.float32, device=device).view(shape),
                torch.tensor(std, dtype=torch.float32, device=device).view(shape),
            )
        return self._stats
