"""A trained checkpoint applied to images: the network, batched probabilities, thresholds.

:func:`predict_images` is the job of ``python -m spml_rs.predict`` and of
:func:`spml_rs.api.predict` given a checkpoint. The model
and the datamodule come from the checkpoint's stored config
(:func:`spml_rs.run_config.checkpoint_config`); only the network's weights are
loaded, and the datamodule is only asked for its device-side preprocessing (and, for
``thresholds=val`` on a checkpoint without stored thresholds, for its validation split).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import torch
from omegaconf import DictConfig
from rich.progress import track
from torch.utils.data import DataLoader, Dataset

from spml_rs import builders, checkpoints, resume, run_config
from spml_rs.data.base import SPMLDataModule
from spml_rs.data.unlabelled import open_unlabelled
from spml_rs.dataset_info import DatasetInfo
from spml_rs.metrics import best_f1_thresholds
from spml_rs.results import (
    check_predictions_path,
    predictions_table,
    print_predictions_summary,
    write_predictions,
)

Preprocess = Any  # Callable[[torch.Tensor], torch.Tensor]; Any: also a bound method
AUTOCAST = {"bf16-mixed": torch.bfloat16, "16-mixed": torch.float16}


@dataclass
class Predictor:
    """A checkpoint's network, ready on ``device``, with what it was trained on."""

    net: torch.nn.Module
    datamodule: SPMLDataModule[Any]
    info: DatasetInfo
    config: DictConfig
    checkpoint: dict[str, Any]
    ckpt_path: str
    device: torch.device
    show_progress: bool = True

    @property
    def class_names(self) -> tuple[str, ...]:
        return self.info.class_names

    def autocast(self) -> contextlib.AbstractContextManager[Any]:
        """The training precision's autocast on CUDA (``bf16-mixed``, ``16-mixed``); else none."""
        dtype = AUTOCAST.get(str(self.config.trainer.get("precision")))
        if dtype is None or self.device.type != "cuda":
            return contextlib.nullcontext()
        return torch.autocast("cuda", dtype=dtype)


def choose_device(device: str) -> torch.device:
    """``auto``: the GPU when there is one, else the CPU; or any torch device name."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def load_predictor(
    entry: DictConfig, overrides: Sequence[str], *, train_dir: Path, device: str = "auto"
) -> Predictor:
    """The network of ``entry.ckpt_path`` with the datamodule of its stored config.

    Args:
        entry: the entry point's composed config (``predict.yaml``): ``ckpt_path`` and
            the command-line groups the overrides compose into.
        overrides: the command-line overrides, applied on top of the stored config.
        device: ``auto``, ``cpu``, ``cuda``, ``cuda:1``, ...
        train_dir: the training run whose ``last`` / ``best`` checkpoint ``ckpt_path`` names.
    """
    ckpt_path = resume.evaluated_checkpoint(str(entry.ckpt_path), train_dir)
    checkpoint = checkpoints.read_checkpoint(ckpt_path)
    config = run_config.checkpoint_config(entry, checkpoint, ckpt_path, overrides)
    info = checkpoints.stored_dataset_info(checkpoint)
    if info is None:
        raise checkpoints.MissingRunConfigError(checkpoints.missing_config_message(ckpt_path))
    datamodule = builders.build_datamodule(config)
    run_config.check_inputs_match(datamodule, info, ckpt_path)
    net = builders.build_net(config, info)
    checkpoints.load_net_weights(net, checkpoint, ckpt_path)
    target = choose_device(device)
    return Predictor(net.to(target).eval(), datamodule, info, config, checkpoint, ckpt_path, target)


def _batches(
    predictor: Predictor, dataset: Dataset[Any], batch_size: int, num_workers: int, label: str
) -> Iterator[dict[str, Any]]:
    loader = DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=False,
        num_workers=num_workers,
        pin_memory=predictor.device.type == "cuda",
    )
    shown = track(loader, description=label, total=len(loader), disable=not predictor.show_progress)
    for batch in shown:
        yield {
            k: v.to(predictor.device, non_blocking=True) if torch.is_tensor(v) else v
            for k, v in batch.items()
        }


@torch.inference_mode()
def probabilities(
    predictor: Predictor,
    dataset: Dataset[Any],
    preprocess: Preprocess,
    *,
    batch_size: int = 64,
    num_workers: int = 0,
) -> torch.Tensor:
    """(N, C) float32 CPU probabilities of ``dataset``'s samples, in order.

    Workers read raw images; each batch is moved to the device, preprocessed there
    (``preprocess``: the training datamodule's normalisation) and scored.
    """
    out = []
    for batch in _batches(predictor, dataset, batch_size, num_workers, "predict"):
        with predictor.autocast():
            logits = predictor.net(preprocess(batch["image"]))
        out.append(torch.sigmoid(logits.float()).cpu())
    return torch.cat(out)


@torch.inference_mode()
def validation_thresholds(
    predictor: Predictor, batch_size: int, num_workers: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """(C,) F1-maximising thresholds on the validation split and (C,) its positives per class."""
    datamodule = predictor.datamodule
    datamodule.setup("validate")
    probs, labels = [], []
    dataset = datamodule.datasets["val"]
    for batch in _batches(predictor, dataset, batch_size, num_workers, "validation"):
        batch = datamodule.on_after_batch_transfer(batch, 0)  # normalisation, no augmentation
        with predictor.autocast():
            probs.append(torch.sigmoid(predictor.net(batch["image"]).float()).cpu())
        labels.append(batch["label"].cpu())
    all_labels = torch.cat(labels)
    return best_f1_thresholds(torch.cat(probs), all_labels), all_labels.sum(dim=0)


def thresholds_for(
    spec: float | str,
    predictor: Predictor,
    *,
    overwrite: bool = False,
    batch_size: int = 64,
    num_workers: int = 0,
) -> tuple[torch.Tensor, str]:
    """(C,) thresholds and where they come from, for ``thresholds=<spec>``.

    * a number in (0, 1): that threshold for every class (0.5: the F1_macro convention);
    * ``val``: the per-class thresholds tuned on the validation split when the
      checkpoint was saved (its ``val_thresholds``, those of ``test/F1_macro_valthr``);
      a checkpoint without them has them tuned now, on the validation split of its
      stored config, and written to ``<checkpoint>.thresholds.json``, which later
      calls read (``overwrite`` tunes and writes it again);
    * a path to a ``.json`` file of the same format.
    """
    classes = predictor.class_names
    if isinstance(spec, int | float) and not isinstance(spec, bool):
        if not 0 < float(spec) < 1:
            raise ValueError(f"thresholds={spec}: a single threshold must be in (0, 1)")
        return torch.full((len(classes),), float(spec)), f"{float(spec):g} for every class"
    if spec != "val":
        return checkpoints.read_thresholds(Path(str(spec)), classes), str(spec)
    stored = checkpoints.stored_thresholds(predictor.checkpoint)
    if stored is not None:
        return stored, f"tuned on the validation split, stored in {predictor.ckpt_path}"
    path = checkpoints.thresholds_file(predictor.ckpt_path)
    if path.exists() and not overwrite:
        return checkpoints.read_thresholds(path, classes), str(path)
    tuned, positives = validation_thresholds(predictor, batch_size, num_workers)
    checkpoints.write_thresholds(
        path,
        tuned,
        classes,
        source=f"validation split of {predictor.ckpt_path}'s stored config",
        positives=[int(n) for n in positives.tolist()],
        overwrite=overwrite,
    )
    return tuned, f"tuned on the validation split now, written to {path}"


def predict_images(cfg: DictConfig, overrides: Sequence[str] | None = None) -> pa.Table:
    """Predict ``cfg.input`` with ``cfg.ckpt_path``, write ``cfg.output``; returns the table.

    Args:
        cfg: the composed ``predict`` config (``output`` None: write nothing, as
            :func:`spml_rs.api.predict` does unless asked).
        overrides: the command line's overrides, applied on top of the checkpoint's
            config; default: this Hydra job's.
    """
    output = None if cfg.output is None else Path(cfg.output)
    if output is not None:
        check_predictions_path(output, cfg.overwrite)  # before any work
    given = run_config.task_overrides() if overrides is None else overrides
    train_dir = Path(cfg.train_dir) if cfg.get("train_dir") else resume.run_directory(cfg)
    predictor = load_predictor(cfg, given, train_dir=train_dir, device=cfg.device)
    predictor.show_progress = bool(cfg.progress)
    source = open_unlabelled(
        cfg.input,
        predictor.datamodule,
        kind=cfg.input_kind,
        metadata=cfg.metadata,
        split=cfg.split,
        band_names=tuple(cfg.band_names) if cfg.band_names else None,
    )
    thresholds, origin = thresholds_for(
        cfg.thresholds,
        predictor,
        overwrite=cfg.overwrite,
        batch_size=cfg.batch_size,
        num_workers=cfg.num_workers,
    )
    probs = probabilities(
        predictor,
        source.images,
        source.preprocess,
        batch_size=cfg.batch_size,
        num_workers=cfg.num_workers,
    )
    table = predictions_table(
        source.images.ids.tolist(), probs.numpy(), predictor.class_names, thresholds.numpy()
    )
    if output is not None:
        write_predictions(output, table, overwrite=cfg.overwrite)
    if cfg.progress:
        print_predictions_summary(table, output, source.kind, origin)
    return table
