"""Images without labels, for prediction: a reBEN LMDB, a folder of JPEG/PNG, a folder of GeoTIFFs.

Each reader is a torch ``Dataset`` of ``{"image", "index"}`` samples with the image
ids in :attr:`UnlabelledImages.ids`. As in training, workers only read and decode;
the device-side preprocessing is that of the datamodule the model was trained with
(:func:`open_unlabelled` pairs each reader with it):

* ``lmdb``: a reBEN-format LMDB (safetensors values keyed by patch id, as
  :mod:`spml_rs.data.benv2_lmdb` reads them). Patches are packed exactly as for
  training and preprocessed by :meth:`BENv2DataModule.normalize`, so an LMDB patch
  gets bit for bit the input it would get in a test. Without metadata the ids are
  the LMDB's Sentinel-2 keys (keys of reference maps, ``*_reference_map``, and of
  Sentinel-1 patches, ``S1?_*``, are skipped); with a ``metadata.parquet`` they are
  the patches of one split (or of all three) and the band sets with Sentinel-1 find
  each patch's ``s1_name`` there.
* ``images``: JPEG/PNG files in a folder or in its scene sub-folders (AID's
  layout), decoded as :mod:`spml_rs.data.aid` decodes them and preprocessed by
  :meth:`AIDDataModule.normalize` (resize, ImageNet statistics).
* ``geotiff``: one multi-band GeoTIFF per patch (``<id>.tif``), read with rasterio
  (:mod:`spml_rs.data.unlabelled_geotiff`). Bands are found by name in the file's
  band descriptions (or ``band_names``), so their order in the file is free; every
  band the model was trained on must be there (others are ignored). The patches
  hold every band on the 120 px (10 m) grid, already resampled, so the device only
  standardises them with the training statistics (:func:`standardise_bands`): the
  inputs equal those of the LMDB path when the 20 m and 60 m bands were upsampled
  by nearest neighbour, the reBEN default.
"""

from __future__ import annotations

import abc
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset
from torchvision.transforms.v2.functional import resize

from spml_rs.data.aid import AIDDataModule, decode
from spml_rs.data.aid_index import AIDFormatError, scan_images
from spml_rs.data.base import SPMLDataModule
from spml_rs.data.benv2 import BENv2DataModule
from spml_rs.data.benv2_bands import BAND_STATS, SIDE, BandLayout
from spml_rs.data.benv2_builder import REFERENCE_SUFFIX
from spml_rs.data.benv2_index import BENv2Index
from spml_rs.data.benv2_lmdb import LazyLMDB
from spml_rs.data.index import SPLITS
from spml_rs.data.unlabelled_geotiff import GEOTIFF_SUFFIXES, geotiff_files, read_patch

KINDS = ("lmdb", "images", "geotiff")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
#: Sentinel-1 keys of the reBEN LMDB (``S1A_IW_GRDH_...``): not patches to predict on their own
S1_KEY = re.compile(r"^S1[A-D]_")

Preprocess = Callable[[torch.Tensor], torch.Tensor]


class UnlabelledImages(Dataset[dict[str, Any]], abc.ABC):
    """Images to predict, ``ids[i]`` naming sample ``i``; subclasses implement :meth:`read`."""

    def __init__(self, ids: np.ndarray, source: Path) -> None:
        if len(ids) == 0:
            raise ValueError(f"{source}: no images to predict")
        self.ids = np.asarray(ids, dtype=str)
        self.source = source

    def __len__(self) -> int:
        return len(self.ids)

    @abc.abstractmethod
    def read(self, index: int) -> np.ndarray | torch.Tensor:
        """The raw image of sample ``index``, as the device-side preprocessing expects it."""

    def __getitem__(self, index: int) -> dict[str, Any]:
        image = self.read(index)
        if isinstance(image, np.ndarray):
            image = torch.from_numpy(np.ascontiguousarray(image))
        return {"image": image, "index": index}


class LMDBPatches(UnlabelledImages):
    """reBEN patches of an LMDB, packed for :meth:`BandLayout.normalize` as in training."""

    def __init__(
        self,
        database: LazyLMDB,
        layout: BandLayout,
        patch_ids: np.ndarray,
        s1_names: np.ndarray | None = None,
    ) -> None:
        super().__init__(patch_ids, database.path)
        if "s1" in layout.sources and s1_names is None:
            raise ValueError(
                f"{database.path}: band set {layout.band_set!r} needs each patch's Sentinel-1 "
                "name: give the reBEN metadata.parquet (metadata=<file>)"
            )
        self.database, self.layout, self.s1_names = database, layout, s1_names

    def read(self, index: int) -> np.ndarray:
        keys = {"s2": str(self.ids[index])}
        if self.s1_names is not None:
            keys["s1"] = str(self.s1_names[index])
        arrays = {source: self.database.get_views(keys[source]) for source in self.layout.sources}
        return self.layout.pack(arrays, keys, self.database.path)


def lmdb_patch_ids(database: LazyLMDB) -> np.ndarray:
    """The LMDB's Sentinel-2 patch keys: all keys but reference maps and Sentinel-1 patches."""
    keys = [k for k in database if not k.endswith(REFERENCE_SUFFIX) and not S1_KEY.match(k)]
    return np.array(keys, dtype=str)


def metadata_patches(
    database: Path, metadata: Path, split: str, with_s1: bool
) -> tuple[np.ndarray, np.ndarray | None]:
    """(patch ids, S1 names or None) of ``split`` (``train``/``val``/``test``/``all``)."""
    if split not in (*SPLITS, "all"):
        raise ValueError(f"split must be one of {[*SPLITS, 'all']}, got {split!r}")
    index = BENv2Index(
        metadata.parent,
        metadata_name=metadata.name,
        lmdb_name=str(database.resolve()),
        with_s1=with_s1,
    )
    parts = [index.split(s) for s in (SPLITS if split == "all" else (split,))]
    ids = np.concatenate([part.patch_ids for part in parts])
    if not with_s1:
        return ids, None
    return ids, np.concatenate([part.s1_names for part in parts if part.s1_names is not None])


class ImageFiles(UnlabelledImages):
    """RGB JPEG/PNG files decoded to uint8 (3, H, W), all at one size (as :class:`AIDImages`).

    Args:
        size: (height, width) every image leaves the worker with; None: the first image's.
    """

    def __init__(self, paths: dict[str, Path], folder: Path, size: tuple[int, int] | None) -> None:
        super().__init__(np.array(list(paths), dtype=str), folder)
        self.paths = [str(p) for p in paths.values()]
        self.size = size if size is not None else tuple(decode(self.paths[0]).shape[1:])

    def read(self, index: int) -> torch.Tensor:
        try:
            image = decode(self.paths[index])
        except (OSError, RuntimeError, ValueError) as error:
            raise AIDFormatError(f"cannot decode image {self.paths[index]}: {error}") from error
        if tuple(image.shape[1:]) != self.size:
            image = resize(image, list(self.size), antialias=True)
        return image


class GeoTIFFPatches(UnlabelledImages):
    """Multi-band GeoTIFF patches (``<id>.tif``), bands by name (:func:`read_patch`).

    The first file is read here, so wrong bands or sizes fail before any batch runs.
    """

    def __init__(
        self,
        folder: Path,
        bands: tuple[str, ...],
        *,
        side: int,
        band_names: tuple[str, ...] | None = None,
    ) -> None:
        files = geotiff_files(folder)
        super().__init__(np.array(list(files), dtype=str), folder)
        self.paths = list(files.values())
        self.bands, self.side, self.band_names = bands, side, band_names
        self.read(0)

    def read(self, index: int) -> np.ndarray:
        return read_patch(self.paths[index], self.bands, self.side, self.band_names)


def scan_image_files(folder: Path) -> dict[str, Path]:
    """``{id: path}`` of the JPEG/PNG files in ``folder`` and its scene sub-folders, by id.

    The id is the file name without its extension; an id found twice is an error.
    """
    flat = {p.stem: p for p in sorted(folder.iterdir()) if p.suffix.lower() in IMAGE_SUFFIXES}
    nested = {k: p for k, p in scan_images(folder).items() if p.suffix.lower() in IMAGE_SUFFIXES}
    twice = sorted(flat.keys() & nested.keys())
    if twice:
        raise AIDFormatError(
            f"{folder}: image id(s) both in the folder and a sub-folder: "
            f"{[f'{flat[i]} / {nested[i]}' for i in twice[:5]]}"
        )
    return dict(sorted({**flat, **nested}.items()))


def standardise_bands(image: torch.Tensor, bands: tuple[str, ...]) -> torch.Tensor:
    """(B, C, H, W) bands on the 10 m grid -> ``(x - mean_c) / std_c`` with the reBEN statistics.

    The statistics are :data:`~spml_rs.data.benv2_bands.BAND_STATS`, those
    :meth:`BandLayout.normalize` applies in training.
    """
    stats = torch.tensor([BAND_STATS[b] for b in bands], dtype=torch.float32, device=image.device)
    mean, std = stats[:, 0].view(1, -1, 1, 1), stats[:, 1].view(1, -1, 1, 1)
    return (image.float() - mean) / std


@dataclass(frozen=True)
class UnlabelledSource:
    """A reader and the device-side preprocessing of its raw batches."""

    kind: str
    images: UnlabelledImages
    preprocess: Preprocess


def detect_kind(path: Path) -> str:
    """``lmdb`` (a folder with ``data.mdb``, or the file), ``geotiff`` or ``images``."""
    if (path.is_file() and path.name == "data.mdb") or (path / "data.mdb").is_file():
        return "lmdb"
    if not path.is_dir():
        raise FileNotFoundError(f"input: no such LMDB or folder: {path}")
    suffixes = {p.suffix.lower() for p in path.iterdir() if p.is_file()}
    if suffixes & set(GEOTIFF_SUFFIXES):
        return "geotiff"
    if suffixes & set(IMAGE_SUFFIXES) or any(scan_image_files(path)):
        return "images"
    raise ValueError(
        f"input {path}: found neither data.mdb (an LMDB), *.tif (GeoTIFF patches) nor "
        f"{'/'.join(IMAGE_SUFFIXES)} images; set input_kind to one of {KINDS}"
    )


def open_unlabelled(
    path: str | Path,
    datamodule: SPMLDataModule[Any],
    *,
    kind: str = "auto",
    metadata: str | Path | None = None,
    split: str = "all",
    band_names: tuple[str, ...] | None = None,
) -> UnlabelledSource:
    """The images at ``path`` as the model trained with ``datamodule`` must see them.

    Args:
        path: an LMDB, a folder of JPEG/PNG images or a folder of GeoTIFF patches.
        datamodule: built from the checkpoint's config (its splits are not read).
        kind: ``auto`` (:func:`detect_kind`) or one of :data:`KINDS`.
        metadata: LMDB only: a reBEN ``metadata.parquet`` giving the ids (of ``split``).
        split: with ``metadata``: ``train``, ``val``, ``test`` or ``all``.
        band_names: GeoTIFF only: the bands of files without band descriptions, in order.
    """
    path = Path(path)
    kind = detect_kind(path) if kind == "auto" else kind
    if kind not in KINDS:
        raise ValueError(f"input_kind must be 'auto' or one of {KINDS}, got {kind!r}")
    if kind == "images":
        aid = _trained_on(datamodule, AIDDataModule, kind, "dataset=aid")
        paths = scan_image_files(path)
        size = None if aid.decode_size is None else (aid.decode_size, aid.decode_size)
        return UnlabelledSource(kind, ImageFiles(paths, path, size), aid.normalize)
    ben = _trained_on(datamodule, BENv2DataModule, kind, "dataset=benv2")
    if kind == "geotiff":
        bands = ben.layout.bands
        patches = GeoTIFFPatches(path, bands, side=SIDE, band_names=band_names)
        return UnlabelledSource(kind, patches, lambda image: standardise_bands(image, bands))
    database = LazyLMDB(path.parent if path.is_file() else path)
    with_s1 = "s1" in ben.layout.sources
    if metadata is None:
        ids, s1_names = lmdb_patch_ids(database), None
    else:
        ids, s1_names = metadata_patches(database.path, Path(metadata), split, with_s1)
    return UnlabelledSource(kind, LMDBPatches(database, ben.layout, ids, s1_names), ben.normalize)


def _trained_on(datamodule: SPMLDataModule[Any], cls: type[Any], kind: str, config: str) -> Any:
    if not isinstance(datamodule, cls):
        raise ValueError(
            f"input_kind={kind}: needs a model trained with {config}; this checkpoint was "
            f"trained on {datamodule.name!r} ({datamodule.in_chans} channels)"
        )
    return datamodule
