"""Tuning with noisy labels: single-positive validation labels and the sweep configs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hydra import compose as hydra_compose
from hydra import initialize_config_module

from spml_rs import builders, compose

TINY = [
    "dataset.datamodule.num_train=64",
    "dataset.datamodule.num_val=48",
    "dataset.datamodule.num_test=32",
]


def _val_labels(tmp_path: Path, cache_dir: Path, *overrides: str) -> np.ndarray:
    cfg = compose([*TINY, f"paths.cache_dir={cache_dir}", *overrides], output_dir=tmp_path)
    datamodule = builders.build_datamodule(cfg)
    datamodule.setup("validate")
    return datamodule.datasets["val"].labels


def test_single_positive_val_labels(tmp_path: Path, cache_dir: Path) -> None:
    full = _val_labels(tmp_path, cache_dir)
    single = _val_labels(tmp_path, cache_dir, "+dataset.datamodule.val_label_mode=single")
    assert single.shape == full.shape and single.dtype == np.uint8
    assert (single.sum(axis=1) == 1).all()  # one positive per image, the rest negatives
    assert (full[single == 1] == 1).all()  # and it is one of the image's true labels
    assert (full.sum(axis=1) > 1).any()  # (the check above is not vacuous)
    # Deterministic: the same draw every time (a function of label_mode.seed).
    again = _val_labels(tmp_path, cache_dir, "+dataset.datamodule.val_label_mode=single")
    np.testing.assert_array_equal(single, again)
    other = _val_labels(
        tmp_path, cache_dir, "+dataset.datamodule.val_label_mode=single", "label_mode.seed=5"
    )
    assert (other != single).any()


def test_test_split_keeps_full_labels(tmp_path: Path, cache_dir: Path) -> None:
    cfg = compose(
        [*TINY, f"paths.cache_dir={cache_dir}", "+dataset.datamodule.val_label_mode=single"],
        output_dir=tmp_path,
    )
    datamodule = builders.build_datamodule(cfg)
    datamodule.setup("test")
    assert (datamodule.datasets["test"].labels.sum(axis=1) > 1).any()


def test_bad_val_label_mode(tmp_path: Path, cache_dir: Path) -> None:
    cfg = compose([*TINY, "+dataset.datamodule.val_label_mode=partial"], output_dir=tmp_path)
    with pytest.raises(Exception, match="val_label_mode must be one of"):  # via Hydra
        builders.build_datamodule(cfg)


@pytest.mark.parametrize(
    ("sweep", "swept"),
    [
        ("noisy_tuning", {"model.optimizer.lr", "model.optimizer.weight_decay"}),
        ("benchmark", {"method", "label_mode", "seed"}),
    ],
)
def test_sweep_configs_compose(sweep: str, swept: set[str]) -> None:
    with initialize_config_module("spml_rs.configs", version_base="1.3"):
        cfg = hydra_compose("train", [f"+sweep={sweep}"], return_hydra_config=True)
    assert set(cfg.hydra.sweeper.params) == swept
    for key in swept:
        # Every grid point names a valid value of the key (options exist, numbers parse).
        values = str(cfg.hydra.sweeper.params[key]).split(",")
        assert len(values) >= 2
    if sweep == "noisy_tuning":
        assert cfg.dataset.datamodule.val_label_mode == "single"
        assert cfg.optimized_metric == "val/best_mAP_macro"
