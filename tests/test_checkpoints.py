"""The config a checkpoint stores: reading it, comparing it on resume, rebuilding from it."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any

import pytest
import torch
from omegaconf import OmegaConf

from spml_rs import checkpoints, run_config
from spml_testing import DATASET_TINY, TINY, compose_config


def _train_config(
    tmp_path: Path, cache: Path, *overrides: str, base: tuple[str, ...] = TINY
) -> dict[str, Any]:
    cfg = compose_config([*base, *overrides], tmp_path / "train", cache)
    return OmegaConf.to_container(cfg, resolve=True)  # type: ignore[return-value]


def _checkpoint(config: dict[str, Any] | None, choices: dict[str, str] | None = None) -> dict:
    hparams = {}
    if config is not None:
        hparams = {checkpoints.CONFIG_KEY: config, checkpoints.CHOICES_KEY: choices}
    return {"state_dict": {"net.w": torch.zeros(1)}, "hyper_parameters": hparams}


# ------------------------------------------------------------------ reading
def test_files_that_are_not_lightning_checkpoints_are_named_as_such(tmp_path: Path) -> None:
    text = tmp_path / "notes.ckpt"
    text.write_text("not a checkpoint")
    other_zip = tmp_path / "archive.ckpt"
    with zipfile.ZipFile(other_zip, "w") as archive:
        archive.writestr("readme.txt", "hello")
    bare = tmp_path / "weights.pth"
    torch.save({"conv.weight": torch.zeros(2)}, bare)
    truncated = tmp_path / "truncated.ckpt"
    torch.save(_checkpoint(None), truncated)
    truncated.write_bytes(truncated.read_bytes()[:200])
    for path, reason in (
        (text, "not a Lightning checkpoint"),
        (other_zip, "without torch's data.pkl"),
        (bare, "no 'state_dict'"),
        (truncated, "not a Lightning checkpoint"),
    ):
        with pytest.raises(checkpoints.NotACheckpointError, match=reason) as caught:
            checkpoints.read_checkpoint(path)
        assert str(path) in str(caught.value)


def test_stored_config_reads_back(tmp_path: Path, cache_dir: Path) -> None:
    config = _train_config(tmp_path, cache_dir)
    path = tmp_path / "run.ckpt"
    torch.save(_checkpoint(config), path)
    assert OmegaConf.to_container(checkpoints.load_run_config(path)) == config
    torch.save(_checkpoint(None), path)
    with pytest.raises(checkpoints.MissingRunConfigError, match="Pass the overrides"):
        checkpoints.load_run_config(path)


# ---------------------------------------------------------------- comparing
def test_resume_check_ignores_what_may_change_and_lists_the_rest(
    tmp_path: Path, cache_dir: Path
) -> None:
    stored = _train_config(tmp_path, cache_dir)
    moved = _train_config(
        tmp_path / "elsewhere",
        cache_dir,
        "trainer.devices=2",
        "dataset.datamodule.num_workers=3",
        "logger=none",
        base=tuple(o for o in TINY if not o.startswith("callbacks.progress_bar")),
    )
    checkpoints.check_resumable(_checkpoint(stored), moved, "run.ckpt")
    changed = _train_config(tmp_path, cache_dir, "method=an", "seed=3")
    with pytest.raises(checkpoints.ConfigMismatchError) as caught:
        checkpoints.check_resumable(_checkpoint(stored), changed, "run.ckpt")
    message = str(caught.value)
    assert "seed: checkpoint 0, now 3" in message
    assert "method.loss._target_" in message and "method.name" in message
    # a section only one side has is one line, not one per key below it
    assert "method.callbacks.ema_teacher: checkpoint {'_target_'" in message
    assert "method.callbacks.ema_teacher.decay" not in message
    with pytest.raises(checkpoints.MissingRunConfigError):
        checkpoints.check_resumable(_checkpoint(None), changed, "run.ckpt")


def test_patterns_match_one_level_and_sub_keys() -> None:
    differences = checkpoints.config_differences(
        {"callbacks": {"a": {"dirpath": "/x", "every": 1}}, "paths": {"log_dir": "/a"}},
        {"callbacks": {"a": {"dirpath": "/y", "every": 2}}, "paths": {"log_dir": "/b"}},
    )
    assert differences == [("callbacks.a.every", 1, 2)]


# ------------------------------------------------------------ rebuilding from it
def _entry(tmp_path: Path, cache: Path, *overrides: str) -> Any:
    return compose_config(["ckpt_path=x.ckpt", *overrides], tmp_path / "eval", cache, "test")


def test_stored_config_with_overrides_on_top(tmp_path: Path, cache_dir: Path) -> None:
    stored = _train_config(tmp_path, cache_dir, base=DATASET_TINY["benv2"])
    overrides = ["dataset.datamodule.root=/elsewhere/benv2", "trainer=gpu", "split=val"]
    entry = _entry(tmp_path, cache_dir, *overrides)
    merged = run_config.checkpoint_config(entry, _checkpoint(stored), "x.ckpt", overrides)
    assert merged.dataset.datamodule.root == "/elsewhere/benv2"
    assert merged.dataset.datamodule.bands == stored["dataset"]["datamodule"]["bands"]
    assert merged.model.net.name == "test_resnet"  # stored, not test.yaml's resnet10t
    assert merged.trainer.precision == "bf16-mixed"  # the environment group replaced
    assert merged.trainer.default_root_dir == str(tmp_path / "eval")
    assert merged.paths.output_dir == str(tmp_path / "eval")
    assert merged.split == "val" and merged.task_name == "test" and merged.ckpt_path == "x.ckpt"
    assert merged.logger == entry.logger  # the evaluation's, not the training's CSV logger


def test_a_group_choice_must_be_the_trained_one(tmp_path: Path, cache_dir: Path) -> None:
    stored = _train_config(tmp_path, cache_dir, "method=an")
    checkpoint = _checkpoint(stored, {"method": "an", "dataset": "synthetic"})
    same = run_config.checkpoint_config(
        _entry(tmp_path, cache_dir, "method=an"), checkpoint, "x.ckpt", ["method=an"]
    )
    assert same.method == OmegaConf.create(stored["method"])
    with pytest.raises(ValueError, match=r"was trained with method=an.*single keys"):
        run_config.checkpoint_config(
            _entry(tmp_path, cache_dir, "method=full"), checkpoint, "x.ckpt", ["method=full"]
        )


def test_old_checkpoint_is_rebuilt_from_the_overrides_or_refused(
    tmp_path: Path, cache_dir: Path
) -> None:
    with pytest.raises(checkpoints.MissingRunConfigError, match="Pass the overrides"):
        run_config.checkpoint_config(_entry(tmp_path, cache_dir), _checkpoint(None), "x", [])
    overrides = ["model.net.name=test_resnet"]
    entry = _entry(tmp_path, cache_dir, *overrides)
    with pytest.warns(UserWarning, match="holds no training config"):
        merged = run_config.checkpoint_config(entry, _checkpoint(None), "x", overrides)
    assert merged is entry


# ---------------------------------------------------------------- thresholds
def test_thresholds_file_round_trip_and_no_silent_overwrite(tmp_path: Path) -> None:
    path = checkpoints.thresholds_file(tmp_path / "best.ckpt")
    assert path.name == "best.ckpt.thresholds.json"
    values = torch.tensor([0.25, 0.5, 0.75])
    names = ["a", "b", "c"]
    checkpoints.write_thresholds(path, values, names, source="test", positives=[3, 0, 1])
    assert torch.equal(checkpoints.read_thresholds(path, names), values)
    assert json.loads(path.read_text())["validation_positives"] == {"a": 3, "b": 0, "c": 1}
    with pytest.raises(FileExistsError, match="overwrite=true"):
        checkpoints.write_thresholds(path, values, names, source="test")
    with pytest.raises(ValueError, match="for the model's classes"):
        checkpoints.read_thresholds(path, ["a", "b", "d"])
