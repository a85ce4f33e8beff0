"""End to end on the fake AID folder: every supported label mode, workers, missing classes."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from spml_rs.train import train
from spml_testing import DATASET_TINY

# The documented form: the manual file next to the images.
MANUAL = "label_mode.path=${dataset.datamodule.root}/single_positive_labels_manual.csv"


def run(make_cfg, tmp_path: Path, *overrides: str) -> dict:
    metrics = train(make_cfg(*DATASET_TINY["aid"], *overrides, tiny=False))
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["dataset"] == "aid"
    assert 0.0 <= results["metrics"]["test/mAP_macro"] <= 1.0
    return metrics


@pytest.mark.parametrize(
    "overrides",
    [
        ("label_mode=random",),
        # Workers decode the JPEGs; run one mode through two of them.
        ("label_mode=manual", MANUAL, "dataset.datamodule.num_workers=2"),
    ],
    ids=["random", "manual-2-workers"],
)
def test_trains_with_single_positive_modes(make_cfg, tmp_path: Path, overrides) -> None:
    metrics = run(make_cfg, tmp_path, "method=an", *overrides)
    assert math.isfinite(float(metrics["test/mAP_micro"]))


def test_full_labels_warn_about_classes_without_test_positives(make_cfg, tmp_path: Path) -> None:
    # The fixture's only mobile-home image is in train (as rare as in the real data).
    with pytest.warns(UserWarning, match=r"test: no positive examples.*mobile-home"):
        metrics = run(make_cfg, tmp_path, "method=full", "label_mode=full")
    assert math.isnan(float(metrics["test/AP/mobile-home"]))
    assert math.isfinite(float(metrics["test/AP/buildings"]))
    assert math.isfinite(float(metrics["test/mAP_macro"]))
