"""Benchmark tables and plots from finished runs: ``python -m spml_rs.report DIR... [--out DIR]``.

Every ``results.json`` below the given run or sweep directories is one run. Runs
are grouped by (method, dataset, label_mode) plus any ``--by`` config keys; each
group's seeds give a mean and a sample standard deviation (ddof=1) per metric.
Outputs (``--out``, default ``report/`` inside the directory read):

* ``benchmark.md`` -- rows = method, one column group per dataset x label_mode
  setting, cells ``mean ± std`` in percent and the number of seeds;
* ``benchmark.csv`` -- one row per (method, setting): means, stds (fractions) and n;
* ``paired.md`` / ``paired.csv`` -- each method's difference from a baseline (``--baseline``,
  default ``an``) with the same seed, mean and 95% t-interval (:mod:`~spml_rs.report.paired`),
  and ``paired_<setting>.png``, those intervals as a plot (first metric);
* ``per_class_ap_<setting>.png``, ``val_curves_<setting>.png`` (mean over seeds
  of each validation metric per epoch, from each run's ``metrics.csv``) and
  ``adagc_<setting>.png`` when runs logged ``adagc/...`` columns.

The package: :mod:`~spml_rs.report.runs` (reading runs), :mod:`~spml_rs.report.tables`
(aggregation, tables), :mod:`~spml_rs.report.plots` (figures, matplotlib imported only there)
and :mod:`~spml_rs.report.cli` (the command, run by ``__main__``). The names below are the importable core (used by
``benchmarks/``).
"""

from __future__ import annotations

from spml_rs.report.cli import main
from spml_rs.report.paired import (
    PairedDiff,
    PairedRow,
    paired_csv,
    paired_differences,
    paired_interval,
    paired_markdown,
    setting_markdown,
)
from spml_rs.report.runs import (
    ADAGC_PREFIX,
    METRICS_CSV,
    SETTING_KEYS,
    Run,
    config_value,
    find_results,
    load_run,
    load_runs,
    mean_curve,
    read_metrics_csv,
)
from spml_rs.report.tables import DEFAULT_METRICS, Cell, Row, aggregate, to_csv, to_markdown

__all__ = [
    "ADAGC_PREFIX",
    "DEFAULT_METRICS",
    "METRICS_CSV",
    "SETTING_KEYS",
    "Cell",
    "PairedDiff",
    "PairedRow",
    "Row",
    "Run",
    "aggregate",
    "config_value",
    "find_results",
    "load_run",
    "load_runs",
    "main",
    "mean_curve",
    "paired_csv",
    "paired_differences",
    "paired_interval",
    "paired_markdown",
    "read_metrics_csv",
    "setting_markdown",
    "to_csv",
    "to_markdown",
]
