"""AID's image decoding: simplejpeg for JPEGs, PIL's pixels exactly, no deprecated torchvision I/O."""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from spml_rs.data.aid import AIDDataModule, decode
from spml_rs.data.aid_index import AIDFormatError
from spml_testing import DATA

FIXTURE = DATA / "aid"


def pil_rgb(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB")).transpose(2, 0, 1)


def scene(side: int, seed: int = 0) -> np.ndarray:
    """A smooth RGB scene with grain, (side, side, 3) uint8."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:side, 0:side] / side
    base = np.stack([128 + 100 * np.sin(6 * x), 128 + 100 * np.cos(5 * y), 255 * x * y], axis=-1)
    return np.clip(base + rng.normal(0, 10, base.shape), 0, 255).astype(np.uint8)


def test_fixture_jpegs_decode_to_pils_pixels_without_deprecation_warnings() -> None:
    paths = sorted(FIXTURE.glob("images_*/*/*.jpg"))
    assert len(paths) >= 30
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)  # torchvision.io warns since 0.29
        for path in paths:
            image = decode(str(path))
            assert image.dtype == torch.uint8 and image.shape[0] == 3
            assert image.is_contiguous()
            assert np.array_equal(image.numpy(), pil_rgb(path))


@pytest.mark.parametrize("subsampling", [0, 2])  # 4:4:4 and 4:2:0 chroma
def test_aid_size_jpegs_equal_pil(tmp_path: Path, subsampling: int) -> None:
    path = tmp_path / "scene.jpeg"
    Image.fromarray(scene(600)).save(path, quality=90, subsampling=subsampling)
    image = decode(str(path))
    assert tuple(image.shape) == (3, 600, 600)
    assert np.array_equal(image.numpy(), pil_rgb(path))


@pytest.mark.parametrize("mode", ["L", "CMYK"])
def test_grey_and_cmyk_jpegs_become_rgb_like_pils(tmp_path: Path, mode: str) -> None:
    path = tmp_path / f"{mode}.JPG"  # the suffix in any case
    Image.fromarray(scene(48)).convert(mode).save(path, quality=85)
    image = decode(str(path))
    assert tuple(image.shape) == (3, 48, 48)
    assert np.array_equal(image.numpy(), pil_rgb(path))


def test_png_goes_through_pil(tmp_path: Path) -> None:
    path = tmp_path / "scene.png"
    Image.fromarray(scene(32)).save(path)
    assert np.array_equal(decode(str(path)).numpy(), scene(32).transpose(2, 0, 1))


def test_a_damaged_jpeg_names_its_path(tmp_path: Path) -> None:
    root = tmp_path / "aid"
    shutil.copytree(FIXTURE, root)
    victim = sorted((root / "images_tr").glob("*/*.jpg"))[0]
    victim.write_bytes(victim.read_bytes()[: victim.stat().st_size // 2])  # cut in half
    datamodule = AIDDataModule(root=str(root), label_mode="full", verify="none")
    datamodule.setup("fit")
    found = [
        (dataset, row)
        for dataset in (datamodule.datasets["train"], datamodule.datasets["val"])
        for row, path in enumerate(dataset.paths)
        if Path(path).name == victim.name
    ]
    assert len(found) == 1
    dataset, row = found[0]
    with pytest.raises(AIDFormatError, match=rf"cannot decode image .*{victim.name}"):
        dataset[row]
    with pytest.raises(AIDFormatError, match=rf"cannot decode image .*{victim.name}"):
        dataset.read_batch([row])  # the training loaders' batch reads
