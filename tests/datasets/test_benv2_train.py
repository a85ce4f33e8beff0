"""End to end on the fake reBEN: every label mode, and DataLoader workers."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from hydra.errors import InstantiationException

from spml_rs.data.benv2_index import BENv2Index
from spml_rs.data.classes import BEN19_CLASSES
from spml_rs.label_files import write_single_positives
from spml_rs.prepare import main as prepare
from spml_rs.train import train
from spml_testing import DATA, DATASET_TINY

FIXTURE = DATA / "benv2"


def label_file(mode: str, tmp_path: Path) -> str | None:
    """The file a label mode needs: Dominant from `prepare`, Manual written by hand."""
    if mode == "dominant":
        out = tmp_path / "dominant.parquet"
        args = ["spml-labels", "--dataset", "benv2", "--mode", "dominant", "--root", str(FIXTURE)]
        assert prepare([*args, "--out", str(out)]) == 0
        return str(out)
    if mode == "manual":
        ids, labels = BENv2Index(FIXTURE).split_labels("train")
        out = tmp_path / "manual.csv"
        last = labels.shape[1] - 1 - np.argmax(labels[:, ::-1], axis=1)  # some human's choice
        write_single_positives(
            out, list(ids), last, BEN19_CLASSES, {"annotator": ["tester"] * len(ids)}
        )
        return str(out)
    return None


@pytest.mark.parametrize("mode", ["full", "random", "dominant", "manual"])
def test_fit_and_test_every_label_mode(make_cfg, tmp_path: Path, mode: str) -> None:
    path = label_file(mode, tmp_path)
    overrides = [
        *DATASET_TINY["benv2"],
        f"label_mode={mode}",
        "method=an" if mode != "full" else "method=full",
    ]
    if path:
        overrides.append(f"label_mode.path={path}")
    metrics = train(make_cfg(*overrides, tiny=False))
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["dataset"] == "benv2" and results["label_mode"] == mode
    assert 0.0 <= metrics["test/mAP_macro"] <= 1.0


def test_fit_with_two_workers_and_s1s2(make_cfg, tmp_path: Path) -> None:
    overrides = [
        *DATASET_TINY["benv2"],
        "dataset.datamodule.num_workers=2",
        "dataset.datamodule.bands=s1s2",
    ]
    metrics = train(make_cfg(*overrides, "label_mode=random", tiny=False))
    assert 0.0 <= metrics["test/mAP_macro"] <= 1.0
    assert (
        json.loads((tmp_path / "results.json").read_text())["config"]["dataset"]["datamodule"][
            "bands"
        ]
        == "s1s2"
    )


def test_dominant_without_a_file_is_a_clear_error(make_cfg) -> None:
    cfg = make_cfg(*DATASET_TINY["benv2"], "label_mode=dominant", tiny=False)
    # Refused when the datamodule is built (Hydra wraps the ValueError), before any training.
    with pytest.raises(InstantiationException, match=r"prepare spml-labels --mode dominant"):
        train(cfg)
