"""From a composed config to live objects: the only place that reads a DictConfig.

``train.py``, ``test.py`` and notebooks (:func:`spml_rs.api.compose`) share these
functions, so a notebook builds exactly what a command-line run builds.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

import lightning as L
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from spml_rs import resume
from spml_rs.data.base import SPMLDataModule
from spml_rs.dataset_info import DatasetInfo
from spml_rs.module import SPMLModule


def build_datamodule(cfg: DictConfig) -> SPMLDataModule:
    datamodule = instantiate(cfg.dataset.datamodule)
    if not isinstance(datamodule, SPMLDataModule):
        raise TypeError(f"dataset.datamodule must build an SPMLDataModule, got {type(datamodule)}")
    return datamodule


def build_net(cfg: DictConfig, info: DatasetInfo) -> torch.nn.Module:
    """The network (backbone and head) sized by the dataset: in_chans inputs, C logits."""
    net: torch.nn.Module = instantiate(
        cfg.model.net, in_chans=info.in_chans, num_classes=info.num_classes
    )
    return net


def build_module(cfg: DictConfig, info: DatasetInfo) -> SPMLModule:
    """Backbone sized by the dataset, the method's loss, optimiser and scheduler.

    The module stores the resolved config, ``info`` and the config group choices in
    its checkpoints (:mod:`spml_rs.checkpoints`).
    """
    net = build_net(cfg, info)
    # Partial first: Hydra would turn the DatasetInfo dataclass into a DictConfig.
    loss = instantiate(cfg.method.loss, _partial_=True)(info=info)
    scheduler = cfg.model.get("scheduler")
    return SPMLModule(
        net=net,
        loss=loss,
        class_names=info.class_names,
        optimizer=instantiate(cfg.model.optimizer),
        scheduler=instantiate(scheduler) if scheduler else None,
        channels_last=cfg.model.get("channels_last", "auto"),
        compile_net=cfg.model.get("compile", False),
        run_config=cast(dict[str, Any], OmegaConf.to_container(cfg, resolve=True)),
        dataset_info=info,
        config_choices=config_choices(),
    )


def config_choices() -> dict[str, str] | None:
    """The option chosen in each config group (``dataset: benv2``, ...) of a Hydra launch."""
    if not HydraConfig.initialized():
        return None
    choices = HydraConfig.get().runtime.choices
    return {
        str(group): str(option)
        for group, option in choices.items()
        if not str(group).startswith("hydra/") and option is not None
    }


def _instantiate_all(group: DictConfig | None) -> list[Any]:
    """Instantiate every entry of a name -> config mapping that has a ``_target_``."""
    if not group:
        return []
    return [instantiate(node) for node in group.values() if node and "_target_" in node]


def build_callbacks(cfg: DictConfig) -> list[L.Callback]:
    """General callbacks (``callbacks/``) followed by the method's own."""
    return _instantiate_all(cfg.get("callbacks")) + _instantiate_all(cfg.method.get("callbacks"))


def build_loggers(cfg: DictConfig) -> list[Any]:
    return _instantiate_all(cfg.get("logger"))


def build_trainer(cfg: DictConfig, callbacks: list[L.Callback], loggers: list[Any]) -> L.Trainer:
    return instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False)


def build_run(cfg: DictConfig, run_dir: Path) -> tuple[SPMLDataModule, SPMLModule, L.Trainer]:
    """Everything a training run needs, seeded: what ``spml_rs.train`` and ``spml_rs.build`` share.

    Seeds, builds the datamodule, the module sized by its :class:`DatasetInfo`, the
    loggers (a W&B logger is pinned to ``run_dir``'s run id, so a requeued job continues
    its W&B run) with the composed config as hyperparameters, the callbacks and the trainer.
    """
    L.seed_everything(cfg.seed, workers=True)
    datamodule = build_datamodule(cfg)
    module = build_module(cfg, datamodule.info())
    resume.pin_wandb_run(cfg, run_dir)
    loggers = build_loggers(cfg)
    trainer = build_trainer(cfg, build_callbacks(cfg), loggers)
    for logger in loggers:
        logger.log_hyperparams(OmegaConf.to_container(cfg, resolve=True))
    return datamodule, module, trainer


def run_settings(cfg: DictConfig) -> dict[str, Any]:
    """The key settings stored in results.json (what a report groups by)."""
    return {
        "method": cfg.method.name,
        "dataset": cfg.dataset.name,
        "label_mode": cfg.label_mode.mode,
        "seed": cfg.seed,
        "model": cfg.model.net.get("name"),
        "max_epochs": cfg.trainer.get("max_epochs"),
        "tags": list(cfg.get("tags") or []),
        "config": OmegaConf.to_container(cfg, resolve=True),
    }
