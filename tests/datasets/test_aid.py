"""AID-multilabel loader on the committed fake folder (tests/data/aid, written by data.py)."""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from spml_rs.data.aid import AIDDataModule
from spml_rs.data.aid_index import AIDFormatError, carve_validation, read_multilabel_csv
from spml_rs.data.classes import AID17_CLASSES
from spml_rs.label_files import LabelFileError
from spml_testing import DATA

FIXTURE = DATA / "aid"
NUM_TRAIN_FOLDER, NUM_TEST = 24, 12
MANUAL_FILE = "single_positive_labels_manual.csv"


def module(root: Path = FIXTURE, **kwargs: object) -> AIDDataModule:
    return AIDDataModule(root=str(root), **{"label_mode": "full", **kwargs})


@pytest.fixture
def copy(tmp_path: Path) -> Path:
    """A writable copy of the fixture, for tests that break it."""
    root = tmp_path / "AID"
    shutil.copytree(FIXTURE, root, ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    return root


# ------------------------------------------------------------------ labels
def test_comma_and_tab_copies_parse_alike() -> None:
    ids_c, labels_c = read_multilabel_csv(FIXTURE / "multilabel_correct_final.csv")
    ids_t, labels_t = read_multilabel_csv(FIXTURE / "multilabel.csv")
    assert "\t" in (FIXTURE / "multilabel.csv").read_text().splitlines()[0]
    assert ids_c.tolist() == ids_t.tolist() and len(ids_c) == NUM_TRAIN_FOLDER + NUM_TEST
    assert labels_c.shape == (36, 17) and labels_c.dtype == np.uint8
    meadow = np.char.startswith(ids_c, "meadow_")
    np.testing.assert_array_equal(labels_c[~meadow], labels_t[~meadow])
    # The tab copy is the "original" release: every Meadow image is grass + pavement.
    grass_pavement = [AID17_CLASSES.index("grass"), AID17_CLASSES.index("pavement")]
    assert (labels_t[meadow].sum(axis=1) == 2).all()
    assert (labels_t[meadow][:, grass_pavement] == 1).all()
    assert not (labels_c[meadow][:, grass_pavement] == 1).all()


def test_corrected_file_preferred_then_fallback(copy: Path) -> None:
    corrected = module(copy)
    assert corrected.index.label_csv().name == "multilabel_correct_final.csv"
    (copy / "multilabel_correct_final.csv").unlink()
    original = module(copy)
    assert original.index.label_csv().name == "multilabel.csv"
    ids, labels = original.index.split_labels("test")
    assert np.flatnonzero(labels[ids.tolist().index("meadow_5")]).tolist() == [8, 10]
    explicit = module(copy, label_file="multilabel.csv")
    assert explicit.index.label_csv() == copy / "multilabel.csv"
    (copy / "multilabel.csv").unlink()
    with pytest.raises(FileNotFoundError, match=r"multilabel_correct_final\.csv"):
        module(copy).index.label_csv()


# ------------------------------------------------------------------ splits
def test_validation_carve_out_is_seeded_and_disjoint() -> None:
    first, again, other = module(), module(), module(val_seed=1)
    train, val = first.index.split("train").ids, first.index.split("val").ids
    assert len(val) == round(0.20125 * NUM_TRAIN_FOLDER) == 5
    assert len(train) == NUM_TRAIN_FOLDER - 5
    assert not set(train) & set(val)
    on_disk = {p.stem for p in (FIXTURE / "images_tr").glob("*/*.jpg")}
    assert set(train) | set(val) == on_disk
    assert again.index.split("val").ids.tolist() == val.tolist()
    assert other.index.split("val").ids.tolist() != val.tolist()
    assert len(module(val_size=3).index.split("val").ids) == 3
    test_ids = set(first.index.split("test").ids)
    assert len(test_ids) == NUM_TEST and not test_ids & on_disk


def test_default_fraction_gives_the_common_split_sizes() -> None:
    mask = carve_validation(2400, 0.20125, None, seed=0)
    assert mask.sum() == 483 and (~mask).sum() == 1917
    np.testing.assert_array_equal(mask, carve_validation(2400, 0.20125, None, seed=0))


def test_labels_follow_their_image_ids() -> None:
    ids, labels = read_multilabel_csv(FIXTURE / "multilabel_correct_final.csv")
    by_id = dict(zip(ids.tolist(), labels, strict=True))
    dm = module()
    for split in ("train", "val", "test"):
        split_ids, split_labels = dm.index.split_labels(split)
        for image_id, row in zip(split_ids, split_labels, strict=True):
            np.testing.assert_array_equal(row, by_id[image_id])


# ------------------------------------------------------------------ images
def test_decode_and_normalize_shapes_and_values() -> None:
    dm = module(image_size=40)
    dm.setup("fit")
    sample = dm.datasets["train"][0]
    assert sample["image"].dtype == torch.uint8 and sample["image"].shape == (3, 64, 64)
    path = dm.index.split("train").paths[0]
    expected = np.asarray(Image.open(path).convert("RGB")).transpose(2, 0, 1)
    # Decoders may round differently across libjpeg builds; allow one grey level.
    assert np.abs(sample["image"].numpy().astype(int) - expected).max() <= 1
    batch = next(iter(dm.train_dataloader()))
    out = dm.normalize(batch["image"])
    assert out.shape == (len(batch["image"]), 3, 40, 40) and out.dtype == torch.float32
    # A constant image stays constant through the antialiased resize: (v - mean) / std.
    flat = torch.full((1, 3, 64, 64), 128, dtype=torch.uint8)
    mean = torch.tensor([0.485, 0.456, 0.406]) * 255
    std = torch.tensor([0.229, 0.224, 0.225]) * 255
    torch.testing.assert_close(dm.normalize(flat)[0, :, 5, 7], (128 - mean) / std)
    assert module(image_size=None).normalize(flat).shape == (1, 3, 64, 64)


def test_worker_resizes_only_images_of_another_size(copy: Path) -> None:
    # One image of another size and format (PNG goes through PIL, JPEGs through torchvision).
    odd = copy / "images_tr" / "Port" / "port_4.jpg"
    Image.open(odd).resize((80, 72)).save(odd.with_suffix(".png"))
    odd.unlink()
    dm = module(copy, val_size=1, val_seed=3)
    dm.setup("fit")
    train = dm.datasets["train"]
    shapes = {tuple(train[i]["image"].shape) for i in range(len(train))}
    assert shapes == {(3, 64, 64)}
    assert "port_4" in train.image_ids.tolist()
    sized = module(copy, decode_size=32)
    sized.setup("test")
    assert sized.datasets["test"][0]["image"].shape == (3, 32, 32)


# ------------------------------------------------------------- label modes
def test_manual_file_covers_official_train_folder() -> None:
    dm = module(label_mode="manual", label_path=str(FIXTURE / "single_positive_labels_manual.csv"))
    targets = dm.train_targets()
    ids = dm.index.split("train").ids.tolist()
    assert targets.shape == (len(ids), 17)
    assert ((targets == 1).sum(axis=1) == 1).all() and ((targets == -1).sum(axis=1) == 16).all()
    # Humans may pick a wrong class; Manual keeps it (airport_3 is wrong in the fixture).
    row = ids.index("airport_3")
    assert dm.index.split("train").labels[row, targets[row].argmax()] == 0


def test_manual_file_over_carved_train_only(tmp_path: Path) -> None:
    dm = module()
    train_ids = dm.index.split("train").ids.tolist()
    lines = (FIXTURE / "single_positive_labels_manual.csv").read_text().splitlines()
    kept = [lines[0]] + [line for line in lines[1:] if line.split(",")[0] in train_ids]
    path = tmp_path / "carved.csv"
    path.write_text("\n".join(kept) + "\n")
    targets = module(label_mode="manual", label_path=str(path)).train_targets()
    assert targets.shape == (len(train_ids), 17)


def test_manual_one_hot_form_with_aid_id_column(tmp_path: Path) -> None:
    """The id + one-hot form (tab-separated, ``IMAGE\\LABEL`` ids) over the train folder."""
    reference = module(label_mode="manual", label_path=str(FIXTURE / MANUAL_FILE))
    folder_ids = sorted(p.stem for p in (FIXTURE / "images_tr").glob("*/*.jpg"))
    rows = (FIXTURE / MANUAL_FILE).read_text().splitlines()[1:]
    chosen = {line.split(",")[0]: line.split(",")[1] for line in rows}
    lines = ["IMAGE\\LABEL\t" + "\t".join(AID17_CLASSES)]
    for image_id in folder_ids:
        lines.append(
            "\t".join([image_id, *("1" if c == chosen[image_id] else "0" for c in AID17_CLASSES)])
        )
    path = tmp_path / "one_hot.csv"
    path.write_text("\n".join(lines) + "\n")
    one_hot = module(label_mode="manual", label_path=str(path))
    np.testing.assert_array_equal(one_hot.train_targets(), reference.train_targets())


def test_random_labels_are_true_and_seeded() -> None:
    first, again = module(label_mode="random"), module(label_mode="random")
    targets = first.train_targets()
    np.testing.assert_array_equal(targets, again.train_targets())
    labels = first.index.split("train").labels
    assert (labels[targets == 1] == 1).all()


# ------------------------------------------------------------------ errors
def test_dominant_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="no pixel masks"):
        module(label_mode="dominant")


def test_missing_image_is_named(copy: Path) -> None:
    (copy / "images_test" / "Beach" / "beach_6.jpg").unlink()
    with pytest.raises(AIDFormatError, match=r"missing.*beach_6"):
        module(copy).index.split("train")


def test_image_without_label_row_is_named(copy: Path) -> None:
    shutil.copy(copy / "images_tr" / "Port" / "port_1.jpg", copy / "images_tr" / "Port" / "x_9.jpg")
    with pytest.raises(AIDFormatError, match=r"no label row.*x_9"):
        module(copy).index.split("train")


def test_corrupt_image_is_named(copy: Path) -> None:
    (copy / "images_test" / "Port" / "port_5.jpg").write_bytes(b"not a jpeg")
    dm = module(copy, verify="none")  # the read-time error (setup checks: test_validation_aid)
    dm.setup("test")
    row = dm.datasets["test"].image_ids.tolist().index("port_5")
    with pytest.raises(AIDFormatError, match=r"cannot decode image .*port_5\.jpg"):
        dm.datasets["test"][row]


def test_bad_header_names_file_and_column(copy: Path) -> None:
    path = copy / "multilabel_correct_final.csv"
    text = path.read_text().replace("airplane,bare-soil", "bare-soil,airplane", 1)
    path.write_text(text)
    with pytest.raises(
        AIDFormatError, match=r"multilabel_correct_final.csv.*column 1 is 'bare-soil'"
    ):
        module(copy).index.split("train")


def test_non_binary_value_names_row(copy: Path) -> None:
    path = copy / "multilabel_correct_final.csv"
    lines = path.read_text().splitlines()
    lines[3] = lines[3].rsplit(",", 1)[0] + ",2"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(AIDFormatError, match=r"'water' must hold 0 or 1.*airport_3"):
        module(copy).index.split("train")


def test_unknown_class_in_manual_file(tmp_path: Path) -> None:
    text = (FIXTURE / "single_positive_labels_manual.csv").read_text()
    path = tmp_path / "manual.csv"
    path.write_text(text.replace(",grass,", ",meadow,", 1))
    with pytest.raises(LabelFileError, match=r"unknown class name.*meadow"):
        module(label_mode="manual", label_path=str(path)).train_targets()


def test_manual_file_with_test_ids_is_rejected(tmp_path: Path) -> None:
    text = (FIXTURE / "single_positive_labels_manual.csv").read_text()
    path = tmp_path / "manual.csv"
    path.write_text(text + "port_6,ship,someone,2025-01-02T00:00:00\n")
    with pytest.raises(LabelFileError, match="not in this split"):
        module(label_mode="manual", label_path=str(path)).train_targets()


def test_empty_splits(copy: Path) -> None:
    with pytest.raises(AIDFormatError, match="val and train splits must both be non-empty"):
        module(val_fraction=0.0).index.split("train")
    with pytest.raises(AIDFormatError, match="val and train splits must both be non-empty"):
        module(val_size=NUM_TRAIN_FOLDER).index.split("train")
    for image in (copy / "images_test").glob("*/*.jpg"):
        image.unlink()
    csv = copy / "multilabel_correct_final.csv"
    lines = csv.read_text().splitlines()
    lines = [line for line in lines if line.split(",")[0].rsplit("_", 1)[-1] not in ("5", "6")]
    csv.write_text("\n".join(lines) + "\n")
    with pytest.raises(AIDFormatError, match=r"test split is empty.*images_test"):
        module(copy).index.split("train")


# ----------------------------------------------------------------- fixture
def test_fixture_generator_reproduces_the_committed_labels(tmp_path: Path) -> None:
    spec = importlib.util.spec_from_file_location("aid_fixture", FIXTURE / "data.py")
    assert spec is not None and spec.loader is not None
    generator = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(generator)
    generator.main(tmp_path, size=16)
    for name in (
        "multilabel_correct_final.csv",
        "multilabel.csv",
        "single_positive_labels_manual.csv",
    ):
        assert (tmp_path / name).read_text() == (FIXTURE / name).read_text()
    assert Image.open(tmp_path / "images_tr" / "Port" / "port_1.jpg").size == (16, 16)
    assert tuple(generator.CLASSES) == AID17_CLASSES
