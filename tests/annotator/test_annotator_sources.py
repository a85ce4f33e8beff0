"""Image sources: AID JPEGs, reBEN patches from the LMDB, synthetic scenes."""

from __future__ import annotations

import io
from pathlib import Path

import lmdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from annotator.sources import AIDSource, UnknownImage, benv2_source, percentile_stretch
from spml_rs.data.benv2_lmdb import encode_value

PATCHES = {  # patch_id -> split (metadata spelling)
    "S2A_MSIL2A_20170613T101031_N9999_R022_T33UUP_75_43": "train",
    "S2A_MSIL2A_20170613T101031_N9999_R022_T33UUP_75_44": "validation",
    "S2B_MSIL2A_20170924T093019_N9999_R136_T35VNL_20_61": "train",
    "S2A_MSIL2A_20170613T101031_N9999_R022_T33UUP_76_43": "test",
}


def test_percentile_stretch_ignores_outliers_and_nodata() -> None:
    rng = np.random.default_rng(0)
    bands = rng.uniform(1000, 2000, (3, 50, 50))
    bands[:, 0, 0] = 60000  # a saturated pixel
    bands[:, 1, :10] = 0  # nodata
    rgb = percentile_stretch(bands)
    assert rgb.shape == (50, 50, 3) and rgb.dtype == np.uint8
    assert np.median(rgb) == pytest.approx(127, abs=12)  # not squashed by the outlier
    assert (rgb == 255).mean() < 0.05 and (rgb == 0).mean() < 0.05 + 10 / 2500


def test_aid_source_lists_ids_in_natural_order(tmp_path: Path) -> None:
    folder = tmp_path / "images_tr" / "Airport"
    folder.mkdir(parents=True)
    for n in (1, 2, 10):
        Image.new("RGB", (8, 8)).save(folder / f"airport_{n}.jpg")
    source = AIDSource(tmp_path, "train")
    assert source.image_ids == ("airport_1", "airport_2", "airport_10")
    assert source.image("airport_10").data[:2] == b"\xff\xd8"  # the JPEG itself
    with pytest.raises(FileNotFoundError, match="images_test"):
        AIDSource(tmp_path, "test")


def test_aid_source_finds_every_image_format_the_dataset_reads(tmp_path: Path) -> None:
    """One scanner: the annotator lists exactly the images ``dataset=aid`` trains on."""
    from spml_rs.data.aid_index import AIDIndex

    folder = tmp_path / "images_tr" / "Port"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
    for n, suffix in enumerate((".jpg", ".jpeg", ".png", ".tif", ".TIFF"), start=1):
        Image.fromarray(pixels).save(folder / f"port_{n}{suffix}")
    source = AIDSource(tmp_path, "train")
    assert source.image_ids == ("port_1", "port_2", "port_3", "port_4", "port_5")
    assert set(source.image_ids) == set(AIDIndex(tmp_path).images("train"))
    assert source.image("port_2").mimetype == "image/jpeg"
    png = source.image("port_3")
    assert png.mimetype == "image/png" and png.data == (folder / "port_3.png").read_bytes()
    for image_id in ("port_4", "port_5"):  # browsers do not show TIFF: re-encoded, lossless
        picture = source.image(image_id)
        assert picture.mimetype == "image/png"
        np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(picture.data))), pixels)
    with pytest.raises(FileNotFoundError, match=r"no AID images under .*images_test"):
        AIDSource(tmp_path, "all")


def write_fake_benv2(root: Path, missing: str | None = None) -> None:
    """metadata.parquet (official columns) and one LMDB with B02/B03/B04 per patch."""
    root.mkdir(parents=True)
    ids = list(PATCHES)
    table = pa.table({
        "patch_id": ids,
        "labels": [["Arable land", "Pastures"]] * len(ids),
        "split": [PATCHES[i] for i in ids],
        "contains_seasonal_snow": [False] * len(ids),
        "contains_cloud_or_shadow": [False] * len(ids),
    })  # fmt: skip
    pq.write_table(table, root / "metadata.parquet")
    rng = np.random.default_rng(0)
    env = lmdb.open(str(root / "BigEarthNet-V2-LMDB"), map_size=1 << 24)
    with env.begin(write=True) as txn:
        for patch_id in ids:
            if patch_id == missing:
                continue
            bands = {
                b: rng.integers(200, 3000, (120, 120)).astype(np.uint16)
                for b in ("B02", "B03", "B04")
            }
            bands["B04"][:60] = 9000  # a bright half in red only
            txn.put(patch_id.encode(), encode_value(bands))
    env.close()


def test_benv2_patches_render_as_stretched_true_colour(tmp_path: Path) -> None:
    missing = "S2B_MSIL2A_20170924T093019_N9999_R136_T35VNL_20_61"
    write_fake_benv2(tmp_path / "benv2", missing=missing)
    source = benv2_source(tmp_path / "benv2", "train")
    assert source.image_ids == tuple(sorted(i for i, s in PATCHES.items() if s == "train"))
    assert benv2_source(tmp_path / "benv2", "val").image_ids == (
        "S2A_MSIL2A_20170613T101031_N9999_R022_T33UUP_75_44",
    )
    picture = source.image(source.image_ids[0])
    assert picture.mimetype == "image/png"
    rgb = np.asarray(Image.open(io.BytesIO(picture.data)))
    assert rgb.shape == (120, 120, 3)
    assert rgb[:60, :, 0].mean() > 250 and rgb[60:, :, 0].mean() < 130  # red = B04, stretched
    assert abs(float(rgb[..., 1].mean()) - 127) < 20  # green = B03 spans the range
    with pytest.raises(UnknownImage):
        source.image(missing)  # listed in the metadata, absent from the LMDB
    with pytest.raises(UnknownImage):
        source.image("S2A_MSIL2A_20170613T101031_N9999_R022_T33UUP_76_43")  # test split
