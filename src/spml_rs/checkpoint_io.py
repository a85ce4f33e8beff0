"""Crash-safe checkpoint files, and the clean-up of what a killed attempt left behind.

Lightning writes a checkpoint by truncating the target and writing into it, so a
job killed mid-write (preemption, out-of-memory, SIGKILL) leaves a broken
``last.ckpt`` and nothing to resume from. Serialising to memory and renaming a
fully written temporary file over the target makes every checkpoint all-or-nothing
(:class:`AtomicCheckpointIO`). A kill can still leave that temporary file, and a
best checkpoint written after the last ``last.ckpt``, which the resumed run's
``ModelCheckpoint`` never hears of and so never deletes:
:class:`RemoveStaleCheckpoints` removes both when a run resumes.
"""

from __future__ import annotations

import io
import logging
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.plugins.io import TorchCheckpointIO

from spml_rs.fileio import atomic_write_bytes

log = logging.getLogger(__name__)

#: a temporary file of :func:`spml_rs.fileio.atomic_write_bytes` for a checkpoint
TEMPORARY = re.compile(r"^\..+\.ckpt\.\w+\.tmp$")
#: the ``{epoch:03d}``-style fields of a ModelCheckpoint filename template
TEMPLATE_FIELD = re.compile(r"\{[^}]*\}")


class AtomicCheckpointIO(TorchCheckpointIO):
    """TorchCheckpointIO whose saves are atomic (temporary file + ``os.replace``)."""

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: str | os.PathLike[str], storage_options: Any = None
    ) -> None:
        if storage_options is not None:
            raise TypeError(
                f"{type(self).__name__} takes no storage_options, got {storage_options!r}"
            )
        buffer = io.BytesIO()
        torch.save(checkpoint, buffer)
        atomic_write_bytes(path, buffer.getvalue())


def filename_pattern(callback: ModelCheckpoint) -> re.Pattern[str]:
    """The names ``callback`` gives its files: its template, any field values, a ``-vN`` suffix."""
    template = callback.filename or "{epoch}-{step}"
    literal = [re.escape(part) for part in TEMPLATE_FIELD.split(template)]
    join, ext = re.escape(callback.CHECKPOINT_JOIN_CHAR), re.escape(callback.FILE_EXTENSION)
    return re.compile(f"^{'.+?'.join(literal)}({join}v\\d+)?{ext}$")


def tracked_files(callback: ModelCheckpoint) -> set[Path]:
    """The checkpoint files ``callback``'s state refers to (restored from the checkpoint)."""
    paths = [
        callback.best_model_path,
        callback.last_model_path,
        callback.kth_best_model_path,
        *callback.best_k_models,
    ]
    return {Path(p).resolve() for p in paths if p}


class RemoveStaleCheckpoints(L.Callback):
    """On resume, delete checkpoint files no restored ``ModelCheckpoint`` tracks, and ``.tmp`` files.

    Runs when training starts, after Lightning restored the callbacks' state.
    Only files named by a ModelCheckpoint's own filename template, in its own
    directory, are candidates, and only when the run resumes from a checkpoint in
    that directory (its own run); other files are never touched. Temporary
    files of interrupted atomic writes are removed on every start.
    """

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        callbacks = [cb for cb in trainer.checkpoint_callbacks if isinstance(cb, ModelCheckpoint)]
        resumed = Path(trainer.ckpt_path).resolve() if trainer.ckpt_path else None
        tracked = set().union(*(tracked_files(cb) for cb in callbacks))
        if resumed is not None:
            tracked.add(resumed)
        for path in sorted(set(self.stale_files(callbacks, resumed, tracked))):
            log.info(f"removing {path}: left by an interrupted attempt, tracked by no checkpoint")
            path.unlink(missing_ok=True)

    @staticmethod
    def stale_files(
        callbacks: list[ModelCheckpoint], resumed: Path | None, tracked: set[Path]
    ) -> Iterator[Path]:
        for callback in callbacks:
            directory = Path(callback.dirpath) if callback.dirpath else None
            if directory is None or not directory.is_dir():
                continue
            own_run = resumed is not None and resumed.parent == directory.resolve()
            pattern = filename_pattern(callback)
            for path in sorted(directory.iterdir()):
                untracked = own_run and pattern.match(path.name) and path.resolve() not in tracked
                if untracked or TEMPORARY.match(path.name):
                    yield path
