"""``spml_rs.predict`` end to end on the three input kinds, with fixtures in the real formats.

The reBEN LMDB and the AID folders are the fixtures of ``tests/data/benv2`` and
``tests/data/aid``; the GeoTIFF patches (``tests/data/geotiff``) hold the same reBEN
patches as 12-band files, so the two readers can be compared image for image.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
import pytest
import rasterio
import torch
from affine import Affine
from entry_points import read_metrics, run_entry
from PIL import Image
from sklearn.metrics import average_precision_score

import spml_rs
from spml_rs import checkpoints
from spml_rs.data.aid_index import read_multilabel_csv
from spml_rs.data.benv2_bands import BAND_SETS
from spml_rs.data.benv2_index import read_split_index
from spml_rs.data.unlabelled import GeoTIFFPatches
from spml_rs.data.unlabelled_geotiff import GeoTIFFBandError
from spml_testing import DATA, DATASET_TINY

LMDB = DATA / "benv2" / "BigEarthNet-V2-LMDB"
METADATA = DATA / "benv2" / "metadata.parquet"
GEOTIFF = DATA / "geotiff" / "patches"
S2_ALL = BAND_SETS["s2_all"]


def _train(tmp_path_factory: pytest.TempPathFactory, cache: Path, dataset: str) -> Path:
    run = tmp_path_factory.mktemp(dataset) / "run"
    args = (*DATASET_TINY[dataset], "method=an", f"hydra.run.dir={run}")
    run_entry("train", *args, cache=cache, cwd=run.parent)
    return run


@pytest.fixture(scope="module")
def benv2_run(tmp_path_factory: pytest.TempPathFactory, cache_dir: Path) -> Path:
    return _train(tmp_path_factory, cache_dir, "benv2")


@pytest.fixture(scope="module")
def aid_run(tmp_path_factory: pytest.TempPathFactory, cache_dir: Path) -> Path:
    return _train(tmp_path_factory, cache_dir, "aid")


def _best(run: Path) -> Path:
    (best,) = (run / "checkpoints").glob("best*.ckpt")
    return best


def _predict(run: Path | str, data: Path, **options: Any) -> pa.Table:
    ckpt = _best(Path(run)) if Path(run).is_dir() else run
    table: pa.Table = spml_rs.predict(ckpt, data, progress=False, **options)
    return table


def _probs(table: pa.Table) -> dict[str, np.ndarray]:
    columns = [c for c in table.column_names if c.startswith("p_")]
    values = np.stack([table.column(c).to_numpy() for c in columns], axis=1)
    return dict(zip(table.column("image_id").to_pylist(), values, strict=True))


def _class_names(table: pa.Table) -> list[str]:
    return [c[2:] for c in table.column_names if c.startswith("p_")]


def _mean_ap(probs: np.ndarray, labels: np.ndarray) -> float:
    """Macro AP over the classes with a positive (the convention of spml_rs.metrics)."""
    keep = labels.sum(axis=0) > 0
    return float(average_precision_score(labels[:, keep], probs[:, keep], average="macro"))


# ---------------------------------------------------------------------- LMDB
def test_lmdb_without_metadata_predicts_every_sentinel2_patch(benv2_run: Path) -> None:
    table = _predict(benv2_run, LMDB)
    every = [
        *read_split_index(METADATA, "train").patch_ids,
        *read_split_index(METADATA, "val").patch_ids,
        *read_split_index(METADATA, "test").patch_ids,
        *pq.read_table(METADATA.with_name(
            "metadata_for_patches_with_snow_cloud_or_shadow.parquet"
        )).column("patch_id").to_pylist(),
    ]  # fmt: skip
    assert sorted(table.column("image_id").to_pylist()) == sorted(every)  # no S1, no maps
    names = _class_names(table)
    assert table.column_names == ["image_id", *(f"p_{n}" for n in names), "predicted"]
    assert len(names) == 19 and table.schema.field("predicted").type == pa.list_(pa.string())
    for row, probs in zip(table.to_pylist(), _probs(table).values(), strict=True):
        assert ((probs >= 0) & (probs <= 1)).all()
        assert row["predicted"] == [n for n, p in zip(names, probs, strict=True) if p > 0.5]


def test_lmdb_with_metadata_scores_its_split_as_the_training_test_did(benv2_run: Path) -> None:
    table = _predict(benv2_run, LMDB, metadata=str(METADATA), split="test")
    test = read_split_index(METADATA, "test")
    assert table.column("image_id").to_pylist() == test.patch_ids.tolist()
    probs = np.stack(list(_probs(table).values()))
    expected = read_metrics(benv2_run / "results.json")["test/mAP_macro"]
    assert _mean_ap(probs, test.labels) == pytest.approx(expected, abs=1e-6)


# ------------------------------------------------------------------- GeoTIFF
def test_geotiff_patches_give_the_predictions_of_their_lmdb_patches(benv2_run: Path) -> None:
    from_tiffs = _probs(_predict(benv2_run, GEOTIFF))
    from_lmdb = _probs(_predict(benv2_run, LMDB))
    assert len(from_tiffs) == 4  # one file stores its bands in reverse order: found by name
    for patch_id, probs in from_tiffs.items():
        np.testing.assert_allclose(probs, from_lmdb[patch_id], atol=1e-6)


def _write_tif(path: Path, bands: list[str | None], side: int = 120, pixel: float = 10) -> Path:
    profile = {
        "driver": "GTiff", "height": side, "width": side, "count": len(bands), "dtype": "uint16",
        "crs": "EPSG:32633", "transform": Affine(pixel, 0, 400_000, 0, -pixel, 5_500_000),
    }  # fmt: skip
    with rasterio.open(path, "w", **profile) as dst:
        for i, band in enumerate(bands, start=1):
            dst.write(np.full((side, side), 1000 + i, dtype=np.uint16), i)
            if band:
                dst.set_band_description(i, band)
    return path


def _patches(folder: Path, **kwargs: Any) -> GeoTIFFPatches:
    return GeoTIFFPatches(folder, BAND_SETS["s2"], side=120, **kwargs)


def test_geotiff_bands_are_checked_against_the_trained_ones(tmp_path: Path) -> None:
    cases = {
        "rgb": ([*["B04", "B03", "B02"]], {}, r"lacks \['B05'.*trained on the bands"),
        "twice": ([*S2_ALL, "B02"], {}, r"names \['B02'\] more than once"),
        "anonymous": ([None] * 12, {}, "have no description.*band_names"),
        "small": (list(S2_ALL), {"side": 60}, "60 x 60 px; the model was trained on 120 x 120"),
        "coarse": (list(S2_ALL), {"pixel": 20.0}, "pixels of 20 x 20 m"),
    }
    for name, (bands, shape, message) in cases.items():
        folder = tmp_path / name
        folder.mkdir()
        path = _write_tif(folder / f"{name}.tif", bands, **shape)
        with pytest.raises(GeoTIFFBandError, match=message) as caught:
            _patches(folder)
        assert str(path) in str(caught.value)
    # Files without descriptions: band_names gives their order.
    named = _patches(tmp_path / "anonymous", band_names=S2_ALL)
    image = named[0]["image"]
    assert image.shape == (10, 120, 120) and image.dtype == torch.float32
    # B02 is the second band of the file: 1000 + 2
    assert float(image[0, 0, 0]) == 1002.0


# -------------------------------------------------------------------- images
def test_image_folder_predicts_its_test_images_as_the_training_test_did(aid_run: Path) -> None:
    table = _predict(aid_run, DATA / "aid" / "images_test")  # scene sub-folders
    ids, all_labels = read_multilabel_csv(DATA / "aid" / "multilabel_correct_final.csv")
    row = {image_id: i for i, image_id in enumerate(ids)}
    predicted = table.column("image_id").to_pylist()
    labels = all_labels[[row[i] for i in predicted]]
    probs = np.stack([_probs(table)[i] for i in predicted])
    expected = read_metrics(aid_run / "results.json")["test/mAP_macro"]
    assert _mean_ap(probs, labels) == pytest.approx(expected, abs=1e-6)


def test_a_flat_folder_of_jpeg_and_png_files(aid_run: Path, tmp_path: Path) -> None:
    nested = _probs(_predict(aid_run, DATA / "aid" / "images_test"))
    flat = tmp_path / "flat"
    flat.mkdir()
    sources = sorted((DATA / "aid" / "images_test").glob("*/*.jpg"))[:3]
    for source in sources[:2]:
        shutil.copy(source, flat / source.name)
    with Image.open(sources[2]) as image:  # PNG goes through PIL, losslessly
        image.save(flat / f"{sources[2].stem}.png")
    got = _probs(_predict(aid_run, flat))
    assert sorted(got) == sorted(s.stem for s in sources)
    for image_id, probs in got.items():
        np.testing.assert_allclose(probs, nested[image_id], atol=1e-6)


def test_an_input_the_model_was_not_trained_on_is_refused(benv2_run: Path, aid_run: Path) -> None:
    with pytest.raises(
        ValueError, match=r"input_kind=images: needs a model trained with dataset=aid"
    ):
        _predict(benv2_run, DATA / "aid" / "images_test")
    with pytest.raises(
        ValueError, match=r"input_kind=lmdb: needs a model trained with dataset=benv2"
    ):
        _predict(aid_run, LMDB)


# ---------------------------------------------------------- thresholds, output
def test_command_line_with_validation_thresholds_and_no_silent_overwrite(
    benv2_run: Path, tmp_path: Path, cache_dir: Path
) -> None:
    output = tmp_path / "predictions.csv"
    args = (
        "ckpt_path=best", f"train_dir={benv2_run}", f"input={LMDB}", f"metadata={METADATA}",
        "split=test", "thresholds=val", f"output={output}", f"hydra.run.dir={tmp_path / 'job'}",
    )  # fmt: skip
    done = run_entry("predict", *args, cache=cache_dir, cwd=tmp_path)
    assert "thresholds: tuned on the validation split, stored in" in done.stdout
    table = pa_csv.read_csv(output)
    names = _class_names(table)
    stored = torch.load(_best(benv2_run), map_location="cpu", weights_only=False)
    thresholds = stored["state_dict"]["val_thresholds"].numpy()
    for row in table.to_pylist():
        probs = np.array([row[f"p_{n}"] for n in names])
        above = [n for n, p, t in zip(names, probs, thresholds, strict=True) if p > t]
        assert (row["predicted"] or "") == ";".join(above)
    before = output.read_bytes()
    refused = run_entry("predict", *args, cache=cache_dir, cwd=tmp_path, ok=False)
    assert f"output {output} exists; pass overwrite=true" in refused.stderr
    assert output.read_bytes() == before


def test_thresholds_are_tuned_and_stored_next_to_an_older_checkpoint(
    benv2_run: Path, tmp_path: Path
) -> None:
    old = tmp_path / "old.ckpt"
    checkpoint = torch.load(_best(benv2_run), map_location="cpu", weights_only=False)
    stored = checkpoint["state_dict"].pop("val_thresholds")
    torch.save(checkpoint, old)
    table = _predict(old, LMDB, thresholds="val")
    path = checkpoints.thresholds_file(old)
    names = _class_names(table)
    tuned = checkpoints.read_thresholds(path, names)
    # The same weights on the same validation split: the thresholds of training.
    torch.testing.assert_close(tuned, stored.float(), atol=1e-6, rtol=0)
    assert json.loads(path.read_text())["validation_positives"]
    # Later calls read the file; overwrite=True tunes it again.
    checkpoints.write_thresholds(
        path, torch.full((19,), 0.999), names, source="hand", overwrite=True
    )
    assert all(
        p == [] for p in _predict(old, LMDB, thresholds="val").column("predicted").to_pylist()
    )
    _predict(old, LMDB, thresholds="val", overwrite=True)
    torch.testing.assert_close(checkpoints.read_thresholds(path, names), tuned)
