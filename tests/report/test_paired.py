"""spml_rs.report.paired: per-seed differences from a baseline and their t-intervals."""

from __future__ import annotations

import csv
import io
import json
import math
import statistics
from pathlib import Path

import pytest
from scipy import stats

from spml_rs import report
from spml_rs.report.paired import format_diff, paired_interval

METRIC = "test/mAP_macro"
DATA = {"datamodule": {"preset": "multispectral", "num_train": 500}}


def write_run(
    root: Path, method: str, seed: int, value: float, *, mode: str = "random", data: dict = DATA
) -> None:
    run = root / f"{method}_{mode}_{seed}"
    run.mkdir(parents=True)
    payload = {
        "metrics": {METRIC: value, "test/F1_macro": None if method == "broken" else value / 2},
        "method": method,
        "dataset": "synthetic",
        "label_mode": mode,
        "seed": seed,
        "config": {"dataset": data, "label_mode": {"mode": mode, "seed": seed}, "seed": seed},
    }
    (run / "results.json").write_text(json.dumps(payload))


AN = [0.600, 0.640, 0.610, 0.700, 0.580]
#: a method whose mean gain (+0.0126) is far below one seed std of AN (0.047) but consistent
GAIN = [a + d for a, d in zip(AN, [0.012, 0.015, 0.010, 0.014, 0.012], strict=True)]


@pytest.fixture
def sweep(tmp_path: Path) -> Path:
    for seed, (an, gain) in enumerate(zip(AN, GAIN, strict=True)):
        write_run(tmp_path, "an", seed, an)
        write_run(tmp_path, "gain", seed, gain)
        write_run(tmp_path, "noise", seed, an + (0.03 if seed % 2 else -0.03))
    write_run(tmp_path, "an", 0, 0.5, mode="dominant")
    write_run(tmp_path, "gain", 0, 0.6, mode="dominant")
    write_run(tmp_path, "gain", 9, 0.6, mode="dominant")  # no an run with seed 9: unpaired
    return tmp_path


def hand_interval(differences: list[float], confidence: float = 0.95) -> tuple[float, float]:
    """The textbook paired t-interval, written out."""
    n = len(differences)
    mean = sum(differences) / n
    sd = math.sqrt(sum((d - mean) ** 2 for d in differences) / (n - 1))
    half = stats.t.ppf(1 - (1 - confidence) / 2, df=n - 1) * sd / math.sqrt(n)
    return mean - half, mean + half


def test_interval_matches_the_hand_computation_and_scipys_paired_t_test() -> None:
    differences = [g - a for g, a in zip(GAIN, AN, strict=True)]
    diff = paired_interval(differences)
    low, high = hand_interval(differences)
    assert diff.mean == pytest.approx(statistics.fmean(differences))
    assert (diff.low, diff.high) == (pytest.approx(low), pytest.approx(high))
    assert diff.n == 5 and diff.excludes_zero
    # The interval excludes 0 exactly when scipy's paired t-test rejects at 5%.
    assert stats.ttest_rel(GAIN, AN).pvalue < 0.05
    low90, high90 = hand_interval(differences, 0.90)
    narrower = paired_interval(differences, 0.90)
    assert (narrower.low, narrower.high) == (pytest.approx(low90), pytest.approx(high90))
    assert narrower.high - narrower.low < diff.high - diff.low


def test_interval_of_inconsistent_differences_contains_zero() -> None:
    differences = [-0.03, 0.03, -0.03, 0.03, -0.03]
    diff = paired_interval(differences)
    assert diff.low < 0 < diff.high and not diff.excludes_zero
    assert stats.ttest_rel([0.03 * (-1) ** (k + 1) for k in range(5)], [0.0] * 5).pvalue > 0.05


def test_one_pair_has_no_interval_and_none_has_no_mean() -> None:
    one = paired_interval([0.02])
    assert one.mean == pytest.approx(0.02) and one.low is None and not one.excludes_zero
    assert paired_interval([]).mean is None
    with pytest.raises(ValueError, match="confidence"):
        paired_interval([0.1, 0.2], confidence=95)


def test_differences_are_taken_seed_by_seed_within_a_setting(sweep: Path) -> None:
    rows = report.paired_differences(report.load_runs([sweep]), metrics=[METRIC])
    by_key = {row.key: row for row in rows}
    assert set(by_key) == {
        ("gain", "synthetic", "random"),
        ("noise", "synthetic", "random"),
        ("gain", "synthetic", "dominant"),
    }  # the baseline is not paired with itself
    gain = by_key[("gain", "synthetic", "random")].diffs[METRIC]
    low, high = hand_interval([g - a for g, a in zip(GAIN, AN, strict=True)])
    assert (gain.low, gain.high) == (pytest.approx(low), pytest.approx(high))
    # Unpaired, the same numbers would not separate: the gain is a third of one seed std.
    assert gain.mean < statistics.stdev(AN) / 3
    noise = by_key[("noise", "synthetic", "random")].diffs[METRIC]
    assert noise.mean == pytest.approx(-0.006) and not noise.excludes_zero
    dominant = by_key[("gain", "synthetic", "dominant")]
    assert dominant.seeds == [0]  # seed 9 has no baseline run
    assert dominant.diffs[METRIC].mean == pytest.approx(0.1)


def test_missing_values_leave_the_seed_out_of_that_metric(tmp_path: Path) -> None:
    for seed in range(3):
        write_run(tmp_path, "an", seed, 0.5)
        write_run(tmp_path, "broken", seed, 0.6)  # F1 macro null
    rows = report.paired_differences(
        report.load_runs([tmp_path]), metrics=[METRIC, "test/F1_macro"]
    )
    assert rows[0].diffs[METRIC].n == 3
    assert rows[0].diffs["test/F1_macro"] == report.PairedDiff(None, None, None, 0)


def test_pairs_that_saw_different_data_are_refused(tmp_path: Path) -> None:
    write_run(tmp_path, "an", 0, 0.5)
    other = {"datamodule": {"preset": "multispectral", "num_train": 256}}
    write_run(tmp_path, "gain", 0, 0.6, data=other)
    with pytest.raises(ValueError, match=r"not \['dataset.datamodule'\].*--by"):
        report.paired_differences(report.load_runs([tmp_path]))


def test_markdown_marks_intervals_that_exclude_zero(sweep: Path) -> None:
    rows = report.paired_differences(report.load_runs([sweep]), metrics=[METRIC])
    text = report.paired_markdown(rows, [METRIC], setting_order=[("synthetic", "random")])
    lines = {
        line.split("|")[1].strip(): line for line in text.splitlines() if line.startswith("| ")
    }
    assert "**+1.26 [" in lines["gain"]
    assert "**" not in lines["noise"] and "-0.60 [" in lines["noise"]
    header = lines["method"]
    assert header.index("synthetic / random") < header.index("synthetic / dominant")
    assert "excludes 0" in text
    assert format_diff(report.PairedDiff(0.01, None, None, 1)) == "+1.00"


def test_setting_table_shows_mean_std_and_delta(sweep: Path) -> None:
    runs = report.load_runs([sweep])
    rows = report.aggregate(runs, [METRIC])
    paired = report.paired_differences(runs, metrics=[METRIC])
    text = report.setting_markdown(rows, paired, ("synthetic", "random"), [METRIC], ["an"])
    lines = [line for line in text.splitlines() if line.startswith("| ")]
    assert lines[1].startswith("| an |") and lines[1].split("|")[3].strip() == "—"
    mean, std = statistics.fmean(GAIN), statistics.stdev(GAIN)
    gain = next(line for line in lines if line.startswith("| gain |"))
    assert f"{100 * mean:.2f} ± {100 * std:.2f}" in gain and "**+1.26" in gain
    assert lines[0].startswith("| method | mAP macro | Δ |")  # one split: named without it
    metrics = [METRIC, "val/x"]
    rows, paired = report.aggregate(runs, metrics), report.paired_differences(runs, metrics=metrics)
    both = report.setting_markdown(rows, paired, ("synthetic", "random"), metrics)
    assert both.startswith("| method | test mAP macro | Δ | val x | Δ |")


def test_report_command_writes_the_paired_table_csv_and_plot(sweep: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert report.main([str(sweep), "--out", str(out), "--metric", METRIC]) == 0
    assert "**+1.26" in (out / "paired.md").read_text()
    table = list(csv.DictReader(io.StringIO((out / "paired.csv").read_text())))
    gain = next(r for r in table if r["method"] == "gain" and r["label_mode"] == "random")
    low, high = hand_interval([g - a for g, a in zip(GAIN, AN, strict=True)])
    assert float(gain[f"{METRIC}_delta_low"]) == pytest.approx(low)
    assert float(gain[f"{METRIC}_delta_high"]) == pytest.approx(high)
    assert gain["n_pairs"] == "5" and gain["baseline"] == "an"
    assert (out / "paired_synthetic_random.png").stat().st_size > 1000
    assert not (out / "paired_synthetic_dominant.png").exists()  # one pair: no interval


def test_report_command_baseline_choices(sweep: Path, tmp_path: Path) -> None:
    args = [str(sweep), "--no-plots", "--metric", METRIC]
    assert report.main([*args, "--out", str(tmp_path / "a"), "--baseline", "none"]) == 0
    assert not (tmp_path / "a" / "paired.md").exists()
    assert report.main([*args, "--out", str(tmp_path / "b"), "--baseline", "noise"]) == 0
    assert "| an |" in (tmp_path / "b" / "paired.md").read_text()
    with pytest.raises(SystemExit, match="--baseline full: no run"):
        report.main([*args, "--out", str(tmp_path / "c"), "--baseline", "full"])
