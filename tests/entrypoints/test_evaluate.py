"""``spml_rs.test`` from the checkpoint alone, and what evaluation and resume may not overwrite."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from entry_points import read_metrics, run_entry

from spml_rs import checkpoints, resume
from spml_rs.api import fit
from spml_rs.test import evaluate
from spml_testing import compose_config, tiny

#: a run whose config differs from test.yaml's defaults (sizes, model), two epochs
TRAINING = (*tiny("trainer.max_epochs=2"), "method=an")


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, cache_dir: Path) -> Path:
    """A finished training run directory (launched like a user does)."""
    run = tmp_path_factory.mktemp("trained") / "run"
    run_entry("train", *TRAINING, f"hydra.run.dir={run}", cache=cache_dir, cwd=run.parent)
    return run


def _best(run: Path) -> Path:
    (best,) = (run / "checkpoints").glob("best*.ckpt")
    return best


def _evaluation(directory: Path, split: str = "test") -> Path:
    (found,) = directory.glob(f"results_{split}_*.json")
    return found


def test_the_checkpoint_alone_reproduces_the_training_test_metrics(
    trained: Path, tmp_path: Path, cache_dir: Path
) -> None:
    evaluated = tmp_path / "evaluated"
    best = _best(trained)
    run_entry(
        "test", f"ckpt_path={best}", f"hydra.run.dir={evaluated}", cache=cache_dir, cwd=tmp_path
    )
    expected = {
        k: v for k, v in read_metrics(trained / "results.json").items() if k.startswith("test/")
    }
    got = read_metrics(_evaluation(evaluated))
    assert "test/F1_macro_valthr" in expected
    assert got == expected  # the same floats, every key (NaN is null in both)
    assert not (evaluated / "results.json").exists()  # a report never counts the run twice


def test_evaluation_in_a_training_directory_writes_nothing_of_that_run(
    trained: Path, tmp_path: Path, cache_dir: Path
) -> None:
    run = tmp_path / "run"
    shutil.copytree(trained, run)
    kept = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    # The usage the ckpt_path=last error message suggests for resuming.
    args = ("ckpt_path=last", "split=val", f"hydra.run.dir={run}")
    run_entry("test", *args, cache=cache_dir, cwd=tmp_path)
    assert {p: p.read_bytes() for p in kept} == kept  # results.json, .hydra/config.yaml, ...
    assert "val/mAP_macro" in read_metrics(_evaluation(run, "val"))
    # Without hijacking it: train_dir names the run, the evaluation has its own directory.
    metrics = _evaluate(tmp_path, cache_dir, "best", f"train_dir={run}")
    assert float(metrics["test/mAP_macro"]) == read_metrics(run / "results.json")["test/mAP_macro"]
    assert {p: p.read_bytes() for p in kept} == kept


def _evaluate(tmp_path: Path, cache: Path, ckpt: Path | str, *overrides: str) -> dict[str, float]:
    """``spml_rs.test ckpt_path=<ckpt> overrides`` in this process, into ``tmp_path/evaluation``."""
    args = [f"ckpt_path={ckpt}", *overrides]
    cfg = compose_config(args, tmp_path / "evaluation", cache, "test")
    return evaluate(cfg, overrides=list(overrides))


def test_overrides_win_over_the_stored_config(
    trained: Path, tmp_path: Path, cache_dir: Path
) -> None:
    best = _best(trained)
    smaller = _evaluate(tmp_path, cache_dir, best, "dataset.datamodule.num_test=16")
    (written,) = (tmp_path / "evaluation").glob("results_test_*.json")
    stored = json.loads(written.read_text())["config"]
    assert stored["dataset"]["datamodule"]["num_test"] == 16
    assert stored["model"]["net"]["name"] == "test_resnet"  # the rest is the training's
    full = read_metrics(trained / "results.json")["test/mAP_macro"]
    assert smaller["test/mAP_macro"] != full
    same = _evaluate(tmp_path / "again", cache_dir, best, "method=an")  # the trained option
    assert float(same["test/mAP_macro"]) == full


def test_another_group_option_than_the_trained_one_is_refused(
    trained: Path, tmp_path: Path, cache_dir: Path
) -> None:
    with pytest.raises(ValueError, match=r"was trained with method=an"):
        _evaluate(tmp_path, cache_dir, _best(trained), "method=full")


def test_a_checkpoint_without_stored_config_asks_for_the_overrides(
    trained: Path, tmp_path: Path, cache_dir: Path
) -> None:
    old = tmp_path / "old.ckpt"
    checkpoint = torch.load(_best(trained), map_location="cpu", weights_only=False)
    del checkpoint["hyper_parameters"]
    torch.save(checkpoint, old)
    with pytest.raises(checkpoints.MissingRunConfigError, match="Pass the overrides used"):
        _evaluate(tmp_path, cache_dir, old)
    data_and_model = [o for o in TRAINING if o.startswith(("dataset.", "model."))]
    with pytest.warns(UserWarning, match="holds no training config"):
        metrics = _evaluate(tmp_path / "with", cache_dir, old, *data_and_model)
    assert (
        float(metrics["test/mAP_macro"]) == read_metrics(trained / "results.json")["test/mAP_macro"]
    )


def test_a_file_that_is_not_a_checkpoint_is_named(tmp_path: Path, cache_dir: Path) -> None:
    notes = tmp_path / "notes.ckpt"
    notes.write_text("a text file")
    with pytest.raises(checkpoints.NotACheckpointError, match=r"notes\.ckpt: not a Lightning"):
        _evaluate(tmp_path, cache_dir, notes)
    cfg = compose_config([*tiny(), f"ckpt_path={notes}"], tmp_path / "train", cache_dir)
    with pytest.raises(checkpoints.NotACheckpointError, match=r"notes\.ckpt: not a Lightning"):
        fit(cfg)  # before Lightning's unpickler sees it


def _resume(run: Path, cache: Path, *overrides: str) -> dict[str, float]:
    """``spml_rs.train`` launched (in this process) into the existing ``run``.

    ``overrides`` replace the entries of :data:`TRAINING` with the same key.
    """
    keys = {o.split("=")[0] for o in overrides}
    kept = [o for o in TRAINING if o.split("=")[0] not in keys]
    return fit(compose_config([*kept, *overrides], run, cache))


def test_resume_refuses_another_config_and_accepts_what_may_change(
    trained: Path, tmp_path: Path, cache_dir: Path
) -> None:
    run = tmp_path / "run"
    shutil.copytree(trained, run)
    results = (run / "results.json").read_bytes()
    with pytest.raises(checkpoints.ConfigMismatchError) as refused:
        _resume(run, cache_dir, "method=full")
    assert "trained with a different config" in str(refused.value)
    assert "method.loss._target_: checkpoint 'spml_rs.methods.an.AssumeNegativeLoss', now " in str(
        refused.value
    )
    with pytest.raises(checkpoints.ConfigMismatchError, match=r"seed: checkpoint 0, now 1"):
        _resume(run, cache_dir, "seed=1")
    assert (run / "results.json").read_bytes() == results
    # refused before anything in the run directory moved: metrics.csv is not set aside
    assert (run / "metrics.csv").is_file() and not list(run.glob("metrics.part*.csv"))
    # Another machine: other log settings and workers; the same run, resumed (already finished).
    metrics = _resume(run, cache_dir, "logger=none", "trainer.log_every_n_steps=1")
    expected = read_metrics(trained / "results.json")["test/mAP_macro"]
    assert float(metrics["test/mAP_macro"]) == expected


def test_a_finished_run_without_last_checkpoint_is_not_trained_over(
    trained: Path, tmp_path: Path, cache_dir: Path
) -> None:
    """No last.ckpt (a preset may turn it off): a relaunch would start again from epoch 0."""
    run = tmp_path / "run"
    shutil.copytree(trained, run)
    (run / "checkpoints" / "last.ckpt").unlink()
    (old_best,) = (run / "checkpoints").glob("best*.ckpt")
    results, metrics = (run / "results.json").read_bytes(), (run / "metrics.csv").read_bytes()
    with pytest.raises(resume.FinishedRunError, match=r"holds a finished run.*overwrite=true"):
        _resume(run, cache_dir)
    assert (run / "results.json").read_bytes() == results
    assert (run / "metrics.csv").read_bytes() == metrics and old_best.is_file()
    # overwrite=true: the old run's checkpoints, metrics and results go, a new run is written
    _resume(run, cache_dir, "overwrite=true", "trainer.max_epochs=1")
    assert not old_best.exists() and [p.name for p in (run / "checkpoints").glob("best*.ckpt")] == [
        "best-epoch000.ckpt"
    ]
    assert json.loads((run / "results.json").read_text())["epochs_trained"] == 1
