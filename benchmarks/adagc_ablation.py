#!/usr/bin/env python3
"""AdaGC across its design space on a benchmark protocol, each variant paired with AN.

Every variant is ``method=adagc`` plus overrides (``VARIANTS``), run as its own method name
(``adagc-<variant>``) under Random and Dominant with seeds 0-4, next to ``an``. Per label
mode, the table gives the best validation mAP macro (the checkpoint's) and the test mAP
macro, each as mean ± std and as the paired difference from AN with a 95% t-interval, and
how many runs' detector fired (``adagc/dep`` logged) rather than switching at a fallback.

Defaults are chosen on validation only: per dimension, the option with the largest mean
paired validation Δ over both label modes is printed as the choice; test scores are
reported, never used to choose. Output: ``<out>/adagc_ablation.md`` (default
``docs/report/<preset>/``).

    python benchmarks/adagc_ablation.py --preset pretrained          # ~12 variants x 2 x 5 runs
    python benchmarks/adagc_ablation.py --variants default,rollback --seeds 0,1
    python benchmarks/adagc_ablation.py --aggregate-only <sweep-dir>
"""

from __future__ import annotations

import argparse
import math
import statistics
import time
from collections.abc import Sequence
from pathlib import Path

from methods_benchmark import ROOT, SEEDS, ensure_backbone, multirun, run_all

from spml_rs import report
from spml_rs.api import compose
from spml_rs.fileio import atomic_write_text
from spml_rs.report.paired import paired_differences, setting_markdown
from spml_rs.report.runs import Run, load_runs, read_metrics_csv

EL = "method.callbacks.early_learning"
PL = "method.callbacks.pseudo_labels"
#: variant -> (dimension, overrides of method=adagc); "{fallback}" is the max_warmup epoch
VARIANTS: dict[str, tuple[str, tuple[str, ...]]] = {
    "default": ("reference", ()),
    "fallback": ("switch", (f"{EL}.fixed={{fallback}}",)),
    "rollback": ("rollback", (f"{EL}.rollback=true",)),
    "no_mixup": ("mixup", (f"{PL}.mixup=false",)),
    "keep_larger": ("mixup", (f"{PL}.mixup_keep_larger=true",)),
    "alpha0.4": ("mixup", (f"{PL}.mixup_alpha=0.4",)),
    "elr": ("form", ("method.loss.form=elr",)),
    "rescale": ("rescale", ("method.loss.rescale=label_frequency",)),
    "tau_pos0.7": ("thresholds", ("method.loss.tau_pos=0.7",)),
    "tau_neg0.1": ("thresholds", ("method.loss.tau_neg=0.1",)),
}
VAL, TEST = "val/best_mAP_macro", "test/mAP_macro"


def variant_overrides(name: str, fallback: int) -> list[str]:
    if name not in VARIANTS:
        raise SystemExit(f"unknown variant {name!r}; choose from {sorted(VARIANTS)}")
    given = [o.format(fallback=fallback) for o in VARIANTS[name][1]]
    return ["method=adagc", f"method.name=adagc-{name}", *given]


def fallback_epoch(preset: str, overrides: Sequence[str]) -> int:
    """The epoch the default switches at when the detector does not fire."""
    cfg = compose([f"experiment=benchmark_{preset}", "method=adagc", *overrides])
    fraction = cfg.method.callbacks.early_learning.max_warmup_fraction
    return cfg.method.callbacks.early_learning.max_warmup_epochs or math.ceil(
        fraction * cfg.trainer.max_epochs
    )


# ------------------------------------------------------------------ tables
def fired(runs: Sequence[Run], method: str, setting: tuple[str, ...]) -> str:
    """``k/n`` runs whose detector fired (logged dep), with their mean switch epoch."""
    mine = [r for r in runs if r.method == method and r.setting == setting]
    switches = []
    for run in mine:
        table = read_metrics_csv(run.path)
        if table.get("adagc/dep"):
            stage = table.get("adagc/stage", [])
            switches.append(min((e for e, v in stage if v >= 2), default=math.nan))
    if not mine or not method.startswith("adagc"):
        return "—"
    mean = f", switch {statistics.fmean(switches) + 1:.1f}" if switches else ""
    return f"{len(switches)}/{len(mine)}{mean}"


def choose(runs: Sequence[Run]) -> list[str]:
    """Per dimension, the variant with the largest mean validation Δ over the label modes."""
    deltas: dict[str, list[float]] = {}
    for row in paired_differences(runs, metrics=[VAL]):
        if row.diffs[VAL].mean is not None:
            deltas.setdefault(row.method, []).append(row.diffs[VAL].mean)
    lines = []
    for dimension in dict.fromkeys(d for d, _ in VARIANTS.values()):
        options = [f"adagc-{n}" for n, (d, _) in VARIANTS.items() if d in (dimension, "reference")]
        scored = {o: statistics.fmean(deltas[o]) for o in options if o in deltas}
        if dimension == "reference" or len(scored) < 2:
            continue
        best = max(scored, key=scored.__getitem__)
        text = ", ".join(f"{o} {100 * v:+.2f}" for o, v in sorted(scored.items()))
        lines.append(f"{dimension}: {best} (mean validation Δ vs an over the modes: {text})")
    return lines


def tables(runs: Sequence[Run], order: Sequence[str]) -> str:
    rows = report.aggregate(runs, [VAL, TEST])
    paired = paired_differences(runs, metrics=[VAL, TEST])
    parts = []
    for setting in sorted({r.setting for r in rows}, key=lambda s: s[1] != "random"):
        table = setting_markdown(rows, paired, setting, [VAL, TEST], order)
        lines = table.splitlines()
        lines[0] += " fired |"
        lines[1] += "---|"
        for i, line in enumerate(lines[2:], start=2):
            if line.startswith("| "):
                lines[i] += f" {fired(runs, line.split('|')[1].strip(), setting)} |"
        parts += [f"### {' / '.join(setting)}", "", *lines, ""]
    return "\n".join(parts)


# --------------------------------------------------------------------- main
def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--preset", choices=("pretrained", "scratch"), default="pretrained")
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--label-modes", default="random,dominant")
    parser.add_argument("--seeds", default=SEEDS)
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--sweep-dir", type=Path, default=None)
    parser.add_argument("--aggregate-only", type=Path, default=None)
    parser.add_argument("--out", type=Path, default=None, help="default: docs/report/<preset>/")
    parser.add_argument("overrides", nargs="*", help="extra Hydra overrides for every job")
    return parser.parse_intermixed_args(argv)


def run_grid(args: argparse.Namespace, variants: Sequence[str]) -> Path:
    stamp = time.strftime("%Y-%m-%d_%H-%M-%S")
    sweep_dir = args.sweep_dir or ROOT / "logs" / "adagc_ablation" / f"{args.preset}_{stamp}"
    sweep_dir = sweep_dir.resolve()
    started = time.time()
    ensure_backbone(args.preset, args.overrides)
    epochs = [f"trainer.max_epochs={args.epochs}"] if args.epochs else []
    fallback = fallback_epoch(args.preset, [*epochs, *args.overrides])
    commands = {"an": multirun("an", ["method=an"], args, sweep_dir)}
    for name in variants:
        commands[name] = multirun(name, variant_overrides(name, fallback), args, sweep_dir)
    print(f"sweep: {sweep_dir} (fallback epoch {fallback})", flush=True)
    run_all(commands, args.jobs, sweep_dir / "logs")
    print(f"ablation finished in {(time.time() - started) / 60:.1f} min", flush=True)
    return sweep_dir


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    variants = args.variants.split(",")
    sweep_dir = args.aggregate_only or run_grid(args, variants)
    if not sweep_dir.is_dir():
        raise SystemExit(f"--aggregate-only: no such sweep directory: {sweep_dir}")
    runs = load_runs([sweep_dir])
    order = ["an", *(f"adagc-{v}" for v in variants)]
    body = "\n".join([
        f"## AdaGC ablation, preset `{args.preset}`", "", tables(runs, order),
        "Chosen on validation (largest mean paired Δ vs an over Random and Dominant):", "",
        *[f"- {line}" for line in choose(runs)], "",
    ])  # fmt: skip
    out = (args.out or ROOT / "docs" / "report" / args.preset).resolve()
    atomic_write_text(out / "adagc_ablation.md", body)
    print(body)
    print(f"{len(runs)} runs; wrote {out / 'adagc_ablation.md'}")


if __name__ == "__main__":
    main()
