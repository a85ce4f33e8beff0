"""Train a single-positive multi-label classifier: ``python -m spml_rs.train [overrides]``.

Compose the config, seed, build datamodule / module / callbacks / loggers /
trainer, fit, test the best checkpoint, write ``results.json`` and print the
test metrics. Returns the metric named by ``optimized_metric`` for sweepers.
"""

from __future__ import annotations

import time
from typing import Any

import hydra
from omegaconf import DictConfig

from spml_rs import builders, resume
from spml_rs.results import print_metrics_table, write_results


def train(cfg: DictConfig) -> dict[str, Any]:
    """Fit and test; returns the test metrics (plus ``val/best`` for sweepers)."""
    started = time.time()
    run_dir = resume.run_directory(cfg)
    # Before the loggers: a resumed run keeps its earlier metrics.csv (CSVLogger deletes it).
    ckpt_path = resume.checkpoint_to_resume(
        cfg.get("ckpt_path"), cfg.get("auto_resume", False), run_dir
    )
    datamodule, module, trainer = builders.build_run(cfg, run_dir)

    trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path)

    metrics: dict[str, Any] = {}
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
        )
        path = write_results(run_dir, metrics, settings)
        print_metrics_table(metrics, "test", title=f"test metrics ({path})")
    return metrics


@hydra.main(version_base="1.3", config_path="configs", config_name="train")
def main(cfg: DictConfig) -> float | None:
    metrics = train(cfg)
    target = cfg.get("optimized_metric")
    value = metrics.get(target) if target else None
    return float(value) if value is not None else None


if __name__ == "__main__":
    main()
