"""EMATeacher: the EMA recursion after every optimiser step, and its checkpoint state."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from spml_rs.callbacks.ema_teacher import EMATeacher


class TinyModule(L.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 2))

    def training_step(self, batch: list[torch.Tensor], batch_idx: int) -> torch.Tensor:
        x, y = batch
        return nn.functional.mse_loss(self.net(x), y)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.5)


class RecordStudent(L.Callback):
    """Student parameters after each optimiser step (runs before the teacher's update)."""

    def __init__(self) -> None:
        self.history: list[list[torch.Tensor]] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:  # type: ignore[no-untyped-def]
        self.history.append([p.detach().clone() for p in pl_module.net.parameters()])


def fit(callbacks: list[L.Callback], tmp_path: Path, epochs: int = 2) -> L.Trainer:
    torch.manual_seed(0)
    data = TensorDataset(torch.randn(40, 3), torch.randn(40, 2))
    trainer = L.Trainer(
        max_epochs=epochs, callbacks=callbacks, logger=False, enable_progress_bar=False,
        enable_model_summary=False, default_root_dir=tmp_path, accelerator="cpu",
    )  # fmt: skip
    trainer.fit(TinyModule(), DataLoader(data, batch_size=8))
    return trainer


@pytest.mark.parametrize("warmup", [False, True])
def test_teacher_is_the_ema_of_the_student(tmp_path: Path, warmup: bool) -> None:
    teacher, record = EMATeacher(decay=0.7, warmup=warmup), RecordStudent()
    fit([record, teacher], tmp_path)
    expected = [p.clone() for p in record.history[0]]  # first update copies the student
    for k, student in enumerate(record.history[1:], start=1):
        m = min(0.7, (1 + k) / (10 + k)) if warmup else 0.7
        expected = [m * e + (1 - m) * s for e, s in zip(expected, student, strict=True)]
    for e, t in zip(expected, teacher.net.parameters(), strict=True):
        assert torch.allclose(e, t, atol=1e-6)
    assert teacher.updates == len(record.history) == 10
    assert not any(p.requires_grad for p in teacher.net.parameters())


def test_teacher_weights_are_in_the_checkpoint(tmp_path: Path) -> None:
    teacher = EMATeacher(decay=0.9)
    trainer = fit([teacher], tmp_path, epochs=1)
    path = tmp_path / "t.ckpt"
    trainer.save_checkpoint(path)
    restored = EMATeacher(decay=0.9)
    # the trainer restores callback state before setup: it is kept and applied then
    state = torch.load(path, weights_only=True)["callbacks"]["EMATeacher"]
    restored.load_state_dict(state)
    restored.setup(trainer, trainer.lightning_module, "fit")
    for a, b in zip(
        teacher.net.state_dict().values(), restored.net.state_dict().values(), strict=True
    ):
        assert torch.equal(a, b)
    assert restored.updates == teacher.updates == 5
