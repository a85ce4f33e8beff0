#!/usr/bin/env python3
"""Cost of the setup-time checks (``dataset.datamodule.verify``), each against its baseline.

* reBEN metadata: reading the three split indexes from the real ``metadata.parquet``
  (480k rows), and within that the duplicate and cross-split checks (their share);
* reBEN LMDB, ``verify=keys``: the key-existence pass (:meth:`LazyLMDB.missing`, one read
  transaction) over ``--keys`` real patch ids in a generated LMDB whose values, like the
  real ones, live on overflow pages; per key, extrapolated to the real splits, and against
  ``key in lmdb`` per key (the naive pass);
* AID, ``verify=keys``: the JPEG header decode per 600 x 600 image against the full
  decode ``verify=full`` (and every training epoch) does.

Times are the best of ``--repeats`` passes with a warm page cache; on a cold cache or a
network file system the LMDB pass also reads its B-tree pages (about 80 bytes per key).

    python benchmarks/setup_checks.py --metadata /data/reben/metadata.parquet
"""

from __future__ import annotations

import argparse
import itertools
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import lmdb
import numpy as np
from PIL import Image

from spml_rs.data.aid import decode
from spml_rs.data.aid_index import image_header
from spml_rs.data.benv2_index import BENv2Index, repeated, shared
from spml_rs.data.benv2_lmdb import LazyLMDB
from spml_rs.data.index import SPLITS


def best(run: Callable[[], object], repeats: int) -> float:
    """Best wall time of ``repeats`` calls, in seconds."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return min(times)


def metadata_checks(metadata: Path, work: Path, repeats: int) -> list[str]:
    root = work / "benv2"
    root.mkdir()
    (root / "metadata.parquet").symlink_to(metadata.resolve())
    read = best(lambda: [BENv2Index(root).split(s) for s in SPLITS], repeats)
    ids = [BENv2Index(root).split(s).patch_ids for s in SPLITS]

    def checks() -> None:
        for split_ids in ids:
            repeated(split_ids)
        for a, b in itertools.combinations(ids, 2):
            shared(a, b)

    checked = best(checks, repeats)
    rows = sum(map(len, ids))
    return [
        f"metadata: {rows:,} rows, three split indexes read in {read:.3f} s, of which the "
        f"duplicate + cross-split checks take {checked:.3f} s ({checked / read:.1%})"
    ]


def lmdb_checks(metadata: Path, work: Path, count: int, repeats: int) -> list[str]:
    index = BENv2Index(work / "benv2")
    keys = [str(k) for k in index.split("train").patch_ids[:count]]
    path = work / "lmdb"
    env = lmdb.open(str(path), map_size=1 << 34)
    value = bytes(8192)  # > one 4 KiB page: values on overflow pages, as the real ones
    with env.begin(write=True) as txn:
        for key in keys:
            txn.put(key.encode(), value)
    env.close()
    database = LazyLMDB(path)
    assert database.missing(keys) == []
    ours = best(lambda: database.missing(keys), repeats) / len(keys)
    naive = best(lambda: [k for k in keys if k not in database], max(1, repeats // 2)) / len(keys)
    sizes = {split: len(index.split(split).patch_ids) for split in SPLITS}
    total = sum(sizes.values())
    return [
        f"LMDB keys: {ours * 1e6:.2f} us per key (missing(), one transaction) vs "
        f"{naive * 1e6:.1f} us per key (`in`): {naive / ours:.0f}x",
        f"  extrapolated: train {sizes['train']:,} keys {ours * sizes['train']:.2f} s; all "
        f"three splits ({total:,} keys, fit) {ours * total:.2f} s; with S1 bands twice that",
    ]


def aid_checks(work: Path, count: int, repeats: int) -> list[str]:
    rng = np.random.default_rng(0)
    paths = []
    for n in range(count):
        pixels = rng.integers(0, 255, (600, 600, 3), dtype=np.uint8)
        paths.append(str(work / f"image_{n}.jpg"))
        Image.fromarray(pixels).save(paths[-1], "JPEG", quality=90)
    header = best(lambda: [image_header(p) for p in paths], repeats) / count
    full = best(lambda: [decode(p) for p in paths], max(1, repeats // 2)) / count
    return [
        f"AID: header {header * 1e3:.3f} ms per image vs full decode {full * 1e3:.2f} ms "
        f"({full / header:.0f}x); all 3,000 images: {header * 3000:.2f} s (keys) vs "
        f"{full * 3000:.1f} s (full)"
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--metadata", type=Path, default=Path("data/benv2/metadata.parquet"))
    parser.add_argument("--keys", type=int, default=20000, help="keys in the generated LMDB")
    parser.add_argument("--images", type=int, default=200, help="generated 600 px JPEGs")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="setup_checks_"))
    try:
        lines = metadata_checks(args.metadata, work, args.repeats)
        lines += lmdb_checks(args.metadata, work, args.keys, args.repeats)
        lines += aid_checks(work, args.images, args.repeats)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
