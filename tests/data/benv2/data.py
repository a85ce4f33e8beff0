#!/usr/bin/env python3
"""Write a tiny fake reBEN (BigEarthNet v2.0) in the real layout, names, dtypes and encodings.

Run from anywhere: ``python tests/data/benv2/data.py``; it rewrites its output
next to this file (committed):

* ``BigEarthNet-S2/<tile product>/<patch_id>/<patch_id>_<band>.tif`` (12 bands,
  uint16, 120/60/20 px), ``BigEarthNet-S1/<product>/<s1_name>/<s1_name>_<VV|VH>.tif``
  (float32 dB, 120 px), ``Reference_Maps/<tile product>/<patch_id>/<patch_id>_reference_map.tif``
  (uint16 CLC codes, DEFLATE);
* ``metadata.parquet`` and ``metadata_for_patches_with_snow_cloud_or_shadow.parquet``
  with the official schema (labels derived from the reference maps);
* ``BigEarthNet-V2-LMDB/`` the official single LMDB (keys ``patch_id``,
  ``s1_name``, ``<patch_id>_reference_map``; safetensors dict values).

Pixel values are low-entropy (asymmetric ramps with per-patch offsets) so that the
committed files stay small in git; their dtypes and shapes are the real ones.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import lmdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import tifffile
from safetensors.numpy import save

HERE = Path(__file__).resolve().parent
SIDES = {"B01": 20, "B02": 120, "B03": 120, "B04": 120, "B05": 60, "B06": 60, "B07": 60,
         "B08": 120, "B8A": 60, "B09": 20, "B11": 60, "B12": 60}  # fmt: skip
CLASSES = (
    "Urban fabric", "Industrial or commercial units", "Arable land", "Permanent crops",
    "Pastures", "Complex cultivation patterns",
    "Land principally occupied by agriculture, with significant areas of natural vegetation",
    "Agro-forestry areas", "Broad-leaved forest", "Coniferous forest", "Mixed forest",
    "Natural grassland and sparsely vegetated areas",
    "Moors, heathland and sclerophyllous vegetation", "Transitional woodland, shrub",
    "Beaches, dunes, sands", "Inland wetlands", "Coastal wetlands", "Inland waters",
    "Marine waters",
)  # fmt: skip
# One CLC code per class (the first of each in classes.BEN19_CLC_CODES), plus codes of no class.
CLASS_CODES = (111, 121, 211, 221, 231, 242, 243, 244, 311, 312, 313, 321, 322, 324, 331, 411,
               421, 511, 521)  # fmt: skip
UNLABELLED_CODES = (122, 332, 999)
# (split, in the snow/cloud file?) per patch: 6 train, 2 validation, 2 test, 2 snow/cloud.
PATCHES = [("train", False)] * 6 + [("validation", False)] * 2 + [("test", False)] * 2
PATCHES += [("train", True), ("validation", True)]
# (S2 tile product, S1 product, tile): the S1 name is "<S1 product>_<tile>_<x>_<y>".
TILES = (("S2A_MSIL2A_20170613T101031_N9999_R022_T33UUP", "S1A_IW_GRDH_1SDV_20170613T165043", "33UUP"),
         ("S2B_MSIL2A_20180417T110619_N9999_R137_T30TXQ", "S1B_IW_GRDH_1SDV_20180418T060213", "30TXQ"))  # fmt: skip


def reference_map(rng: np.random.Generator) -> np.ndarray:
    """Horizontal bands of CLC codes with distinct heights (so the dominant class is unique)."""
    count = int(rng.integers(2, 5))
    classes = rng.choice(len(CLASS_CODES), size=count, replace=False)
    heights = np.sort(rng.choice(np.arange(8, 60, 4), size=count, replace=False))[::-1]
    codes = [CLASS_CODES[c] for c in classes]
    if rng.random() < 0.5:  # a strip of an unlabelled code
        codes.append(UNLABELLED_CODES[int(rng.integers(len(UNLABELLED_CODES)))])
        heights = np.append(heights, 6)
    rows = np.repeat(np.array(codes, dtype=np.uint16), heights)
    rows = np.concatenate([rows, np.full(120, rows[-1], dtype=np.uint16)])[:120]
    out = np.repeat(rows[:, None], 120, axis=1)
    out[:4, :10] = 0  # a little nodata
    return out


def s2_band(rng: np.random.Generator, band: str) -> np.ndarray:
    side = SIDES[band]
    # Asymmetric ramp: a transposed or flipped band would not compare equal.
    ramp = np.add.outer(3 * np.arange(side), np.arange(side)) * (120 // side)
    base = 300 + 150 * list(SIDES).index(band) + int(rng.integers(0, 400))
    return (base + ramp).astype(np.uint16)


def s1_band(rng: np.random.Generator, mean: float) -> np.ndarray:
    ramp = np.subtract.outer(np.arange(120), 2 * np.arange(120)) / 64.0
    return (mean + float(rng.integers(-8, 8)) / 4 + ramp).astype(np.float32)


def main() -> None:
    rng = np.random.default_rng(20240703)
    for name in ("BigEarthNet-S2", "BigEarthNet-S1", "Reference_Maps", "BigEarthNet-V2-LMDB"):
        shutil.rmtree(HERE / name, ignore_errors=True)
    rows: list[dict[str, object]] = []
    entries: dict[str, dict[str, np.ndarray]] = {}
    for number, (split, flagged) in enumerate(PATCHES):
        s2_tile, s1_product, tile = TILES[number % 2]
        x, y = 10 + number, 40 + (number * 7) % 13
        patch_id, s1_name = f"{s2_tile}_{x}_{y}", f"{s1_product}_{tile}_{x + 3}_{y + 1}"
        s2 = {band: s2_band(rng, band) for band in SIDES}
        s1 = {"VV": s1_band(rng, -12.0), "VH": s1_band(rng, -19.0)}
        ref = reference_map(rng)
        write_tifs(HERE / "BigEarthNet-S2" / s2_tile / patch_id, patch_id, s2)
        write_tifs(HERE / "BigEarthNet-S1" / s1_product / s1_name, s1_name, s1)
        write_tifs(HERE / "Reference_Maps" / s2_tile / patch_id, patch_id, {"reference_map": ref})
        entries[patch_id], entries[s1_name] = s2, s1
        entries[f"{patch_id}_reference_map"] = {"Data": ref}
        present = sorted(
            {CLASSES[CLASS_CODES.index(c)] for c in np.unique(ref) if c in CLASS_CODES}
        )
        rows.append({
            "patch_id": patch_id, "labels": present, "split": split,
            "country": ("Austria", "Portugal")[number % 2], "s1_name": s1_name,
            "s2v1_name": f"{s2_tile[:26]}_{x}_{y}", "contains_seasonal_snow": flagged,
            "contains_cloud_or_shadow": flagged and number % 2 == 0,
        })  # fmt: skip
    schema = pa.schema([
        ("patch_id", pa.string()), ("labels", pa.list_(pa.string())), ("split", pa.string()),
        ("country", pa.string()), ("s1_name", pa.string()), ("s2v1_name", pa.string()),
        ("contains_seasonal_snow", pa.bool_()), ("contains_cloud_or_shadow", pa.bool_()),
    ])  # fmt: skip
    clean = [r for r in rows if not r["contains_seasonal_snow"]]
    flagged_rows = [r for r in rows if r["contains_seasonal_snow"]]
    pq.write_table(pa.Table.from_pylist(clean, schema), HERE / "metadata.parquet")
    pq.write_table(
        pa.Table.from_pylist(flagged_rows, schema),
        HERE / "metadata_for_patches_with_snow_cloud_or_shadow.parquet",
    )
    write_lmdb(HERE / "BigEarthNet-V2-LMDB", entries, rng)


def write_tifs(folder: Path, stem: str, bands: dict[str, np.ndarray]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for band, array in bands.items():
        tifffile.imwrite(folder / f"{stem}_{band}.tif", array, compression="zlib")


def write_lmdb(
    path: Path, entries: dict[str, dict[str, np.ndarray]], rng: np.random.Generator
) -> None:
    env = lmdb.open(str(path), map_size=1 << 26, subdir=True)
    with env.begin(write=True) as txn:
        for key, arrays in entries.items():
            order = rng.permutation(len(arrays))  # the dict order is not part of the format
            names = [list(arrays)[i] for i in order]
            txn.put(key.encode(), save({name: arrays[name] for name in names}))
    env.close()
    (path / "lock.mdb").unlink(missing_ok=True)


if __name__ == "__main__":
    main()
