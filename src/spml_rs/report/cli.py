"""The command ``python -m spml_rs.report DIR... [--out DIR]``: tables and plots of finished runs."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from spml_rs.fileio import atomic_write_text
from spml_rs.report.paired import (
    DEFAULT_BASELINE,
    PairedRow,
    paired_csv,
    paired_differences,
    paired_markdown,
)
from spml_rs.report.runs import Run, load_runs
from spml_rs.report.tables import DEFAULT_METRICS, aggregate, to_csv, to_markdown
from spml_rs.results import RESULTS_FILE

REPORT_DIR = "report"


def default_output_dir(dirs: Sequence[str | Path]) -> Path:
    """``<dir>/report`` next to the runs read: the sweep's own folder, or the deepest folder
    holding all of them when several are given (never the caller's working directory)."""
    resolved = [Path(d).resolve() for d in dirs]
    return Path(os.path.commonpath(resolved)) / REPORT_DIR


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    runs = load_runs(args.dirs, args.by)
    if not runs:
        print(f"report: no {RESULTS_FILE} below {', '.join(args.dirs)}", file=sys.stderr)
        return 1
    metrics = tuple(args.metric or DEFAULT_METRICS)
    rows = aggregate(runs, metrics)
    out = Path(args.out) if args.out else default_output_dir(args.dirs)
    markdown = to_markdown(rows, metrics)
    atomic_write_text(out / "benchmark.md", markdown)
    atomic_write_text(out / "benchmark.csv", to_csv(rows, metrics, args.by))
    written = [out / "benchmark.md", out / "benchmark.csv"]
    paired = _paired(runs, args, metrics)
    if paired:
        paired_text = paired_markdown(paired, metrics, confidence=args.confidence)
        atomic_write_text(out / "paired.md", paired_text)
        atomic_write_text(out / "paired.csv", paired_csv(paired, metrics, args.by))
        written += [out / "paired.md", out / "paired.csv"]
    if not args.no_plots:
        from spml_rs.report.plots import write_plots  # matplotlib only when plotting

        written += write_plots(runs, out, args.curve_metric, paired)
    print(markdown)
    if paired:
        print(paired_text)
    print(f"{len(runs)} runs, {len(rows)} rows; wrote:\n  " + "\n  ".join(map(str, written)))
    return 0


def _paired(
    runs: Sequence[Run], args: argparse.Namespace, metrics: Sequence[str]
) -> list[PairedRow]:
    """Paired Δ from ``--baseline`` (none when it is ``none``; an error when it was named but
    has no runs; a note when the default ``an`` has none)."""
    if args.baseline == "none":
        return []
    baseline = args.baseline or DEFAULT_BASELINE
    if not any(run.method == baseline for run in runs):
        if args.baseline:
            raise SystemExit(f"report: --baseline {baseline}: no run of that method found")
        print(f"report: no {baseline} runs, so no paired differences", file=sys.stderr)
        return []
    return paired_differences(runs, baseline, metrics, args.confidence)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m spml_rs.report", description=__doc__.split("\n")[0]
    )
    parser.add_argument("dirs", nargs="+", help="run or sweep directories (searched recursively)")
    parser.add_argument(
        "--out",
        default=None,
        help=f"output directory (default: {REPORT_DIR}/ inside the run or sweep directory read, or "
        "inside the deepest directory holding all of them)",
    )
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
    parser.add_argument(
        "--baseline",
        default=None,
        help=f"method every other is paired with, seed by seed, in paired.md/.csv (default: "
        f"{DEFAULT_BASELINE} when it ran; none: no paired table)",
    )
    parser.add_argument(
        "--confidence", type=float, default=0.95, help="level of the paired t-intervals"
    )
    parser.add_argument("--no-plots", action="store_true", help="tables only")
    return parser
