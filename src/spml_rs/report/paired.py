"""Paired differences from a baseline method, with t-intervals: what a seed std cannot show.

Runs of two methods with the same seed, dataset and label mode see the same data, the
same single positives and the same sampler order; most of the seed-to-seed spread (which
images are hard, which positive was drawn) is shared. So the difference of each method
from the baseline (by default ``an``) is taken *per seed*, d_s = m_s - b_s, and
summarised over the n paired seeds by its mean and a Student t-interval,

    mean(d) ± t_{(1 + confidence) / 2, n - 1} · sd(d) / sqrt(n),   sd with ddof = 1,

which is the paired t-test's interval: it excludes 0 exactly when that test rejects "no
difference" at level 1 - confidence. With n = 1 there is no interval.

Pairing checks that the two runs could have seen the same data: the datamodule
configuration, label mode and seed must be equal, or the pair is refused with the keys
that differ.
"""

from __future__ import annotations

import csv
import io
import math
import statistics
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from scipy import stats

from spml_rs.report.runs import SETTING_KEYS, Run, _Keyed, config_value
from spml_rs.report.tables import DEFAULT_METRICS, Row, _fmt, _ordered, _short, method_by_setting

DEFAULT_BASELINE = "an"
#: config parts two paired runs must share: the same images, labels and data order
SAME_DATA_KEYS = ("dataset.datamodule", "label_mode", "seed")


@dataclass(frozen=True)
class PairedDiff:
    """Mean of the per-seed differences and its t-interval (None where n < 2)."""

    mean: float | None
    low: float | None
    high: float | None
    n: int

    @property
    def excludes_zero(self) -> bool:
        """The interval lies entirely above or below 0."""
        return self.low is not None and self.high is not None and (self.low > 0 or self.high < 0)


@dataclass
class PairedRow(_Keyed):
    """One method in one setting: its difference from the baseline per metric."""

    key: tuple[str, ...]
    baseline: str
    seeds: list[Any]
    diffs: dict[str, PairedDiff]


def paired_interval(differences: Sequence[float], confidence: float = 0.95) -> PairedDiff:
    """Mean and two-sided Student t-interval of paired differences (see the module docstring)."""
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    n = len(differences)
    if n == 0:
        return PairedDiff(None, None, None, 0)
    mean = statistics.fmean(differences)
    if n == 1:
        return PairedDiff(mean, None, None, 1)
    half = stats.t.ppf((1 + confidence) / 2, n - 1) * statistics.stdev(differences) / math.sqrt(n)
    return PairedDiff(mean, mean - half, mean + half, n)


def _delta(value: float | None, base: float | None) -> float | None:
    """value - base, or None unless both are finite numbers."""
    if value is None or base is None or not (math.isfinite(value) and math.isfinite(base)):
        return None
    return float(value) - float(base)


def _check_same_data(run: Run, base: Run) -> None:
    """Refuse a pair whose runs cannot have seen the same data."""
    differing = [
        key
        for key in SAME_DATA_KEYS
        if config_value(run.config, key) != config_value(base.config, key)
    ]
    if differing:
        raise ValueError(
            f"runs {run.path} and {base.path} share seed {run.seed} but not {differing}: "
            "they did not see the same data, so their difference is not paired; "
            "separate them with --by KEY or report them from different directories"
        )


def _pairs(runs: Sequence[Run], baseline: str) -> dict[tuple[str, ...], list[tuple[Run, Run]]]:
    """(method, *setting) -> (run, baseline run) per seed both have, in seed order."""
    by_key: dict[tuple[str, ...], dict[Any, Run]] = defaultdict(dict)
    for run in runs:
        by_key[run.key][run.seed] = run  # aggregate() refuses duplicate seeds
    pairs = {}
    for key, seeded in by_key.items():
        base = by_key.get((baseline, *key[1:]))
        if key[0] == baseline or base is None:
            continue
        common = sorted(set(seeded) & set(base), key=str)
        for seed in common:
            _check_same_data(seeded[seed], base[seed])
        pairs[key] = [(seeded[seed], base[seed]) for seed in common]
    return pairs


def paired_differences(
    runs: Sequence[Run],
    baseline: str = DEFAULT_BASELINE,
    metrics: Sequence[str] = DEFAULT_METRICS,
    confidence: float = 0.95,
) -> list[PairedRow]:
    """Each method's per-seed difference from ``baseline`` in its setting, summarised.

    Returns one :class:`PairedRow` per (method, setting) that has baseline runs, ordered by
    setting then method; a seed enters a metric only where both runs have a finite value.
    """
    rows = []
    pairs = _pairs(runs, baseline)
    for key in sorted(pairs, key=lambda k: (k[1:], k[0])):
        diffs = {}
        for metric in metrics:
            deltas = [_delta(r.metrics.get(metric), b.metrics.get(metric)) for r, b in pairs[key]]
            diffs[metric] = paired_interval([d for d in deltas if d is not None], confidence)
        rows.append(PairedRow(key, baseline, [r.seed for r, _ in pairs[key]], diffs))
    return rows


# -------------------------------------------------------------------- tables
def format_diff(diff: PairedDiff) -> str:
    """``+1.23 [+0.40, +2.06]`` in points (percent), bold where the interval excludes 0."""
    if diff.mean is None:
        return "n/a"
    text = f"{100 * diff.mean:+.2f}"
    if diff.low is None or diff.high is None:
        return text
    text = f"{text} [{100 * diff.low:+.2f}, {100 * diff.high:+.2f}]"
    return f"**{text}**" if diff.excludes_zero else text


def note(baseline: str, confidence: float = 0.95) -> str:
    return (
        f"Δ: mean over seeds of (method − {baseline}) with the same seed, in points, and its "
        f"{100 * confidence:g}% t-interval; **bold**: the interval excludes 0."
    )


def paired_markdown(
    rows: Sequence[PairedRow],
    metrics: Sequence[str] = DEFAULT_METRICS,
    method_order: Sequence[str] = (),
    setting_order: Sequence[tuple[str, ...]] = (),
    confidence: float = 0.95,
) -> str:
    """Rows = method; per setting the Δ of each metric and the number of paired seeds."""
    if not rows:
        return ""
    table = method_by_setting(
        rows, metrics, method_order, setting_order,
        column=lambda m: f"Δ {_short(m)}", cells=lambda row: [format_diff(row.diffs[m]) for m in metrics],
        count="pairs",
    )  # fmt: skip
    return "\n".join([table, "", note(rows[0].baseline, confidence), ""])


def setting_markdown(
    rows: Sequence[Row],
    paired: Sequence[PairedRow],
    setting: tuple[str, ...],
    metrics: Sequence[str] = DEFAULT_METRICS,
    method_order: Sequence[str] = (),
    confidence: float = 0.95,
) -> str:
    """One setting: per method and metric ``mean ± std`` then its Δ from the baseline, seeds."""
    mine = {r.method: r for r in rows if r.setting == setting}
    deltas = {r.method: r for r in paired if r.setting == setting}
    # metrics of one split are named without it; of several (val and test), with it
    splits = {m.split("/", 1)[0] for m in metrics}
    header = ["method"]
    for m in metrics:
        header += [_short(m) if len(splits) == 1 else m.replace("/", " ").replace("_", " "), "Δ"]
    lines = ["| " + " | ".join([*header, "seeds"]) + " |", "|" + "---|" * (len(header) + 1)]
    for method in _ordered(set(mine), method_order):
        cells = [method]
        for m in metrics:
            diff = deltas[method].diffs[m] if method in deltas else None
            cells += [_fmt(mine[method].cells[m]), "—" if diff is None else format_diff(diff)]
        lines.append("| " + " | ".join([*cells, str(len(mine[method].seeds))]) + " |")
    baseline = paired[0].baseline if paired else DEFAULT_BASELINE
    return "\n".join([*lines, "", note(baseline, confidence), ""])


def paired_csv(
    rows: Sequence[PairedRow], metrics: Sequence[str] = DEFAULT_METRICS, by: Sequence[str] = ()
) -> str:
    """One line per (method, setting): baseline, n_pairs, seeds, then the Δ mean and interval
    bounds (fractions, empty where undefined) per metric."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(
        [*SETTING_KEYS, *by, "baseline", "n_pairs", "seeds"]
        + [f"{m}_delta_{stat}" for m in metrics for stat in ("mean", "low", "high")]
    )
    for row in rows:
        values: list[Any] = [*row.key, row.baseline, len(row.seeds), " ".join(map(str, row.seeds))]
        for m in metrics:
            d = row.diffs[m]
            values += ["" if v is None else v for v in (d.mean, d.low, d.high)]
        writer.writerow(values)
    return buffer.getvalue()
