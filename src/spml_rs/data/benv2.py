"""reBEN (BigEarthNet v2.0) from the official LMDB and ``metadata.parquet``: ``dataset=benv2``.

reBEN: Clasen, Hackel, Burgert, Sumbul, Demir, Markl, "reBEN: Refined BigEarthNet
Dataset for Remote Sensing Image Analysis", arXiv 2407.03653 (IGARSS 2025).
19 classes in the pinned order of :data:`spml_rs.data.classes.BEN19_CLASSES`.

Data on disk (``root``):

* ``metadata.parquet`` (``patch_id``, ``labels``, ``split`` in ``train`` /
  ``validation`` / ``test``, ``s1_name``, snow / cloud flags, ...); patches with
  seasonal snow, cloud or shadow are in a second parquet and excluded unless
  ``include_snow_cloud``;
* the official single LMDB (``data.mdb`` in ``root`` or in one sub-folder, or
  ``lmdb_name``), or the seed's per-split ``{train,val,test}_BENv2.lmdb`` with
  the same encoding (see :mod:`spml_rs.data.benv2_lmdb`).

Each split is sorted by ``patch_id`` (the order of the seed's ``.npy`` label
files). Its index is a few numpy arrays: ids, an (N, 19) uint8 label matrix
built from the ``labels`` list column in one vectorised pass, and the S1 names
when the band set needs them. Workers read and pack bands at native
resolution (:mod:`spml_rs.data.benv2_bands`); the device upsamples and normalises.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import cast

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import torch

from spml_rs.data.base import SPLITS, SplitDataset, SPMLDataModule
from spml_rs.data.benv2_bands import BandLayout
from spml_rs.data.benv2_builder import REFERENCE_SUFFIX, read_reference_maps
from spml_rs.data.benv2_lmdb import LazyLMDB, check_band
from spml_rs.data.classes import BEN19_CLASSES, class_pixel_counts, clc_lookup_table
from spml_rs.dataset_info import DatasetInfo

#: our split name -> the value of the metadata's ``split`` column
METADATA_SPLITS = {"train": "train", "val": "validation", "test": "test"}
REQUIRED_COLUMNS = ("patch_id", "labels", "split")
FLAG_COLUMNS = ("contains_seasonal_snow", "contains_cloud_or_shadow")
SEED_LMDB_NAMES = {split: f"{split}_BENv2.lmdb" for split in SPLITS}


@dataclasses.dataclass(frozen=True)
class SplitIndex:
    """Rows of one split, sorted by patch id: numpy arrays only."""

    patch_ids: np.ndarray  # (N,) str
    labels: np.ndarray  # (N, 19) uint8
    s1_names: np.ndarray | None  # (N,) str, when asked for


def read_split_index(
    metadata: Path,
    split: str,
    *,
    extra_metadata: Path | None = None,
    with_s1: bool = False,
    class_names: tuple[str, ...] = BEN19_CLASSES,
) -> SplitIndex:
    """Index of ``split`` (``train``/``val``/``test``) from the metadata parquet file(s).

    Rows flagged with snow, cloud or shadow are dropped unless ``extra_metadata``
    (the snow/cloud parquet) is given, in which case its rows are added.
    """
    columns = [*REQUIRED_COLUMNS, *(["s1_name"] if with_s1 else [])]
    wanted = METADATA_SPLITS[split]
    main = _read_metadata(metadata, columns, wanted)
    if extra_metadata is None:
        # The official metadata.parquet has no flagged rows; a merged file might.
        for flag in FLAG_COLUMNS:
            if flag in main.column_names:
                main = main.filter(pc.invert(pc.fill_null(main.column(flag), False)))
    tables = [main.select(columns)]
    if extra_metadata is not None:
        tables.append(_read_metadata(extra_metadata, columns, wanted).select(columns))
    table = pa.concat_tables(tables, promote_options="permissive")
    if table.num_rows == 0:
        sources = ", ".join(str(p) for p in (metadata, extra_metadata) if p)
        raise ValueError(
            f"{sources}: no patch with split == {wanted!r} (our split {split!r}) after excluding "
            "snow/cloud patches; check the file and `include_snow_cloud`"
        )
    table = table.take(pc.sort_indices(table, [("patch_id", "ascending")]))
    patch_ids = np.asarray(table.column("patch_id").to_numpy(zero_copy_only=False).astype(str))
    labels = labels_matrix(table.column("labels"), patch_ids, class_names, metadata)
    s1 = table.column("s1_name").to_numpy(zero_copy_only=False).astype(str) if with_s1 else None
    return SplitIndex(patch_ids, labels, s1)


def _read_metadata(path: Path, columns: list[str], split_value: str) -> pa.Table:
    """Columns of the rows of one split (the filter is pushed down to the parquet reader)."""
    if not path.is_file():
        raise FileNotFoundError(f"reBEN metadata not found: {path}")
    names = pq.read_schema(path).names
    missing = [c for c in columns if c not in names]
    if missing:
        raise ValueError(
            f"{path}: missing required column(s) {missing} (found {names}); expected the reBEN "
            f"metadata.parquet schema with {list(REQUIRED_COLUMNS)} and s1_name"
        )
    wanted = [*columns, *(f for f in FLAG_COLUMNS if f in names)]
    return pq.read_table(path, columns=wanted, filters=[("split", "=", split_value)])


def labels_matrix(
    column: pa.ChunkedArray, patch_ids: np.ndarray, class_names: tuple[str, ...], path: Path
) -> np.ndarray:
    """List-of-class-names column -> (N, C) uint8 multi-hot, without a Python loop over rows."""
    lists = column.combine_chunks()
    lengths = pc.fill_null(lists.value_lengths(), 0).to_numpy()
    empty = np.flatnonzero(lengths == 0)
    if empty.size:
        raise ValueError(
            f"{path}: {empty.size} patch(es) have no label, e.g. {patch_ids[empty[:3]].tolist()}"
        )
    codes = pc.index_in(lists.flatten(), value_set=pa.array(class_names))
    if codes.null_count:
        unknown = pc.unique(pc.filter(lists.flatten(), pc.is_null(codes))).to_pylist()
        raise ValueError(
            f"{path}: unknown class name(s) {unknown[:5]} in the labels column; "
            f"expected names of the 19-class nomenclature: {list(class_names)}"
        )
    rows = np.repeat(np.arange(len(lengths)), lengths)
    labels = np.zeros((len(lengths), len(class_names)), dtype=np.uint8)
    labels[rows, codes.to_numpy()] = 1
    return labels


class BENv2Dataset(SplitDataset):
    """One reBEN split read from an LMDB; ``image`` is the packed (nbytes,) uint8 buffer."""

    def __init__(
        self,
        index: SplitIndex,
        targets: np.ndarray,
        database: LazyLMDB,
        layout: BandLayout,
    ) -> None:
        # A numpy str array, not a list: no per-row Python objects.
        super().__init__(cast(Sequence[str], index.patch_ids), index.labels, targets)
        if "s1" in layout.sources and index.s1_names is None:
            raise ValueError(f"band set {layout.band_set!r} needs the s1_name column")
        self.s1_names = index.s1_names
        self.database = database
        self.layout = layout

    def read_image(self, index: int) -> np.ndarray:
        keys = {"s2": str(self.image_ids[index])}
        if self.s1_names is not None:
            keys["s1"] = str(self.s1_names[index])
        # Views into the LMDB map: pack() copies each band once into the sample buffer.
        arrays = {source: self.database.get_views(keys[source]) for source in self.layout.sources}
        return self.layout.pack(arrays, keys, self.database.path)


class BENv2DataModule(SPMLDataModule):
    """reBEN datamodule (``dataset=benv2``).

    Args:
        root: folder holding ``metadata.parquet`` and the LMDB(s).
        bands: band set, ``s2`` (default), ``s2_all``, ``s1`` or ``s1s2``.
        interpolation: upsampling of the 20/60 m bands on the device, ``nearest`` or ``bilinear``.
        metadata_name, snow_cloud_metadata_name: file names inside ``root`` (or absolute paths).
        include_snow_cloud: also use the patches with seasonal snow, cloud or shadow.
        lmdb_name: the single LMDB inside ``root``; None finds it (see :meth:`lmdb_path`).
        split_lmdb_names: per-split LMDBs (the seed's layout), used when present and
            ``lmdb_name`` is None.
        max_samples: per split (``train``/``val``/``test``) cap for quick runs: a
            seeded random subset (``subset_seed``) of the split.
        readahead: LMDB readahead (on for network file systems).
        **kwargs: see :class:`SPMLDataModule`.
    """

    name = "benv2"
    class_names = BEN19_CLASSES

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
        **kwargs: object,
    ) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.root = Path(root)
        self.layout = BandLayout(bands, interpolation)
        self.metadata = self.root / metadata_name
        self.snow_cloud_metadata = self.root / snow_cloud_metadata_name
        self.include_snow_cloud = include_snow_cloud
        self.lmdb_name = lmdb_name
        self.split_lmdb_names = dict(split_lmdb_names or SEED_LMDB_NAMES)
        self.max_samples = {split: (max_samples or {}).get(split) for split in SPLITS}
        self.subset_seed = subset_seed
        self.readahead = readahead
        self._indices: dict[str, SplitIndex] = {}

    @property
    def in_chans(self) -> int:
        return self.layout.in_chans

    # ------------------------------------------------------------------ index
    def split_index(self, split: str) -> SplitIndex:
        """The full split (before ``max_samples``), read once."""
        if split not in self._indices:
            self._indices[split] = read_split_index(
                self.metadata,
                split,
                extra_metadata=self.snow_cloud_metadata if self.include_snow_cloud else None,
                with_s1="s1" in self.layout.sources,
            )
        return self._indices[split]

    def _split_labels(self, split: str) -> tuple[np.ndarray, np.ndarray]:
        index = self.split_index(split)
        return index.patch_ids, index.labels

    def subset_rows(self, split: str) -> np.ndarray:
        """Rows of ``split`` in use: all, or a seeded random subset of ``max_samples``, in order."""
        total, cap = len(self.split_index(split).patch_ids), self.max_samples[split]
        if cap is None or cap >= total:
            return np.arange(total)
        rng = np.random.default_rng([self.subset_seed, SPLITS.index(split)])
        return np.sort(rng.choice(total, size=int(cap), replace=False))

    def info(self) -> DatasetInfo:
        # Per-sample method state is sized by the rows actually trained on.
        info = super().info()
        return dataclasses.replace(info, num_train_samples=len(self.subset_rows("train")))

    # ------------------------------------------------------------------- LMDB
    def lmdb_path(self, split: str) -> Path:
        """The LMDB holding ``split``.

        ``lmdb_name`` when set; else the seed's per-split LMDB when it exists;
        else ``root`` itself when it holds ``data.mdb``; else the only sub-folder
        of ``root`` that holds a ``data.mdb``.
        """
        if self.lmdb_name:
            return self.root / self.lmdb_name
        per_split = self.root / self.split_lmdb_names[split]
        if per_split.exists():
            return per_split
        if (self.root / "data.mdb").is_file():
            return self.root
        found = sorted(p.parent for p in self.root.glob("*/data.mdb"))
        if len(found) == 1:
            return found[0]
        raise FileNotFoundError(
            f"cannot find the reBEN LMDB for split {split!r} in {self.root}: looked for "
            f"{per_split.name} (seed layout), data.mdb in the root and exactly one sub-folder "
            f"with data.mdb (found {[p.name for p in found]}); set dataset.datamodule.lmdb_name"
        )

    def _build_split(self, split: str, targets: np.ndarray | None) -> SplitDataset:
        index, rows = self.split_index(split), self.subset_rows(split)
        subset = SplitIndex(
            index.patch_ids[rows],
            index.labels[rows],
            None if index.s1_names is None else index.s1_names[rows],
        )
        observed = subset.labels.astype(np.int8) if targets is None else targets[rows]
        database = LazyLMDB(self.lmdb_path(split), readahead=self.readahead)
        return BENv2Dataset(subset, observed, database, self.layout)

    def normalize(self, image: torch.Tensor) -> torch.Tensor:
        return self.layout.normalize(image)

    # ------------------------------------------------------------- Dominant
    def class_pixel_counts(
        self,
        split: str = "train",
        reference_maps: str | Path | None = None,
        chunk: int = 1024,
        progress: Callable[[int], None] | None = None,
    ) -> np.ndarray:
        """(N, 19) reference-map pixels per class of the full ``split``, in index order.

        Maps come from the LMDB (key ``<patch_id>_reference_map``, band ``Data``)
        or, with ``reference_maps``, from the raw ``Reference_Maps`` folder. CLC
        codes go through :func:`spml_rs.data.classes.clc_lookup_table`.
        """
        patch_ids = self.split_index(split).patch_ids
        maps = (
            read_reference_maps(Path(reference_maps), patch_ids)
            if reference_maps
            else self._lmdb_reference_maps(split, patch_ids)
        )
        table = clc_lookup_table()
        counts = np.zeros((len(patch_ids), len(self.class_names)), dtype=np.int64)
        for start in range(0, len(patch_ids), chunk):
            stop = min(start + chunk, len(patch_ids))
            counts[start:stop] = class_pixel_counts(
                np.stack([next(maps) for _ in range(start, stop)]), table
            )
            if progress:
                progress(stop - start)
        return counts

    def _lmdb_reference_maps(self, split: str, patch_ids: np.ndarray) -> Iterator[np.ndarray]:
        database = LazyLMDB(self.lmdb_path(split), readahead=self.readahead)
        for patch_id in patch_ids:
            key = f"{patch_id}{REFERENCE_SUFFIX}"
            arrays = database.get_arrays(key)
            yield check_band(arrays, "Data", np.dtype(np.uint16), 120, key, database.path)
