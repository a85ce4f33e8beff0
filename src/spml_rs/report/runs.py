"""Finished runs on disk: ``results.json`` (scores and settings) and ``metrics.csv`` (curves)."""

from __future__ import annotations

import csv
import statistics
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from spml_rs.results import RESULTS_FILE, read_results

SETTING_KEYS = ("method", "dataset", "label_mode")
METRICS_CSV = "metrics.csv"
ADAGC_PREFIX = "adagc/"


class _Keyed:
    """A (method, *setting) key: the method, then dataset, label_mode and the --by values."""

    key: tuple[str, ...]

    @property
    def method(self) -> str:
        return self.key[0]

    @property
    def setting(self) -> tuple[str, ...]:
        """Everything but the method: dataset, label_mode and the --by values."""
        return self.key[1:]


@dataclass(frozen=True)
class Run(_Keyed):
    """One finished run: its directory, grouping keys, seed and metrics."""

    path: Path
    key: tuple[str, ...]  # method, dataset, label_mode, then the --by values
    seed: Any
    metrics: Mapping[str, float | None]
    config: Mapping[str, Any] = field(default_factory=dict)


# ----------------------------------------------------------------- collection
def find_results(dirs: Iterable[str | Path]) -> list[Path]:
    """Every ``results.json`` at or below each directory, in a stable order."""
    found: list[Path] = []
    for directory in map(Path, dirs):
        if not directory.exists():
            raise FileNotFoundError(f"report: no such run or sweep directory: {directory}")
        found.extend(sorted(directory.rglob(RESULTS_FILE)))
    return found


def config_value(config: Mapping[str, Any], dotted: str) -> Any:
    """``model.optimizer.lr`` -> the value in a nested dict (None when absent)."""
    node: Any = config
    for part in dotted.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    return node


def load_run(path: Path, by: Sequence[str] = ()) -> Run:
    """Read one ``results.json``; a missing key is an error naming the file."""
    payload = read_results(path)
    missing = [k for k in (*SETTING_KEYS, "seed", "metrics") if k not in payload]
    if missing:
        raise ValueError(
            f"{path}: missing key(s) {missing}; expected a results.json of spml_rs.train"
        )
    config = payload.get("config") or {}
    key = tuple(str(payload[k]) for k in SETTING_KEYS)
    key += tuple(f"{name}={config_value(config, name)}" for name in by)
    return Run(path.parent, key, payload["seed"], payload["metrics"], config)


def load_runs(dirs: Iterable[str | Path], by: Sequence[str] = ()) -> list[Run]:
    return [load_run(path, by) for path in find_results(dirs)]


# --------------------------------------------------------------- metrics.csv
def read_metrics_csv(run_dir: Path) -> dict[str, list[tuple[int, float]]]:
    """Per column, the (epoch, value) pairs of the rows where it was logged.

    Lightning's CSVLogger writes one row per logging call with empty cells for
    the other keys, so each column keeps only its own rows; a column logged
    several times in one epoch keeps the last value. A resumed run's earlier
    attempts are in ``metrics.part<k>.csv`` (:mod:`spml_rs.resume`): they are read
    first, so the latest attempt wins for an epoch logged twice.
    """
    parts = sorted(
        run_dir.glob("metrics.part*.csv"), key=lambda p: int(p.stem[len("metrics.part") :])
    )
    series: dict[str, dict[int, float]] = defaultdict(dict)
    for path in [*parts, run_dir / METRICS_CSV]:
        if path.is_file():
            _read_metrics_file(path, series)
    return {name: sorted(values.items()) for name, values in series.items()}


def _read_metrics_file(path: Path, series: dict[str, dict[int, float]]) -> None:
    with open(path, newline="", encoding="utf-8") as handle:
        for line, record in enumerate(csv.DictReader(handle), start=2):
            if not record.get("epoch"):
                continue
            try:
                epoch = int(float(record["epoch"]))
            except ValueError as error:
                raise ValueError(
                    f"{path}, line {line}: epoch {record['epoch']!r} is not a number"
                ) from error
            for name, text in record.items():
                if name not in ("epoch", "step") and text not in ("", None):
                    series[name][epoch] = float(text)


def mean_curve(curves: Sequence[Sequence[tuple[int, float]]]) -> list[tuple[int, float, int]]:
    """(epoch, mean over the curves that have that epoch, how many had it)."""
    at: dict[int, list[float]] = defaultdict(list)
    for curve in curves:
        for epoch, value in curve:
            at[epoch].append(value)
    return [(e, statistics.fmean(v), len(v)) for e, v in sorted(at.items())]
