"""SPMLModule: backbone + multi-label head, method loss, metrics and logging.

Method-agnostic by construction: the loss is injected (``configs/method``) and
the module only calls the :class:`~spml_rs.methods.base.SPMLLoss` hooks. Callbacks
may add keys to the batch in ``on_train_batch_start`` (teacher predictions,
Mixup partners) and read the student's logits from the ``training_step`` output.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict
from typing import Any, Literal

import lightning as L
import torch
from torch import nn

from spml_rs import checkpoints
from spml_rs.dataset_info import DatasetInfo
from spml_rs.methods.base import Batch, SPMLLoss
from spml_rs.metrics import MultilabelScores

ChannelsLast = Literal["auto", "on", "off"] | bool
CHANNELS_LAST_MODES = ("auto", "on", "off")
OptimizerFactory = Callable[..., torch.optim.Optimizer]
SchedulerFactory = Callable[..., torch.optim.lr_scheduler.LRScheduler]


def channels_last_mode(value: ChannelsLast) -> str:
    """``auto``, ``on`` or ``off`` from a config value (booleans: YAML's reading of on/off)."""
    if isinstance(value, bool):
        return "on" if value else "off"
    if value not in CHANNELS_LAST_MODES:
        raise ValueError(f"model.channels_last must be one of {CHANNELS_LAST_MODES}, got {value!r}")
    return value


class SPMLModule(L.LightningModule):
    """Multi-label classifier trained with a single-positive method.

    Args:
        net: backbone returning (B, C) logits (``spml_rs.models.create_backbone``).
        loss: the method's loss module.
        class_names: names for per-class metrics.
        optimizer: partial optimiser, called with the parameter groups.
        scheduler: partial LR scheduler, called with the optimiser (stepped per epoch).
        channels_last: channels-last memory format for the backbone and its input:
            ``auto`` (on CUDA only, where convolutions gain from it), ``on`` (any
            device, the CPU included), ``off``. YAML reads ``on``/``off`` as booleans,
            so ``True``/``False`` mean the same.
        compile_net: wrap the backbone's forward in ``torch.compile`` (config: ``model.compile``).
        run_config: the run's composed, resolved config; with ``dataset_info`` and
            ``config_choices`` it is stored in every checkpoint (hyperparameters), so that
            evaluation and prediction need only the checkpoint, and a resumed run is
            checked against it (:mod:`spml_rs.checkpoints`).
        dataset_info: the :class:`DatasetInfo` the model and loss were sized by.
        config_choices: config group -> chosen option (Hydra's runtime choices).

    Evaluation state: ``val_thresholds`` (C,), the per-class thresholds tuned on the
    last validation (:func:`spml_rs.metrics.best_f1_thresholds`; NaN before the first),
    is a buffer, so every checkpoint carries the thresholds of its own validation and
    ``test/F1_macro_valthr`` is reproducible from it alone.
    """

    val_thresholds: torch.Tensor

    def __init__(
        self,
        *,
        net: nn.Module,
        loss: SPMLLoss,
        class_names: Sequence[str],
        optimizer: OptimizerFactory,
        scheduler: SchedulerFactory | None = None,
        channels_last: ChannelsLast = "auto",
        compile_net: bool = False,
        run_config: Mapping[str, Any] | None = None,
        dataset_info: DatasetInfo | None = None,
        config_choices: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__()
        if run_config is not None:
            self.save_hyperparameters(
                {
                    checkpoints.CONFIG_KEY: dict(run_config),
                    checkpoints.INFO_KEY: asdict(dataset_info) if dataset_info else None,
                    checkpoints.CHOICES_KEY: dict(config_choices) if config_choices else None,
                },
                logger=False,  # the loggers get the config from builders.build_run
            )
        self.net = net
        self.loss = loss
        self.class_names = list(class_names)
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        self.channels_last = channels_last_mode(channels_last)
        self.compile_net = compile_net
        self.val_scores = MultilabelScores(class_names, keep_predictions=True)
        self.test_scores = MultilabelScores(class_names)
        self.register_buffer("val_thresholds", torch.full((len(class_names),), float("nan")))
        self._forward: Callable[[torch.Tensor], torch.Tensor] = self.net

    # ------------------------------------------------------------- forward
    def setup(self, stage: str) -> None:
        # Before compiling: the compiled graph is specialised to the weights' memory format.
        device = self.trainer.strategy.root_device
        self._use_channels_last = self.channels_last == "on" or (
            self.channels_last == "auto" and device.type == "cuda"
        )
        if self._use_channels_last:
            self.net.to(memory_format=torch.channels_last)
        if self.compile_net and self._forward is self.net:  # setup runs for fit, then test
            self._forward = torch.compile(self.net)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        if getattr(self, "_use_channels_last", False):
            image = image.contiguous(memory_format=torch.channels_last)
        return self._forward(image)

    # ------------------------------------------------------------ training
    def on_train_epoch_start(self) -> None:
        self.loss.set_epoch(self.current_epoch, self.trainer.max_epochs or 1)

    def training_step(self, batch: Batch, batch_idx: int) -> dict[str, torch.Tensor]:
        logits = self(batch["image"]).float()
        parts = self.loss(logits, batch)
        loss = parts["loss"]
        if not torch.isfinite(loss):
            raise FloatingPointError(
                f"non-finite training loss {loss.item()} at epoch {self.current_epoch}, batch "
                f"{batch_idx} (sample indices {batch['index'][:8].tolist()}...); lower the learning "
                "rate or check the inputs for NaN"
            )
        batch_size = logits.shape[0]
        self.log(
            "train/loss", loss, on_step=True, on_epoch=True, prog_bar=True, batch_size=batch_size
        )
        for name, value in parts.items():
            if name != "loss":
                self.log(
                    f"train/{name}", value, on_step=False, on_epoch=True, batch_size=batch_size
                )
        return {"loss": loss, "logits": logits.detach()}

    def on_train_epoch_end(self) -> None:
        self.loss.on_train_epoch_end()

    # ---------------------------------------------------------- evaluation
    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        self.val_scores.update(torch.sigmoid(self(batch["image"]).float()), batch["label"])

    def on_validation_epoch_end(self) -> None:
        if not self.trainer.sanity_checking:
            # Before the checkpoint callbacks (on_validation_end) save this epoch's model.
            self.val_thresholds.copy_(self.val_scores.tuned_thresholds())
        self._log_scores(self.val_scores, "val")

    def test_step(self, batch: Batch, batch_idx: int) -> None:
        probs = torch.sigmoid(self(batch["image"]).float())
        self.test_scores.update(probs, batch["label"], thresholds=self.val_thresholds)

    def on_test_epoch_end(self) -> None:
        self._log_scores(self.test_scores, "test")

    def _log_scores(self, scores: MultilabelScores, prefix: str) -> None:
        values = scores.compute(prefix)
        scores.reset()
        main = {k: v for k, v in values.items() if "/AP/" not in k}
        self.log_dict(main, prog_bar=True, sync_dist=True)
        self.log_dict({k: v for k, v in values.items() if "/AP/" in k}, sync_dist=True)

    def predict_step(self, batch: Batch, batch_idx: int) -> torch.Tensor:
        return torch.sigmoid(self(batch["image"]).float())

    # --------------------------------------------------------- checkpoints
    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Refuse to resume a different run's checkpoint; accept ones without thresholds.

        A checkpoint written before ``val_thresholds`` existed gets NaN ("not tuned"),
        so ``test/F1_macro_valthr`` is left out rather than computed at wrong thresholds.
        """
        state = checkpoint["state_dict"]
        state.setdefault("val_thresholds", torch.full_like(self.val_thresholds, float("nan")))
        trainer = self._trainer
        if trainer is None or trainer.state.fn != "fit":
            return  # testing or validating a checkpoint is not resuming it
        if checkpoints.CONFIG_KEY in self.hparams:
            checkpoints.check_resumable(
                checkpoint, self.hparams[checkpoints.CONFIG_KEY], trainer.ckpt_path or "?"
            )

    # ---------------------------------------------------------- optimisers
    def configure_optimizers(self) -> Any:
        groups: list[dict[str, Any]] = [
            {"params": [p for p in self.net.parameters() if p.requires_grad]}
        ]
        loss_params = [p for p in self.loss.parameters() if p.requires_grad]
        if loss_params:
            groups.append({"params": loss_params})
        optimizer = self.optimizer_factory(params=groups)
        if loss_params:
            # The method's own parameters (e.g. ROLE's label matrix) learn at their own rate.
            optimizer.param_groups[1]["lr"] *= self.loss.lr_scale
        if self.scheduler_factory is None:
            return optimizer
        scheduler = self.scheduler_factory(optimizer=optimizer)
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": "epoch"},
        }
