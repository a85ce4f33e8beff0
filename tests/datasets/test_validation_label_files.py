"""Label files: nothing silently wrong (issue 12 items 8, 12, 16, 18): contradicting columns,
empty files, counts of the split alone, image ids (never row numbers or np.str_ reprs)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pa_csv
import pytest

from spml_rs import labels as spl
from spml_rs.data.aid import AIDDataModule
from spml_rs.data.aid_index import AIDIndex
from spml_rs.data.classes import AID17_CLASSES, BEN19_CLASSES
from spml_rs.label_files import (
    LabelFileError,
    read_single_positives,
    read_table,
    write_single_positives,
)
from spml_testing import DATA

AID = DATA / "aid"
MANUAL = "single_positive_labels_manual.csv"
IDS = np.array([f"img_{i}" for i in range(5)])  # numpy ids, as the indexes give them
POSITIVES = np.array([0, 18, 3, 3, 7])


def aid_manual(label_path: Path, **kwargs: object) -> AIDDataModule:
    dm = AIDDataModule(
        root=str(AID),
        label_mode="manual",
        label_path=str(label_path),
        **kwargs,  # type: ignore[arg-type]
    )
    dm.setup("fit")
    return dm


def write_csv(path: Path, header: str, lines: list[str]) -> Path:
    path.write_text("\n".join([header, *lines]) + "\n")
    return path


# ------------------------------------------ item 8: class_index vs class_name
def test_class_index_and_class_name_must_agree(tmp_path: Path) -> None:
    path = tmp_path / "both.csv"
    write_single_positives(path, list(IDS), POSITIVES, BEN19_CLASSES)  # our writer: both columns
    np.testing.assert_array_equal(read_single_positives(path, IDS, BEN19_CLASSES), POSITIVES)
    lines = path.read_text().splitlines()
    lines[2] = lines[2].replace(",18,", ",4,")  # img_1: class_index 4, class_name Marine waters
    lines[4] = lines[4].replace(",3,", ",2,")  # img_3
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(LabelFileError) as error:
        read_single_positives(path, IDS, BEN19_CLASSES)
    message = str(error.value)
    assert "class_index and class_name disagree" in message and str(path) in message
    assert "img_1 (class_index 4 = 'Pastures', class_name 'Marine waters')" in message
    assert "img_3 (class_index 2" in message and "img_2" not in message


# --------------------------------------------------------- item 12: empty files
@pytest.mark.parametrize("content", [b"", b"\xef\xbb\xbf", b"\n  \n"])
def test_an_empty_label_file_names_the_file(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "labels.csv"
    path.write_bytes(content)
    with pytest.raises(LabelFileError, match=rf"{path}: the file is empty; expected a header"):
        read_single_positives(path, IDS, BEN19_CLASSES)
    with pytest.raises(LabelFileError, match=rf"{path}: the file is empty"):
        aid_manual(path)


def test_an_empty_aid_label_csv_names_the_file(tmp_path: Path) -> None:
    root = tmp_path / "AID"
    shutil.copytree(AID, root, ignore=shutil.ignore_patterns("*.py"))
    (root / "multilabel_correct_final.csv").write_bytes(b"")
    with pytest.raises(ValueError, match=r"multilabel_correct_final\.csv: the file is empty"):
        AIDIndex(root).split("train")


def test_unparsable_tables_name_the_file(tmp_path: Path) -> None:
    ragged = write_csv(tmp_path / "ragged.csv", "image_id,class_name", ["img_0,Pastures,extra"])
    with pytest.raises(LabelFileError, match=rf"{ragged}: cannot parse the CSV"):
        read_table(ragged)
    fake = tmp_path / "labels.parquet"
    fake.write_text("image_id,class_name\n")
    with pytest.raises(LabelFileError, match=rf"{fake}: cannot read the parquet file"):
        read_table(fake)


# ------------------------------------------------ item 16: counts of the split
def test_missing_labels_are_counted_over_the_split_alone(tmp_path: Path) -> None:
    train = AIDIndex(AID).split("train").ids.tolist()
    val = AIDIndex(AID).split("val").ids.tolist()
    lines = (AID / MANUAL).read_text().splitlines()
    dropped = {train[2], train[7]}
    kept = [line for line in lines[1:] if line.split(",")[0] not in dropped]
    path = write_csv(tmp_path / "partial.csv", lines[0], kept)
    assert any(line.split(",")[0] in val for line in kept)  # the carve-out rows are there
    with pytest.raises(LabelFileError) as error:
        aid_manual(path)
    message = str(error.value)
    assert f"2 of {len(train)} image(s) of the split have no label" in message
    assert f"{sorted(dropped)}" in message and "np.str_" not in message
    with pytest.warns(UserWarning, match=f"2 of {len(train)} training images have no label"):
        dm = aid_manual(path, unlabelled="drop")
    assert len(dm.datasets["train"]) == len(train) - 2


def test_ids_outside_the_split_and_its_carve_out_are_named(tmp_path: Path) -> None:
    lines = (AID / MANUAL).read_text().splitlines()
    path = write_csv(tmp_path / "extra.csv", lines[0], [*lines[1:], "airport_5,grass,x,y"])
    with pytest.raises(
        LabelFileError, match=r"1 id\(s\) are not in this split \(first: \['airport_5'\]\)"
    ):
        aid_manual(path)


# --------------------------------------------- item 18: ids, not row numbers
def test_one_hot_table_errors_name_the_images(tmp_path: Path) -> None:
    one_hot = np.eye(19, dtype=int)[POSITIVES]
    one_hot[1, 5] = 1  # img_1: two positives
    one_hot[3] = 0  # img_3: none
    path = tmp_path / "hot.csv"  # class names hold commas: quoted by the CSV writer
    columns = {"image_id": IDS, **{name: one_hot[:, c] for c, name in enumerate(BEN19_CLASSES)}}
    pa_csv.write_csv(pa.table(columns), path)
    with pytest.raises(LabelFileError, match=r"exactly one 1.*images \['img_1', 'img_3'\] do not"):
        read_single_positives(path, IDS, BEN19_CLASSES)


def test_npy_errors_name_the_images_of_the_split_rows(tmp_path: Path) -> None:
    one_hot = np.eye(19, dtype=np.uint8)[POSITIVES]
    one_hot[4] = 0
    np.save(tmp_path / "hot.npy", one_hot)
    with pytest.raises(LabelFileError, match=r"rows \[4\] \(images \['img_4'\]\) do not"):
        read_single_positives(tmp_path / "hot.npy", IDS, BEN19_CLASSES)
    np.save(tmp_path / "idx.npy", np.array([0, 1, 19, 2, -1]))
    with pytest.raises(
        LabelFileError, match=r"rows \[2, 4\] \(images \['img_2', 'img_4'\]\) hold \[19, -1\]"
    ):
        read_single_positives(tmp_path / "idx.npy", IDS, BEN19_CLASSES)


def test_class_index_out_of_range_names_the_images(tmp_path: Path) -> None:
    path = write_csv(
        tmp_path / "idx.csv", "image_id,class_index", ["img_0,3", "img_1,17", "img_2,2"]
    )
    with pytest.raises(LabelFileError, match=r"images \['img_1'\] hold \[17\]"):
        read_single_positives(path, IDS[:3], AID17_CLASSES)


def test_no_positive_and_no_area_name_the_images() -> None:
    labels = np.eye(4, dtype=np.uint8)[[0, 1, 2]]
    labels[1] = 0
    with pytest.raises(ValueError, match=r"no positive label \(first: \['img_1'\]\)"):
        spl.random_positives(labels, 0, ids=IDS[:3])
    with pytest.raises(ValueError, match=r"no labelled area \(first: \['img_1'\]\)"):
        spl.dominant_positives(labels, ids=IDS[:3])
    with pytest.raises(ValueError, match=r"first rows: \[1\]"):  # no ids known: rows
        spl.random_positives(labels, 0)
