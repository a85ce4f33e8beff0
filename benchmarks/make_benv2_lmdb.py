#!/usr/bin/env python3
"""Write a large synthetic reBEN: the official LMDB encoding and a matching ``metadata.parquet``.

For measurements at reBEN scale (``benv2_scale.py``, ``gpu_throughput.py``)
without the 100 GB download. ``<out>/`` gets:

* ``BigEarthNet-V2-LMDB/data.mdb``, the official single LMDB: per patch the key
  ``patch_id`` (12 S2 bands, uint16, at their native 120/60/20 px), the key
  ``s1_name`` (``VV``/``VH`` float32 dB, 120 px) and ``<patch_id>_reference_map``
  (``Data``, uint16 CLC codes, 120 px), each value a safetensors dict written by
  the same ``safetensors`` serialiser as the official encoder;
* ``metadata.parquet`` with the official schema (``patch_id``, ``labels``, ``split``,
  ``country``, ``s1_name``, ``s2v1_name``, snow/cloud flags).

With ``--metadata`` (the real ``metadata.parquet``) the rows are a seeded random
sample of the real ones (their ids, labels and splits, so the split proportions
are reBEN's); without it ids follow the real naming scheme over a grid of tiles
and splits are drawn 50/25/25 %. Pixels are uniform random (DN 1-10,000; dB
-25..0); reference maps hold codes of the patch's labels, so Dominant labels can
be derived. ``python -m spml_rs.train dataset=benv2 dataset.datamodule.root=<out>`` trains on it.

    python benchmarks/make_benv2_lmdb.py --out /tmp/benv2_20k --patches 20000 \
        [--metadata ../shared/data/benv2/metadata.parquet] [--sources s2,s1,maps]
"""

from __future__ import annotations

import argparse
import itertools
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import lmdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from spml_rs.data.benv2_bands import S1_BANDS, SIDE
from spml_rs.data.benv2_builder import REFERENCE_SUFFIX, S2_SIDES
from spml_rs.data.benv2_lmdb import encode_value
from spml_rs.data.classes import BEN19_CLASSES, BEN19_CLC_CODES

LMDB_NAME = "BigEarthNet-V2-LMDB"
SOURCES = ("s2", "s1", "maps")
#: (S2 product, S1 product, tile, country) of the generated grid's tiles
TILES = (
    ("S2A_MSIL2A_20170613T101031_N9999_R022_T33UUP", "S1A_IW_GRDH_1SDV_20170613T165043", "33UUP", "Austria"),
    ("S2B_MSIL2A_20180417T110619_N9999_R137_T30TXQ", "S1B_IW_GRDH_1SDV_20180418T060213", "30TXQ", "Portugal"),
    ("S2A_MSIL2A_20170717T113321_N9999_R080_T29SNB", "S1A_IW_GRDH_1SDV_20170718T064108", "29SNB", "Portugal"),
    ("S2B_MSIL2A_20180525T94029_N9999_R036_T35VNL", "S1B_IW_GRDH_1SDV_20180526T155424", "35VNL", "Finland"),
)  # fmt: skip
PER_TILE = 100 * 100  # patch grid positions <row>_<col> per tile


def generated_metadata(count: int, seed: int) -> pa.Table:
    """``count`` rows in the official schema, ids on a grid of :data:`TILES`."""
    if count > PER_TILE * len(TILES):
        raise ValueError(f"--patches {count}: at most {PER_TILE * len(TILES)} without --metadata")
    rng = np.random.default_rng(seed)
    rows: dict[str, list[object]] = {key: [] for key in (
        "patch_id", "labels", "split", "country", "s1_name", "s2v1_name")}  # fmt: skip
    splits = rng.choice(["train", "validation", "test"], size=count, p=[0.5, 0.25, 0.25])
    for i in range(count):
        s2, s1, tile, country = TILES[i // PER_TILE]
        row, col = divmod(i % PER_TILE, 100)
        picked = rng.choice(len(BEN19_CLASSES), size=int(rng.integers(1, 5)), replace=False)
        rows["patch_id"].append(f"{s2}_{row}_{col}")
        rows["labels"].append(sorted(BEN19_CLASSES[c] for c in picked))
        rows["split"].append(str(splits[i]))
        rows["country"].append(country)
        rows["s1_name"].append(f"{s1}_{tile}_{row}_{col}")
        rows["s2v1_name"].append(f"{s2.split('_N9999')[0]}_{row}_{col}")
    table = pa.table(rows)
    flags = pa.array(np.zeros(count, dtype=bool))
    table = table.append_column("contains_seasonal_snow", flags)
    return table.append_column("contains_cloud_or_shadow", flags)


def sampled_metadata(path: Path, count: int, seed: int) -> pa.Table:
    """A seeded random sample of ``count`` rows of the real ``metadata.parquet``, in file order."""
    table = pq.read_table(path)
    if count > table.num_rows:
        raise ValueError(f"--patches {count}: {path} has only {table.num_rows} rows")
    rows = np.sort(np.random.default_rng(seed).choice(table.num_rows, size=count, replace=False))
    return table.take(pa.array(rows))


def entries(
    table: pa.Table, sources: tuple[str, ...], rng: np.random.Generator
) -> Iterator[tuple[str, bytes]]:
    """(key, encoded value) of every LMDB entry of the rows of ``table``."""
    index = {name: i for i, name in enumerate(BEN19_CLASSES)}
    for patch_id, s1_name, labels in zip(
        table.column("patch_id").to_pylist(),
        table.column("s1_name").to_pylist(),
        table.column("labels").to_pylist(),
        strict=True,
    ):
        if "s2" in sources:
            bands = {
                b: rng.integers(1, 10_001, (s, s), dtype=np.uint16) for b, s in S2_SIDES.items()
            }
            yield patch_id, encode_value(bands)
        if "s1" in sources:
            db = {b: rng.uniform(-25.0, 0.0, (SIDE, SIDE)).astype(np.float32) for b in S1_BANDS}
            yield s1_name, encode_value(db)
        if "maps" in sources:
            codes = np.array([BEN19_CLC_CODES[index[name]][0] for name in labels], dtype=np.uint16)
            data = codes[rng.integers(0, len(codes), (SIDE, SIDE))]
            yield f"{patch_id}{REFERENCE_SUFFIX}", encode_value({"Data": data})


def write_synthetic_benv2(
    out: Path,
    count: int,
    *,
    seed: int = 0,
    metadata: Path | None = None,
    sources: tuple[str, ...] = SOURCES,
    overwrite: bool = False,
) -> Path:
    """Write ``count`` patches into ``out`` (see the module docstring); returns ``out``.

    Raises:
        FileExistsError: ``out`` exists and ``overwrite`` is False.
    """
    unknown = sorted(set(sources) - set(SOURCES))
    if unknown or not sources:
        raise ValueError(f"sources {list(sources)}: expected some of {list(SOURCES)}")
    if count < 1:
        raise ValueError(f"count must be at least 1, got {count}")
    if out.exists():
        if not overwrite:
            raise FileExistsError(f"{out} exists; choose another --out or pass --overwrite")
        shutil.rmtree(out)
    table = sampled_metadata(metadata, count, seed) if metadata else generated_metadata(count, seed)
    (out / LMDB_NAME).mkdir(parents=True)
    pq.write_table(table, out / "metadata.parquet")
    per_patch = sum(s * s * 2 for s in S2_SIDES.values()) + 2 * SIDE * SIDE * 4 + SIDE * SIDE * 2
    env = lmdb.open(str(out / LMDB_NAME), map_size=int(count * per_patch * 1.5) + (1 << 26))
    rng = np.random.default_rng(seed + 1)
    written = entries(table, sources, rng)
    try:
        while True:  # transactions of 1,024 entries
            with env.begin(write=True) as txn:
                put = sum(txn.put(k.encode(), v) for k, v in itertools.islice(written, 1024))
            if put == 0:
                break
    finally:
        env.close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--patches", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--metadata", type=Path, default=None, help="the real metadata.parquet")
    parser.add_argument("--sources", default=",".join(SOURCES), help="of s2, s1, maps")
    parser.add_argument("--overwrite", action="store_true")
    args = parser.parse_args()
    start = time.perf_counter()
    out = write_synthetic_benv2(
        args.out,
        args.patches,
        seed=args.seed,
        metadata=args.metadata,
        sources=tuple(args.sources.split(",")),
        overwrite=args.overwrite,
    )
    size = (out / LMDB_NAME / "data.mdb").stat().st_size
    print(
        f"{out}: {args.patches} patches ({args.sources}), LMDB {size / 2**30:.2f} GiB, "
        f"{time.perf_counter() - start:.0f} s"
    )


if __name__ == "__main__":
    main()
