"""python -m spml_rs.pretrain: the benchmark's backbone, trained once, cached, loaded exactly."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from hydra.core.global_hydra import GlobalHydra
from hydra.errors import InstantiationException

from spml_rs import pretrain
from spml_rs.api import compose
from spml_rs.models import create_backbone
from spml_rs.train import train
from spml_testing import TINY_SYNTHETIC

#: the pretraining recipe at test size: a tiny timm model, one epoch, tiny splits
TINY_RECIPE = (
    *TINY_SYNTHETIC,
    "model.net.name=test_resnet",
    "trainer.max_epochs=1",
    "callbacks.progress_bar=null",
)


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """SPML_RS_CACHE, as a user sets it: paths.cache_dir and the benchmark preset read it."""
    monkeypatch.setenv("SPML_RS_CACHE", str(tmp_path / "cache"))
    yield tmp_path / "cache"
    GlobalHydra.instance().clear()


def test_pretraining_writes_the_backbone_once_and_it_loads_exactly(cache: Path) -> None:
    path = pretrain.pretrained_backbone(TINY_RECIPE)
    assert path == cache / "pretrained" / "synthetic_pretrain_test_resnet.pth"
    summary = json.loads(path.with_suffix(".json").read_text())
    assert summary["recipe"]["dataset"]["datamodule"]["preset"] == "pretrain"
    assert "root" not in summary["recipe"]["dataset"]["datamodule"]
    assert 0 < summary["val/best_mAP_macro"] <= 1
    # the weights are the best checkpoint's network, classifier dropped
    checkpoint = torch.load(summary["checkpoint"], map_location="cpu", weights_only=False)
    network = {k[4:]: v for k, v in checkpoint["state_dict"].items() if k.startswith("net.")}
    saved = torch.load(path, map_location="cpu", weights_only=True)
    assert set(saved) == {k for k in network if not k.startswith("fc.")}
    model = create_backbone(
        name="test_resnet", in_chans=10, num_classes=19, pretrained=True, weights_path=str(path)
    )
    state = model.state_dict()
    for key, tensor in saved.items():
        assert torch.equal(state[key], tensor), key
    assert state["fc.weight"].shape[0] == 19
    # a second call with the same recipe reuses the file
    written = path.stat().st_mtime_ns
    assert pretrain.pretrained_backbone(TINY_RECIPE) == path
    assert path.stat().st_mtime_ns == written


def test_another_recipe_is_refused_unless_overwrite(
    cache: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = pretrain.pretrained_backbone(TINY_RECIPE)
    first = json.loads(path.with_suffix(".json").read_text())["fingerprint"]
    other = [*TINY_RECIPE, "model.optimizer.lr=0.01"]
    with pytest.raises(FileExistsError, match=r"another recipe.*--overwrite"):
        pretrain.pretrained_backbone(other)
    assert pretrain.main(other) == 1
    assert "--overwrite" in capsys.readouterr().err
    assert pretrain.main(["--overwrite", *other]) == 0
    assert capsys.readouterr().out.strip() == str(path)
    second = json.loads(path.with_suffix(".json").read_text())
    assert second["fingerprint"] != first and second["recipe"]["model"]["optimizer"]["lr"] == 0.01


def test_loader_settings_are_not_part_of_the_recipe(cache: Path) -> None:
    base = pretrain.recipe(compose([pretrain.EXPERIMENT, *TINY_RECIPE]))
    faster = [*TINY_RECIPE, "dataset.datamodule.num_workers=2", "model.channels_last=on"]
    assert pretrain.recipe(compose([pretrain.EXPERIMENT, *faster])) == base
    bigger = [o for o in TINY_RECIPE if "num_train" not in o] + ["dataset.datamodule.num_train=128"]
    assert pretrain.fingerprint(pretrain.recipe(compose([pretrain.EXPERIMENT, *bigger]))) != (
        pretrain.fingerprint(base)
    )


def test_the_benchmark_preset_trains_from_the_cached_backbone(cache: Path, tmp_path: Path) -> None:
    path = pretrain.pretrained_backbone(TINY_RECIPE)
    overrides = [
        "experiment=benchmark_pretrained", "method=an", "model.net.name=test_resnet",
        *TINY_SYNTHETIC, "trainer.max_epochs=1",
    ]  # fmt: skip
    cfg = compose(overrides, output_dir=tmp_path / "run")
    assert Path(cfg.model.net.weights_path) == path and cfg.model.net.pretrained
    assert cfg.dataset.datamodule.label_seed == cfg.seed  # one draw of single positives per seed
    metrics = train(cfg)
    assert 0 < metrics["test/mAP_macro"] <= 1
    (path.parent / "moved.pth").write_bytes(path.read_bytes())
    path.unlink()
    with pytest.raises(
        InstantiationException,
        match=r"weights_path: no such file: .*synthetic_pretrain_test_resnet\.pth",
    ):
        train(compose(overrides, output_dir=tmp_path / "missing"))
