"""`prepare spml-labels`: Random and Dominant files, .npy layouts, mismatch reports, AID."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from spml_rs import labels as spl
from spml_rs.data.benv2 import BENv2DataModule
from spml_rs.data.benv2_index import BENv2Index
from spml_rs.data.classes import BEN19_CLASSES, class_pixel_counts
from spml_rs.label_files import read_single_positives, read_table
from spml_rs.prepare import main
from spml_testing import DATA

FIXTURE = DATA / "benv2"
AID_FIXTURE = DATA / "aid"


def train_split(root: Path = FIXTURE) -> tuple[list[str], np.ndarray]:
    ids, labels = BENv2Index(root).split_labels("train")
    return list(ids), labels


def labels_cmd(out: Path, *extra: str, dataset: str = "benv2", root: Path = FIXTURE) -> list[str]:
    return ["spml-labels", "--dataset", dataset, "--root", str(root), "--out", str(out), *extra]


def test_random_labels_match_the_seeded_draw_and_the_datamodule(tmp_path: Path) -> None:
    out = tmp_path / "random.parquet"
    assert main(labels_cmd(out, "--mode", "random", "--seed", "3", "--npy")) == 0
    ids, labels = train_split()
    expected = spl.random_positives(labels, 3)
    table = read_table(out)
    assert table.column("image_id").to_pylist() == ids
    assert table.column("class_name").to_pylist() == [BEN19_CLASSES[i] for i in expected]
    np.testing.assert_array_equal(np.load(tmp_path / "random.npy"), expected)
    # The file and the on-the-fly draw give the same targets.
    from_file = BENv2DataModule(root=str(FIXTURE), label_mode="random", label_path=str(out))
    on_the_fly = BENv2DataModule(root=str(FIXTURE), label_mode="random", label_seed=3)
    np.testing.assert_array_equal(from_file.train_targets(), on_the_fly.train_targets())
    other = tmp_path / "seed4.csv"
    assert main(labels_cmd(other, "--mode", "random", "--seed", "4")) == 0
    assert (
        read_single_positives(other, ids, BEN19_CLASSES).tolist()
        == spl.random_positives(labels, 4).tolist()
    )


def test_dominant_from_lmdb_and_raw_maps_agree(tmp_path: Path) -> None:
    from_lmdb, from_raw = tmp_path / "lmdb.parquet", tmp_path / "raw.csv"
    assert main(labels_cmd(from_lmdb, "--mode", "dominant", "--npy", "onehot")) == 0
    raw = str(FIXTURE / "Reference_Maps")
    assert main(labels_cmd(from_raw, "--mode", "dominant", "--reference-maps", raw)) == 0
    ids, labels = train_split()
    a = read_single_positives(from_lmdb, ids, BEN19_CLASSES)
    np.testing.assert_array_equal(a, read_single_positives(from_raw, ids, BEN19_CLASSES))
    one_hot = np.load(tmp_path / "lmdb.npy")
    assert one_hot.shape == (len(ids), 19) and one_hot.dtype == np.uint8
    np.testing.assert_array_equal(one_hot.argmax(1), a)
    # Naively: the class with most reference-map pixels, read straight from the GeoTIFFs.
    import tifffile

    from spml_rs.data.benv2_builder import s2_product

    maps = np.stack([
        tifffile.imread(FIXTURE / "Reference_Maps" / s2_product(p) / p / f"{p}_reference_map.tif")
        for p in ids
    ])  # fmt: skip
    np.testing.assert_array_equal(a, class_pixel_counts(maps).argmax(1))
    assert labels[np.arange(len(ids)), a].all()


def test_dominant_mismatch_is_reported_and_nothing_written(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    root = tmp_path / "benv2"
    shutil.copytree(FIXTURE / "BigEarthNet-V2-LMDB", root / "BigEarthNet-V2-LMDB")
    ids = train_split()[0]
    dominant = read_dominant(tmp_path)
    table = pq.read_table(FIXTURE / "metadata.parquet")
    rows = table.column("patch_id").to_pylist()
    lists = table.column("labels").to_pylist()
    victim = rows.index(ids[0])
    lists[victim] = [n for n in lists[victim] if n != BEN19_CLASSES[dominant[0]]]
    table = table.set_column(1, "labels", pa.array(lists, pa.list_(pa.string())))
    pq.write_table(table, root / "metadata.parquet")
    out = tmp_path / "dominant.parquet"
    assert main(labels_cmd(out, "--mode", "dominant", root=root)) == 1
    err = capsys.readouterr().err
    assert "1 image(s): the dominant class is not a metadata label" in err
    assert f"{ids[0]}: dominant {BEN19_CLASSES[dominant[0]]!r}" in err
    assert not out.exists()
    assert main(labels_cmd(out, "--mode", "dominant", "--restrict-to-labels", root=root)) == 0
    restricted = read_single_positives(out, ids, BEN19_CLASSES)
    assert restricted[0] != dominant[0] and (restricted[1:] == dominant[1:]).all()


def read_dominant(tmp_path: Path) -> np.ndarray:
    out = tmp_path / "reference.parquet"
    assert main(labels_cmd(out, "--mode", "dominant")) == 0
    return read_single_positives(out, train_split()[0], BEN19_CLASSES)


def test_dominant_on_aid_is_a_clear_error(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "aid.parquet"
    assert main(labels_cmd(out, "--mode", "dominant", dataset="aid", root=AID_FIXTURE)) == 1
    assert "not available for dataset 'aid'" in capsys.readouterr().err
    assert not out.exists()


def test_random_labels_for_aid(tmp_path: Path) -> None:
    from spml_rs.data.aid_index import AIDIndex
    from spml_rs.data.classes import AID17_CLASSES

    out = tmp_path / "aid.csv"
    assert (
        main(labels_cmd(out, "--mode", "random", "--seed", "0", dataset="aid", root=AID_FIXTURE))
        == 0
    )
    ids, labels = AIDIndex(AID_FIXTURE).split_labels("train")
    got = read_single_positives(out, list(ids), AID17_CLASSES)
    np.testing.assert_array_equal(got, spl.random_positives(labels, 0))


def test_missing_root_is_a_clear_error(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    assert main(labels_cmd(tmp_path / "x.parquet", "--mode", "random", root=tmp_path)) == 2
    assert "reBEN metadata not found" in capsys.readouterr().err


@pytest.mark.parametrize("mode", ["random", "dominant"])
def test_snow_cloud_option_adds_the_flagged_train_patches(tmp_path: Path, mode: str) -> None:
    out = tmp_path / "all.parquet"
    assert main(labels_cmd(out, "--mode", mode, "--include-snow-cloud")) == 0
    assert read_table(out).num_rows == len(train_split()[0]) + 1


def test_dataset_choices_are_the_dataset_configs_with_files(capsys) -> None:  # type: ignore[no-untyped-def]
    from spml_rs.prepare import file_datasets

    assert file_datasets() == ("aid", "benv2")  # the synthetic configs generate their data
    with pytest.raises(SystemExit) as raised:
        main(["spml-labels", "--dataset", "synthetic", "--mode", "random", "--root", ".",
              "--out", "x.csv"])  # fmt: skip
    assert raised.value.code == 2 and "invalid choice: 'synthetic'" in capsys.readouterr().err


def test_config_overrides_reach_the_train_split(tmp_path: Path) -> None:
    from spml_rs.data.aid_index import AIDIndex
    from spml_rs.data.classes import AID17_CLASSES

    out = tmp_path / "aid.csv"
    command = labels_cmd(out, "--mode", "random", dataset="aid", root=AID_FIXTURE)
    assert main([*command, "dataset.datamodule.val_seed=1"]) == 0
    ids, labels = AIDIndex(AID_FIXTURE, val_seed=1).split_labels("train")
    assert ids.tolist() != AIDIndex(AID_FIXTURE).split_labels("train")[0].tolist()
    got = read_single_positives(out, list(ids), AID17_CLASSES)
    np.testing.assert_array_equal(got, spl.random_positives(labels, 0))


def test_unknown_config_keys_are_usage_errors(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "x.csv"
    aid = labels_cmd(out, "--mode", "random", dataset="aid", root=AID_FIXTURE)
    assert main([*aid, "--include-snow-cloud"]) == 2
    assert "include_snow_cloud" in capsys.readouterr().err
    assert main([*labels_cmd(out, "--mode", "random"), "dataset.datamodule.lmdb_nam=x"]) == 2
    assert "lmdb_nam" in capsys.readouterr().err
    assert not out.exists()


def test_an_existing_label_file_is_never_overwritten_silently(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "labels.csv"
    out.write_text("image_id,class_name\nmine,Arable land\n")
    assert main(labels_cmd(out, "--mode", "random")) == 2
    assert "refusing to overwrite" in capsys.readouterr().err
    assert out.read_text() == "image_id,class_name\nmine,Arable land\n"
    npy = tmp_path / "fresh.npy"
    npy.write_bytes(b"user data")
    assert main(labels_cmd(tmp_path / "fresh.csv", "--mode", "random", "--npy")) == 2
    assert npy.read_bytes() == b"user data" and not (tmp_path / "fresh.csv").exists()
    assert main(labels_cmd(out, "--mode", "random", "--overwrite")) == 0
    assert read_table(out).num_rows == len(train_split()[0])
