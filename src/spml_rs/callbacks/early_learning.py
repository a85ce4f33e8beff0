"""Lightning wiring of AdaGC's early-learning detection: one signal value per epoch.

The detector and the signals are the method's pure part
(:mod:`spml_rs.methods.early_learning`, ``docs/methods.md``); this callback
accumulates the signal over the training batches, feeds the detector at each
epoch end, switches the loss to gradient calibration
(:meth:`~spml_rs.methods.adagc.AdaGCLoss.start_calibration`), optionally rolls
the training state back to the trigger epoch, logs and plots.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

import lightning as L
import torch

from spml_rs.callbacks.adagc_common import adagc_loss, clean_predictions, find_callback
from spml_rs.callbacks.deferred_state import DeferredStateCallback
from spml_rs.callbacks.ema_teacher import EMATeacher
from spml_rs.callbacks.plots import log_image_to_wandb, plot_early_learning, shown
from spml_rs.methods.base import Batch
from spml_rs.methods.early_learning import SIGNALS, EarlyLearningDetector, default_windows
from spml_rs.methods.state import gather_cat

log = logging.getLogger(__name__)


class EarlyLearningCallback(DeferredStateCallback):
    """Feed the detector the per-epoch signal and switch AdaGC to stage 2.

    Signal: the mean over the epoch's clean training images of a sample-wise
    agreement of the ``source``'s predictions with the AN training targets
    (``signal``). An epoch is processed at its end. A checkpoint taken at
    validation end holds the epoch's unprocessed sums, which the resumed run
    processes (in the ``on_train_epoch_end`` Lightning replays, else at the next
    epoch start), so a resumed run switches exactly as an uninterrupted one. The
    detector, the accumulators and the switch epoch are the callback's
    checkpoint state; the stage is also saved with the loss. The plot is written
    at the switch and at the end of fit.

    Args:
        windows: detector window sizes (None: :func:`default_windows` of max_epochs).
        max_warmup_epochs: latest switch (None: ceil(max_warmup_fraction * max_epochs)).
        max_warmup_fraction: see ``max_warmup_epochs``.
        fixed: ablation: switch after this many warm-up epochs, ignoring the signal.
        rollback: on a detection, restore student, teacher, loss state and optimiser
            moments to the end of the trigger epoch (as AIO2 does). Keeps one snapshot
            per warm-up epoch in ``<run dir>/early_learning/`` until the switch.
        source: ``teacher`` or ``student`` (the ``adagc_no_teacher`` ablation).
        signal: ``f1`` (sample-wise F1 at 0.5 against the AN targets) or ``top1``
            (the top-scored class is the observed positive), see :data:`SIGNALS`.
        plot: write ``<run dir>/early_learning.png`` (and log it to W&B).
    """

    def __init__(
        self,
        windows: list[int] | None = None,
        max_warmup_epochs: int | None = None,
        max_warmup_fraction: float = 0.75,
        fixed: int | None = None,
        rollback: bool = False,
        source: str = "teacher",
        signal: str = "f1",
        plot: bool = True,
    ) -> None:
        if signal not in SIGNALS:
            raise ValueError(f"EarlyLearningCallback signal must be one of {sorted(SIGNALS)}")
        self.signal_name = signal
        self.signal = SIGNALS[signal]
        self.windows = windows
        self.max_warmup_epochs = max_warmup_epochs
        self.max_warmup_fraction = max_warmup_fraction
        self.fixed = fixed
        self.rollback = rollback
        self.source = source
        self.plot = plot
        self.detector: EarlyLearningDetector | None = None
        self.switch_epoch: int | None = None
        self._sum = 0.0
        self._count = 0

    # --------------------------------------------------------------- set-up
    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage != "fit" or self.detector is not None:
            return
        max_epochs = max(1, trainer.max_epochs or 1)
        windows = tuple(self.windows) if self.windows else default_windows(max_epochs)
        latest = self.max_warmup_epochs or math.ceil(self.max_warmup_fraction * max_epochs)
        self.detector = EarlyLearningDetector(windows, max_warmup_epochs=latest, fixed=self.fixed)
        self.apply_pending_state()
        # The run's record of what null defaults resolved to (the rule may change).
        switch = (
            f"fixed switch after {self.fixed} warm-up epochs"
            if self.fixed
            else f"windows {windows}, fallback switch after {latest} warm-up epochs"
        )
        log.info("AdaGC: early-learning detection with %s", switch)

    def run_dir(self, trainer: L.Trainer) -> Path:
        return Path(trainer.default_root_dir)

    # ------------------------------------------------------------ the signal
    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._count:  # an epoch accumulated before a checkpoint, not yet processed
            self._process(trainer, pl_module)

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Batch, idx: int
    ) -> None:
        probs = clean_predictions(trainer, pl_module, batch, self.source)
        values = self.signal(probs, batch["target"])
        self._sum += float(values.sum())
        self._count += int(values.numel())

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._count:
            self._process(trainer, pl_module)

    # ------------------------------------------------------------- decisions
    def _process(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        assert self.detector is not None
        totals = gather_cat(
            torch.tensor(
                [[self._sum, float(self._count)]], dtype=torch.float64, device=pl_module.device
            )
        ).sum(dim=0)
        signal = float(totals[0] / totals[1])
        self._sum, self._count = 0.0, 0
        epoch = self.detector.epoch + 1
        stage = adagc_loss(pl_module).stage  # the stage this epoch trained with
        if self.rollback and not self.detector.triggered:
            self._save_snapshot(trainer, pl_module, epoch)
        if self.detector.update(signal):
            self._switch(trainer, pl_module, epoch)
        self._log(pl_module, signal, stage)

    def _switch(self, trainer: L.Trainer, pl_module: L.LightningModule, epoch: int) -> None:
        assert self.detector is not None and self.detector.trigger_epoch is not None
        trigger = self.detector.trigger_epoch
        if self.rollback:
            if trigger < epoch:
                self._load_snapshot(trainer, pl_module, trigger)
            self._clear_snapshots(trainer)
        self.switch_epoch = epoch
        adagc_loss(pl_module).start_calibration()
        log.info(
            "AdaGC: gradient calibration from epoch %d on (%s; trigger epoch %d%s)",
            epoch,
            self.detector.reason,
            int(shown(trigger)),
            ", rolled back to it" if self.rollback and trigger < epoch else "",
        )
        self._write_plot(trainer)

    def _log(self, pl_module: L.LightningModule, signal: float, stage: int) -> None:
        assert self.detector is not None
        values = {"adagc/signal": signal, "adagc/stage": float(stage)}
        for name in ("trigger_epoch", "dep", "mid"):
            value = getattr(self.detector, name)
            if value is not None:  # logged 0-based, like the epoch column of metrics.csv
                values[f"adagc/{name}"] = shown(float(value))
        values["adagc/windows_fired"] = float(len(self.detector.detections))
        pl_module.log_dict(values, on_step=False, on_epoch=True)

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # on_fit_end, not on_train_end: a run resumed from the last epoch's checkpoint
        # trains no epoch and skips on_train_end, but its plot (written at the switch, or
        # never) must still show every epoch
        self._write_plot(trainer)

    def _write_plot(self, trainer: L.Trainer) -> None:
        if not self.plot or not trainer.is_global_zero or self.detector is None:
            return
        path = plot_early_learning(
            self.detector,
            self.run_dir(trainer) / "early_learning.png",
            self.switch_epoch,
            signal_label=f"signal: {self.signal_name} of the {self.source} vs AN targets",
        )
        log_image_to_wandb(trainer.loggers, "adagc/early_learning", path)

    # -------------------------------------------------------------- rollback
    def _snapshot_path(self, trainer: L.Trainer, epoch: int) -> Path:
        return (
            self.run_dir(trainer)
            / "early_learning"
            / f"epoch{epoch:04d}_rank{trainer.global_rank}.pt"
        )

    def _save_snapshot(self, trainer: L.Trainer, pl_module: L.LightningModule, epoch: int) -> None:
        teacher = find_callback(trainer, EMATeacher)
        state = {
            "module": pl_module.state_dict(),
            "teacher": teacher.state_dict() if teacher is not None else {},
            "optimizers": [opt.state_dict()["state"] for opt in trainer.optimizers],
        }
        path = self._snapshot_path(trainer, epoch)
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(state, path)

    def _load_snapshot(self, trainer: L.Trainer, pl_module: L.LightningModule, epoch: int) -> None:
        path = self._snapshot_path(trainer, epoch)
        if not path.is_file():
            raise FileNotFoundError(
                f"early-learning rollback: no snapshot {path} of trigger epoch {epoch}; was the run "
                "directory moved or cleaned? Resume in the same directory or set rollback=false"
            )
        state = torch.load(path, map_location=pl_module.device, weights_only=True)
        pl_module.load_state_dict(state["module"])
        teacher = find_callback(trainer, EMATeacher)
        if teacher is not None:
            teacher.load_state_dict(state["teacher"])
        for opt, moments in zip(trainer.optimizers, state["optimizers"], strict=True):
            # moments only: learning rates stay with the scheduler's current epoch
            current = opt.state_dict()
            current["state"] = moments
            opt.load_state_dict(current)

    def _clear_snapshots(self, trainer: L.Trainer) -> None:
        for path in (self.run_dir(trainer) / "early_learning").glob(
            f"*_rank{trainer.global_rank}.pt"
        ):
            path.unlink()

    # ----------------------------------------------------------- checkpoints
    @property
    def is_set_up(self) -> bool:
        return self.detector is not None

    def current_state(self) -> dict[str, Any]:
        assert self.detector is not None
        return {
            "detector": self.detector.state_dict(),
            "switch_epoch": self.switch_epoch,
            "sum": self._sum,
            "count": self._count,
        }

    def restore_state(self, state: dict[str, Any]) -> None:
        assert self.detector is not None
        self.detector.load_state_dict(state["detector"])
        self.switch_epoch = state["switch_epoch"]
        self._sum = float(state["sum"])
        self._count = int(state["count"])
