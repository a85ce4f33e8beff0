"""Build the official reBEN LMDB from the extracted raw archives (``prepare benv2-lmdb``).

Raw layout (``docs/datasets_benv2.md``, section 1c; one GeoTIFF per band):

* ``BigEarthNet-S2/<tile product>/<patch_id>/<patch_id>_<B01..B12,B8A>.tif`` -> key ``patch_id``
* ``BigEarthNet-S1/<s1 product>/<s1_name>/<s1_name>_<VV|VH>.tif`` -> key ``s1_name``
* ``Reference_Maps/<tile product>/<patch_id>/<patch_id>_reference_map.tif`` ->
  key ``<patch_id>_reference_map``, band ``Data``

Values are safetensors dicts of the arrays exactly as read from the GeoTIFFs
(no resampling, no cast), which is what the official encoder writes.

Resumable: keys already in the output LMDB are skipped, and entries are
written in transactions of whole entries, so an interruption leaves every key
either complete or absent. Unreadable or missing files are collected and
reported; the other patches are still written.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import lmdb
import numpy as np
import pyarrow.parquet as pq
import tifffile

from spml_rs.data.benv2_bands import S1_BANDS, S2_BANDS_ALL, S2_BANDS_BY_SIDE, SIDE
from spml_rs.data.benv2_lmdb import encode_value

S2_SIDES = {band: side for side, members in S2_BANDS_BY_SIDE.items() for band in members}
REFERENCE_SUFFIX = "_reference_map"


def s2_product(patch_id: str) -> str:
    """Tile product folder of an S2 patch: the id without its last two ``_`` parts."""
    return patch_id.rsplit("_", 2)[0]


def s1_product(s1_name: str) -> str:
    """Product folder of an S1 patch: the name without its last three ``_`` parts."""
    return s1_name.rsplit("_", 3)[0]


@dataclass(frozen=True)
class Entry:
    """One LMDB entry to build: its key and, per array name, the GeoTIFF and the expected form."""

    key: str
    files: tuple[tuple[str, Path, str, int], ...]  # (band, path, dtype, side)


def s2_entry(folder: Path, patch_id: str) -> Entry:
    files = tuple((b, folder / f"{patch_id}_{b}.tif", "uint16", S2_SIDES[b]) for b in S2_BANDS_ALL)
    return Entry(patch_id, files)


def s1_entry(folder: Path, s1_name: str) -> Entry:
    return Entry(
        s1_name, tuple((b, folder / f"{s1_name}_{b}.tif", "float32", SIDE) for b in S1_BANDS)
    )


def reference_entry(folder: Path, patch_id: str) -> Entry:
    path = folder / f"{patch_id}{REFERENCE_SUFFIX}.tif"
    return Entry(f"{patch_id}{REFERENCE_SUFFIX}", (("Data", path, "uint16", SIDE),))


def discover(
    s2: Path | None, s1: Path | None, reference_maps: Path | None, metadata: list[Path]
) -> list[Entry]:
    """Entries to build, from the metadata rows when given, else from the folders found."""
    entries: list[Entry] = []
    if metadata:
        patch_ids, s1_names = _metadata_names(metadata)
        if s2:
            entries += [s2_entry(s2 / s2_product(p) / p, p) for p in patch_ids]
        if s1:
            entries += [s1_entry(s1 / s1_product(n) / n, n) for n in s1_names]
        if reference_maps:
            entries += [reference_entry(reference_maps / s2_product(p) / p, p) for p in patch_ids]
        return entries
    for root, make in ((s2, s2_entry), (s1, s1_entry), (reference_maps, reference_entry)):
        if root is not None:
            if not root.is_dir():
                raise FileNotFoundError(f"input folder not found: {root}")
            entries += [
                make(folder, folder.name) for folder in sorted(root.glob("*/*")) if folder.is_dir()
            ]
    return entries


def unique_entries(entries: list[Entry]) -> tuple[list[Entry], list[str]]:
    """The entries with each key once (the first kept), and the keys that came more than once.

    A metadata file can list a patch twice (the keys would be built and counted twice).
    """
    seen: set[str] = set()
    unique: list[Entry] = []
    repeated: dict[str, None] = {}  # ordered set
    for entry in entries:
        if entry.key in seen:
            repeated[entry.key] = None
        else:
            seen.add(entry.key)
            unique.append(entry)
    return unique, list(repeated)


def _metadata_names(paths: list[Path]) -> tuple[list[str], list[str]]:
    patch_ids: list[str] = []
    s1_names: list[str] = []
    for path in paths:
        table = pq.read_table(path, columns=["patch_id", "s1_name"])
        patch_ids += table.column("patch_id").to_pylist()
        s1_names += table.column("s1_name").to_pylist()
    return patch_ids, s1_names


def read_entry(entry: Entry) -> bytes:
    """Read and check the GeoTIFFs of one entry; the encoded value, or an OSError/ValueError."""
    arrays: dict[str, np.ndarray] = {}
    for band, path, dtype, side in entry.files:
        if not path.is_file():
            raise FileNotFoundError(f"missing file {path}")
        try:
            array = tifffile.imread(path)
        except Exception as error:  # tifffile raises many types for broken files
            raise ValueError(f"unreadable GeoTIFF {path}: {error}") from error
        if array.dtype != np.dtype(dtype) or array.shape != (side, side):
            raise ValueError(
                f"{path}: {array.dtype}{list(array.shape)}, expected {dtype}[{side}, {side}]"
            )
        arrays[band] = array
    return encode_value(arrays)


@dataclass
class BuildReport:
    """What a build did: counts and the failures with their reasons."""

    written: int = 0
    skipped: int = 0
    failures: list[tuple[str, str]] = field(default_factory=list)  # (key, reason)


def build_lmdb(
    entries: list[Entry],
    out: Path,
    *,
    map_size: int = 1 << 40,
    batch_size: int = 256,
    threads: int = 4,
    progress: Callable[[int], None] | None = None,
) -> BuildReport:
    """Write ``entries`` into the LMDB at ``out`` (created if needed), skipping present keys.

    Each batch of entries goes in one transaction; ``progress(n)`` is called
    after each batch with the number of entries handled. A key given twice is
    built once (:func:`unique_entries`); ``written`` counts the keys added.
    """
    entries, _ = unique_entries(entries)
    out.mkdir(parents=True, exist_ok=True)
    report = BuildReport()
    env = lmdb.open(str(out), map_size=map_size, subdir=True, readahead=False, meminit=False)
    try:
        with env.begin() as txn:
            todo = [e for e in entries if txn.get(e.key.encode()) is None]
        report.skipped = len(entries) - len(todo)
        if progress and report.skipped:
            progress(report.skipped)
        with ThreadPoolExecutor(max_workers=max(1, threads)) as pool:
            for batch in _batches(todo, batch_size):
                results = list(pool.map(_try_read, batch))
                with env.begin(write=True) as txn:
                    for entry, (value, error) in zip(batch, results, strict=True):
                        if value is None:
                            report.failures.append((entry.key, error))
                        elif txn.put(entry.key.encode(), value, overwrite=False):
                            report.written += 1
                if progress:
                    progress(len(batch))
    finally:
        env.close()
    return report


def _try_read(entry: Entry) -> tuple[bytes | None, str]:
    try:
        return read_entry(entry), ""
    except (OSError, ValueError) as error:
        return None, str(error)


def _batches(items: list[Entry], size: int) -> Iterator[list[Entry]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def read_reference_maps(folder: Path, patch_ids: Iterable[str]) -> Iterator[np.ndarray]:
    """Reference maps of ``patch_ids`` from the raw ``Reference_Maps`` folder, in order."""
    for patch_id in patch_ids:
        path = folder / s2_product(patch_id) / patch_id / f"{patch_id}{REFERENCE_SUFFIX}.tif"
        if not path.is_file():
            raise FileNotFoundError(f"reference map not found: {path}")
        yield tifffile.imread(path)
