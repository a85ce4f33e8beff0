"""Multi-node SLURM jobs: one node count, ``trainer.num_nodes``, read by Lightning and the launcher."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import submitit
from hydra import compose, initialize_config_module
from hydra.utils import instantiate
from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf
from omegaconf import DictConfig, OmegaConf, open_dict

from spml_rs import builders
from spml_rs.runtime import LauncherNodesCheck

TWO_NODES = [
    "hydra/launcher=slurm",
    "trainer=ddp",
    "trainer.accelerator=cpu",
    "trainer.devices=2",
    "trainer.precision=32-true",
    "trainer.num_nodes=2",
]


def full_config(overrides: list[str], output_dir: Path) -> DictConfig:
    with initialize_config_module("spml_rs.configs", version_base="1.3"):
        cfg = compose("train", overrides, return_hydra_config=True)
    with open_dict(cfg):
        cfg.paths.output_dir = str(output_dir)
        cfg.hydra.sweep.dir = str(output_dir / "sweep")
    return cfg


def sbatch_script(launcher_cfg: DictConfig, monkeypatch: pytest.MonkeyPatch, tmp: Path) -> str:
    """The sbatch file submitit writes for the launcher's parameters; nothing is submitted.

    The parameters go to submitit as ``SlurmLauncher.launch`` passes them; submitit
    refuses to build a SLURM executor without ``srun`` on the PATH, so a stand-in
    that is never called satisfies that check.
    """
    (tmp / "bin").mkdir()
    (tmp / "bin" / "srun").write_text("#!/bin/sh\nexit 1\n")
    (tmp / "bin" / "srun").chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp / 'bin'}{os.pathsep}{os.environ['PATH']}")
    params = dict(instantiate(launcher_cfg).params)
    executor = submitit.AutoExecutor(
        cluster="slurm",
        folder=params.pop("submitit_folder"),
        slurm_max_num_timeout=params.pop("max_num_timeout"),
    )
    generic = set(OmegaConf.structured(BaseQueueConf).keys())
    executor.update_parameters(
        **{k if k in generic else f"slurm_{k}": v for k, v in params.items()}
    )
    return executor._executor._make_submission_file_text("python -m spml_rs.train", "0")


def test_two_nodes_reach_lightning_and_sbatch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = full_config(TWO_NODES, tmp_path)
    assert cfg.hydra.launcher.nodes == cfg.trainer.num_nodes == 2
    LauncherNodesCheck().on_multirun_start(cfg)  # they agree: no error
    trainer = builders.build_trainer(cfg, [], [])
    assert trainer.num_nodes == 2 and trainer.num_devices == 2
    script = sbatch_script(cfg.hydra.launcher, monkeypatch, tmp_path)
    assert "#SBATCH --nodes=2\n" in script
    assert "#SBATCH --ntasks-per-node=2\n" in script  # one DDP process per device, on each node


def test_a_contradicting_launcher_node_count_is_refused(tmp_path: Path) -> None:
    cfg = full_config(["hydra/launcher=slurm", "hydra.launcher.nodes=2"], tmp_path)
    with pytest.raises(ValueError, match=r"hydra.launcher.nodes=2 but trainer.num_nodes=1"):
        LauncherNodesCheck().on_multirun_start(cfg)


def test_the_sweep_stops_before_submitting(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "spml_rs.train", "-m", "hydra/launcher=slurm",
         "hydra.launcher.nodes=2", f"hydra.sweep.dir={tmp_path / 'sweep'}"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode != 0
    assert "give trainer.num_nodes=2 instead" in done.stderr
    assert not (tmp_path / "sweep" / ".submitit").exists()
