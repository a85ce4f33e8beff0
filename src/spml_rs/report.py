"""Benchmark tables and plots from finished runs: ``python -m spml_rs.report DIR... [--out DIR]``.

Every ``results.json`` below the given run or sweep directories is one run. Runs
are grouped by (method, dataset, label_mode) plus any ``--by`` config keys; each
group's seeds give a mean and a sample standard deviation (ddof=1) per metric.
Outputs (``--out``, default ``./report``):

* ``benchmark.md`` -- rows = method, one column group per dataset x label_mode
  setting, cells ``mean ± std`` in percent and the number of seeds;
* ``benchmark.csv`` -- one row per (method, setting): means, stds (fractions) and n;
* ``per_class_ap_<setting>.png``, ``val_curves_<setting>.png`` (mean over seeds
  of each validation metric per epoch, from each run's ``metrics.csv``) and
  ``adagc_<setting>.png`` when runs logged ``adagc/...`` columns.

:func:`aggregate` is the importable core (used by ``benchmarks/``).
"""

from __future__ import annotations

import argparse
import csv
import io
import math
import statistics
import sys
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from spml_rs.results import MAIN_KEYS, RESULTS_FILE, read_results

DEFAULT_METRICS = tuple(f"test/{key}" for key in MAIN_KEYS)
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
    settings = _ordered({r.setting for r in rows}, setting_order)
    methods = _ordered({r.method for r in rows}, method_order)
    by_key = {r.key: r for r in rows}
    header = ["method"]
    for setting in settings:
        name = " / ".join(setting)
        header += [f"{name}: {_short(m)}" for m in metrics] + [f"{name}: seeds"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for method in methods:
        cells = [method]
        for setting in settings:
            row = by_key.get((method, *setting))
            if row is None:
                cells += ["—"] * (len(metrics) + 1)
            else:
                cells += [_fmt(row.cells[m]) for m in metrics] + [str(len(row.seeds))]
        lines.append("| " + " | ".join(cells) + " |")
    note = "Test scores in percent, mean ± sample std over seeds (std omitted for one seed)."
    return "\n".join([*lines, "", note, ""])


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


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    runs = load_runs(args.dirs, args.by)
    if not runs:
        print(f"report: no {RESULTS_FILE} below {', '.join(args.dirs)}", file=sys.stderr)
        return 1
    metrics = tuple(args.metric or DEFAULT_METRICS)
    rows = aggregate(runs, metrics)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    markdown = to_markdown(rows, metrics)
    (out / "benchmark.md").write_text(markdown, encoding="utf-8")
    (out / "benchmark.csv").write_text(to_csv(rows, metrics, args.by), encoding="utf-8")
    written = [out / "benchmark.md", out / "benchmark.csv"]
    if not args.no_plots:
        from spml_rs.report_plots import write_plots  # matplotlib only when plotting

        written += write_plots(runs, out, args.curve_metric)
    print(markdown)
    print(f"{len(runs)} runs, {len(rows)} rows; wrote:\n  " + "\n  ".join(map(str, written)))
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m spml_rs.report", description=__doc__.split("\n")[0]
    )
    parser.add_argument("dirs", nargs="+", help="run or sweep directories (searched recursively)")
    parser.add_argument("--out", default="report", help="output directory (default: ./report)")
    parser.add_argument(
        "--metric",
        action="append",
        help=f"metric key of results.json, repeatable (default: {' '.join(DEFAULT_METRICS)})",
    )
    parser.add_argument(
        "--by",
        action="append",
        default=[],
        help="extra config key to group by, e.g. --by model.optimizer.lr (repeatable)",
    )
    parser.add_argument(
        "--curve-metric",
        action="append",
        help="metrics.csv column(s) for the curves (default: val/mAP_macro)",
    )
    parser.add_argument("--no-plots", action="store_true", help="tables only")
    return parser


if __name__ == "__main__":
    raise SystemExit(main())
