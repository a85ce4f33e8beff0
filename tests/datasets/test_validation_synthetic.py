"""Synthetic sizes (issue 12 item 7): 0, negative and non-integer values of every size key are
refused with the key named, before any scene is generated (never the preset's default)."""

from __future__ import annotations

from pathlib import Path

import pytest

from spml_rs.data.synthetic import SyntheticDataModule
from spml_rs.data.synthetic_scenes import SIZE_KEYS


@pytest.mark.parametrize("value", [0, -1, -40, 2.5, True, "10"])
@pytest.mark.parametrize("key", SIZE_KEYS)
def test_every_size_key_refuses_non_positive_and_non_integer_values(
    tmp_path: Path, key: str, value: object
) -> None:
    with pytest.raises(ValueError, match=rf"synthetic sizes must be positive integers.*'{key}'"):
        SyntheticDataModule(root=str(tmp_path), **{key: value})  # type: ignore[arg-type]
    assert not list(tmp_path.rglob("*.npz"))


def test_the_four_size_keys_are_the_documented_ones() -> None:
    assert set(SIZE_KEYS) == {"num_train", "num_val", "num_test", "image_size"}
