"""Every method trains end to end on both synthetic presets; stateful methods resume exactly."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import pytest
import torch
from omegaconf import open_dict

from spml_rs.train import train

METHODS = [
    "an_ls", "wan", "epr", "role", "em", "em_apl", "ll_r", "ll_ct", "ll_cp", "elr", "gce",
    "hill", "splc", "boostlu", "boostlu_ll_r", "boostlu_ll_ct", "boostlu_ll_cp", "gr",
]  # fmt: skip
STATEFUL = ["role", "elr", "ll_cp", "em_apl"]
#: smaller than the shared TINY sizes: resume tests train 3 + 3 epochs
RESUME_SIZES = (
    "dataset.datamodule.num_train=64",
    "dataset.datamodule.num_val=32",
    "dataset.datamodule.num_test=32",
    "trainer.max_epochs=3",
    "trainer.deterministic=true",
    "logger=none",
    # the augmentation's RNG stream is not reproduced on resume (see docs/methods.md)
    "dataset.datamodule.augment=false",
    # Lightning >= 2.6 rewrites last.ckpt only when the monitored metric improves;
    # unmonitored, every epoch is saved, so last.ckpt is the last epoch (and is tested)
    "callbacks.model_checkpoint.monitor=null",
)
#: em_apl needs a round inside 3 epochs; ll_cp a high enough rate to flip something
RESUME_EXTRA = {
    "em_apl": ("method.loss.warmup_epochs=1",),
    "ll_cp": ("method.loss.delta_rel=5",),
}


@pytest.mark.parametrize("dataset", ["synthetic", "synthetic_rgb"])
@pytest.mark.parametrize("method", METHODS)
def test_method_trains_end_to_end(make_cfg, method: str, dataset: str) -> None:
    cfg = make_cfg(f"method={method}", f"dataset={dataset}", "logger=none")
    metrics = train(cfg)
    assert 0.0 <= float(metrics["test/mAP_macro"]) <= 1.0


class StopAtEpoch(L.Callback):
    """Simulate a crash at the start of ``epoch`` (after the previous epoch's checkpoint), once.

    It crashes only while ``marker`` does not exist and then creates it, so the resumed
    run has the same config as the crashed one (resume refuses a changed config) and
    goes on past that epoch, as after a real kill.
    """

    def __init__(self, epoch: int, marker: str) -> None:
        self.epoch = epoch
        self.marker = Path(marker)

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.current_epoch == self.epoch and not self.marker.exists():
            self.marker.touch()
            raise RuntimeError(f"simulated crash at epoch {self.epoch}")


def loss_state(run_dir: Path) -> dict[str, torch.Tensor]:
    checkpoint = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=False)
    return {k: v for k, v in checkpoint["state_dict"].items() if k.startswith("loss.")}


@pytest.mark.slow  # 2 x 3 tiny epochs: 15-60 s each depending on the machine's load
@pytest.mark.parametrize("method", STATEFUL)
def test_resumed_run_matches_uninterrupted(make_cfg, tmp_path: Path, method: str) -> None:
    overrides = (f"method={method}", *RESUME_SIZES, *RESUME_EXTRA.get(method, ()))
    straight_dir, crashed_dir = tmp_path / "straight", tmp_path / "crashed"

    cfg = make_cfg(*overrides)
    with open_dict(cfg):
        cfg.paths.output_dir = str(straight_dir)
    straight = train(cfg)

    crash = {
        "_target_": f"{__name__}.StopAtEpoch",
        "epoch": 2,
        "marker": str(tmp_path / "crashed_once"),
    }
    cfg = make_cfg(*overrides)
    with open_dict(cfg):
        cfg.paths.output_dir = str(crashed_dir)
        cfg.callbacks.crash = crash
    with pytest.raises(RuntimeError, match="simulated crash"):
        train(cfg)
    cfg = make_cfg(*overrides, f"ckpt_path={crashed_dir / 'checkpoints' / 'last.ckpt'}")
    with open_dict(cfg):
        cfg.paths.output_dir = str(crashed_dir)
        cfg.callbacks.crash = crash
    resumed = train(cfg)

    for key in ("test/mAP_macro", "test/mAP_micro", "test/F1_macro", "test/F1_micro"):
        assert float(resumed[key]) == float(straight[key]), key
    expected, actual = loss_state(straight_dir), loss_state(crashed_dir)
    assert expected.keys() == actual.keys() and expected
    for key, value in expected.items():
        assert torch.equal(actual[key], value), key
