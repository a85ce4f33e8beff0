"""Killed runs: a SIGTERM ends with exit code 143, and the resumed run cleans up after a SIGKILL.

On SLURM, SIGTERM means preemption and stays Lightning's and submitit's (requeue,
tested in test_submitit_resume.py); everywhere else a script checking the exit
code must see the failure. Every test signals a real ``python -m spml_rs.train``.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.utilities.exceptions import SIGTERMException

from spml_rs import runtime
from spml_rs.checkpoint_io import filename_pattern
from spml_testing import tiny

#: long enough to be signalled mid-run: 4 epochs of 8 batches
LONGER = tiny(
    "dataset.datamodule.num_train=256",
    "trainer.max_epochs=4",
    "trainer.deterministic=true",
    "logger=csv",
)
SLURM_BATCH_JOB = {"SLURM_NTASKS": "1", "SLURM_JOB_NAME": "train", "SLURM_JOB_ID": "1"}


def env(cache: Path) -> dict[str, str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
    return {**clean, "SPML_RS_CACHE": str(cache), "PYTHONUNBUFFERED": "1"}


def command(run_dir: Path) -> list[str]:
    return [sys.executable, "-m", "spml_rs.train", *LONGER, f"hydra.run.dir={run_dir}"]


def signal_after_first_checkpoint(
    run_dir: Path, cache: Path, signum: int
) -> tuple[subprocess.Popen[bytes], bytes, bytes]:
    """Start the run, send ``signum`` once ``last.ckpt`` exists (epoch 0 done), wait for the end."""
    process = subprocess.Popen(
        command(run_dir),
        cwd=run_dir.parent,
        env=env(cache),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    last = run_dir / "checkpoints" / "last.ckpt"
    deadline = time.time() + 300
    while time.time() < deadline and process.poll() is None and not last.exists():
        time.sleep(0.05)
    assert process.poll() is None, "the run finished before the signal; make it longer"
    process.send_signal(signum)
    stdout, stderr = process.communicate(timeout=300)
    return process, stdout, stderr


def resume(run_dir: Path, cache: Path) -> subprocess.CompletedProcess[str]:
    """The same command again: auto_resume continues from ``last.ckpt``."""
    done = subprocess.run(
        command(run_dir),
        cwd=run_dir.parent,
        env=env(cache),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"auto_resume: continuing from {run_dir / 'checkpoints' / 'last.ckpt'}" in done.stderr
    return done


def test_sigterm_ends_the_run_with_exit_code_143(cache_dir: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    process, stdout, stderr = signal_after_first_checkpoint(run_dir, cache_dir, signal.SIGTERM)
    assert process.returncode == runtime.SIGTERM_EXIT_CODE == 143, stderr.decode()[-3000:]
    assert "stopped by SIGTERM" in stderr.decode()
    assert not (run_dir / "results.json").exists()
    assert b"test metrics" not in stdout  # no results table either
    # what the signal left is whole and resumable: the same command finishes the run
    last = run_dir / "checkpoints" / "last.ckpt"
    assert torch.load(last, weights_only=False)["epoch"] >= 0
    resume(run_dir, cache_dir)
    assert json.loads((run_dir / "results.json").read_text())["epochs_trained"] == 4


def test_resume_removes_what_a_killed_attempt_left(cache_dir: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    signal_after_first_checkpoint(run_dir, cache_dir, signal.SIGKILL)
    checkpoints = run_dir / "checkpoints"
    best = sorted(checkpoints.glob("best-epoch*.ckpt"))[-1]
    # What an attempt killed later would add: a best checkpoint written after the last
    # last.ckpt, and a checkpoint write cut short (the atomic write's temporary file).
    shutil.copy(best, checkpoints / "best-epoch002.ckpt")
    shutil.copy(best, checkpoints / ".last.ckpt.k3v9q_x1.tmp")
    (checkpoints / "pretrained.ckpt").write_bytes(b"a user's file")  # not a name of ours

    resume(run_dir, cache_dir)
    names = sorted(p.name for p in checkpoints.iterdir())
    results = json.loads((run_dir / "results.json").read_text())
    (best_now,) = [n for n in names if n.startswith("best-")]  # save_top_k=1, and no -v1 copy
    assert names == sorted([best_now, "last.ckpt", "pretrained.ckpt"])
    assert Path(results["best_checkpoint"]).name == best_now
    assert (checkpoints / "pretrained.ckpt").read_bytes() == b"a user's file"


def test_sigterm_stop_becomes_exit_code_143_outside_slurm(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for name in [k for k in os.environ if k.startswith("SLURM_")]:
        monkeypatch.delenv(name)
    with pytest.raises(SystemExit) as stopped, runtime.exit_on_sigterm(tmp_path):
        raise SIGTERMException
    assert stopped.value.code == 143


def test_sigterm_stop_is_left_to_lightning_on_slurm(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for name, value in SLURM_BATCH_JOB.items():
        monkeypatch.setenv(name, value)
    assert runtime.on_slurm()
    with pytest.raises(SIGTERMException), runtime.exit_on_sigterm(tmp_path):
        raise SIGTERMException


def test_filename_pattern_matches_the_callbacks_own_names() -> None:
    best = filename_pattern(
        ModelCheckpoint(filename="best-epoch{epoch:03d}", auto_insert_metric_name=False)
    )
    assert best.match("best-epoch008.ckpt") and best.match("best-epoch008-v1.ckpt")
    assert not best.match("last.ckpt") and not best.match("best-epoch008.ckpt.tmp")
    last = filename_pattern(ModelCheckpoint(filename="last"))
    assert last.match("last.ckpt") and last.match("last-v2.ckpt") and not last.match("lastly.ckpt")
    assert filename_pattern(ModelCheckpoint()).match("epoch=3-step=40.ckpt")
