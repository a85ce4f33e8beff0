#!/usr/bin/env python3
"""reBEN loader throughput per CPU worker, all readers measured in the same run.

Generates N real-size random reBEN patches (the 12 S2 bands, uint16, at their
native 120/60/20 px grids), stores them both as an LMDB in the official
encoding and as one georeferenced GeoTIFF per band (written with rasterio:
EPSG:32633, 10/20/60 m pixels, laid out like the reBEN ``BigEarthNet-S2``
folders), and measures samples per second of one worker (``num_workers=0``,
batches of ``--batch-size``, one torch thread) for:

(a)  ours: the worker copies the bands at native resolution into a packed
     buffer; the batch is upsampled to 120 px and normalised in one go by the
     device-side ``BandLayout.normalize`` (run here on the CPU and counted);
(a') ours, worker part only (what the CPU worker does when the device is a GPU);
(b)  TorchGeo's ``BigEarthNetV2`` read path: glob the patch folder, then per
     band ``rasterio.open`` + ``read(out_shape=(120, 120), out_dtype="int32",
     resampling=...)`` (GDAL resamples on read), stack, then normalise the
     sample. Needs the ``bench`` extra (``pip install -e ".[bench]"``); the row
     is skipped without rasterio;
(b') the same GeoTIFFs read with ``tifffile``, one torch ``interpolate`` per
     band per sample, then normalised: a faster per-band reader than (b);
(c)  an LMDB reader that decodes the safetensors value and upsamples each band
     separately with torch ``interpolate``, per sample (how ConfigILM reads).

Every reader returns the same (B, 12, 120, 120) normalised float batch
(checked before timing; with bilinear, (b) to within the half DN of GDAL's
rounding to int32). TorchGeo's default is bilinear; ``--mode`` (nearest by
default, ours' default) is used by every reader so the outputs are comparable.
(b) leaves out what TorchGeo also reads per sample (the reference map, the
labels from a DataFrame row), which only favours (b). Medians of ``--repeats``
timed passes over all N patches, after one warm-up pass (page cache warm for
all readers). It also times the train index built from the real
``metadata.parquet`` (480k rows) and its peak memory.

    pip install -e ".[bench]"
    python benchmarks/loader_benchmark.py --patches 512 --repeats 5
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import lmdb
import numpy as np
import tifffile
import torch
import torch.nn.functional as F
from safetensors.numpy import load as st_load
from torch.utils.data import DataLoader, Dataset

from spml_rs.data.benv2 import BENv2Dataset
from spml_rs.data.benv2_bands import BAND_STATS, S2_BANDS_ALL, BandLayout
from spml_rs.data.benv2_builder import S2_SIDES, s2_product
from spml_rs.data.benv2_index import SplitIndex
from spml_rs.data.benv2_lmdb import LazyLMDB, encode_value

# rasterio (GDAL) is what TorchGeo's BigEarthNetV2 reads the band files with, so
# (b) uses it to measure the real TorchGeo path; optional (the ``bench`` extra).
try:
    import rasterio
    from rasterio.crs import CRS
    from rasterio.enums import Resampling
    from rasterio.transform import from_origin
except ImportError:  # pragma: no cover - depends on the environment
    rasterio = None

DEFAULT_METADATA = (
    Path(__file__).resolve().parents[2] / "shared" / "data" / "benv2" / "metadata.parquet"
)
MEAN = torch.tensor([BAND_STATS[b][0] for b in S2_BANDS_ALL]).view(-1, 1, 1)
STD = torch.tensor([BAND_STATS[b][1] for b in S2_BANDS_ALL]).view(-1, 1, 1)
SIDE = 120
PATCH_METRES = 1200  # a reBEN patch covers 1.2 km: 120 px at 10 m, 60 at 20 m, 20 at 60 m
UTM_33N = 32633  # the CRS of tile T33UUP used in the ids below
TORCHGEO = "(b) TorchGeo: rasterio per band, GDAL resamples on read"
WORKER_ONLY = "(a') ours, worker part only (device part on the GPU)"
NO_RASTERIO = 'rasterio is not installed: (b) skipped; pip install -e ".[bench]" to measure it'

Reader = tuple[Dataset, Callable[[object], torch.Tensor]]


def identity(batch: object) -> torch.Tensor:
    """Batch finisher of the readers that already return the normalised batch."""
    assert isinstance(batch, torch.Tensor)
    return batch


def band_path(folder: Path, patch_id: str, band: str) -> Path:
    """``<folder>/<product>/<patch_id>/<patch_id>_<band>.tif``, the reBEN S2 layout."""
    return folder / s2_product(patch_id) / patch_id / f"{patch_id}_{band}.tif"


def write_geotiff(path: Path, array: np.ndarray, row: int, col: int) -> None:
    """One uint16 band as a georeferenced GeoTIFF (UTM 33N, 10/20/60 m pixels)."""
    pixel = PATCH_METRES / array.shape[0]
    transform = from_origin(
        300_000 + col * PATCH_METRES, 5_900_040 - row * PATCH_METRES, pixel, pixel
    )
    profile = {
        "driver": "GTiff",
        "width": array.shape[1],
        "height": array.shape[0],
        "count": 1,
        "dtype": "uint16",
        "crs": CRS.from_epsg(UTM_33N),
        "transform": transform,
    }
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(array, 1)


def make_patches(folder: Path, count: int, seed: int = 0) -> list[str]:
    """Write ``count`` random patches as an LMDB and as per-band GeoTIFFs.

    The GeoTIFFs are written with rasterio (georeferenced) when it is installed,
    else with tifffile (plain TIFFs, read only by (b')).
    """
    rng = np.random.default_rng(seed)
    ids = [
        f"S2A_MSIL2A_20170613T101031_N9999_R022_T33UUP_{i // 100}_{i % 100}" for i in range(count)
    ]
    env = lmdb.open(str(folder / "lmdb"), map_size=1 << 34)
    with env.begin(write=True) as txn:
        for i, patch_id in enumerate(ids):
            bands = {
                b: rng.integers(1, 10000, (s, s), dtype=np.uint16) for b, s in S2_SIDES.items()
            }
            txn.put(patch_id.encode(), encode_value(bands))
            band_path(folder / "tif", patch_id, "").parent.mkdir(parents=True)
            for band, array in bands.items():
                path = band_path(folder / "tif", patch_id, band)
                if rasterio is not None:
                    write_geotiff(path, array, i // 100, i % 100)
                else:
                    tifffile.imwrite(path, array)
    env.close()
    return ids


def sentinel2_band_key(path: str) -> str:
    """Sort key of a band file, as TorchGeo's ``sort_sentinel2_bands`` (B8A after B08)."""
    band = os.path.splitext(os.path.basename(path))[0].split("_")[-1]
    return "B08A" if band == "B8A" else band


class TorchGeoRasterio(Dataset[torch.Tensor]):
    """(b) TorchGeo's BigEarthNetV2 image read: GDAL resamples each band file on read."""

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
    """(b') the same GeoTIFFs via tifffile, one torch ``interpolate`` per band, normalised."""

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


class LmdbPerBand(Dataset[torch.Tensor]):
    """(c) LMDB + safetensors, each band upsampled separately, then normalised."""

    def __init__(self, path: Path, ids: list[str], mode: str) -> None:
        self.database, self.ids, self.mode = LazyLMDB(path), ids, mode

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: int) -> torch.Tensor:
        arrays = st_load(self.database.get(self.ids[index]))
        bands = []
        for band in S2_BANDS_ALL:
            tensor = torch.from_numpy(arrays[band].astype(np.float32))[None, None]
            bands.append(F.interpolate(tensor, size=(SIDE, SIDE), mode=self.mode)[0, 0])
        return (torch.stack(bands) - MEAN) / STD


def ours(path: Path, ids: list[str], mode: str) -> Reader:
    """(a) the library's dataset and its device-side normalize (here on the CPU)."""
    layout = BandLayout("s2_all", mode)
    index = SplitIndex(np.array(ids), np.ones((len(ids), 19), dtype=np.uint8), None)
    dataset = BENv2Dataset(index, index.labels.astype(np.int8), LazyLMDB(path), layout)
    return dataset, lambda batch: layout.normalize(batch["image"])  # type: ignore[index]


def build_readers(folder: Path, ids: list[str], mode: str) -> dict[str, Reader]:
    """Every reader that returns the normalised batch; (b) only when rasterio is there."""
    tif, db = folder / "tif", folder / "lmdb"
    readers = {"(a) ours: packed native bands + batched upsample/normalise": ours(db, ids, mode)}
    if rasterio is not None:
        readers[TORCHGEO] = (
            TorchGeoRasterio(tif, ids, mode),
            identity,
        )
    readers["(b') tifffile per band + torch interpolate"] = (
        TifffilePerBand(tif, ids, mode),
        identity,
    )
    readers["(c) LMDB, upsampled per band (ConfigILM-like)"] = (
        LmdbPerBand(db, ids, mode),
        identity,
    )
    return readers


def passes(
    dataset: Dataset, finish: Callable[[object], torch.Tensor], batch: int, repeats: int
) -> list[float]:
    """Samples/s of ``repeats`` full passes (after one warm-up pass)."""
    loader = DataLoader(dataset, batch_size=batch, num_workers=0, shuffle=False)
    rates = []
    for attempt in range(repeats + 1):
        start, count = time.perf_counter(), 0
        for item in loader:
            out = finish(item)
            count += out.shape[0]
        if attempt:
            rates.append(count / (time.perf_counter() - start))
    return rates


def check_same_output(readers: dict[str, Reader], batch: int, mode: str) -> None:
    """Every reader's first batch equals (a)'s (same values, same band order).

    Exact for nearest. With bilinear, (b) may differ by half a DN: it reads
    ``out_dtype="int32"`` as TorchGeo does, so GDAL rounds the interpolated values.
    """
    outs = [finish(next(iter(DataLoader(d, batch_size=batch)))) for d, finish in readers.values()]
    for name, out in zip(readers, outs, strict=True):
        if mode == "bilinear" and name == TORCHGEO:
            rounding = float(((out - outs[0]) * STD).abs().max())
            assert rounding <= 0.51, f"{name} differs from (a) by {rounding} DN"
        else:
            torch.testing.assert_close(out, outs[0], msg=f"{name} differs from (a)")


def index_cost(metadata: Path) -> dict[str, float]:
    """Build the train index in a fresh process: seconds and peak RSS increase."""
    # Peak RSS during the build minus RSS before it: reset the kernel's high-water
    # mark (VmHWM) after the imports by writing 5 to /proc/self/clear_refs (Linux).
    code = (
        "import time, json\n"
        "from pathlib import Path\n"
        "from spml_rs.data.benv2_index import read_split_index\n"
        "def status(field):\n"
        "    line = next(l for l in open('/proc/self/status') if l.startswith(field))\n"
        "    return int(line.split()[1]) / 1024\n"
        "open('/proc/self/clear_refs', 'w').write('5')\n"
        "base = status('VmRSS')\n"
        "start = time.perf_counter()\n"
        f"index = read_split_index(Path({str(metadata)!r}), 'train')\n"
        "seconds = time.perf_counter() - start\n"
        "size = index.patch_ids.nbytes + index.labels.nbytes\n"
        "print(json.dumps({'rows': len(index.patch_ids), 'seconds': seconds,"
        " 'peak_rss_increase_mb': status('VmHWM') - base, 'index_mb': size / 2**20}))\n"
    )
    runs = [
        json.loads(subprocess.check_output([sys.executable, "-c", code], text=True))
        for _ in range(3)
    ]
    return {key: statistics.median(run[key] for run in runs) for key in runs[0]}


def print_table(rates: dict[str, float], ours_rate: float, worker_rate: float) -> None:
    """One row per reader: samples/s and how many times faster (a) and (a') are."""
    header = ("reader", "samples/s", "(a)/row", "(a')/row")
    print(f"  {header[0]:<62s} {header[1]:>10s} {header[2]:>8s} {header[3]:>9s}")
    for name, rate in rates.items():
        print(f"  {name:<62s} {rate:10.1f} {ours_rate / rate:7.1f}x {worker_rate / rate:8.1f}x")


def load_average() -> str:
    """The 1/5/15-minute load averages, to tell an idle machine from a busy one."""
    return ", ".join(f"{load:.2f}" for load in os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--patches", type=int, default=512)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--mode", default="nearest", choices=("nearest", "bilinear"))
    parser.add_argument("--metadata", type=Path, default=DEFAULT_METADATA)
    args = parser.parse_args()
    torch.set_num_threads(1)  # one CPU worker
    if rasterio is None:
        print(NO_RASTERIO)
    print(f"load average before: {load_average()}")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        ids = make_patches(folder, args.patches)
        readers = build_readers(folder, ids, args.mode)
        check_same_output(readers, args.batch_size, args.mode)
        # (a) without its device-side part: what a CPU worker does when the device is a GPU;
        # listed second.
        first, *others = readers.items()
        readers = dict([first, (WORKER_ONLY, (first[1][0], lambda b: b["image"])), *others])  # type: ignore[index]
        rates = {
            name: statistics.median(passes(d, f, args.batch_size, args.repeats))
            for name, (d, f) in readers.items()
        }
    print(
        f"{args.patches} patches, batch {args.batch_size}, {args.mode}, 1 thread, "
        f"medians of {args.repeats}; load average after: {load_average()}"
    )
    ours_rate = rates[next(iter(rates))]
    worker_rate = rates[WORKER_ONLY]
    print_table(rates, ours_rate, worker_rate)
    if rasterio is None:
        print(f"  {NO_RASTERIO}")
    if args.metadata.is_file():
        cost = index_cost(args.metadata)
        print(
            f"train index from {args.metadata.name}: {cost['rows']:.0f} rows in {cost['seconds']:.2f} s, "
            f"peak RSS +{cost['peak_rss_increase_mb']:.0f} MiB, index arrays {cost['index_mb']:.1f} MiB"
        )
    print(
        f"max RSS of this run: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB"
    )


if __name__ == "__main__":
    main()
