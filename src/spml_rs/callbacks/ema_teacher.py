"""EMA teacher: theta_T <- m theta_T + (1 - m) theta_S after every optimiser step.

Built on :class:`torch.optim.swa_utils.AveragedModel` with
:func:`~torch.optim.swa_utils.get_ema_multi_avg_fn` (foreach lerp over all
parameters and buffers). Lightning's ``WeightAveraging`` is not used: it
averages the whole LightningModule (the loss's per-sample state included) and
swaps the average in for validation, whereas AdaGC's teacher is a separate
network that only produces pseudo-labels; the student is what is evaluated.
"""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from spml_rs.callbacks.deferred_state import DeferredStateCallback


def memory_format_of(net: nn.Module) -> torch.memory_format:
    """``channels_last`` when the net's convolution weights are stored so, else contiguous."""
    weight = next((p for p in net.parameters() if p.dim() == 4), None)
    if (
        weight is not None
        and not weight.is_contiguous()
        and weight.is_contiguous(memory_format=torch.channels_last)
    ):
        return torch.channels_last
    return torch.contiguous_format


class EMATeacher(DeferredStateCallback):
    """Keep an exponential moving average of the student backbone ``pl_module.net``.

    Args:
        decay: m, the EMA momentum (0.999 in AdaGC).
        warmup: use m_k = min(m, (1 + k) / (10 + k)) at update k, so that runs of a
            few hundred steps get a teacher that follows the student (with m = 0.999
            the starting weights keep 47% of the average after 750 steps).

    The teacher runs in eval mode (batch-norm uses its averaged running
    statistics) and never receives gradients. Its weights and update count are
    the callback's checkpoint state.
    """

    def __init__(self, decay: float = 0.999, warmup: bool = True) -> None:
        if not 0.0 <= decay <= 1.0:
            raise ValueError(f"EMATeacher decay must be in [0, 1], got {decay}")
        self.decay = decay
        self.warmup = warmup
        self.teacher: AveragedModel | None = None
        self.updates = 0
        self.last_step = 0  # trainer.global_step at the last update (gradient accumulation)

    def current_decay(self) -> float:
        if not self.warmup:
            return self.decay
        return min(self.decay, (1.0 + self.updates) / (10.0 + self.updates))

    @property
    def net(self) -> nn.Module:
        if self.teacher is None:
            raise RuntimeError("EMATeacher: the teacher exists only once fit has started")
        return self.teacher.module

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if self.teacher is not None:
            return
        net: nn.Module = pl_module.net  # type: ignore[assignment]
        self.teacher = AveragedModel(net, use_buffers=True).eval()
        self.teacher.requires_grad_(False)
        self.apply_pending_state()

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        assert self.teacher is not None
        # The copy was made before the module's setup chose the student's memory format
        # (channels-last on CUDA): follow it, or every teacher forward converts layouts.
        student: nn.Module = pl_module.net  # type: ignore[assignment]
        self.teacher.to(pl_module.device)
        self.teacher.to(memory_format=memory_format_of(student))

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, idx: int
    ) -> None:
        assert self.teacher is not None
        if trainer.global_step <= self.last_step:
            return  # no optimiser step since the last update (gradient accumulation)
        self.last_step = trainer.global_step
        # the first update copies the student (AveragedModel's n_averaged == 0)
        self.teacher.multi_avg_fn = get_ema_multi_avg_fn(self.current_decay())
        self.teacher.update_parameters(pl_module.net)  # type: ignore[arg-type]
        self.updates += 1

    # ----------------------------------------------------------- checkpoints
    @property
    def is_set_up(self) -> bool:
        return self.teacher is not None

    def current_state(self) -> dict[str, Any]:
        assert self.teacher is not None
        return {
            "teacher": self.teacher.state_dict(),
            "updates": self.updates,
            "last_step": self.last_step,
        }

    def restore_state(self, state: dict[str, Any]) -> None:
        assert self.teacher is not None
        self.teacher.load_state_dict(state["teacher"])
        self.updates = int(state["updates"])
        self.last_step = int(state["last_step"])
