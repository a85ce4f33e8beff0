"""Run outputs: ``results.json`` and the final table printed at the end of a run."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from spml_rs.fileio import atomic_write_bytes

RESULTS_FILE = "results.json"
MAIN_KEYS = ("mAP_macro", "mAP_micro", "F1_macro", "F1_micro")


def _plain(value: Any) -> Any:
    """Tensors and numpy scalars -> float; NaN -> None (valid JSON)."""
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def write_results(run_dir: Path, metrics: Mapping[str, Any], settings: Mapping[str, Any]) -> Path:
    """Write ``run_dir/results.json`` atomically and return its path."""
    payload = {"metrics": {k: _plain(v) for k, v in metrics.items()}, **settings}
    path = Path(run_dir) / RESULTS_FILE
    atomic_write_bytes(path, json.dumps(payload, indent=2, default=str).encode())
    return path


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
