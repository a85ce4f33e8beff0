"""End-to-end: the default job runs through train() and writes results.json."""

from __future__ import annotations

import json
from pathlib import Path

from spml_rs.train import train


def test_fast_dev_run_writes_results(make_cfg, tmp_path: Path) -> None:
    """Lightning's ``fast_dev_run``: one batch of train, val and test, no checkpoints."""
    cfg = make_cfg("method=an", "label_mode=random", "+trainer.fast_dev_run=true")
    metrics = train(cfg)
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["method"] == "an"
    # fast_dev_run writes no checkpoint: the last weights are tested
    assert results["best_checkpoint"] is None
    assert 0.0 <= results["metrics"]["test/mAP_macro"] <= 1.0
    assert set(metrics) >= {"test/mAP_macro", "test/mAP_micro", "test/F1_macro", "test/F1_micro"}
    assert not (tmp_path / "checkpoints").exists()


def test_one_epoch_run_tests_its_best_checkpoint(make_cfg, tmp_path: Path) -> None:
    cfg = make_cfg("method=an", "label_mode=random")
    train(cfg)
    results = json.loads((tmp_path / "results.json").read_text())
    assert Path(results["best_checkpoint"]).name == "best-epoch000.ckpt"
    assert results["epochs_trained"] == 1
