"""Aggregation over seeds and the Markdown / CSV benchmark tables."""

from __future__ import annotations

import csv
import io
import math
import statistics
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from spml_rs.report.runs import SETTING_KEYS, Run, _Keyed
from spml_rs.results import MAIN_KEYS

DEFAULT_METRICS = tuple(f"test/{key}" for key in MAIN_KEYS)


@dataclass
class Cell:
    """Mean and sample std over seeds of one metric (None where nothing was measured)."""

    mean: float | None
    std: float | None
    n: int


@dataclass
class Row(_Keyed):
    key: tuple[str, ...]
    seeds: list[Any]
    cells: dict[str, Cell]


# ---------------------------------------------------------------- aggregation
def _flatten(config: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for name, value in config.items():
        if isinstance(value, Mapping):
            flat.update(_flatten(value, f"{prefix}{name}."))
        else:
            flat[f"{prefix}{name}"] = value
    return flat


def _differing_keys(a: Mapping[str, Any], b: Mapping[str, Any]) -> list[str]:
    """Config keys whose values differ between two runs (paths excluded)."""
    fa, fb = _flatten(a), _flatten(b)
    keys = sorted(k for k in fa.keys() | fb.keys() if fa.get(k) != fb.get(k))
    return [k for k in keys if not k.startswith(("paths.", "hydra."))]


def _check_unique_seeds(group: Sequence[Run]) -> None:
    """Two runs of one group with the same seed are a sweep, not repetitions: refuse."""
    by_seed: dict[Any, Run] = {}
    for run in group:
        other = by_seed.setdefault(run.seed, run)
        if other is not run:
            differing = _differing_keys(other.config, run.config)[:8]
            raise ValueError(
                f"runs {other.path} and {run.path} share method/dataset/label_mode "
                f"{'/'.join(run.key)} and seed {run.seed}; separate them with --by KEY "
                f"(config keys that differ: {differing or 'none, pass one directory per repeat'})"
            )


def _cell(values: Sequence[float | None]) -> Cell:
    finite = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    if not finite:
        return Cell(None, None, 0)
    std = statistics.stdev(finite) if len(finite) > 1 else None
    return Cell(statistics.fmean(finite), std, len(finite))


def aggregate(runs: Sequence[Run], metrics: Sequence[str] = DEFAULT_METRICS) -> list[Row]:
    """Group runs by key and average each metric over seeds.

    Returns one :class:`Row` per (method, setting), ordered by setting then method.
    """
    groups: dict[tuple[str, ...], list[Run]] = defaultdict(list)
    for run in runs:
        groups[run.key].append(run)
    rows = []
    for key in sorted(groups, key=lambda k: (k[1:], k[0])):
        group = sorted(groups[key], key=lambda r: str(r.seed))
        _check_unique_seeds(group)
        cells = {m: _cell([r.metrics.get(m) for r in group]) for m in metrics}
        rows.append(Row(key, [r.seed for r in group], cells))
    return rows


# -------------------------------------------------------------------- tables
def _fmt(cell: Cell) -> str:
    if cell.mean is None:
        return "n/a"
    text = f"{100 * cell.mean:.2f}"
    return text if cell.std is None else f"{text} ± {100 * cell.std:.2f}"


def _short(metric: str) -> str:
    return metric.split("/", 1)[-1].replace("_", " ")


def _ordered(found: set[Any], first: Sequence[Any]) -> list[Any]:
    """The items of ``first`` that were found, in that order, then the others sorted."""
    return [x for x in first if x in found] + sorted(found - set(first))


def to_markdown(
    rows: Sequence[Row],
    metrics: Sequence[str] = DEFAULT_METRICS,
    method_order: Sequence[str] = (),
    setting_order: Sequence[tuple[str, ...]] = (),
) -> str:
    """Rows = method; per setting the metrics (percent, mean ± std) and the seed count.

    Methods and settings come in ``method_order`` / ``setting_order`` first, the
    rest alphabetically.
    """
    table = method_by_setting(
        rows, metrics, method_order, setting_order,
        column=_short, cells=lambda row: [_fmt(row.cells[m]) for m in metrics], count="seeds",
    )  # fmt: skip
    note = "Test scores in percent, mean ± sample std over seeds (std omitted for one seed)."
    return "\n".join([table, "", note, ""])


def method_by_setting(
    rows: Sequence[Any],  # Row or PairedRow: keyed, with .seeds
    metrics: Sequence[str],
    method_order: Sequence[str],
    setting_order: Sequence[tuple[str, ...]],
    *,
    column: Callable[[str], str],
    cells: Callable[[Any], list[str]],
    count: str,
) -> str:
    """A Markdown table, one line per method and per setting one column per metric.

    ``column(metric)`` names a metric's column, ``cells(row)`` gives a row's cells for
    ``metrics``; the last column of each setting is ``count`` (``row.seeds``' length).
    Missing (method, setting) pairs are dashes.
    """
    settings = _ordered({r.setting for r in rows}, setting_order)
    methods = _ordered({r.method for r in rows}, method_order)
    by_key = {r.key: r for r in rows}
    header = ["method"]
    for setting in settings:
        name = " / ".join(setting)
        header += [f"{name}: {column(m)}" for m in metrics] + [f"{name}: {count}"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for method in methods:
        line = [method]
        for setting in settings:
            row = by_key.get((method, *setting))
            if row is None:
                line += ["—"] * (len(metrics) + 1)
            else:
                line += [*cells(row), str(len(row.seeds))]
        lines.append("| " + " | ".join(line) + " |")
    return "\n".join(lines)


def to_csv(
    rows: Sequence[Row], metrics: Sequence[str] = DEFAULT_METRICS, by: Sequence[str] = ()
) -> str:
    """One line per (method, setting): n_seeds, seeds, then mean and std (fractions) per metric."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(
        [*SETTING_KEYS, *by, "n_seeds", "seeds"]
        + [f"{m}_{stat}" for m in metrics for stat in ("mean", "std")]
    )
    for row in rows:
        values: list[Any] = [*row.key, len(row.seeds), " ".join(map(str, row.seeds))]
        for m in metrics:
            cell = row.cells[m]
            values += ["" if cell.mean is None else cell.mean, "" if cell.std is None else cell.std]
        writer.writerow(values)
    return buffer.getvalue()
