"""AID: nothing silently wrong (issue 12 items 10, 11, 17, 18): images checked at setup, before
training, with their paths; integer-valued float cells; image ids, not row numbers, in errors."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from spml_rs.data.aid import AIDDataModule
from spml_rs.data.aid_index import AIDFormatError, AIDIndex, read_multilabel_csv
from spml_rs.data.verify import SplitCheckError
from spml_testing import DATA

FIXTURE = DATA / "aid"
CSV = "multilabel_correct_final.csv"


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """A writable copy of the fixture, for tests that break it."""
    out = tmp_path / "AID"
    shutil.copytree(FIXTURE, out, ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    return out


def module(root: Path, **kwargs: object) -> AIDDataModule:
    return AIDDataModule(root=str(root), **{"label_mode": "full", **kwargs})  # type: ignore[arg-type]


def image_of(root: Path, split: str, position: int = 0) -> Path:
    return Path(AIDIndex(root).split(split).paths[position])


def truncate(path: Path, size: int) -> None:
    path.write_bytes(path.read_bytes()[:size])


# ------------------------------------------------- items 10, 11: image checks
def test_a_corrupt_first_image_is_named_even_without_checks(root: Path) -> None:
    first = image_of(root, "test")
    truncate(first, 100)  # PIL: "Truncated File Read" while parsing the header
    with pytest.raises(AIDFormatError, match=rf"cannot read image {first}.*Truncated"):
        module(root, verify="none").setup("test")


def test_an_undecodable_val_image_fails_at_fit_setup_with_its_path(root: Path) -> None:
    bad = image_of(root, "val", 2)
    bad.write_bytes(b"this is not a JPEG")
    dm = module(root)
    with pytest.raises(SplitCheckError, match=rf"(?s)1 of 5 image\(s\) of split 'val'.*{bad}"):
        dm.setup("fit")
    assert not dm.datasets


def test_a_test_image_is_checked_at_fit_setup(root: Path) -> None:
    bad = image_of(root, "test", 3)
    bad.unlink()
    Image.new("RGB", (64, 64)).save(bad, format="PNG")  # a PNG named .jpg
    with pytest.raises(SplitCheckError, match=rf"(?s)split 'test'.*{bad}.*PNG, expected JPEG"):
        module(root).setup("fit")


def test_a_truncated_image_body_needs_verify_full(root: Path) -> None:
    bad = image_of(root, "test", 1)
    truncate(bad, bad.stat().st_size // 2)  # the header is intact
    module(root).setup("fit")  # header decode passes
    with pytest.raises(SplitCheckError, match=rf"(?s)split 'test'.*{bad}"):
        module(root, verify="full").setup("fit")


def test_every_failure_is_listed_not_only_the_first(root: Path) -> None:
    bad = [image_of(root, "train", k) for k in (0, 4, 9)]
    for path in bad:
        path.write_bytes(b"")
    with pytest.raises(SplitCheckError) as error:
        module(root).setup("fit")
    message = str(error.value)
    assert "3 of 19 image(s) of split 'train'" in message
    assert all(str(path) in message for path in bad)


# ------------------------------------------------------ item 17: float cells
def test_integer_valued_float_cells_are_accepted(root: Path) -> None:
    lines = (root / CSV).read_text().splitlines()
    cells = lines[1].split(",")
    one = cells.index("1", 1)
    cells[one] = "1.0"  # pyarrow now reads the whole column as float
    lines[1] = ",".join(cells)
    (root / CSV).write_text("\n".join(lines) + "\n")
    ids, labels = read_multilabel_csv(root / CSV)
    expected_ids, expected = read_multilabel_csv(FIXTURE / CSV)
    assert ids.tolist() == expected_ids.tolist()
    np.testing.assert_array_equal(labels, expected)


def test_only_the_truly_bad_cells_are_reported(root: Path) -> None:
    lines = (root / CSV).read_text().splitlines()
    rows = [line.split(",") for line in lines]
    rows[1][3], rows[2][3], rows[5][3] = "1.0", "0.5", "0.0"
    (root / CSV).write_text("\n".join(",".join(r) for r in rows) + "\n")
    with pytest.raises(AIDFormatError) as error:
        read_multilabel_csv(root / CSV)
    message = str(error.value)
    assert f"column {rows[0][3]!r} must hold 0 or 1" in message
    assert f"{rows[2][0]}=0.5" in message
    assert rows[1][0] not in message and rows[5][0] not in message  # 1.0 and 0.0 are fine


# ------------------------------------------------ item 18: ids, not row numbers
def test_an_image_without_a_positive_is_named_by_id(root: Path) -> None:
    train_id = str(AIDIndex(root).split("train").ids[3])
    lines = (root / CSV).read_text().splitlines()
    at = next(k for k, line in enumerate(lines) if line.startswith(f"{train_id},"))
    lines[at] = ",".join([train_id, *["0"] * 17])
    (root / CSV).write_text("\n".join(lines) + "\n")
    dm = module(root, label_mode="random")
    with pytest.raises(
        ValueError, match=rf"1 image\(s\) have no positive label \(first: \['{train_id}'\]\)"
    ):
        dm.setup("fit")
