"""Plots of :mod:`spml_rs.report`: per-class AP, validation curves, AdaGC trigger curves.

One figure per setting (dataset x label_mode [x --by values]), methods as
series. Uses the object-oriented ``Figure`` API, not pyplot: no display needed
and no global backend switched (safe on clusters and inside notebooks).
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from spml_rs.report.paired import PairedRow
from spml_rs.report.runs import ADAGC_PREFIX, Run, mean_curve, read_metrics_csv

DEFAULT_CURVES = ("val/mAP_macro",)
#: AdaGC columns holding an epoch (trigger, detection) are drawn as vertical lines.
EPOCH_MARKERS = ("trigger", "dep", "mid")


def _slug(setting: Sequence[str]) -> str:
    text = "_".join(setting)
    return "".join(ch if ch.isalnum() or ch in "-_.=" else "-" for ch in text)


def _by_setting(runs: Sequence[Run]) -> dict[tuple[str, ...], list[Run]]:
    groups: dict[tuple[str, ...], list[Run]] = defaultdict(list)
    for run in runs:
        groups[run.setting].append(run)
    return dict(sorted(groups.items()))


def per_class_ap(
    runs: Sequence[Run], setting: Sequence[str], path: Path, prefix: str = "test"
) -> bool:
    """Horizontal bars: per class, the mean AP over seeds of every method."""
    marker = f"{prefix}/AP/"
    per_method: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for run in runs:
        for key, value in run.metrics.items():
            if key.startswith(marker) and value is not None:
                per_method[run.method][key[len(marker) :]].append(float(value))
    if not per_method:
        return False
    classes = sorted({c for values in per_method.values() for c in values})
    methods = sorted(per_method)
    height = 0.8 / len(methods)
    fig = Figure(figsize=(9, 0.35 * len(classes) * max(1, len(methods) / 2) + 1.5))
    ax = fig.subplots()
    for i, method in enumerate(methods):
        means = [statistics.fmean(per_method[method].get(c) or [float("nan")]) for c in classes]
        ys = [k + i * height for k in range(len(classes))]
        ax.barh(ys, [100 * m for m in means], height=height, label=method)
    ax.set_yticks([k + 0.4 - height / 2 for k in range(len(classes))])
    ax.set_yticklabels([c if len(c) < 40 else c[:37] + "..." for c in classes], fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel(f"{prefix} AP (%)")
    ax.set_title(f"per-class AP, {' / '.join(setting)} (mean over seeds)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    return True


def val_curves(
    runs: Sequence[Run], setting: Sequence[str], path: Path, columns: Sequence[str] = DEFAULT_CURVES
) -> bool:
    """Each metrics.csv column vs epoch, one line per method (mean over its seeds)."""
    tables = {run.path: read_metrics_csv(run.path) for run in runs}
    fig = Figure(figsize=(5.5 * len(columns), 4))
    axes = fig.subplots(1, len(columns), squeeze=False)
    drawn = False
    for ax, column in zip(axes[0], columns, strict=True):
        for method in sorted({r.method for r in runs}):
            curves = [tables[r.path].get(column, []) for r in runs if r.method == method]
            curve = mean_curve([c for c in curves if c])
            if curve:
                ax.plot(
                    [e for e, _, _ in curve],
                    [100 * v for _, v, _ in curve],
                    marker=".",
                    label=method,
                )
                drawn = True
        ax.set_xlabel("epoch (0 = first)")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel(f"{column} (%)")
        ax.grid(alpha=0.3)
        if ax.lines:  # a column no run logged: no empty legend (and no warning)
            ax.legend(fontsize=7)
    fig.suptitle(f"{' / '.join(setting)}: validation vs epochs (mean over seeds)")
    fig.tight_layout()
    if drawn:
        fig.savefig(path, dpi=120)
    return drawn


def adagc_curves(runs: Sequence[Run], setting: Sequence[str], path: Path) -> bool:
    """AdaGC's training-dynamics signal per run, with its detection epochs as vertical lines.

    Reads the early-learning callback's ``adagc/signal`` (curve), ``adagc/trigger_epoch``,
    ``adagc/dep``, ``adagc/mid`` (dashed lines, as logged) and ``adagc/stage`` (a solid
    line where stage 2, gradient calibration, starts). Returns False (and writes
    nothing) when no run of the setting logged ``adagc/`` columns.
    """
    logged = []
    for run in runs:
        table = {k: v for k, v in read_metrics_csv(run.path).items() if k.startswith(ADAGC_PREFIX)}
        if table:
            logged.append((run, table))
    if not logged:
        return False
    fig = Figure(figsize=(7, 4.5))
    ax = fig.subplots()
    for run, table in logged:
        label = f"{run.method} s{run.seed}"
        for column, curve in sorted(table.items()):
            name = column[len(ADAGC_PREFIX) :]
            if "signal" in name:
                ax.plot(
                    [e for e, _ in curve],
                    [v for _, v in curve],
                    marker=".",
                    label=f"{label} {name}",
                )
            elif any(word in name for word in EPOCH_MARKERS):
                value = curve[-1][1]
                ax.axvline(value, linestyle="--", alpha=0.6, label=f"{label} {name}={value:g}")
            elif name == "stage" and any(v >= 2 for _, v in curve):
                start = min(e for e, v in curve if v >= 2)
                ax.axvline(start, color="k", alpha=0.7, label=f"{label} stage 2 from epoch {start}")
    ax.set_xlabel("epoch (0 = first)")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_title(f"AdaGC training dynamics, {' / '.join(setting)}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    return True


def paired_plot(rows: Sequence[PairedRow], setting: Sequence[str], path: Path, metric: str) -> bool:
    """Per method, the paired Δ of ``metric`` from the baseline with its t-interval.

    A filled marker where the interval excludes 0, an open one where it does not, a
    vertical line at 0; methods top to bottom in the rows' order. False when no row of
    the setting has an interval.
    """
    mine = [r for r in rows if r.setting == tuple(setting) and r.diffs[metric].low is not None]
    if not mine:
        return False
    fig = Figure(figsize=(6.5, 0.3 * len(mine) + 1.6))
    ax = fig.subplots()
    for y, row in enumerate(mine):
        diff = row.diffs[metric]
        assert diff.mean is not None and diff.low is not None and diff.high is not None
        mean, low, high = 100 * diff.mean, 100 * diff.low, 100 * diff.high
        ax.errorbar(mean, y, xerr=[[mean - low], [high - mean]], fmt="o", color="C0", capsize=3,
                    markerfacecolor="C0" if diff.excludes_zero else "white")  # fmt: skip
    ax.axvline(0.0, color="k", linewidth=0.8)
    ax.set_yticks(range(len(mine)))
    ax.set_yticklabels([r.method for r in mine], fontsize=7)
    ax.invert_yaxis()
    n = sorted({len(r.seeds) for r in mine})
    ax.set_xlabel(
        f"Δ {metric} vs {mine[0].baseline} (points; same seeds, n = {'/'.join(map(str, n))})"
    )
    ax.set_title(f"{' / '.join(setting)}: paired difference, 95% t-interval (filled: excludes 0)",
                 fontsize=9)  # fmt: skip
    ax.grid(alpha=0.3, axis="x")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    return True


def write_plots(
    runs: Sequence[Run],
    out: Path,
    curve_columns: Sequence[str] | None = None,
    paired: Sequence[PairedRow] = (),
) -> list[Path]:
    """All figures for all settings (the paired Δ of the first metric of ``paired`` too)."""
    written = []
    metric = next(iter(paired[0].diffs)) if paired else None
    for setting, group in _by_setting(runs).items():
        slug = _slug(setting)
        ap_path, curve_path, adagc_path = (
            out / f"{kind}_{slug}.png" for kind in ("per_class_ap", "val_curves", "adagc")
        )
        if per_class_ap(group, setting, ap_path):
            written.append(ap_path)
        if val_curves(group, setting, curve_path, curve_columns or DEFAULT_CURVES):
            written.append(curve_path)
        if adagc_curves(group, setting, adagc_path):
            written.append(adagc_path)
        paired_path = out / f"paired_{slug}.png"
        if metric is not None and paired_plot(paired, setting, paired_path, metric):
            written.append(paired_path)
    return written
