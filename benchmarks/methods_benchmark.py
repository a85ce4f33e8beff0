#!/usr/bin/env python3
"""The method zoo on the synthetic multispectral preset: a paper-style Markdown table.

Runs one Hydra multirun of ``python -m spml_rs.train`` over methods x label modes
(Random, Dominant single positives) x seeds at benchmark sizes, then reads every
job's ``results.json`` and writes a table of mean ± std over seeds of the test
mAP (macro/micro), F1 (macro/micro) at 0.5 and F1 macro at per-class thresholds
tuned on the validation split (``F1_macro_valthr``), in percent; rows are methods,
column groups the label modes. The table goes to stdout and ``<sweep-dir>/methods_benchmark.md``.

    python benchmarks/methods_benchmark.py                       # the whole grid
    python benchmarks/methods_benchmark.py --methods an,epr --seeds 0 --epochs 2 --num-train 256
    python benchmarks/methods_benchmark.py --aggregate-only <sweep-dir>   # table of a finished sweep

Sizes: the defaults (500 training images seen for 12 epochs, 500 validation and
2,000 test images of 32 px, timm's ``resnet10t`` with its strided stem) keep the
20 methods x 2 modes x 3 seeds grid under an hour on a 2-core CPU (about 25 s per
job on an idle machine). The test split is large because macro mAP over 19
classes on a few hundred images moves by a point between seeds of the same run.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from spml_rs.report import aggregate, load_runs, to_markdown

METHODS = (
    "full", "an", "an_ls", "wan", "epr", "role", "em", "em_apl", "ll_r", "ll_ct", "ll_cp",
    "elr", "gce", "hill", "splc", "adagc", "adagc_fixed", "adagc_no_mixup", "adagc_single_ema",
    "adagc_no_teacher",
)  # fmt: skip
LABEL_MODES = ("random", "dominant")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--methods", default=",".join(METHODS), help="comma-separated method configs"
    )
    parser.add_argument("--label-modes", default=",".join(LABEL_MODES))
    parser.add_argument("--seeds", default="0,1,2", help="comma-separated run seeds")
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--model", default="resnet10t", help="timm model name (model.net.name)")
    parser.add_argument("--num-train", type=int, default=500)
    parser.add_argument("--num-val", type=int, default=500)
    parser.add_argument("--num-test", type=int, default=2000)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--dataset", default="synthetic", help="dataset config (synthetic preset)")
    parser.add_argument(
        "--sweep-dir", type=Path, default=None, help="default: logs/methods_benchmark/<time>"
    )
    parser.add_argument(
        "--aggregate-only", type=Path, default=None, help="only tabulate this sweep dir"
    )
    parser.add_argument("overrides", nargs="*", help="extra Hydra overrides for every job")
    return parser.parse_intermixed_args(argv)


def sweep_command(args: argparse.Namespace, sweep_dir: Path) -> list[str]:
    """The Hydra multirun command line of the grid."""
    return [
        sys.executable, "-m", "spml_rs.train", "-m",
        f"method={args.methods}",
        f"label_mode={args.label_modes}",
        f"seed={args.seeds}",
        f"dataset={args.dataset}",
        f"trainer.max_epochs={args.epochs}",
        f"dataset.datamodule.num_train={args.num_train}",
        f"dataset.datamodule.num_val={args.num_val}",
        f"dataset.datamodule.num_test={args.num_test}",
        f"dataset.datamodule.batch_size={args.batch_size}",
        f"model.net.name={args.model}",
        # timm's strided stem: 16x fewer activations than the stride-1 stem on 32 px
        "model.net.stem_stride=null",
        "logger=none",
        "callbacks.progress_bar=null",
        f"hydra.sweep.dir={sweep_dir}",
        # the default subdir lists every override: too long a file name here
        "hydra.sweep.subdir=${hydra.job.num}_${method.name}_${label_mode.mode}_seed${seed}",
        *args.overrides,
    ]  # fmt: skip


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    methods, modes = args.methods.split(","), args.label_modes.split(",")
    sweep_dir = args.aggregate_only
    if sweep_dir is None:
        sweep_dir = args.sweep_dir or Path("logs/methods_benchmark") / time.strftime(
            "%Y-%m-%d_%H-%M-%S"
        )
        command = sweep_command(args, sweep_dir.resolve())
        print("running:", " ".join(command), flush=True)
        started = time.time()
        subprocess.run(command, check=True)
        print(f"grid finished in {time.time() - started:.0f} s", flush=True)
    if not sweep_dir.is_dir():
        raise SystemExit(f"--aggregate-only: no such sweep directory: {sweep_dir}")
    runs = [run for run in load_runs([sweep_dir]) if run.method in methods and run.key[2] in modes]
    settings = [(args.dataset, mode) for mode in modes]
    text = to_markdown(aggregate(runs), method_order=methods, setting_order=settings)
    (sweep_dir / "methods_benchmark.md").write_text(text + "\n", encoding="utf-8")
    print(text)


if __name__ == "__main__":
    main()
