#!/usr/bin/env python3
"""The method zoo on the synthetic benchmark: tables with paired differences from AN, and plots.

One protocol per ``--preset`` (``configs/experiment/benchmark_<preset>.yaml``, described in
docs/benchmark_protocol.md): ``pretrained`` (the default: a backbone pretrained on the
pretraining world, where AN memorises its false negatives) or ``scratch`` (random
initialisation, no memorisation). For the pretrained preset the backbone is built first if
it is not cached (``python -m spml_rs.pretrain``).

Every method runs under Random and Dominant single positives with seeds 0-4 (one Hydra
multirun per method, ``--jobs`` of them at a time with the CPUs shared out). Then, per label
mode, a table of each method's test mAP (macro, micro), F1 (macro, micro at 0.5; macro at
validation thresholds) as mean ± std over seeds and as the paired difference from AN (same
seed: same data, single positives and order) with a 95% t-interval, bold where it excludes
0 (:mod:`spml_rs.report.paired`). Written to ``--out`` (default ``docs/report/<preset>/``):
``methods_benchmark.md``, ``benchmark.csv``, ``paired.csv``, the validation curves of AN and
``full`` with the realism criteria (``criteria.png``), every method's validation curves,
the paired-Δ plots, and the early-learning plot of an AdaGC run whose detector fired.

    python benchmarks/methods_benchmark.py --preset pretrained       # everything (the README table)
    python benchmarks/methods_benchmark.py --preset scratch
    python benchmarks/methods_benchmark.py --methods an,full --seeds 0,1 --out /tmp/x
    python benchmarks/methods_benchmark.py --aggregate-only <sweep-dir> --preset pretrained
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from spml_rs import report
from spml_rs.fileio import atomic_write_text
from spml_rs.report.paired import paired_csv, paired_differences, setting_markdown
from spml_rs.report.runs import Run, load_runs, mean_curve, read_metrics_csv

METHODS = (
    "full", "an", "an_ls", "wan", "epr", "role", "em", "em_apl", "ll_r", "ll_ct", "ll_cp",
    "elr", "gce", "hill", "splc", "gr", "boostlu", "boostlu_ll_r", "boostlu_ll_ct",
    "boostlu_ll_cp", "adagc", "adagc_fixed", "adagc_mixup", "adagc_single_ema",
    "adagc_no_teacher",
)  # fmt: skip
LABEL_MODES = ("random", "dominant")
SEEDS = "0,1,2,3,4"
PRESETS = ("pretrained", "scratch")
CURVE = "val/mAP_macro"
REFERENCE = "reference_full_from_scratch"
README_METRICS = ("test/mAP_macro", "test/mAP_micro", "test/F1_macro", "test/F1_macro_valthr")
ROOT = Path(__file__).resolve().parents[1]


# ------------------------------------------------------------------ the grid
def experiment(preset: str) -> str:
    return f"experiment=benchmark_{preset}"


def ensure_backbone(preset: str, overrides: Sequence[str]) -> None:
    """Pretrain (or find in the cache) the backbone the pretrained preset loads."""
    if preset != "pretrained":
        return
    model = [o for o in overrides if o.startswith("model.net.name=")]
    started = time.time()
    subprocess.run([sys.executable, "-m", "spml_rs.pretrain", *model], check=True)
    print(f"backbone ready after {time.time() - started:.0f} s", flush=True)


def multirun(
    name: str, overrides: Sequence[str], args: argparse.Namespace, sweep_dir: Path
) -> list[str]:
    """One Hydra multirun: ``overrides`` x label modes x seeds, in ``sweep_dir/name``."""
    return [
        sys.executable, "-m", "spml_rs.train", "-m",
        experiment(args.preset),
        *overrides,
        f"label_mode={args.label_modes}",
        f"seed={args.seeds}",
        *([f"trainer.max_epochs={args.epochs}"] if args.epochs else []),
        f"hydra.sweep.dir={sweep_dir / name}",
        "hydra.sweep.subdir=${label_mode.mode}_seed${seed}",
        *args.overrides,
    ]  # fmt: skip


def run_all(commands: dict[str, list[str]], jobs: int, log_dir: Path) -> None:
    """Run the multiruns, ``jobs`` at a time, each with ``cpus // jobs`` threads; logs per job."""
    threads = max(1, (len(os.sched_getaffinity(0)) or 1) // jobs)
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    log_dir.mkdir(parents=True, exist_ok=True)

    def launch(item: tuple[str, list[str]]) -> tuple[str, int]:
        name, command = item
        with open(log_dir / f"{name}.log", "w", encoding="utf-8") as log:
            done = subprocess.run(command, env=env, stdout=log, stderr=subprocess.STDOUT)
        print(f"  {name}: {'done' if done.returncode == 0 else f'FAILED ({log.name})'}", flush=True)
        return name, done.returncode

    print(f"{len(commands)} multiruns, {jobs} at a time, {threads} thread(s) each", flush=True)
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        failed = [name for name, code in pool.map(launch, commands.items()) if code]
    if failed:
        raise SystemExit(f"failed multiruns (see {log_dir}/<name>.log): {failed}")


def method_commands(args: argparse.Namespace, sweep_dir: Path) -> dict[str, list[str]]:
    commands = {m: multirun(m, [f"method={m}"], args, sweep_dir) for m in args.methods.split(",")}
    if args.preset == "pretrained" and args.reference:
        # the criterion "full pretrained >= full from scratch": the same protocol, random init
        reference = argparse.Namespace(**{**vars(args), "label_modes": "random"})
        overrides = ["method=full", "model.net.pretrained=false"]
        commands[REFERENCE] = multirun(REFERENCE, overrides, reference, sweep_dir / "reference")
    return commands


# ------------------------------------------------------------------- tables
def tables(
    runs: Sequence[Run],
    methods: Sequence[str],
    modes: Sequence[str],
    metrics: Sequence[str] = report.DEFAULT_METRICS,
) -> str:
    """Per label mode: mean ± std and paired Δ from AN of each metric."""
    rows = report.aggregate(runs, metrics)
    paired = paired_differences(runs, metrics=metrics)
    parts = []
    for setting in sorted({r.setting for r in rows}, key=lambda s: modes.index(s[1])):
        parts += [f"### {' / '.join(setting)}", ""]
        parts.append(setting_markdown(rows, paired, setting, metrics, methods))
    return "\n".join(parts)


# -------------------------------------------------------------- the criteria
def curves(
    runs: Sequence[Run], method: str, mode: str | None = None
) -> list[list[tuple[int, float]]]:
    """The validation curves of ``method``'s runs (of one label mode, if given)."""
    chosen = [r for r in runs if r.method == method and mode in (None, r.key[2])]
    return [c for c in (read_metrics_csv(r.path).get(CURVE, []) for r in chosen) if c]


def peak_and_fall(curve: Sequence[tuple[int, float, int]]) -> tuple[int, float, float]:
    """(peak epoch, peak, mean of the last quarter of the epochs) of a mean curve."""
    epoch, peak, _ = max(curve, key=lambda point: point[1])
    tail = curve[-max(2, len(curve) // 4) :]
    return epoch, peak, statistics.fmean(v for _, v, _ in tail)


def criteria(runs: Sequence[Run], reference: Sequence[Run]) -> list[str]:
    """The realism criteria of docs/benchmark_protocol.md, measured, one line each.

    Memorisation: AN's mean validation curve peaks in the first three quarters of the
    epochs and its last quarter averages at least 1 point below the peak (a last-epoch dip
    of a noisy curve does not count).
    """
    lines = []
    for mode in sorted({r.key[2] for r in runs}, reverse=True):
        curve = mean_curve(curves(runs, "an", mode))
        if not curve:
            continue
        epoch, peak, tail = peak_and_fall(curve)
        early = epoch + 1 <= 0.75 * len(curve)
        verdict = "met" if early and peak - tail >= 0.01 else "NOT met"
        lines.append(
            f"AN {mode}: mean validation mAP macro peaks at {100 * peak:.2f} at epoch {epoch} "
            f"(epochs 0-{len(curve) - 1}); the last quarter averages {100 * tail:.2f} "
            f"({100 * (tail - peak):+.2f}): {verdict}"
        )
    full = [
        r.metrics["test/mAP_macro"] for r in runs if r.method == "full" and r.key[2] == "random"
    ]
    scratch = [r.metrics["test/mAP_macro"] for r in reference if r.method == "full"]
    if full and scratch:
        mean_full, mean_scratch = statistics.fmean(full), statistics.fmean(scratch)  # type: ignore[arg-type]
        verdict = "met" if mean_full >= mean_scratch else "NOT met"
        lines.append(
            f"full: test mAP macro {100 * mean_full:.2f} pretrained vs {100 * mean_scratch:.2f} "
            f"from random initialisation ({len(full)} / {len(scratch)} seeds): {verdict}"
        )
    return lines


def criteria_plot(runs: Sequence[Run], reference: Sequence[Run], path: Path) -> bool:
    """AN's validation curves per label mode (seeds thin, mean thick, its peak marked), with
    ``full`` pretrained and from random initialisation for scale."""
    from matplotlib.figure import Figure

    modes = sorted({r.key[2] for r in runs if r.method == "an"}, reverse=True)
    if not modes:
        return False
    fig = Figure(figsize=(5.5 * len(modes), 4.2))
    for ax, mode in zip(fig.subplots(1, len(modes), squeeze=False)[0], modes, strict=True):
        for curve in curves(runs, "an", mode):
            ax.plot([e for e, _ in curve], [100 * v for _, v in curve], color="C0", alpha=0.25)
        mean = mean_curve(curves(runs, "an", mode))
        epoch, peak, last = peak_and_fall(mean)
        ax.plot(
            [e for e, _, _ in mean],
            [100 * v for _, v, _ in mean],
            color="C0",
            lw=2,
            label=f"an (mean): peak {100 * peak:.1f} at epoch {epoch}, last quarter {100 * last:.1f}",
        )
        ax.plot([epoch], [100 * peak], "v", color="C0", markersize=9)
        for method, source, style, colour in (
            ("full", runs, "--", "C2"),
            ("full from random init", reference, ":", "C3"),
        ):
            mine = mean_curve(curves(source, "full"))
            if mine:
                ax.plot(
                    [e for e, _, _ in mine],
                    [100 * v for _, v, _ in mine],
                    style,
                    color=colour,
                    label=f"{method} (mean)",
                )
        ax.set_title(f"{mode}: validation mAP macro, {len(curves(runs, 'an', mode))} seeds")
        ax.set_xlabel("epoch (0 = first)")
        ax.set_ylabel("val mAP macro (%)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    return True  # fmt: skip


# -------------------------------------------------------------------- plots
def plots(runs: Sequence[Run], reference: Sequence[Run], out: Path) -> list[Path]:
    """The criteria curves, all methods' curves, paired Δ, one fired AdaGC plot."""
    from spml_rs.report.plots import paired_plot, val_curves

    written = []
    if criteria_plot(runs, reference, out / "criteria.png"):
        written.append(out / "criteria.png")
    paired = paired_differences(runs, metrics=["test/mAP_macro"])
    for setting in sorted({r.setting for r in runs}):
        group = [r for r in runs if r.setting == setting]
        slug = "_".join(setting)
        if val_curves(group, setting, out / f"val_curves_{slug}.png"):
            written.append(out / f"val_curves_{slug}.png")
        if paired_plot(paired, setting, out / f"paired_{slug}.png", "test/mAP_macro"):
            written.append(out / f"paired_{slug}.png")
    fired = fired_adagc_run(runs)
    if fired is not None:
        shutil.copyfile(fired.path / "early_learning.png", out / "adagc_fired.png")
        written.append(out / "adagc_fired.png")
    return written


def fired_adagc_run(runs: Sequence[Run]) -> Run | None:
    """The first ``adagc`` run (Random first, lowest seed) whose detector fired (logged ``dep``)."""
    candidates = sorted(
        (r for r in runs if r.method == "adagc" and (r.path / "early_learning.png").is_file()),
        key=lambda r: (r.key[2] != "random", str(r.seed)),
    )
    return next((r for r in candidates if read_metrics_csv(r.path).get("adagc/dep")), None)


# --------------------------------------------------------------------- main
def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--preset", choices=PRESETS, default="pretrained")
    parser.add_argument(
        "--methods", default=",".join(METHODS), help="comma-separated method configs"
    )
    parser.add_argument("--label-modes", default=",".join(LABEL_MODES))
    parser.add_argument("--seeds", default=SEEDS, help="comma-separated run seeds")
    parser.add_argument("--epochs", type=int, default=None, help="override the preset's epochs")
    parser.add_argument("--jobs", type=int, default=2, help="multiruns at a time")
    parser.add_argument("--no-reference", dest="reference", action="store_false",
                        help="pretrained preset: skip the from-scratch full runs of the criteria")  # fmt: skip
    parser.add_argument("--sweep-dir", type=Path, default=None,
                        help="default: logs/methods_benchmark/<preset>_<time>")  # fmt: skip
    parser.add_argument(
        "--aggregate-only", type=Path, default=None, help="only tabulate this sweep"
    )
    parser.add_argument("--out", type=Path, default=None, help="default: docs/report/<preset>/")
    parser.add_argument("overrides", nargs="*", help="extra Hydra overrides for every job")
    return parser.parse_intermixed_args(argv)


def run_grid(args: argparse.Namespace) -> Path:
    stamp = time.strftime("%Y-%m-%d_%H-%M-%S")
    sweep_dir = args.sweep_dir or ROOT / "logs" / "methods_benchmark" / f"{args.preset}_{stamp}"
    sweep_dir = sweep_dir.resolve()
    started = time.time()
    ensure_backbone(args.preset, args.overrides)
    commands = method_commands(args, sweep_dir)
    print(f"sweep: {sweep_dir}", flush=True)
    run_all(commands, args.jobs, sweep_dir / "logs")
    minutes = (time.time() - started) / 60
    print(f"grid finished in {minutes:.1f} min ({os.cpu_count()} CPUs, load now "
          f"{os.getloadavg()[0]:.1f})", flush=True)  # fmt: skip
    return sweep_dir


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    methods, modes = args.methods.split(","), args.label_modes.split(",")
    sweep_dir = args.aggregate_only or run_grid(args)
    if not sweep_dir.is_dir():
        raise SystemExit(f"--aggregate-only: no such sweep directory: {sweep_dir}")
    every = [r for r in load_runs([sweep_dir]) if r.key[2] in modes]
    reference = [r for r in every if "reference" in r.path.relative_to(sweep_dir).parts]
    runs = [r for r in every if r not in reference and r.method in methods]
    out = (args.out or ROOT / "docs" / "report" / args.preset).resolve()
    text = tables(runs, methods, modes)
    checks = criteria(runs, reference)
    body = "\n".join([f"## Synthetic benchmark, preset `{args.preset}`", "", text,
                      "Realism criteria (docs/benchmark_protocol.md):", "",
                      *[f"- {line}" for line in checks], ""])  # fmt: skip
    atomic_write_text(out / "methods_benchmark.md", body)
    # the README's subset: mAP macro, mAP micro, F1 macro at 0.5 and at validation thresholds
    atomic_write_text(out / "readme_tables.md", tables(runs, methods, modes, README_METRICS))
    atomic_write_text(out / "benchmark.csv", report.to_csv(report.aggregate(runs)))
    atomic_write_text(out / "paired.csv", paired_csv(paired_differences(runs)))
    written = plots(runs, reference, out)
    print(body)
    print(f"{len(runs)} runs; wrote {out}/methods_benchmark.md, readme_tables.md, benchmark.csv, "
          "paired.csv and "
          + ", ".join(p.name for p in written))  # fmt: skip


if __name__ == "__main__":
    main()
