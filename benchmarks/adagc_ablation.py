#!/usr/bin/env python3
"""AdaGC across its design space on a benchmark protocol, each variant paired with AN.

A variant is ``method=adagc`` plus the overrides of its options (``OPTIONS``, joined with
``+``: ``w23+rollback``), on top of the ``--base`` options, run as its own method name
(``adagc-w23-rollback``) under Random and Dominant with seeds 0-4, next to ``an``. Per label
mode, the table gives the best validation mAP macro (the checkpoint's) and the test mAP
macro, each as mean ± std and as the paired difference from AN with a 95% t-interval, and
how many runs' detector fired (``adagc/dep`` logged) rather than switching at a fallback.

Defaults are chosen on validation only: per dimension, the variant with the largest mean
paired validation Δ over both label modes is printed as the choice; test scores are
reported, never used to choose. A multirun whose runs all finished in the sweep directory is
not run again, so a second stage can share the first one's ``an`` runs:

    python benchmarks/adagc_ablation.py --variants default,fallback,w23 --sweep-dir S  # the switch
    python benchmarks/adagc_ablation.py --base w23 --variants rollback,no_mixup,elr --sweep-dir S
    python benchmarks/adagc_ablation.py --aggregate-only S

Output: ``<out>/adagc_ablation.md`` (default ``docs/report/<preset>/``).
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
#: option -> (dimension, overrides of method=adagc); "{fallback}" is the max_warmup epoch
OPTIONS: dict[str, tuple[str, tuple[str, ...]]] = {
    "default": ("reference", ()),
    "fallback": ("switch", (f"{EL}.fixed={{fallback}}",)),
    "w23": ("switch", (f"{EL}.windows=[2,3]",)),
    "w234": ("switch", (f"{EL}.windows=[2,3,4]",)),
    "w346": ("switch", (f"{EL}.windows=[3,4,6]",)),  # the former default at 24 epochs
    "rollback": ("rollback", (f"{EL}.rollback=true",)),
    "no_mixup": ("mixup", (f"{PL}.mixup=false",)),  # the default since this ablation
    "mixup": ("mixup", (f"{PL}.mixup=true",)),
    "keep_larger": ("mixup", (f"{PL}.mixup=true", f"{PL}.mixup_keep_larger=true")),
    "alpha0.4": ("mixup", (f"{PL}.mixup=true", f"{PL}.mixup_alpha=0.4")),
    "elr": ("form", ("method.loss.form=elr",)),
    "rescale": ("rescale", ("method.loss.rescale=label_frequency",)),
    "tau_pos0.7": ("thresholds", ("method.loss.tau_pos=0.7",)),
    "tau_neg0.1": ("thresholds", ("method.loss.tau_neg=0.1",)),  # the default since
    "tau_neg_none": ("thresholds", ("method.loss.tau_neg=null",)),  # the former default
}
VAL, TEST = "val/best_mAP_macro", "test/mAP_macro"


def options_of(variant: str, base: Sequence[str]) -> list[str]:
    """The options of a ``+``-joined variant on top of ``base`` (``default``: base alone)."""
    chosen = [o for o in [*base, *variant.split("+")] if o != "default"]
    unknown = sorted(set(chosen) - set(OPTIONS))
    if unknown:
        raise SystemExit(f"unknown option(s) {unknown}; choose from {sorted(OPTIONS)}")
    return list(dict.fromkeys(chosen))


def method_name(options: Sequence[str]) -> str:
    return "-".join(["adagc", *options]) if options else "adagc-default"


def variant_overrides(options: Sequence[str], fallback: int) -> list[str]:
    given = [o.format(fallback=fallback) for name in options for o in OPTIONS[name][1]]
    return ["method=adagc", f"method.name={method_name(options)}", *given]


def fallback_epoch(preset: str, overrides: Sequence[str]) -> int:
    """The epoch the default switches at when the detector does not fire."""
    cfg = compose([f"experiment=benchmark_{preset}", "method=adagc", *overrides])
    fraction = cfg.method.callbacks.early_learning.max_warmup_fraction
    return cfg.method.callbacks.early_learning.max_warmup_epochs or math.ceil(
        fraction * cfg.trainer.max_epochs
    )


def finished(sweep: Path, args: argparse.Namespace) -> bool:
    """Every (label mode, seed) run of a multirun left its results.json."""
    return all(
        (sweep / f"{mode}_seed{seed}" / "results.json").is_file()
        for mode in args.label_modes.split(",")
        for seed in args.seeds.split(",")
    )


# ------------------------------------------------------------------ tables
def fired(runs: Sequence[Run], method: str, setting: tuple[str, ...]) -> str:
    """``k/n`` runs whose detector fired (logged dep), with the mean first GC epoch (1-based)."""
    mine = [r for r in runs if r.method == method and r.setting == setting]
    switches = []
    for run in mine:
        table = read_metrics_csv(run.path)
        if table.get("adagc/dep"):
            stage = table.get("adagc/stage", [])
            switches.append(min((e for e, v in stage if v >= 2), default=math.nan))
    if not mine or not method.startswith("adagc"):
        return "—"
    mean = f", GC from epoch {statistics.fmean(switches):.1f}" if switches else ""  # 0 = first
    return f"{len(switches)}/{len(mine)}{mean}"


def choose(runs: Sequence[Run], base: Sequence[str]) -> list[str]:
    """Per dimension, the best of the ``base`` variant and those adding one option of that
    dimension to it, by mean paired validation Δ from AN over the label modes."""
    deltas: dict[str, list[float]] = {}
    for row in paired_differences(runs, metrics=[VAL]):
        if row.method.startswith("adagc") and row.diffs[VAL].mean is not None:
            deltas.setdefault(row.method, []).append(row.diffs[VAL].mean)
    reference = method_name(list(base))
    if reference not in deltas:
        return []
    by_dimension: dict[str, list[str]] = {}
    for method in deltas:
        options = {o for o in method.split("-")[1:] if o != "default"}
        extra = options - set(base)
        if len(extra) == 1 and set(base) <= options and extra <= set(OPTIONS):
            by_dimension.setdefault(OPTIONS[extra.pop()][0], []).append(method)
    lines = []
    for dimension, methods in by_dimension.items():
        scored = {m: statistics.fmean(deltas[m]) for m in [reference, *sorted(methods)]}
        best = max(scored, key=scored.__getitem__)
        text = ", ".join(f"{m} {100 * v:+.2f}" for m, v in scored.items())
        lines.append(f"{dimension}: **{best}** (mean validation Δ vs an: {text})")
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
    parser.add_argument(
        "--variants",
        default="default,fallback,w23,w234",
        help=f"comma-separated variants, each options joined by + ({', '.join(OPTIONS)})",
    )
    parser.add_argument("--base", default="", help="options added to every variant, e.g. w23")
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
    base = args.base.split(",") if args.base else []
    commands = {"an": multirun("an", ["method=an"], args, sweep_dir)}
    for variant in variants:
        options = options_of(variant, base)
        name = method_name(options)
        commands[name] = multirun(name, variant_overrides(options, fallback), args, sweep_dir)
    todo = {n: c for n, c in commands.items() if not finished(sweep_dir / n, args)}
    print(f"sweep: {sweep_dir} (fallback epoch {fallback}); already done: "
          f"{sorted(set(commands) - set(todo)) or 'none'}", flush=True)  # fmt: skip
    run_all(todo, args.jobs, sweep_dir / "logs")
    print(f"ablation finished in {(time.time() - started) / 60:.1f} min", flush=True)
    return sweep_dir


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    variants = args.variants.split(",")
    sweep_dir = args.aggregate_only or run_grid(args, variants)
    if not sweep_dir.is_dir():
        raise SystemExit(f"--aggregate-only: no such sweep directory: {sweep_dir}")
    runs = load_runs([sweep_dir])
    base = options_of("default", args.base.split(",") if args.base else [])
    order = ["an", *sorted({r.method for r in runs} - {"an"}, key=lambda m: (len(m.split("-")), m))]
    body = "\n".join([
        f"## AdaGC ablation, preset `{args.preset}`", "", tables(runs, order),
        "Chosen on validation (largest mean paired Δ vs an over Random and Dominant):", "",
        *[f"- {line}" for line in choose(runs, base)], "",
    ])  # fmt: skip
    out = (args.out or ROOT / "docs" / "report" / args.preset).resolve()
    atomic_write_text(out / "adagc_ablation.md", body)
    print(body)
    print(f"{len(runs)} runs; wrote {out / 'adagc_ablation.md'}")


if __name__ == "__main__":
    main()
