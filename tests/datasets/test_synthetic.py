"""Synthetic scenes: determinism, caching, label semantics, realistic statistics."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from spml_rs.data.synthetic import SyntheticDataModule
from spml_rs.data.synthetic_scenes import PRESETS, generate_split, load_or_generate

SMALL = replace(PRESETS["multispectral"], num_train=400, num_val=50, num_test=50)


def test_generation_is_deterministic_and_seed_dependent() -> None:
    a = generate_split(SMALL, seed=1, split="train", count=64)
    b = generate_split(SMALL, seed=1, split="train", count=64)
    c = generate_split(SMALL, seed=2, split="train", count=64)
    np.testing.assert_array_equal(a.images, b.images)
    np.testing.assert_array_equal(a.labels, b.labels)
    assert not np.array_equal(a.images, c.images)


def test_labels_are_classes_above_min_area_and_dominant_is_largest() -> None:
    scenes = generate_split(SMALL, seed=0, split="train", count=200)
    num_classes = len(SMALL.class_names)
    for i in range(20):
        counts = np.bincount(scenes.class_maps[i].ravel(), minlength=num_classes)
        fraction = counts / counts.sum()
        np.testing.assert_array_equal(
            scenes.labels[i], (fraction > SMALL.min_area).astype(np.uint8)
        )
        assert scenes.dominant[i] == int(np.argmax(counts))
    assert np.all(scenes.labels[np.arange(200), scenes.dominant] == 1)
    assert scenes.images.shape == (200, 10, 32, 32) and scenes.images.dtype == np.uint16


def test_statistics_resemble_bigearthnet() -> None:
    scenes = generate_split(SMALL, seed=0, split="train", count=400)
    per_image = scenes.labels.sum(axis=1)
    assert per_image.min() >= 1
    assert 2.0 <= per_image.mean() <= 4.0  # reBEN: 2.95
    frequency = scenes.labels.mean(axis=0)
    assert frequency.max() / max(frequency.min(), 1e-3) > 3  # class imbalance
    # Co-occurrence is structured: some pairs co-occur far more often than independence predicts.
    joint = scenes.labels.T.astype(float) @ scenes.labels / len(per_image)
    lift = joint / np.outer(frequency, frequency).clip(1e-6)
    np.fill_diagonal(lift, 1.0)
    assert lift.max() > 2.0 and lift.min() < 0.5


def test_class_texture_and_signature_make_pixels_informative() -> None:
    scenes = generate_split(SMALL, seed=0, split="train", count=100)
    pixels = scenes.images.transpose(0, 2, 3, 1).reshape(-1, 10).astype(float)
    classes = scenes.class_maps.reshape(-1)
    means = np.stack([pixels[classes == c].mean(axis=0) for c in np.unique(classes)])
    assert np.ptp(means, axis=0).min() > 50  # classes differ spectrally in every band


def test_rgb_preset_is_uint8_three_bands() -> None:
    rgb = replace(PRESETS["rgb"], num_train=32)
    scenes = generate_split(rgb, seed=0, split="train", count=32)
    assert scenes.images.shape[1] == 3 and scenes.images.dtype == np.uint8
    assert scenes.labels.shape[1] == 17


def test_cache_round_trip(tmp_path: Path) -> None:
    first = load_or_generate(SMALL, seed=0, root=tmp_path)
    files = sorted(p.name for p in tmp_path.rglob("*.npz"))
    assert files == ["test.npz", "train.npz", "val.npz"]
    again = load_or_generate(SMALL, seed=0, root=tmp_path)
    np.testing.assert_array_equal(first["val"].images, again["val"].images)


@pytest.mark.parametrize("mode", ["random", "dominant", "full"])
def test_datamodule_train_targets(tmp_path: Path, mode: str) -> None:
    dm = SyntheticDataModule(
        num_train=120, num_val=20, num_test=20, root=str(tmp_path), label_mode=mode, label_seed=0
    )
    dm.setup("fit")
    train = dm.datasets["train"]
    targets, labels = train.targets, train.labels
    if mode == "full":
        np.testing.assert_array_equal(targets, labels)
        return
    assert np.all((targets == 1).sum(axis=1) == 1) and np.all((targets == 0).sum(axis=1) == 0)
    chosen = targets.argmax(axis=1)
    assert np.all(labels[np.arange(len(chosen)), chosen] == 1)
    if mode == "dominant":
        np.testing.assert_array_equal(chosen, dm.scenes["train"].areas.argmax(axis=1))
    sample = train[3]
    assert sample["index"] == 3 and sample["target"].dtype == torch.int8
    np.testing.assert_array_equal(dm.datasets["val"].targets, dm.datasets["val"].labels)


def test_unknown_mode_and_manual_without_file_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="label_mode must be one of"):
        SyntheticDataModule(root=str(tmp_path), label_mode="dominat")
    with pytest.raises(ValueError, match="label_mode=manual needs a label file"):
        SyntheticDataModule(root=str(tmp_path), label_mode="manual")


def test_partly_labelled_split_is_an_error_or_dropped(tmp_path: Path) -> None:
    from spml_rs.label_files import write_single_positives

    reference = SyntheticDataModule(
        num_train=60, num_val=10, num_test=10, root=str(tmp_path), label_mode="full"
    )
    ids, labels = reference.index.split_labels("train")
    path = tmp_path / "half.csv"
    write_single_positives(path, list(ids[::2]), labels[::2].argmax(axis=1), reference.class_names)

    common = dict(
        num_train=60,
        num_val=10,
        num_test=10,
        root=str(tmp_path),
        label_mode="manual",
        label_path=str(path),
    )
    with pytest.raises(ValueError, match="unlabelled=drop"):
        SyntheticDataModule(**common).setup("fit")
    dm = SyntheticDataModule(**common, unlabelled="drop")
    with pytest.warns(UserWarning, match="30 of 60 training images have no label"):
        dm.setup("fit")
    train = dm.datasets["train"]
    assert len(train) == 30
    # Samples keep their index in the full split (per-sample state is sized by the split).
    assert [train[i]["index"] for i in range(3)] == [0, 2, 4]
    assert all(int((train[i]["target"] == 1).sum()) == 1 for i in range(len(train)))


def test_random_dihedral_is_a_symmetry_and_keyed_by_its_generator() -> None:
    from spml_rs.data.base import random_dihedral

    image = torch.arange(2 * 3 * 4 * 4, dtype=torch.float32).reshape(2, 3, 4, 4).repeat(8, 1, 1, 1)
    first = random_dihedral(image, torch.Generator().manual_seed(5))
    again = random_dihedral(image, torch.Generator().manual_seed(5))
    torch.testing.assert_close(first, again)
    for out, src in zip(first, image, strict=True):
        candidates = [
            torch.rot90(src.flip(-1) if k >= 4 else src, k % 4, dims=(-2, -1)) for k in range(8)
        ]
        assert any(torch.equal(out, c) for c in candidates)
    assert len({tuple(o.flatten().tolist()) for o in first[::2]}) > 1  # not all the same transform


def test_bad_settings_are_refused_before_any_scene_is_generated(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"synthetic sizes must be positive integers.*num_train"):
        SyntheticDataModule(root=str(tmp_path), num_train=0)
    with pytest.raises(ValueError, match="unknown synthetic preset 'hyperspectral'"):
        SyntheticDataModule(root=str(tmp_path), preset="hyperspectral")
    with pytest.raises(ValueError, match="label_mode=manual needs a label file"):
        SyntheticDataModule(root=str(tmp_path), label_mode="manual")
    assert not list(tmp_path.rglob("*.npz"))  # the label mode is checked with the index unread
    dm = SyntheticDataModule(root=str(tmp_path), preset="rgb", num_train=40, image_size=16)
    assert (dm.name, dm.in_chans, dm.class_names[0]) == ("synthetic_rgb", 3, "airplane")
    assert not list(tmp_path.rglob("*.npz"))  # built lazily, on first use
    assert dm.info().num_train_samples == 40
