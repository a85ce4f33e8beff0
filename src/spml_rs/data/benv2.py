"""reBEN (BigEarthNet v2.0) datamodule: ``dataset=benv2`` (``docs/datasets_benv2.md``).

The files (metadata, LMDB location, reference maps) are :class:`BENv2Index`'s.
Workers read and pack bands at native resolution (:mod:`spml_rs.data.benv2_bands`);
the device upsamples and normalises.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, cast

import numpy as np
import torch

from spml_rs.data.base import SPMLDataModule
from spml_rs.data.benv2_bands import BandLayout
from spml_rs.data.benv2_index import BENv2Index, SplitIndex
from spml_rs.data.benv2_lmdb import LazyLMDB
from spml_rs.data.index import SPLITS
from spml_rs.data.splits import SplitDataset, empty_batch
from spml_rs.data.verify import Failures, chunks, is_positive_int, progress
from spml_rs.dataset_info import DatasetInfo

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from spml_rs.data.base import DataModuleOptions


class BENv2Dataset(SplitDataset):
    """One reBEN split read from an LMDB; ``image`` is the packed (nbytes,) uint8 buffer.

    A batch (:meth:`read_images`) is read key after key in the process's one read
    transaction, and each value's bands are copied from the LMDB map straight
    into the batch tensor (:meth:`BandLayout.pack_value`): no decoded arrays,
    no per-sample buffers.
    """

    def __init__(
        self, index: SplitIndex, targets: np.ndarray, database: LazyLMDB, layout: BandLayout
    ) -> None:
        # A numpy str array, not a list: no per-row Python objects.
        super().__init__(cast(Sequence[str], index.patch_ids), index.labels, targets)
        if "s1" in layout.sources and index.s1_names is None:
            raise ValueError(f"band set {layout.band_set!r} needs the s1_name column")
        self.s1_names = index.s1_names
        self.database = database
        self.layout = layout

    def read_image(self, index: int) -> np.ndarray:
        out = np.empty(self.layout.nbytes, dtype=np.uint8)
        self._pack(np.array([index]), out.data)
        return out

    def read_images(self, rows: np.ndarray, pin: bool = False) -> torch.Tensor:
        """(B, nbytes) uint8: the packed samples of ``rows``, written in place."""
        out = empty_batch((len(rows), self.layout.nbytes), np.uint8, pin)
        self._pack(rows, out.numpy().reshape(-1).data)
        return out

    def _pack(self, rows: np.ndarray, out: memoryview) -> None:
        """Pack the samples of ``rows`` into ``out``, one (nbytes,) sample after another."""
        nbytes, path = self.layout.nbytes, self.database.path
        for source in self.layout.sources:
            names = self.image_ids if source == "s2" else self.s1_names
            assert names is not None  # checked in __init__
            keys = names[rows].tolist()
            values = self.database.views(keys)
            for position, (key, value) in enumerate(zip(keys, values, strict=True)):
                start = position * nbytes
                self.layout.pack_value(source, value, out[start : start + nbytes], key, path)


class BENv2DataModule(SPMLDataModule[BENv2Index]):
    """reBEN datamodule (``dataset=benv2``).

    Args:
        root, metadata_name, snow_cloud_metadata_name, include_snow_cloud, lmdb_name,
            split_lmdb_names, readahead: where the files are, see :class:`BENv2Index`.
        bands: band set, ``s2`` (default), ``s2_all``, ``s1`` or ``s1s2``.
        interpolation: upsampling of the 20/60 m bands on the device, ``nearest`` or ``bilinear``.
        max_samples: per split (``train``/``val``/``test``) cap for quick runs: a
            seeded random subset (``subset_seed``) of the split.
        **options: label mode and loader settings, see :class:`SPMLDataModule`.
    """

    index_class = BENv2Index
    unreadable_hint = (
        "rebuild these entries with `python -m spml_rs.prepare benv2-lmdb` (it skips the "
        "keys present: delete the corrupt ones first), or use an LMDB that holds them "
        "(dataset.datamodule.lmdb_name)"
    )

    def __init__(
        self,
        *,
        root: str,
        bands: str = "s2",
        interpolation: str = "nearest",
        metadata_name: str = "metadata.parquet",
        snow_cloud_metadata_name: str = "metadata_for_patches_with_snow_cloud_or_shadow.parquet",
        include_snow_cloud: bool = False,
        lmdb_name: str | None = None,
        split_lmdb_names: Mapping[str, str] | None = None,
        max_samples: Mapping[str, int | None] | None = None,
        subset_seed: int = 0,
        readahead: bool = False,
        **options: Unpack[DataModuleOptions],
    ) -> None:
        layout = BandLayout(bands, interpolation)
        # The index's parameters are named like ours (DatasetIndex.from_config).
        index = BENv2Index.from_config({**locals(), "with_s1": "s1" in layout.sources})
        super().__init__(index, **options)
        self.layout = layout
        self.max_samples = checked_caps(max_samples)
        self.subset_seed = subset_seed

    @property
    def in_chans(self) -> int:
        return self.layout.in_chans

    def subset_rows(self, split: str) -> np.ndarray:
        """Rows of ``split`` in use: all, or a seeded random subset of ``max_samples``, in order."""
        total, cap = len(self.index.split(split).patch_ids), self.max_samples[split]
        if cap is None or cap >= total:
            return np.arange(total)
        rng = np.random.default_rng([self.subset_seed, SPLITS.index(split)])
        return np.sort(rng.choice(total, size=int(cap), replace=False))

    def info(self) -> DatasetInfo:
        # Per-sample method state is sized by the rows actually trained on.
        info = super().info()
        return dataclasses.replace(info, num_train_samples=len(self.subset_rows("train")))

    def check_files(self, splits: Sequence[str]) -> None:
        """``verify=keys``: every key the rows in use read (S2 and, with S1 bands, S1) exists.

        One lookup per key in the process's read transaction; the values are not read.
        """
        failures = Failures("verify=keys: LMDB keys")
        for split in splits:
            database = self.index.database(split)
            index = self.index.split(split).rows(self.subset_rows(split))
            problems = []
            for source in self.layout.sources:
                keys = index.patch_ids if source == "s2" else index.s1_names
                assert keys is not None  # BENv2Index reads s1_name for S1 band sets
                for row in self._absent_rows(database, keys.tolist(), split):
                    problems.append(
                        f"{index.patch_ids[row]}: {source} key '{keys[row]}' not found "
                        f"in LMDB {database.path}"
                    )
            failures.add(split, len(index.patch_ids), problems)
        failures.raise_if_any(
            "is the LMDB complete? Add the missing entries with `python -m spml_rs.prepare "
            "benv2-lmdb ... --metadata <the metadata file>` (resumable), or point "
            "dataset.datamodule.lmdb_name at the LMDB that holds them"
        )

    @staticmethod
    def _absent_rows(database: LazyLMDB, keys: list[str], split: str) -> list[int]:
        missing: set[str] = set()
        for piece in progress(chunks(keys), f"checking LMDB keys: {split}", work=len(keys)):
            missing.update(database.missing(piece))
        return [row for row, key in enumerate(keys) if key in missing] if missing else []

    def _build_split(self, split: str, targets: np.ndarray | None) -> SplitDataset:
        # Labels are drawn on the whole split, so a subset sees the labels a full run would.
        rows = self.subset_rows(split)
        subset = self.index.split(split).rows(rows)
        observed = subset.labels.astype(np.int8) if targets is None else targets[rows]
        return BENv2Dataset(subset, observed, self.index.database(split), self.layout)

    def normalize(self, image: torch.Tensor) -> torch.Tensor:
        return self.layout.normalize(image)


def checked_caps(max_samples: Mapping[str, int | None] | None) -> dict[str, int | None]:
    """``max_samples`` per split, each a positive integer or None (no cap).

    A 0 is refused rather than read as "no cap" or an empty split; so are unknown splits.
    """
    caps = dict(max_samples or {})
    unknown = sorted(set(caps) - set(SPLITS))
    if unknown:
        raise ValueError(
            f"dataset.datamodule.max_samples has unknown split(s) {unknown}; expected some "
            f"of {list(SPLITS)}"
        )
    for split, cap in caps.items():
        if cap is not None and not is_positive_int(cap):
            raise ValueError(
                f"dataset.datamodule.max_samples.{split} must be a positive integer or null, "
                f"got {cap!r} (null: all rows)"
            )
    return {split: caps.get(split) for split in SPLITS}
