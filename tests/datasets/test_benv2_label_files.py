"""Single-positive label files on reBEN: the seed's .npy layouts, id + one-hot CSV, bad files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from spml_rs.data.benv2 import BENv2DataModule
from spml_rs.data.classes import BEN19_CLASSES
from spml_rs.label_files import LabelFileError, read_single_positives, write_single_positives
from spml_testing import DATA

FIXTURE = DATA / "benv2"
IDS = [f"img_{i}" for i in range(5)]
POSITIVES = np.array([0, 18, 3, 3, 7])


def one_hot(positives: np.ndarray, width: int = 19) -> np.ndarray:
    return np.eye(width, dtype=np.uint8)[positives]


def test_npy_indices_and_one_hot(tmp_path: Path) -> None:
    np.save(tmp_path / "idx.npy", POSITIVES.astype(np.int32))
    np.save(tmp_path / "hot.npy", one_hot(POSITIVES))
    for name in ("idx.npy", "hot.npy"):
        got = read_single_positives(tmp_path / name, IDS, BEN19_CLASSES)
        np.testing.assert_array_equal(got, POSITIVES)


@pytest.mark.parametrize(
    ("array", "message"),
    [
        (POSITIVES[:4], r"shape \(4,\), but the split has 5 images.*another split"),
        (one_hot(POSITIVES % 17, 17), r"one-hot rows of 17 classes, the dataset has 19"),
        (
            np.array([0, 1, 19, 2, 3]),
            r"must be in \[0, 19\); rows \[2\] \(images \['img_2'\]\) hold \[19\]",
        ),
        (np.array([0.0, 1.0, 2.0, 3.0, 4.0]), r"class indices must be integers"),
        (
            one_hot(POSITIVES) + one_hot(np.array([1, 1, 1, 1, 1])),
            r"exactly one 1.*rows \[0, 1, 2, 3, 4\]",
        ),
    ],
)
def test_bad_npy_files(tmp_path: Path, array: np.ndarray, message: str) -> None:
    np.save(tmp_path / "bad.npy", array)
    with pytest.raises(LabelFileError, match=message):
        read_single_positives(tmp_path / "bad.npy", IDS, BEN19_CLASSES)


def _one_hot_csv(path: Path, header: list[str], rows: np.ndarray, id_column: str) -> None:
    lines = ["\t".join([id_column, *header])]
    lines += [
        "\t".join([image_id, *map(str, row)]) for image_id, row in zip(IDS, rows, strict=True)
    ]
    path.write_text("\n".join(lines) + "\n")


def test_csv_in_id_plus_one_hot_form(tmp_path: Path) -> None:
    order = np.random.default_rng(0).permutation(19)  # columns may come in any order
    header = [BEN19_CLASSES[i] for i in order]
    _one_hot_csv(tmp_path / "hot.csv", header, one_hot(POSITIVES)[:, order], "IMAGE\\LABEL")
    got = read_single_positives(tmp_path / "hot.csv", IDS, BEN19_CLASSES)
    np.testing.assert_array_equal(got, POSITIVES)


def test_csv_one_hot_with_wrong_classes(tmp_path: Path) -> None:
    header = [*BEN19_CLASSES[:18], "Lava fields"]
    _one_hot_csv(tmp_path / "bad.csv", header, one_hot(POSITIVES), "image_id")
    with pytest.raises(LabelFileError, match=r"unknown class column\(s\) \['Lava fields'\]"):
        read_single_positives(tmp_path / "bad.csv", IDS, BEN19_CLASSES)
    _one_hot_csv(
        tmp_path / "short.csv", list(BEN19_CLASSES[:17]), one_hot(POSITIVES % 17, 17), "image_id"
    )
    with pytest.raises(LabelFileError, match=r"17 class columns but the dataset has 19 classes"):
        read_single_positives(tmp_path / "short.csv", IDS, BEN19_CLASSES)


def test_unknown_class_name_and_wrong_split(tmp_path: Path) -> None:
    path = tmp_path / "labels.csv"
    path.write_text("image_id,class_name\n" + "".join(f"{i},Tundra\n" for i in IDS))
    with pytest.raises(LabelFileError, match=r"unknown class name\(s\) \['Tundra'\]"):
        read_single_positives(path, IDS, BEN19_CLASSES)
    write_single_positives(path, IDS, POSITIVES, BEN19_CLASSES)
    dm = BENv2DataModule(root=str(FIXTURE), label_mode="manual", label_path=str(path))
    with pytest.raises(LabelFileError, match=r"5 id\(s\) are not in this split.*another split"):
        dm.train_targets()


def test_seed_npy_layout_aligned_with_sorted_train_rows(tmp_path: Path) -> None:
    dm = BENv2DataModule(root=str(FIXTURE), label_mode="full")
    ids, labels = dm.index.split_labels("train")
    assert list(ids) == sorted(ids)
    first = labels.argmax(1)  # the lowest-index true label of each image
    np.save(tmp_path / "train_dominant_single_labels.npy", one_hot(first))
    dm = BENv2DataModule(
        root=str(FIXTURE),
        label_mode="dominant",
        label_path=str(tmp_path / "train_dominant_single_labels.npy"),
    )
    targets = dm.train_targets()
    np.testing.assert_array_equal(targets.argmax(1), first)
    assert (targets == 1).sum() == len(ids) and (targets == -1).sum() == len(ids) * 18
    np.save(tmp_path / "val.npy", np.zeros(len(ids) + 2, dtype=np.int64))
    dm = BENv2DataModule(
        root=str(FIXTURE), label_mode="random", label_path=str(tmp_path / "val.npy")
    )
    with pytest.raises(LabelFileError, match=rf"but the split has {len(ids)} images"):
        dm.train_targets()
