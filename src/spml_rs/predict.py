"""Predict with a trained checkpoint on images without labels: ``python -m spml_rs.predict``.

    python -m spml_rs.predict ckpt_path=<checkpoint> input=<LMDB | image folder | GeoTIFF folder> \
        output=predictions.parquet [thresholds=val] [metadata=<metadata.parquet> split=test]

The checkpoint is enough: the network, its input bands and the device-side
preprocessing of training come from its stored config (:mod:`spml_rs.run_config`).
Writes one row per image: ``image_id``, one probability ``p_<class>`` per class,
and ``predicted``, the classes above their threshold (:func:`spml_rs.inference.thresholds_for`).
Reading and decoding run in DataLoader workers, scoring in batches on the GPU
when there is one, with a progress bar. An existing output is never replaced
without ``overwrite=true``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import hydra
import pyarrow as pa
from omegaconf import DictConfig
from rich.console import Console
from rich.table import Table

from spml_rs import inference, resume, run_config
from spml_rs.data.unlabelled import open_unlabelled
from spml_rs.results import check_predictions_path, predictions_table, write_predictions


def predict(cfg: DictConfig, overrides: Sequence[str] | None = None) -> pa.Table:
    """Predict ``cfg.input`` with ``cfg.ckpt_path``, write ``cfg.output``; returns the table.

    Args:
        cfg: the composed ``predict`` config (``output`` None: write nothing, as
            :func:`spml_rs.api.predict` does unless asked).
        overrides: the command line's overrides, applied on top of the checkpoint's
            config; default: this Hydra job's.
    """
    output = None if cfg.output is None else Path(cfg.output)
    if output is not None:
        check_predictions_path(output, cfg.overwrite)  # before any work
    given = run_config.task_overrides() if overrides is None else overrides
    train_dir = Path(cfg.train_dir) if cfg.get("train_dir") else resume.run_directory(cfg)
    predictor = inference.load_predictor(cfg, given, train_dir=train_dir, device=cfg.device)
    predictor.show_progress = bool(cfg.progress)
    source = open_unlabelled(
        cfg.input,
        predictor.datamodule,
        kind=cfg.input_kind,
        metadata=cfg.metadata,
        split=cfg.split,
        band_names=tuple(cfg.band_names) if cfg.band_names else None,
    )
    thresholds, origin = inference.thresholds_for(
        cfg.thresholds,
        predictor,
        overwrite=cfg.overwrite,
        batch_size=cfg.batch_size,
        num_workers=cfg.num_workers,
    )
    probs = inference.probabilities(
        predictor,
        source.images,
        source.preprocess,
        batch_size=cfg.batch_size,
        num_workers=cfg.num_workers,
    )
    table = predictions_table(
        source.images.ids.tolist(), probs.numpy(), predictor.class_names, thresholds.numpy()
    )
    if output is not None:
        write_predictions(output, table, overwrite=cfg.overwrite)
    if cfg.progress:
        print_summary(table, output, source.kind, origin)
    return table


def print_summary(
    table: pa.Table, output: Path | None, kind: str, origin: str, rows: int = 5
) -> None:
    """The first rows (id, the three most likely classes, predicted) and where it all went."""
    head = table.slice(0, rows).to_pylist()
    where = f" -> {output}" if output is not None else ""
    shown = Table(title=f"{table.num_rows} images ({kind}){where}; thresholds: {origin}")
    for column in ("image_id", "top classes (p)", "predicted"):
        shown.add_column(column)
    for row in head:
        probs = {k[2:]: v for k, v in row.items() if k.startswith("p_")}
        top = sorted(probs.items(), key=lambda item: -item[1])[:3]
        shown.add_row(
            row["image_id"],
            ", ".join(f"{name} ({p:.2f})" for name, p in top),
            "; ".join(row["predicted"]) or "-",
        )
    Console().print(shown)


@hydra.main(version_base="1.3", config_path="configs", config_name="predict")
def main(cfg: DictConfig) -> None:
    predict(cfg)


if __name__ == "__main__":
    main()
