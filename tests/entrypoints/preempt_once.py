"""Test-only callback: simulate a SLURM preemption once, at the start of a given epoch.

Loaded by submitit jobs through ``PYTHONPATH`` (see test_submitit_resume.py). It sends
the job the signal submitit uses for preemption/timeout (SIGUSR2), exactly what a
cluster does, so the job goes through submitit's real checkpoint-and-requeue path.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

import lightning as L


class PreemptOnce(L.Callback):
    """Signal this process with SIGUSR2 when epoch ``at_epoch`` starts, unless ``marker`` exists.

    Args:
        at_epoch: epoch (0-based) at whose start the job is preempted; negative: never.
        marker: file written before the signal, so the requeued attempt runs through.
    """

    def __init__(self, at_epoch: int, marker: str) -> None:
        self.at_epoch = at_epoch
        self.marker = Path(marker)

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.current_epoch != self.at_epoch or self.marker.exists():
            return
        self.marker.write_text(f"preempted at epoch {trainer.current_epoch}, pid {os.getpid()}\n")
        os.kill(os.getpid(), signal.SIGUSR2)
