"""Train a single-positive multi-label classifier: ``python -m spml_rs.train [overrides]``.

Compose the config, check it, seed, build datamodule / module / callbacks /
loggers / trainer, fit, test the best checkpoint, write ``results.json`` and
print the test metrics. Returns the metric named by ``optimized_metric`` for
sweepers. Process set-up (threads, logging, signals) is :mod:`spml_rs.runtime`'s.
"""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, cast

import hydra
from omegaconf import DictConfig, OmegaConf

from spml_rs import runtime

# Before torch is imported (by builders): libgomp reads its wait policy once, when it loads.
runtime.prefer_passive_openmp_waiting()

from spml_rs import builders, checkpoints, resume  # noqa: E402
from spml_rs.config_keys import check_target_keys  # noqa: E402
from spml_rs.results import print_metrics_table, write_results  # noqa: E402

log = logging.getLogger(__name__)
HYDRA_DIR = ".hydra"


def train(cfg: DictConfig) -> dict[str, Any]:
    """Fit and test; returns the test metrics (plus ``val/best`` for sweepers)."""
    started = time.time()
    run_dir = resume.run_directory(cfg)
    with discarded_if_failing(run_dir, f"{cfg.task_name}.log"):
        check_before_training(cfg)
        # Before the loggers: a resumed run keeps its earlier metrics.csv (CSVLogger deletes it).
        ckpt_path = resume.checkpoint_to_resume(
            cfg.get("ckpt_path"),
            cfg.get("auto_resume", False),
            run_dir,
            check=lambda path: checkpoints.check_resumable(
                checkpoints.read_checkpoint(path), resolved(cfg), path
            ),
        )
        resume.check_not_finished(run_dir, ckpt_path is not None, cfg.get("overwrite", False))
        runtime.silence_known_noise(
            csv_log_exists=(run_dir / resume.METRICS_LOG).is_file(), resuming=ckpt_path is not None
        )
        datamodule, module, trainer = builders.build_run(cfg, run_dir)

    metrics: dict[str, Any] = {}
    with runtime.exit_on_sigterm(run_dir):
        trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path)
        checkpoint = trainer.checkpoint_callback
        best_path = getattr(checkpoint, "best_model_path", "") or None
        if checkpoint is not None:
            metrics["val/best_mAP_macro"] = getattr(checkpoint, "best_model_score", None)
        if cfg.get("run_test", True):
            tested = trainer.test(module, datamodule=datamodule, ckpt_path=best_path, verbose=False)
            metrics.update(tested[0] if tested else {})
    if trainer.is_global_zero:
        settings = builders.run_settings(cfg)
        settings.update(
            best_checkpoint=best_path,
            epochs_trained=trainer.current_epoch,
            duration_s=round(time.time() - started, 1),
            runtime=runtime.thread_settings(),
        )
        path = write_results(run_dir, metrics, settings)
        print_metrics_table(metrics, "test", title=f"test metrics ({path})")
    return metrics


def resolved(cfg: DictConfig) -> dict[str, Any]:
    """The composed config as plain containers, interpolations resolved (what checkpoints store)."""
    return cast(dict[str, Any], OmegaConf.to_container(cfg, resolve=True))


def check_before_training(cfg: DictConfig) -> None:
    """Refuse, before anything is built, configs that cannot give a meaningful run.

    Unknown keys of instantiable nodes (typos) and a trainer that would not train
    (the test would score an untrained model).
    """
    check_target_keys(cfg)
    trainer = cfg.trainer
    for key in ("max_epochs", "max_steps", "limit_train_batches"):
        if trainer.get(key) == 0:
            raise ValueError(
                f"trainer.{key}=0 trains nothing, and the test would score an untrained model; "
                f"give trainer.{key} >= 1, or evaluate a checkpoint with python -m spml_rs.test"
            )


@contextmanager
def discarded_if_failing(run_dir: Path, log_name: str) -> Iterator[None]:
    """Remove the run directory Hydra just created when the run fails before training.

    Only a directory that held nothing but Hydra's files for this run (``.hydra/``
    and the log) is removed, so a typo leaves no stray run behind; a directory with
    anything else in it (a run being resumed) is never touched.
    """
    hydra_made = {HYDRA_DIR, log_name}
    fresh = (run_dir / HYDRA_DIR).is_dir() and {p.name for p in run_dir.iterdir()} <= hydra_made
    try:
        yield
    except Exception:
        if fresh:
            shutil.rmtree(run_dir, ignore_errors=True)
            log.error(f"the run failed before training; removed its directory {run_dir}")
        raise


@hydra.main(version_base="1.3", config_path="configs", config_name="train")
def main(cfg: DictConfig) -> float | None:
    runtime.set_up_process(log)
    metrics = train(cfg)
    target = cfg.get("optimized_metric")
    value = metrics.get(target) if target else None
    return float(value) if value is not None else None


if __name__ == "__main__":
    main()
