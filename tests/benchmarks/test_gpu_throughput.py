"""benchmarks/gpu_throughput.py runs end to end on the CPU with tiny sizes and prints its table."""

from __future__ import annotations

import math
from pathlib import Path

import gpu_throughput
import pytest


def test_tiny_cpu_run_prints_every_row_and_ratio(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ratios = gpu_throughput.main(["--tiny", "--workers", "1", "--work", str(tmp_path)])
    out = capsys.readouterr().out
    assert set(ratios) == {"pipeline_over_memory", "adagc_over_an"}
    assert all(math.isfinite(v) and v > 0 for v in ratios.values())
    table = [line.split() for line in out.splitlines() if line.startswith("  ")]
    rows = [r for r in table if len(r) >= 2 and r[1] in ("an", "adagc")]
    assert [(r[0], r[1]) for r in rows] == [
        ("memory", "an"),
        ("pipeline", "an"),
        ("memory", "adagc"),
    ]
    assert all(float(r[2]) > 0 and float(r[3]) > 0 for r in rows)  # images/s, ms/step
    assert "pipeline / in-memory limit:" in out and "AdaGC stage 2 / AN step time:" in out
    assert "n/a (CPU)" in out and "bf16-mixed" in out and "10 bands" in out
    # the generated LMDB is the official encoding: the library's datamodule reads it
    assert (tmp_path / "benv2" / "BigEarthNet-V2-LMDB" / "data.mdb").is_file()


def test_defaults_size_the_lmdb_for_an_epoch_of_distinct_batches() -> None:
    args = gpu_throughput.parse([])
    assert args.batch_size == 256 and args.steps == 60 and args.model == "resnet50"
    # about half the rows are train: an epoch of distinct batches fits
    assert args.patches / 2 >= args.steps * args.batch_size
    assert args.workers >= 1
