"""Evaluate a checkpoint: ``python -m spml_rs.test ckpt_path=FILE [split=val|test] [overrides]``.

The checkpoint is enough: it stores the training run's config, from which the
datamodule and model are rebuilt (:mod:`spml_rs.run_config`); overrides win, e.g.
``dataset.datamodule.root=<path>`` on another machine, ``trainer=cpu`` without a GPU.
``ckpt_path=last`` / ``ckpt_path=best`` name a training run's checkpoints with
``train_dir=<that run's directory>``.

Only the network's weights (and the per-class validation thresholds of
``F1_macro_valthr``) are read from the checkpoint, so any method's checkpoint
evaluates the same way. The scores go to ``results_<split>_<time>.json`` in this
evaluation's run directory and are printed; nothing of the training run is written.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from spml_rs import runtime

# Before torch is imported: libgomp reads its wait policy once, when it loads.
runtime.prefer_passive_openmp_waiting()

import hydra  # noqa: E402
import lightning as L  # noqa: E402
from lightning.pytorch.utilities import rank_zero_warn  # noqa: E402
from omegaconf import DictConfig  # noqa: E402

from spml_rs import builders, checkpoints, resume, run_config  # noqa: E402
from spml_rs.module import SPMLModule  # noqa: E402
from spml_rs.results import print_metrics_table, write_evaluation_results  # noqa: E402

log = logging.getLogger(__name__)


def load_evaluated_state(module: SPMLModule, checkpoint: Mapping[str, Any], ckpt_path: str) -> None:
    """The checkpoint's network weights and validation thresholds, into ``module``."""
    checkpoints.load_net_weights(module.net, checkpoint, ckpt_path)
    thresholds = checkpoints.stored_thresholds(checkpoint)
    if thresholds is None:
        rank_zero_warn(
            f"{ckpt_path}: no validation thresholds in the checkpoint (written before they "
            "were stored, or before its first validation): F1_macro_valthr is not reported"
        )
    else:
        module.val_thresholds.copy_(thresholds)


def evaluate(cfg: DictConfig, overrides: Sequence[str] | None = None) -> dict[str, Any]:
    """Test (or validate) ``cfg.ckpt_path``; returns the metrics.

    Args:
        cfg: the composed ``test`` config.
        overrides: the command line's overrides, applied on top of the checkpoint's
            config; default: this Hydra job's.
    """
    run_dir = resume.run_directory(cfg)
    if cfg.ckpt_path is None:
        raise ValueError("spml_rs.test needs ckpt_path=<checkpoint file> (or last / best)")
    train_dir = Path(cfg.train_dir) if cfg.get("train_dir") else run_dir
    ckpt_path = resume.evaluated_checkpoint(str(cfg.ckpt_path), train_dir)
    checkpoint = checkpoints.read_checkpoint(ckpt_path)
    given = run_config.task_overrides() if overrides is None else overrides
    cfg = run_config.checkpoint_config(cfg, checkpoint, ckpt_path, given)
    L.seed_everything(cfg.seed, workers=True)
    datamodule = builders.build_datamodule(cfg)
    info = checkpoints.stored_dataset_info(checkpoint) or datamodule.info()
    run_config.check_inputs_match(datamodule, info, ckpt_path)
    module = builders.build_module(cfg, info)
    load_evaluated_state(module, checkpoint, ckpt_path)
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
        path = write_evaluation_results(run_dir, metrics, settings, split)
        print_metrics_table(metrics, split, title=f"{split} metrics of {ckpt_path} ({path})")
    return metrics


@hydra.main(version_base="1.3", config_path="configs", config_name="test")
def main(cfg: DictConfig) -> None:
    runtime.set_up_process(log)
    evaluate(cfg)


if __name__ == "__main__":
    main()
