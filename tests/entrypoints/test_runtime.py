"""Process set-up of ``python -m spml_rs.train``: threads, a quiet terminal, train.log, refusals.

Subprocess tests run the command line as a user does; what they check is what a
user sees (stderr, stdout, exit code) and what the run directory holds.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from spml_rs import runtime
from spml_rs.config_keys import UnknownConfigKeyError, check_target_keys
from spml_rs.train import train
from spml_testing import TINY, tiny

CONFIGS = Path(__file__).resolve().parents[2] / "src" / "spml_rs" / "configs"

#: what every run printed before: Lightning's tips, a FLOP count of 0, warnings about its internals
NOISE = (
    "💡 Tip",
    "litlogger",
    "litmodels",
    "Total FLOPs",
    "exists and is not empty",
    "LeafSpec",
    "smaller than the logging interval",
    "Trainer already configured with model summary",
)


def env(cache: Path, **extra: str) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    return {**base, "SPML_RS_CACHE": str(cache), "WANDB_MODE": "offline", **extra}


def run(args: list[str], cache: Path, cwd: Path, **extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args],
        cwd=cwd,
        env=env(cache, **extra),
        capture_output=True,
        text=True,
        timeout=600,
    )


# ------------------------------------------------------------------- threads
def openmp_spin_count(cache: Path, tmp_path: Path, **extra: str) -> str:
    """GOMP_SPINCOUNT as libgomp read it when ``import spml_rs.train`` loaded torch."""
    done = run(["-c", "import spml_rs.train"], cache, tmp_path, OMP_DISPLAY_ENV="verbose", **extra)
    assert done.returncode == 0, done.stderr
    (line,) = [x for x in done.stderr.splitlines() if "GOMP_SPINCOUNT" in x]
    return line.split("=")[1].strip(" '")


def test_openmp_threads_sleep_when_idle_unless_the_user_chose(
    cache_dir: Path, tmp_path: Path
) -> None:
    assert openmp_spin_count(cache_dir, tmp_path) == "0"  # passive: no busy-waiting
    assert openmp_spin_count(cache_dir, tmp_path, GOMP_SPINCOUNT="300000") == "300000"
    active = openmp_spin_count(cache_dir, tmp_path, OMP_WAIT_POLICY="ACTIVE")
    assert int(active) > 300000


def test_prefer_passive_keeps_a_users_setting() -> None:
    environ: dict[str, str] = {}
    assert runtime.prefer_passive_openmp_waiting(environ) is True
    assert environ == {"OMP_WAIT_POLICY": "PASSIVE"}
    for chosen in ({"OMP_WAIT_POLICY": "ACTIVE"}, {"GOMP_SPINCOUNT": "1000"}):
        before = dict(chosen)
        assert runtime.prefer_passive_openmp_waiting(chosen) is False
        assert chosen == before


THREADS = """
import os, sys
os.sched_setaffinity(0, {int(c) for c in sys.argv[1].split(",")})
from spml_rs import runtime
print(runtime.configure_threads(), runtime.available_cpus())
"""


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs two CPUs to restrict to one")
def test_torch_threads_follow_the_affinity_mask(cache_dir: Path, tmp_path: Path) -> None:
    one = min(os.sched_getaffinity(0))
    done = run(["-c", THREADS, str(one)], cache_dir, tmp_path)
    assert done.stdout.split() == ["1", "1"], done.stderr
    both = ",".join(map(str, sorted(os.sched_getaffinity(0))[:2]))
    assert run(["-c", THREADS, both], cache_dir, tmp_path).stdout.split() == ["2", "2"]
    # OMP_NUM_THREADS is the user's choice: kept, whatever the mask
    forced = run(["-c", THREADS, str(one)], cache_dir, tmp_path, OMP_NUM_THREADS="2")
    assert forced.stdout.split() == ["2", "1"], forced.stderr


@pytest.mark.parametrize(
    ("files", "cpus"),
    [
        ({"cpu.max": "200000 100000\n"}, 2),
        ({"cpu.max": "150000 100000\n"}, 2),  # 1.5 CPUs of time: 2 threads
        ({"cpu.max": "max 100000\n"}, None),
        ({"cpu/cpu.cfs_quota_us": "300000\n", "cpu/cpu.cfs_period_us": "100000\n"}, 3),
        ({"cpu/cpu.cfs_quota_us": "-1\n", "cpu/cpu.cfs_period_us": "100000\n"}, None),
        ({}, None),
    ],
)
def test_cgroup_cpu_quota(tmp_path: Path, files: dict[str, str], cpus: int | None) -> None:
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    assert runtime.cgroup_cpu_quota(tmp_path) == cpus


# ---------------------------------------------------- quiet terminal, train.log
def test_a_run_is_quiet_and_logs_into_train_log(cache_dir: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    args = ["-m", "spml_rs.train", *tiny("trainer.max_epochs=1"), f"hydra.run.dir={run_dir}"]
    first = run(args, cache_dir, tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    # the same command again: auto_resume continues from last.ckpt (and has nothing left to train)
    resumed = run(args, cache_dir, tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    for done in (first, resumed):
        assert [n for n in NOISE if n in done.stdout + done.stderr] == []
        assert "test metrics" in done.stdout  # the results table
    # the helpful warning stays: a class without positives in the tiny validation split
    assert "no positive examples for class(es)" in first.stderr

    log = (run_dir / "train.log").read_text()
    assert f"auto_resume: continuing from {run_dir}/checkpoints/last.ckpt" in log  # spml_rs
    assert "intra-op threads" in log and "OMP_WAIT_POLICY=PASSIVE" in log  # spml_rs.train
    assert "Seed set to 0" in log  # Lightning's messages
    assert "no positive examples for class(es)" in log  # Python warnings
    assert "trainable parameters" in log  # the model summary
    assert [n for n in NOISE if n in log] == []
    runtime_block = json.loads((run_dir / "results.json").read_text())["runtime"]
    assert runtime_block["OMP_WAIT_POLICY"] == "PASSIVE"
    assert runtime_block["torch_threads"] == runtime.available_cpus()


# ------------------------------------------------ refused before anything runs
def test_a_typo_names_the_node_and_the_closest_key(cache_dir: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    done = run(
        [
            "-m",
            "spml_rs.train",
            *TINY,
            "+dataset.datamodule.num_trian=5",
            f"hydra.run.dir={run_dir}",
        ],
        cache_dir,
        tmp_path,
    )
    assert done.returncode != 0
    message = done.stderr
    assert "dataset.datamodule.num_trian" in message
    assert "did you mean dataset.datamodule.num_train?" in message
    assert "valid keys of dataset.datamodule: augment, batch_size" in message
    assert "unexpected keyword argument" not in message
    assert not run_dir.exists()  # no stray run directory


def test_failing_before_training_keeps_a_directory_with_earlier_work(
    make_cfg, tmp_path: Path
) -> None:
    """A directory that holds more than Hydra's files (a run to resume) is never removed."""
    (tmp_path / ".hydra").mkdir()
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "last.ckpt").write_bytes(b"earlier work")
    cfg = make_cfg("+model.optimizer.lrr=0.1")
    with pytest.raises(UnknownConfigKeyError, match=r"did you mean model\.optimizer\.lr\?"):
        train(cfg)
    assert (tmp_path / "checkpoints" / "last.ckpt").read_bytes() == b"earlier work"


@pytest.mark.parametrize("key", ["max_epochs", "max_steps", "limit_train_batches"])
def test_a_trainer_that_would_not_train_is_refused(make_cfg, tmp_path: Path, key: str) -> None:
    cfg = make_cfg(*tiny(f"{'' if key == 'max_epochs' else '+'}trainer.{key}=0"))
    with pytest.raises(ValueError, match=rf"trainer\.{key}=0 trains nothing"):
        train(cfg)
    assert not (tmp_path / "results.json").exists()
    assert not (tmp_path / "checkpoints").exists()


def option_overrides() -> list[list[str]]:
    """One composition per option of every config group a user picks from."""
    groups = ["method", "dataset", "model", "trainer", "logger", "label_mode", "experiment"]
    options = [[f"{g}={p.stem}"] for g in groups for p in sorted((CONFIGS / g).glob("*.yaml"))]
    return [
        [*o, "label_mode.path=labels.csv"] if o == ["label_mode=manual"] else o for o in options
    ]


@pytest.mark.parametrize("overrides", option_overrides(), ids=lambda o: o[0])
def test_every_packaged_config_passes_the_key_check(make_cfg, overrides: list[str]) -> None:
    check_target_keys(make_cfg(*overrides, tiny=False))
