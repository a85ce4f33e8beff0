"""The synthetic benchmark presets state the protocol of docs/benchmark_protocol.md."""

from __future__ import annotations

from pathlib import Path

import pytest
from omegaconf import DictConfig, OmegaConf

from spml_rs import compose


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("SPML_RS_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def preset(name: str, tmp_path: Path, *overrides: str) -> DictConfig:
    cfg = compose([f"experiment={name}", *overrides], output_dir=tmp_path / "run")
    OmegaConf.resolve(cfg)  # every interpolation resolves
    return cfg


@pytest.mark.parametrize("name", ["benchmark_pretrained", "benchmark_scratch"])
def test_both_protocols_share_data_model_and_statistics(
    name: str, tmp_path: Path, cache: Path
) -> None:
    cfg = preset(name, tmp_path, "seed=3", "label_mode=random")
    datamodule = cfg.dataset.datamodule
    assert cfg.dataset.name == "synthetic" and datamodule.preset == "multispectral"
    assert (datamodule.seed, datamodule.num_val, datamodule.num_test) == (0, 500, 2000)
    assert datamodule.label_seed == 3  # each run seed draws its own single positives
    assert cfg.model.net.name == "resnet10t" and cfg.model.net.stem_stride is None
    assert cfg.logger.csv is not None  # the validation curves the criteria are read from
    assert cfg.callbacks.get("last_checkpoint") is None


def test_the_pretrained_protocol(tmp_path: Path, cache: Path) -> None:
    cfg = preset("benchmark_pretrained", tmp_path)
    net = cfg.model.net
    assert net.pretrained is True
    assert Path(net.weights_path) == cache / "pretrained" / "synthetic_pretrain_resnet10t.pth"
    assert cfg.dataset.datamodule.num_train == 256 and cfg.dataset.datamodule.augment is True
    assert cfg.dataset.datamodule.batch_size == 32
    assert cfg.model.scheduler is None and cfg.trainer.max_epochs == 24


def test_the_pretrained_protocol_reads_the_default_cache_without_the_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SPML_RS_CACHE", raising=False)
    path = Path(preset("benchmark_pretrained", tmp_path).model.net.weights_path).expanduser()
    assert path == Path.home() / ".cache" / "spml_rs" / "pretrained" / path.name


def test_the_scratch_protocol_is_the_former_benchmark(tmp_path: Path, cache: Path) -> None:
    cfg = preset("benchmark_scratch", tmp_path)
    assert cfg.model.net.pretrained is False and cfg.model.net.weights_path is None
    assert cfg.dataset.datamodule.num_train == 500 and cfg.dataset.datamodule.augment is True
    assert cfg.dataset.datamodule.batch_size == 64 and cfg.trainer.max_epochs == 12
    assert cfg.model.scheduler.T_max == 12  # cosine over the run


def test_the_pretraining_recipe_uses_the_pretraining_world(tmp_path: Path, cache: Path) -> None:
    cfg = preset("pretrain_backbone", tmp_path)
    assert cfg.dataset.datamodule.preset == "pretrain" and cfg.label_mode.mode == "full"
    assert cfg.method.name == "full" and cfg.model.net.pretrained is False
    assert cfg.model.net.name == preset("benchmark_pretrained", tmp_path).model.net.name
