"""Run outputs: ``results.json``, an evaluation's ``results_<split>_<time>.json``, predictions.

A training run writes ``results.json`` (the file ``spml_rs.report`` aggregates). An
evaluation (``spml_rs.test``) writes ``results_<split>_<time>.json`` instead, wherever
it runs: it can never replace a training run's results, two evaluations never replace
each other, and a report over a tree of runs does not count an evaluated run twice.
"""

from __future__ import annotations

import io
import json
import math
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
from rich.console import Console
from rich.table import Table

from spml_rs.fileio import atomic_write_bytes

RESULTS_FILE = "results.json"
MAIN_KEYS = ("mAP_macro", "mAP_micro", "F1_macro", "F1_micro", "F1_macro_valthr")


def _plain(value: Any) -> Any:
    """Tensors and numpy scalars -> float; NaN -> None (valid JSON)."""
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def write_results(run_dir: Path, metrics: Mapping[str, Any], settings: Mapping[str, Any]) -> Path:
    """Write ``run_dir/results.json`` atomically and return its path."""
    return _write(Path(run_dir) / RESULTS_FILE, metrics, settings)


def _write(path: Path, metrics: Mapping[str, Any], settings: Mapping[str, Any]) -> Path:
    payload = {"metrics": {k: _plain(v) for k, v in metrics.items()}, **settings}
    atomic_write_bytes(path, json.dumps(payload, indent=2, default=str).encode())
    return path


def write_evaluation_results(
    run_dir: Path, metrics: Mapping[str, Any], settings: Mapping[str, Any], split: str
) -> Path:
    """Write ``run_dir/results_<split>_<time>.json`` (a new file, never an existing one)."""
    stamp = time.strftime("%Y-%m-%d_%H-%M-%S")
    path = Path(run_dir) / f"results_{split}_{stamp}.json"
    for k in range(1, 100):
        if not path.exists():
            break
        path = Path(run_dir) / f"results_{split}_{stamp}_{k}.json"
    else:
        raise FileExistsError(f"{run_dir}: too many evaluation results named {path.name}")
    return _write(path, metrics, settings)


def read_results(path: Path) -> dict[str, Any]:
    with open(path, encoding="utf-8") as handle:
        result: dict[str, Any] = json.load(handle)
    return result


def print_metrics_table(metrics: Mapping[str, Any], prefix: str, title: str) -> None:
    """Main scores, then per-class AP, as a rich table on stdout."""
    table = Table(title=title, show_lines=False)
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key in MAIN_KEYS:
        value = _plain(metrics.get(f"{prefix}/{key}"))
        table.add_row(key, "n/a" if value is None else f"{100 * value:.2f}")
    per_class = {k: v for k, v in metrics.items() if k.startswith(f"{prefix}/AP/")}
    if per_class:
        table.add_section()
        for key, value in per_class.items():
            value = _plain(value)
            table.add_row(
                f"AP {key.split('/AP/')[1]}", "n/a" if value is None else f"{100 * value:.2f}"
            )
    Console().print(table)


# ---------------------------------------------------------------- predictions
PREDICTION_SUFFIXES = (".parquet", ".csv")


def check_predictions_path(path: Path, overwrite: bool) -> None:
    """Refuse an output that exists (without ``overwrite``) or has an unknown suffix."""
    if path.suffix.lower() not in PREDICTION_SUFFIXES:
        raise ValueError(f"output {path}: the suffix must be one of {PREDICTION_SUFFIXES}")
    if path.exists() and not overwrite:
        raise FileExistsError(f"output {path} exists; pass overwrite=true to replace it")


def predictions_table(
    image_ids: Sequence[str], probs: np.ndarray, class_names: Sequence[str], thresholds: np.ndarray
) -> pa.Table:
    """``image_id``, one ``p_<class>`` per class, ``predicted`` (the classes with p > threshold).

    Args:
        image_ids: (N,) ids.
        probs: (N, C) float32 probabilities.
        class_names: (C,) names, in the model's order.
        thresholds: (C,) per-class thresholds.
    """
    above = probs > thresholds[None, :]
    names = np.asarray(class_names, dtype=object)
    predicted = [names[row].tolist() for row in above]
    columns = {"image_id": pa.array(list(image_ids), pa.string())}
    columns.update({f"p_{n}": pa.array(probs[:, c], pa.float32()) for c, n in enumerate(names)})
    columns["predicted"] = pa.array(predicted, pa.list_(pa.string()))
    return pa.table(columns)


def write_predictions(path: Path, table: pa.Table, overwrite: bool = False) -> None:
    """Parquet (``predicted`` a list column) or CSV (``predicted`` joined by ``;``), atomically."""
    check_predictions_path(path, overwrite)
    buffer = io.BytesIO()
    if path.suffix.lower() == ".parquet":
        pq.write_table(table, buffer)
    else:
        index = table.schema.get_field_index("predicted")
        joined = pc.binary_join(table.column("predicted"), ";")
        pa_csv.write_csv(table.set_column(index, "predicted", joined), buffer)
    atomic_write_bytes(path, buffer.getvalue())


def print_predictions_summary(
    table: pa.Table, output: Path | None, kind: str, origin: str, rows: int = 5
) -> None:
    """The first rows (id, the three most likely classes, how many predicted) and where it went."""
    where = f" -> {output}" if output is not None else ""
    shown = Table(title=f"{table.num_rows} images ({kind}){where}\nthresholds: {origin}")
    shown.add_column("image_id", overflow="fold")
    shown.add_column("most likely (p)")
    shown.add_column("predicted", justify="right")
    for row in table.slice(0, rows).to_pylist():
        probs = {k[2:]: v for k, v in row.items() if k.startswith("p_")}
        top = sorted(probs.items(), key=lambda item: -item[1])[:3]
        likely = ", ".join(f"{name} ({p:.2f})" for name, p in top)
        shown.add_row(row["image_id"], likely, f"{len(row['predicted'])} classes")
    Console().print(shown)
