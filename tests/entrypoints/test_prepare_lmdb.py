"""`prepare benv2-lmdb`: bit-identical values, input subsets, resumability, failure reports."""

from __future__ import annotations

import shutil
from pathlib import Path

import lmdb
import numpy as np
import pytest
import tifffile

from spml_rs.data.benv2_builder import build_lmdb, discover, s2_product
from spml_rs.data.benv2_lmdb import LazyLMDB, decode_value
from spml_rs.prepare import main
from spml_testing import DATA

FIXTURE = DATA / "benv2"
RAW = {
    "--s2": FIXTURE / "BigEarthNet-S2",
    "--s1": FIXTURE / "BigEarthNet-S1",
    "--reference-maps": FIXTURE / "Reference_Maps",
}


def entries_of(path: Path) -> dict[str, dict[str, np.ndarray]]:
    # Through LazyLMDB: py-lmdb refuses a second environment on files this process has open.
    handle = LazyLMDB(path)
    out = {key: decode_value(handle.get(key)) for key in handle}
    if path != FIXTURE / "BigEarthNet-V2-LMDB":
        handle.close()  # the test may write to it again
    return out


def assert_same_entries(built: dict, official: dict) -> None:  # type: ignore[type-arg]
    assert sorted(built) == sorted(official)
    for key, arrays in official.items():
        assert sorted(built[key]) == sorted(arrays), key
        for band, array in arrays.items():
            assert built[key][band].dtype == array.dtype
            np.testing.assert_array_equal(built[key][band], array)


def args(out: Path, *extra: str, inputs: dict[str, Path] = RAW) -> list[str]:
    flat = [str(v) for pair in inputs.items() for v in pair]
    return ["benv2-lmdb", *flat, "--out", str(out), *extra]


def test_builds_the_official_lmdb_bit_identical(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    assert main(args(tmp_path / "lmdb")) == 0
    built = entries_of(tmp_path / "lmdb")
    assert_same_entries(built, entries_of(FIXTURE / "BigEarthNet-V2-LMDB"))
    # and directly against one source GeoTIFF
    patch_id = next(k for k in built if k.startswith("S2") and "reference" not in k)
    source = tifffile.imread(
        FIXTURE / "BigEarthNet-S2" / s2_product(patch_id) / patch_id / f"{patch_id}_B8A.tif"
    )
    np.testing.assert_array_equal(built[patch_id]["B8A"], source)
    assert "36 entries written, 0 already present, 0 failed (of 36)" in capsys.readouterr().err


def test_any_subset_of_inputs_and_metadata_selection(tmp_path: Path) -> None:
    maps_only = {"--reference-maps": RAW["--reference-maps"]}
    metadata = str(FIXTURE / "metadata.parquet")
    assert main(args(tmp_path / "maps", "--metadata", metadata, inputs=maps_only)) == 0
    keys = sorted(entries_of(tmp_path / "maps"))
    assert len(keys) == 10 and all(k.endswith("_reference_map") for k in keys)
    assert main(args(tmp_path / "s1", inputs={"--s1": RAW["--s1"]})) == 0
    assert len(entries_of(tmp_path / "s1")) == 12
    assert main(["benv2-lmdb", "--out", str(tmp_path / "none")]) == 2


def test_resumes_from_a_partial_lmdb_without_rewriting(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "lmdb"
    entries = discover(RAW["--s2"], RAW["--s1"], RAW["--reference-maps"], [])
    # An interrupted run: its first committed batches are in the database.
    report = build_lmdb(entries[:7], out, map_size=1 << 26, batch_size=3)
    assert report.written == 7
    sentinel = entries[0].key.encode()
    env = lmdb.open(str(out), map_size=1 << 26)
    with env.begin(write=True) as txn:
        original = txn.get(sentinel)
        txn.put(sentinel, b"marker: must not be rewritten")
    env.close()
    assert main(args(out)) == 0
    assert "29 entries written, 7 already present" in capsys.readouterr().err
    env = lmdb.open(str(out), readonly=True, lock=False)
    with env.begin() as txn:
        assert txn.get(sentinel) == b"marker: must not be rewritten"
        assert txn.stat()["entries"] == 36
    env.close()
    env = lmdb.open(str(out), map_size=1 << 26)
    with env.begin(write=True) as txn:
        txn.put(sentinel, original)
    env.close()
    assert_same_entries(entries_of(out), entries_of(FIXTURE / "BigEarthNet-V2-LMDB"))


def test_missing_and_unreadable_files_are_listed_and_the_rest_written(
    tmp_path: Path, capsys
) -> None:  # type: ignore[no-untyped-def]
    s2 = tmp_path / "BigEarthNet-S2"
    shutil.copytree(RAW["--s2"], s2)
    folders = sorted(s2.glob("*/*"))
    missing, broken = folders[0], folders[1]
    (missing / f"{missing.name}_B09.tif").unlink()
    (broken / f"{broken.name}_B03.tif").write_bytes(b"this is not a tiff")
    out = tmp_path / "lmdb"
    assert main(args(out, inputs={"--s2": s2})) == 1
    err = capsys.readouterr().err
    assert "10 entries written, 0 already present, 2 failed (of 12)" in err
    assert f"missing file {missing / f'{missing.name}_B09.tif'}" in err
    listing = (out / "build_failures.txt").read_text()
    assert missing.name in listing and f"unreadable GeoTIFF {broken}" in listing
    # Fix the inputs and rerun: only the two failed entries are written.
    shutil.copy(
        RAW["--s2"] / missing.parent.name / missing.name / f"{missing.name}_B09.tif", missing
    )
    shutil.copy(RAW["--s2"] / broken.parent.name / broken.name / f"{broken.name}_B03.tif", broken)
    assert main(args(out, inputs={"--s2": s2})) == 0
    assert "2 entries written, 10 already present" in capsys.readouterr().err


def test_wrong_dtype_or_shape_is_reported(tmp_path: Path) -> None:
    maps = tmp_path / "Reference_Maps"
    shutil.copytree(RAW["--reference-maps"], maps)
    target = sorted(maps.glob("*/*/*.tif"))[0]
    tifffile.imwrite(target, np.zeros((60, 60), dtype=np.uint8))
    report = build_lmdb(discover(None, None, maps, []), tmp_path / "lmdb", map_size=1 << 26)
    assert report.written == 11
    [(key, reason)] = report.failures
    assert key == f"{target.parent.name}_reference_map"
    assert "uint8[60, 60], expected uint16[120, 120]" in reason


def test_reading_the_built_lmdb_through_lazy_handles(tmp_path: Path) -> None:
    out = tmp_path / "lmdb"
    assert main(args(out, inputs={"--s2": RAW["--s2"]})) == 0
    handle = LazyLMDB(out)
    assert len(handle) == 12
    with pytest.raises(KeyError, match=r"'nope' not found in LMDB"):
        handle.get("nope")
    handle.close()
