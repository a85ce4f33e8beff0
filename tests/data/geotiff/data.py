#!/usr/bin/env python3
"""Write multi-band GeoTIFF patches made from the fake reBEN patches of ``tests/data/benv2``.

Run from anywhere: ``python tests/data/geotiff/data.py`` (needs rasterio); it rewrites
``patches/`` next to this file (committed). Each ``patches/<patch_id>.tif`` holds the
12 Sentinel-2 bands of one reBEN patch, read from the raw per-band GeoTIFFs of
``tests/data/benv2/BigEarthNet-S2/``, the 20 m and 60 m bands upsampled to the 120 px
(10 m) grid by nearest neighbour (pixel replication), as uint16 with the band names in
the band descriptions, DEFLATE-compressed, in the patch's UTM zone at 10 m. One file
stores its bands in reverse order (the reader finds bands by name).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import rasterio
import tifffile
from affine import Affine

HERE = Path(__file__).resolve().parent
BENV2 = HERE.parent / "benv2" / "BigEarthNet-S2"
BANDS = ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B11", "B12")
SIDE = 120
#: UTM zone (EPSG) of each fake tile: T33UUP is in zone 33 N, T30TXQ in zone 30 N
EPSG = {"T33UUP": 32633, "T30TXQ": 32630}
#: four of the fake patches (two test, two train); the last is written in reverse band order
PATCHES = (
    "S2A_MSIL2A_20170613T101031_N9999_R022_T33UUP_18_44",
    "S2B_MSIL2A_20180417T110619_N9999_R137_T30TXQ_19_51",
    "S2A_MSIL2A_20170613T101031_N9999_R022_T33UUP_10_40",
    "S2B_MSIL2A_20180417T110619_N9999_R137_T30TXQ_11_47",
)


def upsampled(band: np.ndarray) -> np.ndarray:
    """Nearest-neighbour upsampling by an integer factor: every pixel becomes a k x k block."""
    factor = SIDE // band.shape[0]
    return np.repeat(np.repeat(band, factor, axis=0), factor, axis=1)


def read_patch(patch_id: str) -> dict[str, np.ndarray]:
    folder = next(BENV2.glob(f"*/{patch_id}"))
    return {b: upsampled(tifffile.imread(folder / f"{patch_id}_{b}.tif")) for b in BANDS}


def write_patch(path: Path, bands: dict[str, np.ndarray], order: tuple[str, ...]) -> None:
    tile = path.stem.split("_")[5]
    x, y = (int(v) for v in path.stem.split("_")[-2:])
    profile = {
        "driver": "GTiff", "height": SIDE, "width": SIDE, "count": len(order),
        "dtype": "uint16", "crs": f"EPSG:{EPSG[tile]}", "compress": "deflate", "predictor": 2,
        "transform": Affine(10, 0, 300_000 + 1_200 * x, 0, -10, 5_400_000 - 1_200 * y),
    }  # fmt: skip
    with rasterio.open(path, "w", **profile) as dst:
        for i, band in enumerate(order, start=1):
            dst.write(bands[band], i)
            dst.set_band_description(i, band)


def main() -> None:
    out = HERE / "patches"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir()
    for number, patch_id in enumerate(PATCHES):
        order = BANDS[::-1] if number == len(PATCHES) - 1 else BANDS
        write_patch(out / f"{patch_id}.tif", read_patch(patch_id), order)


if __name__ == "__main__":
    main()
