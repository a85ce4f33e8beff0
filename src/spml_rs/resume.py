"""Resuming a run in its own directory: requeued SLURM jobs, re-launched sweeps.

A job that is preempted or times out is requeued (submitit) and runs again with
the same overrides, hence in the same run directory. There it finds
``checkpoints/last.ckpt`` (when ``auto_resume`` is on) and continues; its W&B run
id is derived from the run directory, so the requeued job logs into the same
W&B run instead of opening a new one.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from lightning.pytorch.utilities import rank_zero_info, rank_zero_only
from omegaconf import DictConfig, open_dict

from spml_rs.checkpoints import check_is_checkpoint
from spml_rs.results import RESULTS_FILE

CHECKPOINT_DIR = Path("checkpoints")
LAST_CHECKPOINT = CHECKPOINT_DIR / "last.ckpt"
#: the best checkpoint's name (callbacks/default.yaml: ``best-epoch{epoch:03d}``)
BEST_CHECKPOINTS = "best*.ckpt"
METRICS_LOG = "metrics.csv"
WANDB_LOGGER = "WandbLogger"


def run_directory(cfg: DictConfig) -> Path:
    """Hydra's output directory when run through Hydra, else ``cfg.paths.output_dir``."""
    if HydraConfig.initialized():
        return Path(HydraConfig.get().runtime.output_dir)
    return Path(cfg.paths.output_dir)


def resolve_ckpt_path(ckpt_path: str | None, run_dir: Path) -> str | None:
    """``last`` means this run directory's ``checkpoints/last.ckpt``; a path must exist.

    The file must be a Lightning checkpoint (a torch archive): anything else is named
    as such here, before Lightning's unpickler fails on it.
    """
    if not ckpt_path:
        return None
    if ckpt_path == "last":
        path = run_dir / LAST_CHECKPOINT
        if not path.is_file():
            raise FileNotFoundError(
                f"ckpt_path=last: no {path}. To resume a run, point Hydra at its directory: "
                "hydra.run.dir=<that run's directory> ckpt_path=last, or give ckpt_path=<file>"
            )
        return str(path)
    if not Path(ckpt_path).is_file():
        raise FileNotFoundError(f"ckpt_path: no such checkpoint file: {ckpt_path}")
    check_is_checkpoint(ckpt_path)
    return ckpt_path


def evaluated_checkpoint(ckpt_path: str, train_dir: Path) -> str:
    """The checkpoint an evaluation reads: a file, or ``last`` / ``best`` of ``train_dir``.

    ``last`` is ``train_dir/checkpoints/last.ckpt``; ``best`` the one
    ``checkpoints/best*.ckpt`` of that run (the checkpoint its test scored). Evaluating
    never writes into ``train_dir``.
    """
    if ckpt_path not in ("last", "best"):
        if not Path(ckpt_path).is_file():
            raise FileNotFoundError(f"ckpt_path: no such checkpoint file: {ckpt_path}")
        return ckpt_path
    hint = "set train_dir=<the training run's directory> (or ckpt_path=<file>)"
    if ckpt_path == "last":
        path = train_dir / LAST_CHECKPOINT
        if not path.is_file():
            raise FileNotFoundError(f"ckpt_path=last: no {path}; {hint}")
        return str(path)
    found = sorted((train_dir / CHECKPOINT_DIR).glob(BEST_CHECKPOINTS))
    if len(found) != 1:
        names = [p.name for p in found]
        raise FileNotFoundError(
            f"ckpt_path=best: expected one {BEST_CHECKPOINTS} in {train_dir / CHECKPOINT_DIR}, "
            f"found {names}; {hint}"
        )
    return str(found[0])


def checkpoint_to_resume(
    ckpt_path: str | None,
    auto_resume: bool,
    run_dir: Path,
    check: Callable[[str], None] | None = None,
) -> str | None:
    """The checkpoint ``trainer.fit`` starts from.

    An explicit ``ckpt_path`` (a file or ``last``) wins. Otherwise, with
    ``auto_resume``, the run directory's ``last.ckpt`` when it exists; else None
    (a fresh start). When resuming, ``check(path)`` runs first (it may refuse the
    checkpoint, e.g. one trained with another config), then the run's earlier
    ``metrics.csv`` is kept (see :func:`keep_metrics_log`): a refused resume
    leaves the run directory as it was.
    """
    path = resolve_ckpt_path(ckpt_path, run_dir) if ckpt_path else None
    last = run_dir / LAST_CHECKPOINT
    if path is None and auto_resume and last.is_file():
        rank_zero_info(f"auto_resume: continuing from {last}")
        path = str(last)
    if path is not None:
        if check is not None:
            check(path)
        keep_metrics_log(run_dir)
    return path


class FinishedRunError(FileExistsError):
    """A fresh start was asked for in a directory whose run has finished."""


def check_not_finished(run_dir: Path, resuming: bool, overwrite: bool) -> None:
    """Refuse to start training afresh over a finished run's results.

    A run directory with ``results.json`` and nothing to resume from (no
    ``checkpoints/last.ckpt``, e.g. a preset that turns it off) would be trained
    again from epoch 0: its metrics, results and plots replaced by another run's,
    its best checkpoint left next to the new one. ``overwrite=true`` asks for exactly
    that; the old run's checkpoints, metrics and results are then deleted first.
    """
    results = run_dir / RESULTS_FILE
    if resuming or not results.is_file():
        return
    if not overwrite:
        raise FinishedRunError(
            f"{run_dir} holds a finished run ({RESULTS_FILE}) and there is no "
            f"{LAST_CHECKPOINT} to resume from: training again would replace its results. "
            "Launch into another directory (hydra.run.dir / hydra.sweep.dir), or pass "
            "overwrite=true to delete that run's checkpoints, metrics and results and train anew."
        )
    discard_finished_run(run_dir)


@rank_zero_only
def discard_finished_run(run_dir: Path) -> None:
    """Delete what ``overwrite=true`` replaces: checkpoints, metrics logs, results."""
    for path in [
        *(run_dir / CHECKPOINT_DIR).glob("*.ckpt"),
        *run_dir.glob("metrics*.csv"),
        run_dir / RESULTS_FILE,
    ]:
        path.unlink(missing_ok=True)


@rank_zero_only
def keep_metrics_log(run_dir: Path) -> None:
    """Rename ``metrics.csv`` to ``metrics.part<k>.csv`` before a resumed run rewrites it.

    Lightning's CSVLogger starts a new file in a directory that has one; the parts
    keep the curves of the earlier attempts (``spml_rs.report`` reads them all).
    """
    log = run_dir / METRICS_LOG
    if log.is_file():
        k = 1 + sum(1 for _ in run_dir.glob("metrics.part*.csv"))
        log.rename(run_dir / f"metrics.part{k}.csv")


def wandb_run_id(run_dir: Path) -> str:
    """A W&B run id that is a function of the run directory's absolute path.

    Every attempt of a job (first start, requeue, manual re-launch into the same
    directory) gets the same id; different run directories get different ids.
    """
    digest = hashlib.sha1(str(Path(run_dir).resolve()).encode()).hexdigest()
    return f"spml-{digest[:16]}"


def pin_wandb_run(cfg: DictConfig, run_dir: Path) -> None:
    """Give every W&B logger without an explicit ``id`` the run directory's id (in place).

    Lightning's ``WandbLogger`` passes ``resume="allow"`` to ``wandb.init``, so the
    same id continues the run when it exists and creates it otherwise.
    """
    for node in (cfg.get("logger") or {}).values():
        if node and str(node.get("_target_", "")).endswith(WANDB_LOGGER) and not node.get("id"):
            with open_dict(node):
                node.id = wandb_run_id(run_dir)
