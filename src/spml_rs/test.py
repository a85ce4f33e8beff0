"""Evaluate a checkpoint: ``python -m spml_rs.test ckpt_path=FILE [split=val|test] [overrides]``.

Only the backbone's weights are read from the checkpoint, so any method's
checkpoint evaluates the same way. Pass the dataset/model overrides used for
training. Writes ``results.json`` in the run directory and prints the table.
"""

from __future__ import annotations

from typing import Any

import hydra
import lightning as L
import torch
from omegaconf import DictConfig

from spml_rs import builders, resume
from spml_rs.results import print_metrics_table, write_results

NET_PREFIX = "net."


def load_backbone_weights(module: torch.nn.Module, ckpt_path: str) -> None:
    """Copy the ``net.*`` weights of a Lightning checkpoint into ``module.net``."""
    checkpoint = torch.load(ckpt_path, map_location="cpu", weights_only=False)
    state = checkpoint.get("state_dict")
    if state is None:
        raise ValueError(f"{ckpt_path}: not a Lightning checkpoint (no 'state_dict')")
    net_state = {k[len(NET_PREFIX) :]: v for k, v in state.items() if k.startswith(NET_PREFIX)}
    if not net_state:
        raise ValueError(f"{ckpt_path}: holds no backbone weights (no keys starting with 'net.')")
    try:
        module.net.load_state_dict(net_state)  # type: ignore[union-attr, operator]
    except RuntimeError as error:
        raise ValueError(
            f"{ckpt_path}: backbone weights do not fit model={module.net.__class__.__name__} "
            f"(pass the model/dataset overrides used for training): {error}"
        ) from error


def evaluate(cfg: DictConfig) -> dict[str, Any]:
    run_dir = resume.run_directory(cfg)
    L.seed_everything(cfg.seed, workers=True)
    ckpt_path = resume.resolve_ckpt_path(cfg.ckpt_path, run_dir)
    if ckpt_path is None:
        raise ValueError("spml_rs.test needs ckpt_path=<checkpoint file>")
    datamodule = builders.build_datamodule(cfg)
    module = builders.build_module(cfg, datamodule.info())
    load_backbone_weights(module, ckpt_path)
    trainer = builders.build_trainer(cfg, [], builders.build_loggers(cfg))
    split = cfg.split
    if split == "test":
        tested = trainer.test(module, datamodule=datamodule, verbose=False)
    elif split == "val":
        tested = trainer.validate(module, datamodule=datamodule, verbose=False)
    else:
        raise ValueError(f"split must be 'val' or 'test', got {split!r}")
    metrics: dict[str, Any] = dict(tested[0]) if tested else {}
    if trainer.is_global_zero:
        settings = builders.run_settings(cfg)
        settings.update(evaluated_checkpoint=ckpt_path, split=split)
        path = write_results(run_dir, metrics, settings)
        print_metrics_table(metrics, split, title=f"{split} metrics of {ckpt_path} ({path})")
    return metrics


@hydra.main(version_base="1.3", config_path="configs", config_name="test")
def main(cfg: DictConfig) -> None:
    evaluate(cfg)


if __name__ == "__main__":
    main()
