"""Every config group option composes and instantiates; unsupported combinations fail early."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from hydra.errors import InstantiationException

import spml_rs.configs
from spml_rs import builders
from spml_rs.label_files import write_single_positives
from spml_testing import DATASET_TINY

CONFIG_ROOT = Path(spml_rs.configs.__file__).parent
LABEL_MODES = ("full", "random", "dominant", "manual")
#: (dataset, label mode) pairs that must be refused at start-up, with the reason's wording.
REFUSED = {("aid", "dominant"): "no pixel masks"}


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONFIG_ROOT / group).glob("*.yaml"))


def test_every_dataset_config_has_test_sizes() -> None:
    assert set(options("dataset")) == set(DATASET_TINY)
    assert set(options("label_mode")) == set(LABEL_MODES)


def _label_file(make_cfg, dataset: str, mode: str, tmp_path: Path) -> list[str]:
    """A label file for the modes that need one: the first true class of each train image."""
    if mode == "manual" or (mode == "dominant" and dataset == "benv2"):
        reference = builders.build_datamodule(
            make_cfg(*DATASET_TINY[dataset], "label_mode=full", tiny=False)
        )
        ids, labels = reference.index.split_labels("train")
        path = tmp_path / f"{mode}.csv"
        write_single_positives(path, list(ids), labels.argmax(axis=1), reference.class_names)
        return [f"label_mode.path={path}"]
    return []


@pytest.mark.parametrize("mode", LABEL_MODES)
@pytest.mark.parametrize("dataset", sorted(DATASET_TINY))
def test_dataset_and_label_mode_instantiate(
    make_cfg, tmp_path: Path, dataset: str, mode: str
) -> None:
    extra = _label_file(make_cfg, dataset, mode, tmp_path)
    cfg = make_cfg(*DATASET_TINY[dataset], f"label_mode={mode}", *extra, tiny=False)
    if (dataset, mode) in REFUSED:
        with pytest.raises(InstantiationException, match=REFUSED[dataset, mode]):
            builders.build_datamodule(cfg)
        return
    datamodule = builders.build_datamodule(cfg)
    datamodule.setup("fit")
    targets = datamodule.datasets["train"].targets
    if mode == "full":
        np.testing.assert_array_equal(targets, datamodule.datasets["train"].labels)
    else:
        assert np.all((targets == 1).sum(axis=1) == 1) and np.all((targets == 0).sum(axis=1) == 0)
    module = builders.build_module(cfg, datamodule.info())
    batch = next(iter(datamodule.train_dataloader()))
    image = datamodule.normalize(batch["image"])
    assert image.shape[1] == datamodule.in_chans and image.dtype == torch.float32
    assert module(image).shape == (len(image), len(datamodule.class_names))


@pytest.mark.parametrize("method", options("method"))
def test_every_method_config_builds_its_loss_and_callbacks(make_cfg, method: str) -> None:
    cfg = make_cfg(f"method={method}")
    datamodule = builders.build_datamodule(cfg)
    module = builders.build_module(cfg, datamodule.info())
    assert cfg.method.name == method
    assert isinstance(builders.build_callbacks(cfg), list)
    logits = torch.zeros(4, len(datamodule.class_names), requires_grad=True)
    target = -torch.ones(4, len(datamodule.class_names), dtype=torch.int8)
    target[:, 0] = 1
    batch = {"target": target, "label": (target == 1).to(torch.uint8), "index": torch.arange(4)}
    module.loss.set_epoch(0, cfg.trainer.max_epochs)
    assert torch.isfinite(module.loss(logits, batch)["loss"])


@pytest.mark.parametrize("model", options("model"))
def test_every_model_builds_with_dataset_channels(make_cfg, model: str) -> None:
    cfg = make_cfg(f"model={model}", "model.net.pretrained=false", tiny=False)
    net = builders.build_module(cfg, builders.build_datamodule(cfg).info()).net
    assert net(torch.zeros(2, 10, 64, 64)).shape == (2, 19)


@pytest.mark.parametrize("trainer", options("trainer"))
def test_every_trainer_composes(make_cfg, trainer: str) -> None:
    cfg = make_cfg(f"trainer={trainer}")
    if cfg.trainer.accelerator == "gpu" and not torch.cuda.is_available():
        assert cfg.trainer.precision == "bf16-mixed"  # GPU settings compose; no GPU to build on
        return
    built = builders.build_trainer(cfg, [], [])
    assert built.max_epochs == cfg.trainer.max_epochs


@pytest.mark.parametrize("logger", options("logger"))
def test_every_logger_instantiates_offline(make_cfg, logger: str) -> None:
    cfg = make_cfg(f"logger={logger}")
    loggers = builders.build_loggers(cfg)
    names = {type(x).__name__ for x in loggers}
    expected = {"csv": {"CSVLogger"}, "wandb": {"CSVLogger", "WandbLogger"}, "none": set()}[logger]
    assert names == expected
    if logger == "wandb":
        assert cfg.logger.wandb.offline is True


@pytest.mark.parametrize("experiment", options("experiment"))
def test_every_experiment_preset_composes_and_builds(make_cfg, experiment: str) -> None:
    dataset = make_cfg(f"experiment={experiment}", tiny=False).dataset.name
    assert dataset in DATASET_TINY, f"experiment {experiment} uses an untested dataset {dataset}"
    root = [o for o in DATASET_TINY[dataset] if o.startswith("dataset.datamodule.root")]
    cfg = make_cfg(f"experiment={experiment}", *root, "model.net.pretrained=false", tiny=False)
    assert cfg.trainer.max_epochs >= 1 and cfg.model.net.name
    if cfg.label_mode.mode == "dominant" and not cfg.label_mode.path:
        # The user generates the Dominant file first; without it the start-up error says how.
        with pytest.raises(InstantiationException, match="prepare spml-labels"):
            builders.build_datamodule(cfg).setup("fit")
        return
    datamodule = builders.build_datamodule(cfg)
    builders.build_module(cfg, datamodule.info())
