"""Public API for notebooks and scripts: configs and objects without Hydra boilerplate.

>>> from spml_rs import compose, build, fit
>>> cfg = compose(["method=an", "trainer.max_epochs=2"])
>>> datamodule, module, trainer = build(cfg)
>>> trainer.fit(module, datamodule=datamodule)          # or: metrics = fit(cfg)

:func:`compose` reads the packaged configs exactly as ``python -m spml_rs.train``
does, so a notebook and a command line with the same overrides build the same
objects (both go through :mod:`spml_rs.builders`).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning as L
import torch
from hydra import compose as hydra_compose
from hydra import initialize_config_module
from omegaconf import DictConfig, open_dict

from spml_rs import builders, resume
from spml_rs.data.base import SPMLDataModule
from spml_rs.module import SPMLModule

CONFIG_MODULE = "spml_rs.configs"


def compose(
    overrides: Sequence[str] | None = None,
    config_name: str = "train",
    output_dir: str | Path | None = None,
) -> DictConfig:
    """Compose a packaged config (``train`` or ``test``) with command-line style overrides.

    Outside a Hydra run there is no Hydra output directory, so ``paths.output_dir``
    is set to ``output_dir`` or, by default, ``<paths.log_dir>/notebook/<timestamp>``
    (created only when something is written there).

    Args:
        overrides: e.g. ``["method=an", "dataset=synthetic_rgb", "trainer.max_epochs=3"]``.
        config_name: top-level config, ``train`` or ``test``.
        output_dir: run directory for checkpoints, ``metrics.csv`` and ``results.json``.
    """
    with initialize_config_module(config_module=CONFIG_MODULE, version_base="1.3"):
        cfg = hydra_compose(config_name=config_name, overrides=list(overrides or []))
    with open_dict(cfg):
        if output_dir is None:
            stamp = time.strftime("%Y-%m-%d_%H-%M-%S")
            output_dir = Path(str(cfg.paths.log_dir)) / "notebook" / stamp
        cfg.paths.output_dir = str(output_dir)
    return cfg


def build(cfg: DictConfig) -> tuple[SPMLDataModule, SPMLModule, L.Trainer]:
    """Datamodule, module and trainer (with the config's callbacks and loggers), seeded.

    The same objects :func:`spml_rs.train.train` builds; call
    ``trainer.fit(module, datamodule=datamodule)`` to train.
    """
    return builders.build_run(cfg, resume.run_directory(cfg))


def fit(cfg: DictConfig) -> dict[str, Any]:
    """Fit, test the best checkpoint and write ``results.json``: the command line's job."""
    from spml_rs.train import train  # the entry point module imports Hydra's app machinery

    return train(cfg)


@torch.no_grad()
def predict(
    module: SPMLModule,
    datamodule: SPMLDataModule,
    split: str = "test",
    max_batches: int | None = None,
) -> dict[str, torch.Tensor]:
    """Probabilities of ``split`` with the full labels, preprocessed as in evaluation.

    Returns CPU tensors ``probs`` (N, C), ``labels`` (N, C) and ``images`` (N, ch, H, W),
    the normalised images the model saw.
    """
    module.eval()
    out: dict[str, list[torch.Tensor]] = {"probs": [], "labels": [], "images": []}
    for i, batch in enumerate(datamodule.dataloader(split)):
        if max_batches is not None and i >= max_batches:
            break
        batch = {k: v.to(module.device) if torch.is_tensor(v) else v for k, v in batch.items()}
        batch = datamodule.on_after_batch_transfer(batch, 0)  # normalisation, no augmentation
        out["probs"].append(torch.sigmoid(module(batch["image"]).float()).cpu())
        out["labels"].append(batch["label"].cpu())
        out["images"].append(batch["image"].cpu())
    return {k: torch.cat(v) for k, v in out.items()}
