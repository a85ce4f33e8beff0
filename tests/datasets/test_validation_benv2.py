"""reBEN: nothing silently wrong (issue 12 items 5, 11, 15): duplicate and leaking patch ids,
missing LMDB keys and corrupt values found at setup, before training, and bad subset caps."""

from __future__ import annotations

import shutil
from pathlib import Path

import lmdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from spml_rs.data.benv2 import BENv2DataModule
from spml_rs.data.benv2_index import BENv2Index
from spml_rs.data.benv2_lmdb import CorruptValueError
from spml_rs.data.verify import SplitCheckError
from spml_rs.train import train
from spml_testing import DATA, DATASET_TINY

FIXTURE = DATA / "benv2"
LMDB_DIR = "BigEarthNet-V2-LMDB"
METADATA = "metadata.parquet"
SNOW_CLOUD = "metadata_for_patches_with_snow_cloud_or_shadow.parquet"


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """A writable copy of the fixture's metadata and LMDB."""
    out = tmp_path / "benv2"
    out.mkdir()
    for name in (METADATA, SNOW_CLOUD):
        shutil.copy(FIXTURE / name, out / name)
    shutil.copytree(FIXTURE / LMDB_DIR, out / LMDB_DIR)
    return out


def rows(path: Path) -> list[dict[str, object]]:
    return pq.read_table(path).to_pylist()


def write_rows(path: Path, table_rows: list[dict[str, object]]) -> None:
    pq.write_table(pa.Table.from_pylist(table_rows, pq.read_schema(FIXTURE / METADATA)), path)


def first_of(split: str) -> dict[str, object]:
    return next(r for r in rows(FIXTURE / METADATA) if r["split"] == split)


def remove_key(lmdb_dir: Path, key: str) -> None:
    env = lmdb.open(str(lmdb_dir), map_size=1 << 27)
    with env.begin(write=True) as txn:
        assert txn.delete(key.encode())
    env.close()


def put_value(lmdb_dir: Path, key: str, value: bytes) -> None:
    env = lmdb.open(str(lmdb_dir), map_size=1 << 27)
    with env.begin(write=True) as txn:
        txn.put(key.encode(), value)
    env.close()


def module(root: Path, **kwargs: object) -> BENv2DataModule:
    return BENv2DataModule(root=str(root), **{"label_mode": "full", **kwargs})  # type: ignore[arg-type]


# ------------------------------------------------------------ item 5: duplicates
def test_a_duplicated_metadata_row_is_an_error_naming_the_id(root: Path) -> None:
    row = first_of("train")
    write_rows(root / METADATA, [*rows(root / METADATA), row])
    with pytest.raises(ValueError, match=rf"{METADATA}.*more than once.*'{row['patch_id']}'"):
        BENv2Index(root).split("train")
    with pytest.raises(ValueError, match=str(row["patch_id"])):
        module(root).setup("fit")


def test_a_patch_in_two_splits_is_an_error_naming_the_id_and_the_splits(root: Path) -> None:
    row = first_of("train")
    write_rows(root / METADATA, [*rows(root / METADATA), {**row, "split": "test"}])
    index = BENv2Index(root)
    index.split("train")  # each split alone is fine
    with pytest.raises(
        ValueError, match=rf"both split 'train' and 'test': \['{row['patch_id']}'\]"
    ):
        index.split("test")
    with pytest.raises(ValueError, match=rf"'{row['patch_id']}'.*split"):
        module(root).setup("fit")  # fit also checks the test split


def test_merged_metadata_with_include_snow_cloud_does_not_double_the_flagged_patches(
    root: Path,
) -> None:
    flagged = rows(root / SNOW_CLOUD)
    write_rows(root / METADATA, [*rows(root / METADATA), *flagged])  # a merged metadata file
    merged = BENv2Index(root)  # the flagged rows of a merged file are left out, as before
    assert len(merged.split("train").patch_ids) == len(BENv2Index(FIXTURE).split("train").patch_ids)
    train_flagged = [str(r["patch_id"]) for r in flagged if r["split"] == "train"]
    with pytest.raises(
        ValueError, match=rf"both .*{METADATA} and .*{SNOW_CLOUD}: \['{train_flagged[0]}'\]"
    ):
        BENv2Index(root, include_snow_cloud=True).split("train")


def test_messages_print_plain_ids(root: Path) -> None:
    row = first_of("validation")
    write_rows(root / METADATA, [*rows(root / METADATA), row, row])
    with pytest.raises(ValueError) as error:
        BENv2Index(root).split("val")
    assert "np.str_" not in str(error.value) and f"'{row['patch_id']}'" in str(error.value)


# --------------------------------------------------- item 11: checks at setup
def test_a_missing_test_key_fails_at_fit_setup_naming_key_split_and_lmdb(root: Path) -> None:
    test_id = str(first_of("test")["patch_id"])
    remove_key(root / LMDB_DIR, test_id)
    dm = module(root)
    with pytest.raises(
        SplitCheckError,
        match=rf"(?s)split 'test'.*{test_id}: s2 key .* not found in LMDB .*{LMDB_DIR}",
    ):
        dm.setup("fit")
    assert not dm.datasets  # nothing was built
    module(root, verify="none").setup("fit")  # opt-out: the old behaviour
    module(root).setup("validate")  # the val split alone is complete


def test_missing_s1_keys_are_found_when_the_band_set_reads_s1(root: Path) -> None:
    val = first_of("validation")
    remove_key(root / LMDB_DIR, str(val["s1_name"]))
    module(root).setup("fit")  # s2 does not read S1
    with pytest.raises(
        SplitCheckError, match=rf"(?s)split 'val'.*s1 key '{val['s1_name']}' not found"
    ):
        module(root, bands="s1s2").setup("fit")


def test_only_the_rows_in_use_are_checked(root: Path) -> None:
    ids = sorted(str(r["patch_id"]) for r in rows(root / METADATA) if r["split"] == "test")
    dm = module(root, max_samples={"test": 1})
    kept = str(BENv2Index(root).split("test").patch_ids[dm.subset_rows("test")][0])
    remove_key(root / LMDB_DIR, next(i for i in ids if i != kept))
    dm.setup("fit")
    assert dm.datasets["train"] and len(dm.datasets) == 2


def test_verify_full_decodes_every_value(root: Path) -> None:
    val_id = str(first_of("validation")["patch_id"])
    put_value(root / LMDB_DIR, val_id, b"\x10\x00\x00\x00\x00\x00\x00\x00not json at all!")
    module(root).setup("fit")  # keys exist: the cheap check passes
    with pytest.raises(SplitCheckError, match=rf"(?s)1 of 2 image\(s\) of split 'val'.*{val_id}"):
        module(root, verify="full").setup("fit")
    with pytest.raises(CorruptValueError):  # verify=keys: found when the sample is read
        dm = module(root)
        dm.setup("fit")
        dm.datasets["val"][0]


def test_unknown_verify_level_is_refused(root: Path) -> None:
    with pytest.raises(ValueError, match=r"verify must be one of \('keys', 'full', 'none'\)"):
        module(root, verify="headers")


def test_a_run_with_a_missing_test_key_stops_before_training(
    root: Path, make_cfg, tmp_path: Path
) -> None:
    remove_key(root / LMDB_DIR, str(first_of("test")["patch_id"]))
    overrides = [o for o in DATASET_TINY["benv2"] if not o.startswith("dataset.datamodule.root")]
    cfg = make_cfg(*overrides, f"dataset.datamodule.root={root}", "method=an", tiny=False)
    with pytest.raises(SplitCheckError, match="split 'test'"):
        train(cfg)
    assert not list(tmp_path.rglob("*.ckpt")) and not list(tmp_path.rglob("metrics.csv"))


# ------------------------------------------------------- item 15: subset caps
@pytest.mark.parametrize(
    ("caps", "message"),
    [
        ({"val": 0}, r"max_samples\.val must be a positive integer or null, got 0"),
        ({"test": -2}, r"max_samples\.test must be a positive integer or null, got -2"),
        ({"train": 2.5}, r"max_samples\.train must be a positive integer or null, got 2\.5"),
        (
            {"valid": 3},
            r"max_samples has unknown split\(s\) \['valid'\].*\['train', 'val', 'test'\]",
        ),
    ],
)
def test_bad_subset_caps_are_refused_at_construction(caps: dict, message: str) -> None:  # type: ignore[type-arg]
    with pytest.raises(ValueError, match=message):
        module(FIXTURE, max_samples=caps)


def test_the_official_fixture_passes_every_check() -> None:
    dm = module(FIXTURE, verify="full", bands="s1s2")
    dm.setup()
    assert sorted(dm.datasets) == ["test", "train", "val"]
    assert sum(len(d) for d in dm.datasets.values()) == 10
