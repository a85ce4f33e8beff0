"""Launcher wiring: submitit multirun, a preempted job requeued into its run directory, resume.

The SLURM launcher cannot run here; ``hydra/launcher=local`` runs the same submitit
job path (pickled job, preemption signal, checkpoint-and-requeue) on this machine.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from spml_rs import compose
from spml_rs.report import read_metrics_csv
from spml_rs.resume import checkpoint_to_resume, keep_metrics_log, pin_wandb_run, wandb_run_id
from spml_testing import tiny

HERE = Path(__file__).resolve().parent


def test_slurm_launcher_composes_with_ddp_tasks(tmp_path: Path) -> None:
    cfg = compose(["hydra/launcher=slurm", "trainer=ddp", "trainer.devices=4"], output_dir=tmp_path)
    assert cfg.trainer.strategy == "ddp" and cfg.trainer.devices == 4
    from hydra import compose as hydra_compose
    from hydra import initialize_config_module

    with initialize_config_module("spml_rs.configs", version_base="1.3"):
        full = hydra_compose(
            "train",
            ["hydra/launcher=slurm", "trainer=ddp", "trainer.devices=4"],
            return_hydra_config=True,
        )
    launcher = full.hydra.launcher
    assert launcher._target_.endswith("SlurmLauncher")
    # One task per GPU, both taken from the trainer: DDP inside the job, started by srun.
    assert launcher.gpus_per_node == launcher.tasks_per_node == 4
    assert launcher.max_num_timeout > 0 and launcher.timeout_min > 0
    assert OmegaConf.select(full, "hydra.launcher.partition") is None


def test_checkpoint_to_resume(tmp_path: Path) -> None:
    assert checkpoint_to_resume(None, True, tmp_path) is None  # nothing to resume: fresh start
    last = tmp_path / "checkpoints" / "last.ckpt"
    last.parent.mkdir()
    last.write_bytes(b"x")
    assert checkpoint_to_resume(None, False, tmp_path) is None
    (tmp_path / "metrics.csv").write_text("epoch,step\n0,1\n")
    assert checkpoint_to_resume(None, True, tmp_path) == str(last)
    # The earlier attempt's log is kept, numbered, never overwritten.
    assert (tmp_path / "metrics.part1.csv").read_text() == "epoch,step\n0,1\n"
    (tmp_path / "metrics.csv").write_text("epoch,step\n1,3\n")
    keep_metrics_log(tmp_path)
    assert sorted(p.name for p in tmp_path.glob("metrics*.csv")) == [
        "metrics.part1.csv",
        "metrics.part2.csv",
    ]
    with pytest.raises(FileNotFoundError, match="no such checkpoint"):
        checkpoint_to_resume(str(tmp_path / "nope.ckpt"), True, tmp_path)


def test_wandb_id_is_a_function_of_the_run_dir(tmp_path: Path) -> None:
    assert wandb_run_id(tmp_path / "a") == wandb_run_id(tmp_path / "a")
    assert wandb_run_id(tmp_path / "a") != wandb_run_id(tmp_path / "b")
    cfg = compose(["logger=wandb"], output_dir=tmp_path)
    pin_wandb_run(cfg, tmp_path)
    assert cfg.logger.wandb.id == wandb_run_id(tmp_path)
    cfg = compose(["logger=wandb", "logger.wandb.id=mine"], output_dir=tmp_path)
    pin_wandb_run(cfg, tmp_path)
    assert cfg.logger.wandb.id == "mine"  # an explicit id is the user's choice


@pytest.mark.slow
def test_preempted_job_is_requeued_and_resumes(tmp_path: Path) -> None:
    """Two jobs, identical but for a preemption of job 0 at the start of epoch 2.

    Job 0 gets SIGUSR2 (submitit's preemption signal), checkpoints and is requeued
    by submitit; the requeued attempt must land in the same run directory, resume
    from its last.ckpt, continue the same W&B run and end exactly like job 1.
    """
    logs = tmp_path / "logs"
    env = {
        **os.environ,
        "SPML_RS_LOGS": str(logs),  # default sweep dir: <logs>/train/multiruns/<now>
        "SPML_RS_CACHE": str(tmp_path / "cache"),
        "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]),
        "WANDB_SILENT": "true",
    }
    command = [
        sys.executable, "-m", "spml_rs.train", "-m", "hydra/launcher=local",
        *tiny("trainer.max_epochs=3"), "trainer.deterministic=true", "logger=wandb",
        "+callbacks.preempt._target_=preempt_once.PreemptOnce",
        "+callbacks.preempt.marker=${paths.output_dir}/preempted.txt",
        "+callbacks.preempt.at_epoch=2,-1",
        "hydra.sweep.subdir=${hydra.job.num}",
    ]  # fmt: skip
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]

    (sweep,) = (logs / "train" / "multiruns").iterdir()  # the requeue made no second sweep
    preempted, clean = sweep / "0", sweep / "1"
    assert "epoch 2" in (preempted / "preempted.txt").read_text()
    assert not (clean / "preempted.txt").exists()
    job_logs = "".join(p.read_text() for p in (sweep / ".submitit").rglob("*_log.out"))
    assert "Requeued job" in job_logs
    assert f"auto_resume: continuing from {preempted}/checkpoints/last.ckpt" in job_logs

    interrupted = json.loads((preempted / "results.json").read_text())["metrics"]
    uninterrupted = json.loads((clean / "results.json").read_text())["metrics"]
    assert interrupted == uninterrupted
    # The validation curve is whole: epochs 0-1 from the first attempt, 2 from the requeued one.
    assert read_metrics_csv(preempted)["val/mAP_macro"] == read_metrics_csv(clean)["val/mAP_macro"]
    assert [e for e, _ in read_metrics_csv(preempted)["val/mAP_macro"]] == [0, 1, 2]
    # Both attempts logged into one W&B run.
    runs = sorted((preempted / "wandb").glob("offline-run-*"))
    assert len(runs) == 2
    assert {r.name.rsplit("-", 1)[-1] for r in runs} == {wandb_run_id(preempted).rsplit("-", 1)[-1]}
