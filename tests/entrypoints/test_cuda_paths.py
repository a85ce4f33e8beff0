"""The GPU code paths, run on the CPU where torch allows it.

``trainer=gpu`` (bf16-mixed autocast) with ``trainer.accelerator=cpu``,
channels-last (``model.channels_last=on``) and ``model.compile=true`` train end
to end here; only the device differs from a GPU run. A probe callback records
what every forward pass of the student and of AdaGC's EMA teacher saw.
"""

from __future__ import annotations

import json
import math
from functools import partial
from pathlib import Path
from typing import Any

import lightning as L
import pytest
import torch
from torch import nn

from spml_rs.callbacks.adagc_common import find_callback
from spml_rs.callbacks.ema_teacher import EMATeacher
from spml_rs.module import SPMLModule, channels_last_mode
from spml_rs.train import train

GPU_ON_CPU = ("trainer=gpu", "trainer.accelerator=cpu", "logger=none")


class ForwardProbe(L.Callback):
    """Write to ``path`` what the nets' forward passes saw during fit, and the loss's buffers.

    Per net (``student``, ``teacher``): the distinct (autocast on, autocast dtype,
    output dtype, input channels-last) tuples of its calls.
    """

    def __init__(self, path: str) -> None:
        self.path = Path(path)
        self.seen: dict[str, set[tuple[Any, ...]]] = {}
        self.handles: list[Any] = []

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        nets: dict[str, nn.Module] = {"student": pl_module.net}  # type: ignore[dict-item]
        teacher = find_callback(trainer, EMATeacher)
        if teacher is not None:
            nets["teacher"] = teacher.net
        for name, net in nets.items():
            self.handles.append(net.register_forward_hook(partial(self.record, name)))

    def record(self, name: str, net: nn.Module, inputs: tuple[Any, ...], output: Any) -> None:
        image = inputs[0]
        self.seen.setdefault(name, set()).add(
            (
                torch.is_autocast_enabled("cpu"),
                str(torch.get_autocast_dtype("cpu")),
                str(output.dtype),
                image.is_contiguous(memory_format=torch.channels_last),
            )
        )

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        for handle in self.handles:
            handle.remove()
        conv = next(m for m in pl_module.net.modules() if isinstance(m, nn.Conv2d))  # type: ignore[operator]
        report = {
            "calls": {name: sorted(map(list, calls)) for name, calls in self.seen.items()},
            "loss_buffers": {n: str(b.dtype) for n, b in pl_module.loss.named_buffers()},  # type: ignore[union-attr, operator]
            "stage": getattr(pl_module.loss, "stage", None),
            "conv_channels_last": conv.weight.is_contiguous(memory_format=torch.channels_last),
        }
        teacher = find_callback(trainer, EMATeacher)
        if teacher is not None:
            first = next(m for m in teacher.net.modules() if isinstance(m, nn.Conv2d))
            report["teacher_conv_channels_last"] = first.weight.is_contiguous(
                memory_format=torch.channels_last
            )
        self.path.write_text(json.dumps(report))


def probed_run(make_cfg, tmp_path: Path, *overrides: str) -> tuple[dict, dict]:
    """Train with the probe; returns (its report, results.json)."""
    probe = tmp_path / "probe.json"
    cfg = make_cfg(
        *overrides,
        f"+callbacks.probe._target_={__name__}.ForwardProbe",
        f"+callbacks.probe.path={probe}",
    )
    train(cfg)
    return json.loads(probe.read_text()), json.loads((tmp_path / "results.json").read_text())


def assert_scored(results: dict) -> None:
    for key in ("test/mAP_macro", "test/mAP_micro", "test/F1_macro"):
        assert math.isfinite(results["metrics"][key]), key


BF16_CHANNELS_LAST = [True, "torch.bfloat16", "torch.bfloat16", True]


def test_gpu_trainer_config_trains_an_in_bf16_autocast_on_cpu(make_cfg, tmp_path: Path) -> None:
    probe, results = probed_run(
        make_cfg, tmp_path, *GPU_ON_CPU, "method=an", "model.channels_last=on"
    )
    assert results["config"]["trainer"]["precision"] == "bf16-mixed"
    # every forward of the fit (train and validation) ran under bf16 autocast, channels-last
    assert probe["calls"] == {"student": [BF16_CHANNELS_LAST]}
    assert probe["conv_channels_last"] is True
    assert_scored(results)


def test_gpu_trainer_config_trains_adagc_in_bf16_autocast_on_cpu(make_cfg, tmp_path: Path) -> None:
    probe, results = probed_run(
        make_cfg,
        tmp_path,
        *GPU_ON_CPU,
        "method=adagc",
        "model.channels_last=on",
        "trainer.max_epochs=2",
        "method.callbacks.early_learning.fixed=1",  # stage 2 (calibration, Mixup) in epoch 2
    )
    assert probe["stage"] == 2
    # the teacher's forward (pseudo-labels, detector signal) runs under the trainer's autocast too
    assert probe["calls"]["student"] == [BF16_CHANNELS_LAST]
    # ... in the student's memory format (its copy is made before the student is converted)
    assert probe["calls"]["teacher"] == [BF16_CHANNELS_LAST]
    assert probe["teacher_conv_channels_last"] is True
    # per-sample state and label statistics stay float32 whatever the forward's dtype
    assert probe["loss_buffers"]["score_state"] == "torch.float32"
    assert probe["loss_buffers"]["label_frequency"] == "torch.float32"
    assert_scored(results)


def test_channels_last_auto_is_off_on_cpu(make_cfg, tmp_path: Path) -> None:
    probe, _ = probed_run(make_cfg, tmp_path, "method=an", "logger=none")
    assert probe["calls"] == {"student": [[False, "torch.bfloat16", "torch.float32", False]]}
    assert probe["conv_channels_last"] is False


@pytest.mark.parametrize(
    ("value", "mode"),
    [("auto", "auto"), ("on", "on"), ("off", "off"), (True, "on"), (False, "off")],
)
def test_channels_last_values(value: object, mode: str) -> None:
    assert channels_last_mode(value) == mode  # type: ignore[arg-type]


def test_channels_last_rejects_other_values() -> None:
    with pytest.raises(ValueError, match=r"model\.channels_last must be one of"):
        SPMLModule(
            net=nn.Linear(2, 2),
            loss=nn.Module(),  # type: ignore[arg-type]
            class_names=["a", "b"],
            optimizer=torch.optim.SGD,
            channels_last="cuda",  # type: ignore[arg-type]
        )


@pytest.mark.slow  # inductor compiles the forward and backward graphs: a minute or more on CPU
def test_compiled_backbone_trains_end_to_end(make_cfg, tmp_path: Path) -> None:
    import torch._dynamo

    torch._dynamo.reset()
    torch._dynamo.utils.counters.clear()
    probe, results = probed_run(
        make_cfg, tmp_path, "method=an", "logger=none", "model.compile=true"
    )
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] >= 1  # it really compiled
    assert probe["calls"] == {"student": [[False, "torch.bfloat16", "torch.float32", False]]}
    assert_scored(results)
