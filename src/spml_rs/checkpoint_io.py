"""Crash-safe checkpoint files.

Lightning writes a checkpoint by truncating the target and writing into it, so a
job killed mid-write (preemption, out-of-memory, SIGKILL) leaves a broken
``last.ckpt`` and nothing to resume from. Serialising to memory and renaming a
fully written temporary file over the target makes every checkpoint all-or-nothing.
"""

from __future__ import annotations

import io
import os
from typing import Any

import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO

from spml_rs.fileio import atomic_write_bytes


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
