"""The command-line entry points as a user runs them: multirun, resume, DDP, test.py."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from spml_testing import TINY

#: a few more epochs and images than TINY, so that a kill can land mid-run.
RESUMABLE = (
    *TINY,
    "dataset.datamodule.num_train=256",
    "trainer.max_epochs=4",
    "trainer.deterministic=true",
    "logger=csv",
)


def _env(cache: Path) -> dict[str, str]:
    return {
        **os.environ,
        "SPML_RS_CACHE": str(cache),
        "PYTHONUNBUFFERED": "1",
        "WANDB_MODE": "offline",
    }


def _run(
    args: list[str], cache: Path, cwd: Path, timeout: int = 300
) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [sys.executable, *args],
        cwd=cwd,
        env=_env(cache),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done


def _metrics(run_dir: Path) -> dict[str, float]:
    return json.loads((run_dir / "results.json").read_text())["metrics"]


def test_multirun_leaves_one_run_directory_per_job(tmp_path: Path, cache_dir: Path) -> None:
    sweep = tmp_path / "sweep"
    _run(
        [
            "-m",
            "spml_rs.train",
            "-m",
            "method=an,full",
            "seed=0,1",
            *TINY,
            f"hydra.sweep.dir={sweep}",
        ],
        cache_dir,
        tmp_path,
    )
    results = sorted(sweep.glob("*/results.json"))
    assert len(results) == 4
    seen = {(r["method"], r["seed"]) for r in map(lambda p: json.loads(p.read_text()), results)}
    assert seen == {("an", 0), ("an", 1), ("full", 0), ("full", 1)}


def test_killed_run_resumes_to_the_same_result(tmp_path: Path, cache_dir: Path) -> None:
    reference = tmp_path / "uninterrupted"
    _run(["-m", "spml_rs.train", *RESUMABLE, f"hydra.run.dir={reference}"], cache_dir, tmp_path)

    killed = tmp_path / "killed"
    args = [sys.executable, "-m", "spml_rs.train", *RESUMABLE, f"hydra.run.dir={killed}"]
    process = subprocess.Popen(
        args,
        cwd=tmp_path,
        env=_env(cache_dir),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    last = killed / "checkpoints" / "last.ckpt"
    deadline = time.time() + 240
    versions: set[int] = set()
    # Kill hard once last.ckpt was written twice (two epochs): a node failure, no clean shutdown.
    while time.time() < deadline and process.poll() is None and len(versions) < 2:
        if last.exists():
            versions.add(last.stat().st_ino)  # a new file each epoch (atomic rename)
        time.sleep(0.02)
    assert process.poll() is None, "the run finished before it could be killed; make it longer"
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not (killed / "results.json").exists()

    _run(
        ["-m", "spml_rs.train", *RESUMABLE, f"hydra.run.dir={killed}", "ckpt_path=last"],
        cache_dir,
        tmp_path,
    )
    expected, got = _metrics(reference), _metrics(killed)
    for key in ("test/mAP_macro", "test/mAP_micro", "test/F1_macro", "test/F1_micro"):
        assert got[key] == pytest.approx(expected[key], abs=1e-6), key


def test_ckpt_path_last_without_checkpoint_is_a_clear_error(
    tmp_path: Path, cache_dir: Path
) -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "spml_rs.train",
            *TINY,
            f"hydra.run.dir={tmp_path / 'new'}",
            "ckpt_path=last",
        ],
        cwd=tmp_path,
        env=_env(cache_dir),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode != 0
    assert "ckpt_path=last: no" in done.stderr + done.stdout


def test_two_process_ddp_on_cpu_reports_the_same_keys(tmp_path: Path, cache_dir: Path) -> None:
    single, ddp = tmp_path / "single", tmp_path / "ddp"
    _run(["-m", "spml_rs.train", *TINY, f"hydra.run.dir={single}"], cache_dir, tmp_path)
    _run(
        [
            "-m",
            "spml_rs.train",
            *TINY,
            "trainer=ddp",
            "trainer.accelerator=cpu",
            "trainer.devices=2",
            "trainer.precision=32-true",
            "trainer.sync_batchnorm=false",
            f"hydra.run.dir={ddp}",
        ],
        cache_dir,
        tmp_path,
    )
    single_keys, ddp_keys = set(_metrics(single)), set(_metrics(ddp))
    assert ddp_keys == single_keys
    assert all(
        0 <= v <= 1 for k, v in _metrics(ddp).items() if k.startswith("test/") and v is not None
    )


def test_test_entry_point_evaluates_a_checkpoint(tmp_path: Path, cache_dir: Path) -> None:
    trained = tmp_path / "trained"
    _run(["-m", "spml_rs.train", *TINY, f"hydra.run.dir={trained}"], cache_dir, tmp_path)
    best = json.loads((trained / "results.json").read_text())["best_checkpoint"]
    evaluated = tmp_path / "evaluated"
    tiny_data = [o for o in TINY if o.startswith(("dataset.", "model."))]
    _run(
        ["-m", "spml_rs.test", f"ckpt_path={best}", *tiny_data, f"hydra.run.dir={evaluated}"],
        cache_dir,
        tmp_path,
    )
    # The best checkpoint evaluated again gives the test metrics the training run reported
    # (the overrides repeat the stored config here; tests/entrypoints/test_evaluate.py: none).
    (evaluation,) = evaluated.glob("results_test_*.json")
    assert json.loads(evaluation.read_text())["metrics"]["test/mAP_macro"] == pytest.approx(
        _metrics(trained)["test/mAP_macro"], abs=1e-6
    )
