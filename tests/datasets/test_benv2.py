"""reBEN dataset: reads equal the source GeoTIFFs, splits, layouts, class order, clear errors."""

from __future__ import annotations

import multiprocessing
import pickle
import shutil
from pathlib import Path

import lmdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import tifffile
import torch

from spml_rs.data.benv2 import BENv2DataModule
from spml_rs.data.benv2_bands import BAND_SETS, BAND_STATS, BandLayout
from spml_rs.data.benv2_builder import s1_product, s2_product
from spml_rs.data.benv2_lmdb import CorruptValueError, LazyLMDB, decode_value, encode_value
from spml_rs.data.classes import (
    BEN19_ALPHABETICAL,
    BEN19_CLASSES,
    NO_CLASS,
    ben19_alphabetical_permutation,
    class_pixel_counts,
    clc_lookup_table,
)
from spml_testing import DATA, put_lmdb_value

FIXTURE = DATA / "benv2"
LMDB_DIR = "BigEarthNet-V2-LMDB"


def source_band(patch_id: str, s1_name: str | None, band: str) -> np.ndarray:
    """A band as stored in the fake raw GeoTIFFs."""
    if band in ("VV", "VH"):
        assert s1_name is not None
        return tifffile.imread(
            FIXTURE / "BigEarthNet-S1" / s1_product(s1_name) / s1_name / f"{s1_name}_{band}.tif"
        )
    folder = FIXTURE / "BigEarthNet-S2" / s2_product(patch_id) / patch_id
    return tifffile.imread(folder / f"{patch_id}_{band}.tif")


def copy_root(tmp_path: Path) -> Path:
    """A writable copy of the fixture's metadata and LMDB."""
    root = tmp_path / "benv2"
    root.mkdir()
    for name in ("metadata.parquet", "metadata_for_patches_with_snow_cloud_or_shadow.parquet"):
        shutil.copy(FIXTURE / name, root / name)
    shutil.copytree(FIXTURE / LMDB_DIR, root / LMDB_DIR)
    return root


def datamodule(root: Path = FIXTURE, **kwargs: object) -> BENv2DataModule:
    kwargs.setdefault("label_mode", "full")
    dm = BENv2DataModule(root=str(root), **kwargs)  # type: ignore[arg-type]
    dm.setup()
    return dm


@pytest.mark.parametrize("bands", sorted(BAND_SETS))
def test_reads_equal_the_source_geotiffs(bands: str) -> None:
    dm = datamodule(bands=bands)
    for split in ("train", "val", "test"):
        ds = dm.datasets[split]
        batch = torch.stack([ds[i]["image"] for i in range(len(ds))])
        image = dm.layout.unpack(batch)
        assert image.shape == (len(ds), len(BAND_SETS[bands]), 120, 120)
        for row in range(len(ds)):
            s1 = None if ds.s1_names is None else str(ds.s1_names[row])
            native = dm.layout.split(batch[row].numpy())
            for channel, band in enumerate(dm.layout.bands):
                source = source_band(str(ds.image_ids[row]), s1, band)
                assert native[band].dtype == source.dtype
                np.testing.assert_array_equal(native[band], source)
                factor = 120 // source.shape[0]  # nearest = pixel replication
                expected = np.repeat(np.repeat(source, factor, 0), factor, 1).astype(np.float32)
                np.testing.assert_array_equal(image[row, channel].numpy(), expected)


def test_normalize_uses_the_published_band_statistics() -> None:
    dm = datamodule(bands="s1s2")
    batch = torch.stack([dm.datasets["train"][i]["image"] for i in range(3)])
    raw, out = dm.layout.unpack(batch), dm.normalize(batch)
    assert dm.layout.bands[:3] == ("VV", "VH", "B02")
    # Values from docs/datasets_benv2.md (ConfigILM BENv2_utils).
    torch.testing.assert_close(out[:, 2], (raw[:, 2] - 438.3721) / 607.0269)
    torch.testing.assert_close(out[:, 0], (raw[:, 0] - -12.6439) / 5.1335)
    for channel, band in enumerate(dm.layout.bands):
        mean, std = BAND_STATS[band]
        torch.testing.assert_close(out[:, channel], (raw[:, channel] - mean) / std)


def test_bilinear_changes_only_the_upsampled_bands() -> None:
    nearest, bilinear = BandLayout("s2", "nearest"), BandLayout("s2", "bilinear")
    dm = datamodule()
    batch = torch.stack([dm.datasets["train"][i]["image"] for i in range(2)])
    a, b = nearest.unpack(batch), bilinear.unpack(batch)
    ten_m = [nearest.bands.index(band) for band in ("B02", "B03", "B04", "B08")]
    torch.testing.assert_close(a[:, ten_m], b[:, ten_m])
    assert not torch.equal(a[:, nearest.bands.index("B05")], b[:, nearest.bands.index("B05")])


def test_splits_sorting_labels_and_snow_cloud() -> None:
    table = pq.read_table(FIXTURE / "metadata.parquet").to_pylist()
    dm = datamodule()
    for split, name in (("train", "train"), ("val", "validation"), ("test", "test")):
        rows = sorted((r for r in table if r["split"] == name), key=lambda r: r["patch_id"])
        ids, labels = dm.index.split_labels(split)
        assert list(ids) == [r["patch_id"] for r in rows]
        names = [[BEN19_CLASSES[c] for c in np.flatnonzero(row)] for row in labels]
        assert [sorted(n) for n in names] == [sorted(r["labels"]) for r in rows]
    flagged = pq.read_table(FIXTURE / "metadata_for_patches_with_snow_cloud_or_shadow.parquet")
    extra = datamodule(include_snow_cloud=True)
    train_extra = set(extra.index.split_labels("train")[0]) - set(dm.index.split_labels("train")[0])
    assert train_extra == {r["patch_id"] for r in flagged.to_pylist() if r["split"] == "train"}
    assert len(extra.datasets["train"]) == len(dm.datasets["train"]) + 1


def test_seed_layout_with_per_split_lmdbs(tmp_path: Path) -> None:
    root = tmp_path / "BigEarthNetV2_LMDB"
    root.mkdir()
    shutil.copy(FIXTURE / "metadata.parquet", root / "metadata.parquet")
    source = LazyLMDB(FIXTURE / LMDB_DIR)
    full = datamodule()
    for split, lmdb_name in (
        ("train", "train_BENv2"),
        ("val", "val_BENv2"),
        ("test", "test_BENv2"),
    ):
        env = lmdb.open(str(root / f"{lmdb_name}.lmdb"), map_size=1 << 26)
        with env.begin(write=True) as txn:
            for patch_id in full.datasets[split].image_ids:
                txn.put(str(patch_id).encode(), source.get(str(patch_id)))
        env.close()
    seed = datamodule(root)
    assert seed.index.lmdb_path("val") == root / "val_BENv2.lmdb"
    for split in ("train", "val", "test"):
        for i in range(len(full.datasets[split])):
            assert torch.equal(seed.datasets[split][i]["image"], full.datasets[split][i]["image"])


def test_max_samples_is_a_seeded_subset_with_the_full_split_labels() -> None:
    full = datamodule(label_mode="random")
    small = datamodule(label_mode="random", max_samples={"train": 4, "val": 1})
    again = datamodule(label_mode="random", max_samples={"train": 4, "val": 1})
    assert len(small.datasets["train"]) == 4 and len(small.datasets["val"]) == 1
    assert len(small.datasets["test"]) == len(full.datasets["test"])
    assert small.info().num_train_samples == 4
    assert list(small.datasets["train"].image_ids) == list(again.datasets["train"].image_ids)
    rows = [
        list(full.datasets["train"].image_ids).index(i) for i in small.datasets["train"].image_ids
    ]
    np.testing.assert_array_equal(
        small.datasets["train"].targets, full.datasets["train"].targets[rows]
    )


def _read_in_child(handle: LazyLMDB, key: str, queue: multiprocessing.Queue) -> None:
    queue.put(decode_value(handle.get(key))["B02"].sum())


def test_lazy_lmdb_pickles_without_an_environment_and_reopens_after_fork() -> None:
    handle = LazyLMDB(FIXTURE / LMDB_DIR)
    key = str(datamodule().datasets["train"].image_ids[0])
    expected = handle.get_arrays(key)["B02"].sum()  # opened in the parent first
    clone = pickle.loads(pickle.dumps(handle))
    assert clone.get_arrays(key)["B02"].sum() == expected
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    child = context.Process(target=_read_in_child, args=(handle, key, queue))
    child.start()
    child.join(30)
    assert child.exitcode == 0 and queue.get(timeout=5) == expected


def test_missing_lmdb_key_names_key_and_path(tmp_path: Path) -> None:
    root = copy_root(tmp_path)
    dm = datamodule(root)
    key = str(dm.datasets["train"].image_ids[1])
    put_lmdb_value(root / LMDB_DIR, key, None)
    LazyLMDB(root / LMDB_DIR).close()  # reopen: this process may hold an older snapshot
    with pytest.raises(KeyError, match=rf"{key}.*not found in LMDB .*{LMDB_DIR}"):
        dm.datasets["train"][1]


def test_corrupt_values_give_clear_errors(tmp_path: Path) -> None:
    root = copy_root(tmp_path)
    dm = datamodule(root)
    ids = [str(i) for i in dm.datasets["train"].image_ids]
    put_lmdb_value(root / LMDB_DIR, ids[0], b"\x10\x00\x00\x00\x00\x00\x00\x00not json at all!")
    arrays = decode_value(LazyLMDB(FIXTURE / LMDB_DIR).get(ids[1]))
    put_lmdb_value(
        root / LMDB_DIR, ids[1], encode_value({k: v for k, v in arrays.items() if k != "B05"})
    )
    arrays["B04"] = arrays["B04"][:60, :60].copy()
    put_lmdb_value(root / LMDB_DIR, ids[2], encode_value(arrays))
    LazyLMDB(root / LMDB_DIR).close()
    with pytest.raises(CorruptValueError, match=rf"{ids[0]}.*not a valid safetensors"):
        dm.datasets["train"][0]
    with pytest.raises(CorruptValueError, match=rf"{ids[1]}.*no band 'B05'"):
        dm.datasets["train"][1]
    with pytest.raises(
        CorruptValueError, match=r"'B04' is uint16\[60, 60\], expected uint16\[120, 120\]"
    ):
        dm.datasets["train"][2]


def _rewrite_metadata(root: Path, change) -> None:  # type: ignore[no-untyped-def]
    path = root / "metadata.parquet"
    pq.write_table(change(pq.read_table(path)), path)


def test_metadata_missing_a_required_column(tmp_path: Path) -> None:
    root = copy_root(tmp_path)
    _rewrite_metadata(root, lambda t: t.drop_columns(["labels"]))
    with pytest.raises(
        ValueError, match=r"metadata.parquet: missing required column\(s\) \['labels'\]"
    ):
        datamodule(root)


def test_unknown_class_name_in_metadata(tmp_path: Path) -> None:
    root = copy_root(tmp_path)

    def rename(table: pa.Table) -> pa.Table:
        labels = table.column("labels").to_pylist()
        labels[0] = [*labels[0], "Lunar regolith"]
        return table.set_column(1, "labels", pa.array(labels, pa.list_(pa.string())))

    _rewrite_metadata(root, rename)
    with pytest.raises(ValueError, match=r"unknown class name\(s\) \['Lunar regolith'\]"):
        datamodule(root)


def test_empty_split_is_a_clear_error(tmp_path: Path) -> None:
    root = copy_root(tmp_path)
    _rewrite_metadata(
        root, lambda t: t.filter(pa.compute.not_equal(t.column("split"), "validation"))
    )
    with pytest.raises(
        ValueError, match=r"no patch with split == 'validation' \(our split 'val'\)"
    ):
        datamodule(root)


def test_missing_lmdb_is_a_clear_error(tmp_path: Path) -> None:
    root = copy_root(tmp_path)
    shutil.rmtree(root / LMDB_DIR)
    with pytest.raises(FileNotFoundError, match=r"cannot find the reBEN LMDB for split 'train'"):
        datamodule(root)


def test_class_order_and_alphabetical_mapping() -> None:
    assert len(BEN19_CLASSES) == 19
    assert (BEN19_CLASSES[0], BEN19_CLASSES[11], BEN19_CLASSES[18]) == (
        "Urban fabric",
        "Natural grassland and sparsely vegetated areas",
        "Marine waters",
    )
    perm = ben19_alphabetical_permutation()
    assert [BEN19_CLASSES[i] for i in perm] == list(BEN19_ALPHABETICAL) == sorted(BEN19_CLASSES)
    assert BEN19_ALPHABETICAL[0] == "Agro-forestry areas" and perm[0] == 7
    pinned = np.eye(19)[[2, 18]]  # Arable land, Marine waters
    alphabetical = pinned[:, perm]
    assert [BEN19_ALPHABETICAL[i] for i in alphabetical.argmax(1)] == [
        "Arable land",
        "Marine waters",
    ]
    np.testing.assert_array_equal(alphabetical[:, np.argsort(perm)], pinned)


def test_clc_mapping_and_pixel_counts() -> None:
    table = clc_lookup_table()
    assert table[[111, 112, 121, 241, 333, 323, 412, 523]].tolist() == [0, 0, 1, 3, 11, 12, 15, 18]
    assert set(table[[0, 122, 332, 423, 999, 7]].tolist()) == {NO_CLASS}
    rng = np.random.default_rng(0)
    codes = np.array([0, 111, 211, 311, 122, 523, 999], dtype=np.uint16)
    maps = codes[rng.integers(0, len(codes), size=(5, 12, 12))]
    naive = np.zeros((5, 19), dtype=np.int64)
    for n, image in enumerate(maps):
        for code in image.ravel():
            if table[code] != NO_CLASS:
                naive[n, table[code]] += 1
    np.testing.assert_array_equal(class_pixel_counts(maps), naive)


def test_unknown_band_set_and_interpolation() -> None:
    with pytest.raises(ValueError, match="unknown reBEN band set 'rgb'"):
        BandLayout("rgb")
    with pytest.raises(ValueError, match="interpolation must be one of"):
        BandLayout("s2", "bicubic")
