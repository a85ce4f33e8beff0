"""End to end: AdaGC trains on both synthetic presets, switches stage, plots, resumes."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import lightning as L
import pytest
import torch
from omegaconf import DictConfig, open_dict

from spml_rs.train import train


class Killed(RuntimeError):
    """Raised to simulate a job killed right after a checkpoint was written."""


class KillAfterCheckpoint(L.Callback):
    """Raise right after ``last.ckpt`` of trainer epoch ``epoch`` (0-based) was written, once:
    ``marker`` is written first, so the resumed run (whose config must equal the killed
    one's, killer included) runs through.

    By default ``last.ckpt`` is written at the end of the epoch, after every other
    callback's ``on_train_epoch_end``: the kill comes at the next epoch's start or, after
    the last epoch, in ``on_train_end`` (general callbacks run before the method's, so
    before AdaGC writes its end-of-fit plot). ``at_epoch_end`` is for runs that checkpoint
    at validation end (``save_on_train_epoch_end=false``): the kill comes in
    ``on_train_epoch_end``, before the detector has processed the epoch.
    """

    def __init__(self, epoch: int, marker: str, at_epoch_end: bool = False) -> None:
        self.epoch = epoch
        self.marker = Path(marker)
        self.at_epoch_end = at_epoch_end

    def kill(self, trainer: L.Trainer, epoch: int, at_epoch_end: bool) -> None:
        if trainer.current_epoch != epoch or self.at_epoch_end != at_epoch_end:
            return
        if self.marker.exists():
            return
        self.marker.write_text(f"killed after the checkpoint of epoch {self.epoch}\n")
        raise Killed(f"killed after the checkpoint of epoch {self.epoch}")

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.kill(trainer, self.epoch, at_epoch_end=True)

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.kill(trainer, self.epoch + 1, at_epoch_end=False)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.kill(trainer, self.epoch + 1, at_epoch_end=False)  # current_epoch = max_epochs


def logged(run_dir: Path, key: str) -> list[float]:
    with (run_dir / "metrics.csv").open() as handle:
        return [float(row[key]) for row in csv.DictReader(handle) if row.get(key)]


class RecordBatchKeys(L.Callback):
    """The keys of every training batch as the datamodule delivered it and as the loss saw it
    (put first: its ``on_train_batch_start`` runs before the method's callbacks)."""

    def __init__(self) -> None:
        self.delivered: list[set[str]] = []
        self.seen: list[tuple[set[str], object]] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:  # type: ignore[no-untyped-def]
        self.delivered.append(set(batch))

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:  # type: ignore[no-untyped-def]
        self.seen.append((set(batch), batch["adagc"].gc))


def fit_with(cfg: DictConfig, *first: L.Callback) -> tuple[L.Trainer, L.LightningModule]:
    """Build the run of ``cfg`` as the entry point does, with ``first`` ahead of its callbacks."""
    from spml_rs import builders

    datamodule = builders.build_datamodule(cfg)
    module = builders.build_module(cfg, datamodule.info())
    trainer = builders.build_trainer(cfg, [*first, *builders.build_callbacks(cfg)], [])
    trainer.fit(module, datamodule=datamodule)
    return trainer, module


def add_callback(cfg: DictConfig, name: str, target: str, **kwargs: object) -> None:
    with open_dict(cfg):
        cfg.callbacks[name] = {"_target_": target, **kwargs}


@pytest.mark.parametrize(
    ("dataset", "method", "extra"),
    [
        ("synthetic", "adagc", ()),
        ("synthetic_rgb", "adagc_no_teacher", ("method.loss.form=elr",)),
    ],
)
def test_adagc_trains_and_switches_on_each_preset(
    make_cfg, tmp_path: Path, dataset: str, method: str, extra: tuple[str, ...]
) -> None:
    cfg = make_cfg(
        f"dataset={dataset}",
        f"method={method}",
        "trainer.max_epochs=2",
        "method.callbacks.early_learning.fixed=1",
        *extra,
    )
    metrics = train(cfg)
    assert 0.0 <= metrics["test/mAP_macro"] <= 1.0
    assert logged(tmp_path, "adagc/stage") == [1.0, 2.0]
    assert logged(tmp_path, "adagc/trigger_epoch") == [0.0, 0.0]  # 0-based, as metrics.csv
    precision = logged(tmp_path, "adagc/pl_precision") + logged(tmp_path, "adagc/pl_recall")
    assert all(0.0 <= v <= 1.0 for v in precision)
    assert (tmp_path / "early_learning.png").stat().st_size > 1000


def test_callbacks_add_one_key_to_the_batch(make_cfg) -> None:
    """The batch contract (methods/base.py): AdaGC's callbacks add ``batch["adagc"]`` only; its
    calibrated targets exist in stage 2, mixed (a Mixup lambda), and not in stage 1."""
    from spml_rs.methods.adagc import GCTargets

    record = RecordBatchKeys()
    cfg = make_cfg(
        "method=adagc_mixup", "trainer.max_epochs=2", "method.callbacks.early_learning.fixed=1"
    )
    fit_with(cfg, record)
    per_epoch = len(record.seen) // 2
    assert per_epoch > 0 and len(record.delivered) == len(record.seen) == 2 * per_epoch
    assert all({"image", "target", "label", "index"} <= keys for keys in record.delivered)
    for delivered, (seen, _) in zip(record.delivered, record.seen, strict=True):
        assert seen - delivered == {"adagc"}
    stage1, stage2 = record.seen[:per_epoch], record.seen[per_epoch:]
    assert all(gc is None for _, gc in stage1)
    assert all(isinstance(gc, GCTargets) and gc.mixup_lambda is not None for _, gc in stage2)


def test_ablation_configs_change_only_their_part(make_cfg) -> None:
    base = make_cfg("method=adagc").method
    assert make_cfg("method=adagc_fixed").method.callbacks.early_learning.fixed >= 1
    assert base.callbacks.pseudo_labels.mixup is False  # the default, chosen on validation
    assert make_cfg("method=adagc_mixup").method.callbacks.pseudo_labels.mixup is True
    assert make_cfg("method=adagc_single_ema").method.callbacks.pseudo_labels.momentum == 0.0
    no_teacher = make_cfg("method=adagc_no_teacher").method.callbacks
    assert no_teacher.ema_teacher is None
    assert no_teacher.pseudo_labels.source == no_teacher.early_learning.source == "student"
    assert base.callbacks.pseudo_labels.source == base.callbacks.early_learning.source == "teacher"


RESUME_OVERRIDES = (
    "method=adagc",
    "trainer.max_epochs=4",
    "method.callbacks.early_learning.fixed=2",
    # the foundation's augmentation draws from the global RNG, whose stream Lightning's
    # loader restart shifts on resume (docs/methods.md); AdaGC's Mixup is keyed instead
    "dataset.datamodule.augment=false",
    # Lightning >= 2.6 rewrites last.ckpt only when a monitored metric improves
    "callbacks.model_checkpoint.monitor=null",
)


@pytest.fixture(scope="module")
def uninterrupted_run(
    tmp_path_factory: pytest.TempPathFactory, cache_dir: Path
) -> tuple[Path, dict]:
    """(run directory, test metrics) of the reference run, never stopped."""
    from spml_testing import TINY, compose_config

    out = tmp_path_factory.mktemp("adagc_reference")
    return out, train(compose_config([*TINY, *RESUME_OVERRIDES], out, cache_dir))


@pytest.fixture(scope="module")
def uninterrupted(uninterrupted_run: tuple[Path, dict]) -> dict:
    return uninterrupted_run[1]


def resume_after_kill(
    make_cfg, tmp_path: Path, kill_epoch: int, *extra: str, at_epoch_end: bool = False
) -> dict:
    def config(*more: str) -> DictConfig:
        cfg = make_cfg(*RESUME_OVERRIDES, *extra, *more)
        killer = f"{__name__}.KillAfterCheckpoint"
        marker = str(tmp_path / "killed.txt")
        add_callback(
            cfg, "killer", killer, epoch=kill_epoch, marker=marker, at_epoch_end=at_epoch_end
        )
        return cfg

    with pytest.raises(Killed):
        train(config())
    last = tmp_path / "checkpoints" / "last.ckpt"
    shutil.copyfile(last, tmp_path / "killed.ckpt")  # what the kill left, for inspection
    return train(config(f"ckpt_path={last}"))


def assert_same_results(a: dict, b: dict) -> None:
    keys = [k for k in a if k.startswith("test/")]
    assert keys
    for key in keys:
        assert float(b[key]) == pytest.approx(float(a[key]), abs=1e-6), key


def test_resume_after_the_trigger_matches_an_uninterrupted_run(
    make_cfg, tmp_path: Path, uninterrupted: dict
) -> None:
    # fixed=2 switches at the end of trainer epoch 1; killed after epoch 2
    assert_same_results(uninterrupted, resume_after_kill(make_cfg, tmp_path, kill_epoch=2))
    assert json.loads((tmp_path / "results.json").read_text())["epochs_trained"] == 4


def test_resume_after_the_last_checkpoint_rewrites_the_plot(
    make_cfg, tmp_path: Path, uninterrupted_run: tuple[Path, dict]
) -> None:
    """Killed after the last epoch's checkpoint, before the end of fit: the resumed run has
    no epoch left to train and must still leave the complete plot (issue 12, item 9)."""
    reference_dir, reference = uninterrupted_run
    assert_same_results(reference, resume_after_kill(make_cfg, tmp_path, kill_epoch=3))
    plot = (tmp_path / "early_learning.png").read_bytes()
    assert plot == (reference_dir / "early_learning.png").read_bytes()


@pytest.mark.slow
def test_resume_during_the_trigger_matches_an_uninterrupted_run(
    make_cfg, tmp_path: Path, uninterrupted: dict
) -> None:
    # killed after the trigger epoch's checkpoint, before the switch was processed: the
    # checkpoint is taken at validation end, and the kill comes before the detector's
    # on_train_epoch_end, so the checkpoint holds the epoch's unprocessed signal sums
    at_validation_end = "+callbacks.last_checkpoint.save_on_train_epoch_end=false"
    resumed = resume_after_kill(
        make_cfg, tmp_path, 1, at_validation_end, at_epoch_end=True
    )  # fmt: skip
    killed = torch.load(tmp_path / "killed.ckpt", weights_only=True)
    assert killed["callbacks"]["EarlyLearningCallback"]["count"] > 0
    assert_same_results(uninterrupted, resumed)
    assert logged(tmp_path, "adagc/stage")[-1] == 2.0


#: A run that memorises: few images, many steps, constant learning rate. On it AN's
#: validation mAP peaks near epoch 10 and then falls, while the top1 signal keeps rising
#: (docs/adagc.md, "Measurements"); the detector fired at epoch 14-15 on seeds 0-2.
MEMORISING_RUN = (
    "dataset.datamodule.num_train=256",
    "dataset.datamodule.num_val=96",
    "dataset.datamodule.num_test=96",
    "dataset.datamodule.batch_size=32",
    "model.net.name=resnet10t",
    "model.net.stem_stride=null",
    "model.scheduler=null",
    "trainer.max_epochs=20",
    "callbacks.progress_bar=null",
)


@pytest.mark.slow
def test_detection_fires_on_a_memorising_run_rolls_back_and_plots(make_cfg, tmp_path: Path) -> None:
    cfg = make_cfg(
        "method=adagc",
        *MEMORISING_RUN,
        "method.callbacks.early_learning.windows=[3,4,6]",
        "method.callbacks.early_learning.max_warmup_epochs=19",
        "method.callbacks.early_learning.rollback=true",
        tiny=False,
    )
    train(cfg)
    stages = logged(tmp_path, "adagc/stage")  # the stage each epoch trained with
    switch = stages.index(2.0)  # the first stage-2 epoch (0-based)
    assert switch < 19, "the detector did not fire: the max_warmup_epochs fallback switched"
    dep = logged(tmp_path, "adagc/dep")[-1]  # only logged after a detection
    trigger = logged(tmp_path, "adagc/trigger_epoch")[-1]
    assert 0 <= trigger <= dep <= switch - 1  # logged 0-based
    assert (tmp_path / "early_learning.png").stat().st_size > 1000
    assert not list((tmp_path / "early_learning").glob("*.pt"))  # snapshots cleaned up


def test_rollback_restores_student_teacher_and_optimiser(make_cfg, tmp_path: Path) -> None:
    """Snapshots of the warm-up epochs restore the student, teacher, loss state and
    optimiser moments of that epoch (learning rates stay with the scheduler)."""
    from spml_rs.callbacks.early_learning import EarlyLearningCallback
    from spml_rs.callbacks.ema_teacher import EMATeacher

    cfg = make_cfg(
        "method=adagc",
        "trainer.max_epochs=2",
        "method.callbacks.early_learning.rollback=true",
        "method.callbacks.early_learning.max_warmup_epochs=10",  # no switch: snapshots stay
    )
    trainer, module = fit_with(cfg)
    detector = next(cb for cb in trainer.callbacks if isinstance(cb, EarlyLearningCallback))
    teacher = next(cb for cb in trainer.callbacks if isinstance(cb, EMATeacher))
    snapshot = torch.load(tmp_path / "early_learning" / "epoch0001_rank0.pt", weights_only=True)
    lr = trainer.optimizers[0].param_groups[0]["lr"]
    assert not torch.equal(module.net.fc.weight, snapshot["module"]["net.fc.weight"])

    detector._load_snapshot(trainer, module, 1)
    restored = module.state_dict()
    for name, value in snapshot["module"].items():
        same = (
            torch.equal(restored[name], value)
            if torch.is_tensor(value)
            else restored[name] == value
        )
        assert same, name
    for name, value in snapshot["teacher"]["teacher"].items():
        assert torch.equal(teacher.teacher.state_dict()[name], value), name
    moments = trainer.optimizers[0].state_dict()["state"]
    for key, state in snapshot["optimizers"][0].items():
        assert torch.equal(moments[key]["exp_avg"], state["exp_avg"])
    assert trainer.optimizers[0].param_groups[0]["lr"] == lr
