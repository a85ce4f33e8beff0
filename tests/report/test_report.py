"""spml_rs.report: tables and plots from results.json / metrics.csv files."""

from __future__ import annotations

import csv
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

import pytest

from spml_rs import report
from spml_testing import tiny

CLASSES = ("forest", "water", "urban")


def write_run(
    root: Path,
    name: str,
    method: str,
    seed: int,
    map_macro: float,
    *,
    label_mode: str = "random",
    lr: float = 1e-3,
    adagc: bool = False,
) -> Path:
    """A fake run directory as spml_rs.train leaves it (results.json + metrics.csv)."""
    run = root / name
    run.mkdir(parents=True)
    metrics = {
        "test/mAP_macro": map_macro,
        "test/mAP_micro": map_macro + 0.1,
        "test/F1_macro": None,  # NaN in the run -> null in JSON
        "test/F1_micro": 0.5,
        **{f"test/AP/{c}": map_macro / (i + 1) for i, c in enumerate(CLASSES)},
    }
    payload = {
        "metrics": metrics,
        "method": method,
        "dataset": "synthetic",
        "label_mode": label_mode,
        "seed": seed,
        "config": {"model": {"optimizer": {"lr": lr}}, "paths": {"output_dir": str(run)}},
    }
    (run / "results.json").write_text(json.dumps(payload))
    columns = ["epoch", "step", "train/loss", "val/mAP_macro"]
    if adagc:
        columns += ["adagc/signal", "adagc/trigger_epoch", "adagc/stage"]
    with open(run / "metrics.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, columns)
        writer.writeheader()
        for epoch in range(3):
            writer.writerow({"epoch": epoch, "step": 3 * epoch, "train/loss": 1.0 / (epoch + 1)})
            row = {
                "epoch": epoch,
                "step": 3 * epoch + 2,
                "val/mAP_macro": 0.2 + 0.1 * epoch + seed / 100,
            }
            if adagc:
                row.update(
                    {
                        "adagc/signal": 0.3 * epoch,
                        "adagc/trigger_epoch": 2,
                        "adagc/stage": 1 + (epoch > 1),
                    }
                )
            writer.writerow(row)
    return run


@pytest.fixture
def sweep(tmp_path: Path) -> Path:
    root = tmp_path / "sweep"
    for seed, (an, full) in enumerate([(0.30, 0.60), (0.34, 0.62), (0.32, 0.58)]):
        write_run(root, f"an_{seed}", "an", seed, an)
        write_run(root / "nested", f"full_{seed}", "full", seed, full)
    write_run(root, "an_dominant", "an", 0, 0.25, label_mode="dominant", adagc=True)
    return root


def test_aggregate_means_stds_and_counts(sweep: Path) -> None:
    rows = report.aggregate(report.load_runs([sweep]))
    by_key = {row.key: row for row in rows}
    assert set(by_key) == {
        ("an", "synthetic", "random"),
        ("full", "synthetic", "random"),
        ("an", "synthetic", "dominant"),
    }
    an = by_key[("an", "synthetic", "random")]
    assert an.seeds == [0, 1, 2]
    cell = an.cells["test/mAP_macro"]
    assert cell.mean == pytest.approx(statistics.fmean([0.30, 0.34, 0.32]))
    assert cell.std == pytest.approx(statistics.stdev([0.30, 0.34, 0.32]))
    assert cell.n == 3
    assert an.cells["test/F1_macro"].mean is None  # only nulls: not a zero
    single = by_key[("an", "synthetic", "dominant")].cells["test/mAP_macro"]
    assert (single.mean, single.std, single.n) == (pytest.approx(0.25), None, 1)


def test_markdown_has_one_column_group_per_setting(sweep: Path) -> None:
    text = report.to_markdown(report.aggregate(report.load_runs([sweep])))
    header, _, an_line, full_line = text.splitlines()[:4]
    assert "synthetic / dominant: mAP macro" in header
    assert "synthetic / random: seeds" in header
    cells = [c.strip() for c in an_line.strip("|").split("|")]
    assert cells[0] == "an"
    mean, std = (
        100 * statistics.fmean([0.30, 0.34, 0.32]),
        100 * statistics.stdev([0.30, 0.34, 0.32]),
    )
    assert f"{mean:.2f} ± {std:.2f}" in cells
    assert full_line.split("|")[1].strip() == "full"
    # full has no dominant run: its cells there (one per metric, and seeds) are dashes, not zeros.
    assert full_line.count("—") == len(report.tables.DEFAULT_METRICS) + 1
    assert "F1 macro valthr" in header  # the F1 at validation thresholds is a default column


def test_markdown_follows_the_requested_orders(sweep: Path) -> None:
    rows = report.aggregate(report.load_runs([sweep]))
    text = report.to_markdown(
        rows, method_order=["full", "nope"], setting_order=[("synthetic", "random")]
    )
    header, _, first, second = text.splitlines()[:4]
    assert header.index("synthetic / random") < header.index("synthetic / dominant")
    assert first.split("|")[1].strip() == "full" and second.split("|")[1].strip() == "an"


def test_csv_round_trips_numbers(sweep: Path) -> None:
    rows = report.aggregate(report.load_runs([sweep]))
    parsed = list(csv.DictReader(report.to_csv(rows).splitlines()))
    full = next(r for r in parsed if r["method"] == "full")
    assert float(full["test/mAP_macro_mean"]) == pytest.approx(0.60)
    assert int(full["n_seeds"]) == 3
    assert full["test/F1_macro_mean"] == ""


def test_same_seed_twice_needs_by(tmp_path: Path) -> None:
    write_run(tmp_path, "lr_a", "an", 0, 0.3, lr=1e-3)
    write_run(tmp_path, "lr_b", "an", 0, 0.4, lr=1e-2)
    with pytest.raises(ValueError, match=r"model\.optimizer\.lr"):
        report.aggregate(report.load_runs([tmp_path]))
    rows = report.aggregate(report.load_runs([tmp_path], by=["model.optimizer.lr"]))
    assert [r.key[-1] for r in rows] == ["model.optimizer.lr=0.001", "model.optimizer.lr=0.01"]


def test_bad_results_name_the_file(tmp_path: Path) -> None:
    run = tmp_path / "broken"
    run.mkdir()
    (run / "results.json").write_text(json.dumps({"metrics": {}, "method": "an"}))
    with pytest.raises(ValueError, match=r"broken.*results\.json.*dataset"):
        report.load_runs([tmp_path])
    with pytest.raises(FileNotFoundError, match="no such run"):
        report.load_runs([tmp_path / "missing"])


def test_metrics_csv_keeps_each_column_own_rows(sweep: Path) -> None:
    series = report.read_metrics_csv(sweep / "an_1")
    assert series["val/mAP_macro"] == [
        (0, pytest.approx(0.21)),
        (1, pytest.approx(0.31)),
        (2, pytest.approx(0.41)),
    ]
    assert [e for e, _ in series["train/loss"]] == [0, 1, 2]
    assert report.read_metrics_csv(sweep / "nowhere") == {}


def test_main_writes_tables_and_plots(sweep: Path, tmp_path: Path) -> None:
    out = tmp_path / "report"
    assert report.main([str(sweep), "--out", str(out)]) == 0
    names = sorted(p.name for p in out.iterdir())
    assert names == [
        "adagc_synthetic_dominant.png",  # only the setting whose runs logged adagc/ columns
        "benchmark.csv",
        "benchmark.md",
        "paired.csv",  # every method's paired difference from an (report.paired)
        "paired.md",
        "paired_synthetic_random.png",  # the dominant setting has no pair: no plot
        "per_class_ap_synthetic_dominant.png",
        "per_class_ap_synthetic_random.png",
        "val_curves_synthetic_dominant.png",
        "val_curves_synthetic_random.png",
    ]
    assert all((out / n).stat().st_size > 1000 for n in names if n.endswith(".png"))


def test_default_output_is_next_to_the_runs(
    sweep: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without --out nothing lands in the caller's working directory."""
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert report.main([str(sweep), "--no-plots"]) == 0
    assert (sweep / "report" / "benchmark.md").is_file()
    assert list(elsewhere.iterdir()) == []
    # several directories: the deepest folder holding all of them
    other = write_run(tmp_path / "sweep2", "an_0", "an", 0, 0.3).parent
    assert report.main([str(sweep), str(other), "--no-plots", "--by", "paths.output_dir"]) == 0
    assert (tmp_path / "report" / "benchmark.csv").is_file()
    # a second report run reads the same runs (its own output holds no results.json)
    assert report.main([str(sweep), "--no-plots"]) == 0


def test_python_dash_m_runs_the_command(sweep: Path, tmp_path: Path) -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "spml_rs.report",
            str(sweep),
            "--no-plots",
            "--out",
            str(tmp_path / "o"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "o" / "benchmark.md").is_file()


@pytest.mark.slow
def test_real_multirun_through_report(tmp_path: Path) -> None:
    """A Hydra multirun of spml_rs.train (2 tiny jobs), then the report command."""
    sweep_dir = tmp_path / "multirun"
    env = {**os.environ, "SPML_RS_CACHE": str(tmp_path / "cache")}
    command = [
        sys.executable,
        "-m",
        "spml_rs.train",
        "-m",
        "method=an,full",
        *tiny("trainer.max_epochs=2"),
    ]
    command.append(f"hydra.sweep.dir={sweep_dir}")
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    out = tmp_path / "report"
    assert report.main([str(sweep_dir), "--out", str(out)]) == 0
    rows = list(csv.DictReader((out / "benchmark.csv").read_text().splitlines()))
    assert sorted(r["method"] for r in rows) == ["an", "full"]
    assert all(0.0 < float(r["test/mAP_macro_mean"]) <= 1.0 for r in rows)
    assert (out / "val_curves_synthetic_random.png").is_file()
    assert (out / "per_class_ap_synthetic_random.png").is_file()
