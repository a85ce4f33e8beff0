"""Batch-level reading: the same samples as per-sample reads, in the sampler's order, DDP-shardable.

The training loaders hand each worker a batch of indices (``BatchReads``); the reBEN
reader copies the bands from the LMDB map straight into one batch tensor.
"""

from __future__ import annotations

import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from lightning.pytorch.trainer.connectors.data_connector import _get_distributed_sampler
from lightning.pytorch.trainer.states import RunningStage
from lightning.pytorch.utilities.data import _update_dataloader
from safetensors.numpy import save as st_save
from torch.utils.data import DataLoader, Dataset

from spml_rs.data.benv2 import BENv2DataModule
from spml_rs.data.benv2_bands import BAND_SETS, BandLayout
from spml_rs.data.benv2_lmdb import CorruptValueError, decode_value, encode_value
from spml_rs.data.splits import BatchReads, EpochSeededSampler, empty_batch, pass_batch
from spml_testing import DATA, put_lmdb_value

FIXTURE = DATA / "benv2"
LMDB_DIR = "BigEarthNet-V2-LMDB"


def datamodule(root: Path = FIXTURE, **kwargs: object) -> BENv2DataModule:
    kwargs.setdefault("label_mode", "random")
    dm = BENv2DataModule(root=str(root), **kwargs)  # type: ignore[arg-type]
    dm.setup()
    return dm


def per_sample(dataset: Dataset, rows: list[int]) -> dict[str, torch.Tensor]:
    """What default_collate made of per-sample reads (the previous loader)."""
    samples = [dataset[row] for row in rows]
    return {
        "image": torch.stack([s["image"] for s in samples]),
        "target": torch.stack([s["target"] for s in samples]),
        "label": torch.stack([s["label"] for s in samples]),
        "index": torch.tensor([s["index"] for s in samples]),
    }


def assert_same_batch(batch: dict[str, torch.Tensor], expected: dict[str, torch.Tensor]) -> None:
    assert sorted(batch) == ["image", "index", "label", "target"]
    for key, value in expected.items():
        assert batch[key].dtype == value.dtype, key
        assert torch.equal(batch[key], value), key


@pytest.mark.parametrize("bands", sorted(BAND_SETS))
def test_batches_equal_per_sample_reads(bands: str) -> None:
    dm = datamodule(bands=bands, batch_size=4)
    for split in ("train", "val", "test"):
        dataset = dm.datasets[split]
        rows = list(range(len(dataset)))[::-1]  # any order, e.g. a shuffled sampler's
        assert_same_batch(dataset.read_batch(rows), per_sample(dataset, rows))
    # and the packed bytes are those of the arrays API (BandLayout.pack, used by predict)
    dataset = dm.datasets["train"]
    keys = {"s2": str(dataset.image_ids[2])}
    if dataset.s1_names is not None:
        keys["s1"] = str(dataset.s1_names[2])
    arrays = {s: dataset.database.get_arrays(keys[s]) for s in dm.layout.sources}
    packed = dm.layout.pack(arrays, keys, dataset.database.path)
    assert np.array_equal(dataset.read_batch([2])["image"][0].numpy(), packed)


def test_train_loader_follows_the_epoch_seeded_order() -> None:
    dm = datamodule(batch_size=4, sampler_seed=3)
    loader = dm.train_dataloader()
    assert isinstance(loader.dataset, BatchReads) and loader.collate_fn is pass_batch
    for epoch in (0, 1):
        loader.sampler.set_epoch(epoch)  # type: ignore[attr-defined]
        reference = EpochSeededSampler(6, seed=3)
        reference.set_epoch(epoch)
        order = list(reference)
        batches = list(loader)
        assert [len(b["index"]) for b in batches] == [4, 2]
        assert torch.cat([b["index"] for b in batches]).tolist() == order
        for batch in batches:
            assert_same_batch(batch, per_sample(dm.datasets["train"], batch["index"].tolist()))


def test_ddp_shards_are_disjoint_batches_of_the_same_samples() -> None:
    """Lightning's own replacement of the sampler under DDP (two ranks)."""
    dm = datamodule(batch_size=2)
    loader = dm.train_dataloader()
    seen: list[int] = []
    for rank in (0, 1):
        sampler = _get_distributed_sampler(
            loader, shuffle=False, overfit_batches=0, num_replicas=2, rank=rank
        )
        sharded = _update_dataloader(loader, sampler, mode=RunningStage.TRAINING)
        assert isinstance(sharded.dataset, BatchReads) and sharded.collate_fn is pass_batch
        for batch in sharded:
            assert_same_batch(batch, per_sample(dm.datasets["train"], batch["index"].tolist()))
            seen += batch["index"].tolist()
    assert sorted(seen) == list(range(6))


@pytest.mark.parametrize("context", ["fork", "spawn"])
def test_workers_send_shared_batches(context: str) -> None:
    dm = datamodule(batch_size=4, num_workers=2)
    # the datamodule's loader with its workers started the given way
    loader = _update_dataloader(dm.train_dataloader(), EpochSeededSampler(6))
    loader.multiprocessing_context = context  # type: ignore[assignment]
    # spawn pickles the dataset: no LMDB environment may travel with it
    assert b"Environment" not in pickle.dumps(loader.dataset)
    batches = list(loader)
    assert torch.cat([b["index"] for b in batches]).tolist() == list(EpochSeededSampler(6))
    for batch in batches:
        assert batch["image"].is_shared()
        assert_same_batch(batch, per_sample(dm.datasets["train"], batch["index"].tolist()))


class _WhereAllocated(Dataset[dict[str, bool]]):
    def __len__(self) -> int:
        return 1

    def __getitem__(self, index: int) -> dict[str, bool]:
        batch = empty_batch((2, 3), np.uint16, pin=True)
        return {"shared": batch.is_shared(), "uint16": batch.dtype == torch.uint16}


def test_empty_batch_is_in_shared_memory_inside_workers_only() -> None:
    in_worker = next(iter(DataLoader(_WhereAllocated(), batch_size=None, num_workers=1)))
    assert in_worker == {"shared": True, "uint16": True}
    here = empty_batch((2, 3), np.float32, pin=True)
    assert not here.is_shared() and here.shape == (2, 3)
    # pinned only where CUDA is: never on a CPU-only machine
    assert here.is_pinned() == torch.cuda.is_available()


def test_subsets_keep_their_index_in_the_full_split() -> None:
    dm = datamodule(max_samples={"train": 4}, batch_size=8)
    rows = dm.subset_rows("train")
    batch = next(iter(dm.train_dataloader()))
    full = datamodule()
    assert sorted(batch["index"].tolist()) == [0, 1, 2, 3]
    # the subset's rows, read from the full split, are the same images
    expected = full.datasets["train"].read_batch(rows[batch["index"].numpy()])
    assert torch.equal(batch["image"], expected["image"])


def copy_root(tmp_path: Path) -> Path:
    root = tmp_path / "benv2"
    shutil.copytree(FIXTURE, root, ignore=shutil.ignore_patterns("BigEarthNet-S*", "Reference*"))
    return root


def test_another_encoders_header_is_read_by_name(tmp_path: Path) -> None:
    """A value with another header (metadata, an extra array: other offsets) packs the same."""
    root = copy_root(tmp_path)
    dm = datamodule(root, bands="s2_all")
    dataset = dm.datasets["train"]
    key = str(dataset.image_ids[0])
    before = dataset.read_batch([0, 1])["image"].clone()
    arrays = decode_value(dataset.database.get(key))
    shifted = {**arrays, "AOT": np.ones((120, 120), dtype=np.uint16)}  # stored first
    put_lmdb_value(root / LMDB_DIR, key, st_save(shifted, metadata={"encoder": "another one"}))
    assert torch.equal(dataset.read_batch([0, 1])["image"], before)
    assert len(dm.layout._plans) == 2  # the official header and this one


def test_corrupt_values_in_a_batch_name_their_key(tmp_path: Path) -> None:
    root = copy_root(tmp_path)
    dm = datamodule(root)
    dataset = dm.datasets["train"]
    ids = [str(i) for i in dataset.image_ids]
    good = dataset.database.get(ids[0])
    arrays = decode_value(good)
    put_lmdb_value(root / LMDB_DIR, ids[1], good[: len(good) - 100])  # cut short: header intact
    put_lmdb_value(
        root / LMDB_DIR, ids[2], encode_value({**arrays, "B8A": arrays["B8A"].astype(np.int16)})
    )
    put_lmdb_value(root / LMDB_DIR, ids[3], None)
    with pytest.raises(CorruptValueError, match=rf"'{ids[1]}'.*tensors end at byte"):
        dataset.read_batch([0, 1])
    with pytest.raises(CorruptValueError, match=rf"'{ids[2]}' band 'B8A' is int16\[60, 60\]"):
        dataset.read_batch([0, 2])
    with pytest.raises(KeyError, match=rf"'{ids[3]}' not found in LMDB .*{LMDB_DIR}"):
        dataset.read_batch([0, 3])
    assert dataset.read_batch([0, 4, 5])["image"].shape == (3, dm.layout.nbytes)


def test_bad_batch_requests_are_errors() -> None:
    dataset = datamodule().datasets["train"]
    with pytest.raises(ValueError, match="non-empty list of rows"):
        dataset.read_batch([])
    with pytest.raises(TypeError, match="expects the batch dict"):
        pass_batch([dataset[0]])  # type: ignore[arg-type]


def test_default_read_images_refuses_mixed_shapes() -> None:
    """The generic batch reader (datasets without their own) stacks only equal shapes."""
    from spml_rs.data.splits import SplitDataset

    class Ragged(SplitDataset):
        def read_image(self, index: int) -> np.ndarray:
            return np.zeros((3, 4 + index, 4), dtype=np.uint8)

    labels = np.eye(2, dtype=np.uint8)
    ragged = Ragged(np.array(["a", "b"]), labels, labels.astype(np.int8))
    assert ragged.read_batch([0])["image"].shape == (1, 3, 4, 4)
    with pytest.raises(ValueError, match=r"image 'b' \(row 1\) is \(3, 5, 4\)"):
        ragged.read_batch([0, 1])


def test_a_dataset_pickles_with_its_plans() -> None:
    dataset = datamodule(bands="s1s2").datasets["val"]
    dataset.read_batch([0])
    assert len(dataset.layout._plans) == 2  # one S1, one S2 header
    copy = pickle.loads(pickle.dumps(dataset))
    assert isinstance(copy.layout, BandLayout) and len(copy.layout._plans) == 2
    assert torch.equal(copy.read_batch([0, 1])["image"], dataset.read_batch([0, 1])["image"])
