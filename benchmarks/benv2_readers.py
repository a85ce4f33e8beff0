"""The reBEN readers ``loader_benchmark.py`` compares ours with, and the files they read.

:func:`make_patches` writes N real-size random patches twice: as the official
LMDB and as the raw reBEN folders (one GeoTIFF per band, reference maps,
``metadata.parquet``), georeferenced with rasterio when it is installed. Each
reader is a map-style dataset whose batches :attr:`Reader.finish` turns into the
(B, 12, 120, 120) normalised float batch, so all can be checked against ours.
"""

from __future__ import annotations

import glob
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lmdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import tifffile
import torch
import torch.nn.functional as F
from safetensors.numpy import load as st_load
from torch.utils.data import Dataset

from spml_rs.data.benv2_bands import BAND_STATS, S2_BANDS_ALL
from spml_rs.data.benv2_builder import REFERENCE_SUFFIX, S2_SIDES, s2_product
from spml_rs.data.benv2_lmdb import LazyLMDB, encode_value
from spml_rs.data.classes import BEN19_CLASSES

# rasterio (GDAL) is what TorchGeo's BigEarthNetV2 reads the band files with; optional
try:
    import rasterio
    from rasterio.crs import CRS
    from rasterio.enums import Resampling
    from rasterio.transform import from_origin
except ImportError:  # pragma: no cover - depends on the environment
    rasterio = None

try:
    import torchgeo
    from torchgeo.datasets import BigEarthNetV2
except ImportError:  # pragma: no cover - depends on the environment
    torchgeo = None

MEAN = torch.tensor([BAND_STATS[b][0] for b in S2_BANDS_ALL]).view(-1, 1, 1)
STD = torch.tensor([BAND_STATS[b][1] for b in S2_BANDS_ALL]).view(-1, 1, 1)
SIDE = 120
PATCH_METRES = 1200  # a reBEN patch covers 1.2 km: 120 px at 10 m, 60 at 20 m, 20 at 60 m
UTM_33N = 32633  # the CRS of tile T33UUP used in the ids below
#: GDAL rounds resampled values to int32 (``out_dtype="int32"``): half a DN, plus the
#: float32 rounding of standardising (x 1,000-odd DN of a band's std)
ROUNDING = 0.52


@dataclass
class Reader:
    """One row of the benchmark: a dataset, how its batches become the normalised batch.

    ``mode``: the upsampling its output has; ``tolerance``: the largest difference
    from ours (in DN) the check accepts, None when it is not comparable.
    """

    dataset: Dataset[Any]
    finish: Callable[[Any], torch.Tensor]
    mode: str
    tolerance: float | None = 0.0


def band_path(folder: Path, patch_id: str, band: str) -> Path:
    """``<folder>/<product>/<patch_id>/<patch_id>_<band>.tif``, the reBEN S2 layout."""
    return folder / s2_product(patch_id) / patch_id / f"{patch_id}_{band}.tif"


def write_tiff(path: Path, array: np.ndarray, row: int, col: int) -> None:
    """One band as a georeferenced GeoTIFF (UTM 33N, 10/20/60 m), or a plain TIFF without rasterio."""
    if rasterio is None:
        tifffile.imwrite(path, array)
        return
    pixel = PATCH_METRES / array.shape[0]
    origin = (300_000 + col * PATCH_METRES, 5_900_040 - row * PATCH_METRES)
    profile = {
        "driver": "GTiff",
        "width": array.shape[1],
        "height": array.shape[0],
        "count": 1,
        "dtype": str(array.dtype),
        "crs": CRS.from_epsg(UTM_33N),
        "transform": from_origin(*origin, pixel, pixel),
    }
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(array, 1)


def make_patches(folder: Path, count: int, seed: int = 0) -> list[str]:
    """Write ``count`` random patches as an LMDB (``lmdb``) and as raw reBEN folders (``raw``)."""
    rng = np.random.default_rng(seed)
    ids = [
        f"S2A_MSIL2A_20170613T101031_N9999_R022_T33UUP_{i // 100}_{i % 100}" for i in range(count)
    ]
    raw = folder / "raw"
    (raw / "BigEarthNet-S1").mkdir(parents=True)  # TorchGeo checks it exists
    env = lmdb.open(str(folder / "lmdb"), map_size=1 << 34)
    with env.begin(write=True) as txn:
        for i, patch_id in enumerate(ids):
            bands = {
                b: rng.integers(1, 10000, (s, s), dtype=np.uint16) for b, s in S2_SIDES.items()
            }
            txn.put(patch_id.encode(), encode_value(bands))
            band_path(raw / "BigEarthNet-S2", patch_id, "").parent.mkdir(parents=True)
            for band, array in bands.items():
                write_tiff(
                    band_path(raw / "BigEarthNet-S2", patch_id, band), array, *divmod(i, 100)
                )
            maps = raw / "Reference_Maps" / s2_product(patch_id) / patch_id
            maps.mkdir(parents=True)
            clc = rng.choice(np.array([211, 311, 512], dtype=np.uint16), (SIDE, SIDE))
            write_tiff(maps / f"{patch_id}{REFERENCE_SUFFIX}.tif", clc, *divmod(i, 100))
    env.close()
    # py-lmdb opens a file once per process: the ConfigILM row reads its own copy
    shutil.copytree(folder / "lmdb", folder / "lmdb_configilm")
    labels = [[BEN19_CLASSES[2], BEN19_CLASSES[8], BEN19_CLASSES[17]]] * count
    table = pa.table({"patch_id": ids, "labels": labels, "split": ["train"] * count})
    s1_names = [
        f"S1A_IW_GRDH_1SDV_20170613T165043_33UUP_{i // 100}_{i % 100}" for i in range(count)
    ]
    pq.write_table(table.append_column("s1_name", pa.array(s1_names)), raw / "metadata.parquet")
    return ids


def decode_floor(path: Path, ids: list[str]) -> Callable[[], int]:
    """One pass of the bare decode floor: LMDB get + safetensors decode per sample, nothing else.

    The get copies the value into ``bytes`` (what ``safetensors.numpy.load`` takes),
    in the process's one read transaction, as a plain ``txn.get`` would.
    """
    database = LazyLMDB(path)

    def one_pass() -> int:
        for value in database.views(ids):
            st_load(bytes(value))
        return len(ids)

    return one_pass


def sentinel2_band_key(path: str) -> str:
    """Sort key of a band file, as TorchGeo's ``sort_sentinel2_bands`` (B8A after B08)."""
    band = os.path.splitext(os.path.basename(path))[0].split("_")[-1]
    return "B08A" if band == "B8A" else band


def normalise_sample(sample: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A TorchGeo ``transforms``: standardise the sample's image with reBEN's statistics."""
    return {**sample, "image": (sample["image"] - MEAN) / STD}


def torchgeo_reader(raw: Path) -> Reader:
    """TorchGeo's own ``BigEarthNetV2`` (the real package): GDAL resamples bilinearly on
    read; it also reads each patch's reference map and its labels."""
    dataset = BigEarthNetV2(str(raw), split="train", bands="s2", transforms=normalise_sample)
    return Reader(dataset, lambda batch: batch["image"], "bilinear", ROUNDING)


class TorchGeoRasterio(Dataset[torch.Tensor]):
    """TorchGeo's image read, reimplemented with a choice of resampling: glob the patch
    folder, ``rasterio.open`` + ``read(out_shape=(120, 120), out_dtype="int32")`` per band."""

    def __init__(self, folder: Path, ids: list[str], mode: str) -> None:
        self.folder, self.ids = folder, ids
        self.resampling = Resampling.nearest if mode == "nearest" else Resampling.bilinear

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: int) -> torch.Tensor:
        patch_id = self.ids[index]
        pattern = os.path.join(self.folder, s2_product(patch_id), patch_id, "*.tif")
        images = []
        for path in sorted(glob.glob(pattern), key=sentinel2_band_key):
            with rasterio.open(path) as dataset:
                images.append(
                    dataset.read(
                        indexes=1,
                        out_shape=(SIDE, SIDE),
                        out_dtype="int32",
                        resampling=self.resampling,
                    )
                )
        image = torch.from_numpy(np.stack(images, axis=0)).float()
        return (image - MEAN) / STD


class TifffilePerBand(Dataset[torch.Tensor]):
    """The same GeoTIFFs via tifffile, one torch ``interpolate`` per band, normalised."""

    def __init__(self, folder: Path, ids: list[str], mode: str) -> None:
        self.folder, self.ids, self.mode = folder, ids, mode

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: int) -> torch.Tensor:
        patch_id = self.ids[index]
        bands = []
        for band in S2_BANDS_ALL:
            array = tifffile.imread(band_path(self.folder, patch_id, band))
            tensor = torch.from_numpy(array.astype(np.float32))[None, None]
            bands.append(F.interpolate(tensor, size=(SIDE, SIDE), mode=self.mode)[0, 0])
        return (torch.stack(bands) - MEAN) / STD


class ConfigILMReadPath(Dataset[torch.Tensor]):
    """ConfigILM 0.7.1's ``BENv2DataSet`` read path, reimplemented from its source
    (``BENv2LDMBReader.__getitem__`` + ``stack_and_interpolate``): a read transaction
    per sample, a copy of the value, safetensors decode, ``torch.Tensor(np.float32(x))``
    and one ``interpolate`` per band (``align_corners=True`` for bilinear), normalised.
    The real package pins numpy < 2 and transformers, so it cannot be installed here."""

    def __init__(self, path: Path, ids: list[str], mode: str) -> None:
        self.path, self.ids, self.mode = path, ids, mode
        self.env: lmdb.Environment | None = None

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: int) -> torch.Tensor:
        if self.env is None:
            self.env = lmdb.open(str(self.path), readonly=True, lock=False, readahead=False)
        with self.env.begin(write=False, buffers=True) as txn:
            value = txn.get(self.ids[index].encode())
            bands = st_load(bytes(value))
        corners = True if self.mode == "bilinear" else None
        stacked = []
        for band in S2_BANDS_ALL:
            tensor = torch.Tensor(np.float32(bands[band]))
            if tensor.shape != (SIDE, SIDE):
                tensor = F.interpolate(
                    tensor[None, None], (SIDE, SIDE), mode=self.mode, align_corners=corners
                ).squeeze()
            stacked.append(tensor)
        return (torch.stack(stacked) - MEAN) / STD

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "env": None}


def identity(batch: torch.Tensor) -> torch.Tensor:
    """Batch finisher of the readers that already return the normalised batch."""
    return batch


def peer_readers(folder: Path, ids: list[str], mode: str) -> dict[str, Reader]:
    """The other readers, by row name; those needing a package that is absent are left out."""
    raw = folder / "raw"
    readers: dict[str, Reader] = {}
    if torchgeo is not None:
        name = (
            f"TorchGeo {torchgeo.__version__} BigEarthNetV2 (the package; bilinear, +map, labels)"
        )
        readers[name] = torchgeo_reader(raw)
    if rasterio is not None:
        readers["TorchGeo's image read, reimplemented (rasterio per band)"] = Reader(
            TorchGeoRasterio(raw / "BigEarthNet-S2", ids, mode), identity, mode, ROUNDING
        )
    readers["the GeoTIFFs via tifffile + interpolate per band"] = Reader(
        TifffilePerBand(raw / "BigEarthNet-S2", ids, mode), identity, mode
    )
    # bilinear with align_corners=True is another interpolation than ours: not compared
    readers["ConfigILM BENv2DataSet's read path, reimplemented"] = Reader(
        ConfigILMReadPath(folder / "lmdb_configilm", ids, mode),
        identity,
        mode,
        0.0 if mode == "nearest" else None,
    )
    return readers


def missing_packages() -> list[str]:
    """Lines saying which rows are left out for want of a package."""
    lines = []
    if torchgeo is None:
        lines.append("torchgeo is not installed: its BigEarthNetV2 row is left out")
    if rasterio is None:
        lines.append(
            'rasterio is not installed: TorchGeo-style rows left out (pip install -e ".[bench]")'
        )
    return lines
