"""Public API for notebooks and scripts: configs and objects without Hydra boilerplate.

>>> from spml_rs import compose, build, fit
>>> cfg = compose(["method=an", "trainer.max_epochs=2"])
>>> datamodule, module, trainer = build(cfg)
>>> trainer.fit(module, datamodule=datamodule)          # or: metrics = fit(cfg)

:func:`compose` reads the packaged configs exactly as ``python -m spml_rs.train``
does, so a notebook and a command line with the same overrides build the same
objects (both go through :mod:`spml_rs.builders`).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning as L
import torch
from hydra import compose as hydra_compose
from hydra import initialize_config_module
from omegaconf import DictConfig, open_dict

from spml_rs import builders, resume
from spml_rs.data.base import SPMLDataModule
from spml_rs.module import SPMLModule

CONFIG_MODULE = "spml_rs.configs"


def compose(
    overrides: Sequence[str] | None = None,
    config_name: str = "train",
    output_dir: str | Path | None = None,
) -> DictConfig:
    """Compose a packaged config (``train`` or ``test``) with command-line style overrides.

    Outside a Hydra run there is no Hydra output directory, so ``paths.output_dir``
    is set to ``output_dir`` or, by default, ``<paths.log_dir>/notebook/<timestamp>``
    (created only when something is written there).

    Args:
        overrides: e.g. ``["method=an", "dataset=synthetic_rgb", "trainer.max_epochs=3"]``.
        config_name: top-level config, ``train`` or ``test``.
        output_dir: run directory for checkpoints, ``metrics.csv`` and ``results.json``.
    """
    with initialize_config_module(config_module=CONFIG_MODULE, version_base="1.3"):
        cfg = hydra_compose(config_name=config_name, overrides=list(overrides or []))
    with open_dict(cfg):
        if output_dir is None:
            stamp = time.strftime("%Y-%m-%d_%H-%M-%S")
            output_dir = Path(str(cfg.paths.log_dir)) / "notebook" / stamp
        cfg.paths.output_dir = str(output_dir)
    return cfg


def build(cfg: DictConfig) -> tuple[SPMLDataModule, SPMLModule, L.Trainer]:
    """Datamodule, module and trainer (with the config's callbacks and loggers), seeded.

    The same objects :func:`spml_rs.train.train` builds; call
    ``trainer.fit(module, datamodule=datamodule)`` to train.
    """
    return builders.build_run(cfg, resume.run_directory(cfg))


def fit(cfg: DictConfig) -> dict[str, Any]:
    """Fit, test the best checkpoint and write ``results.json``: the command line's job."""
    from spml_rs.train import train  # the entry point module imports Hydra's app machinery

    return train(cfg)


def predict(
    model: SPMLModule | str | Path,
    data: SPMLDataModule | str | Path,
    split: str | None = None,
    max_batches: int | None = None,
    **options: Any,
) -> Any:
    """Probabilities of a split (a module) or of unlabelled images (a checkpoint).

    * ``predict(module, datamodule, split="test", max_batches=None)``: the
      probabilities of a labelled split, with its full labels, preprocessed as in
      evaluation; returns CPU tensors ``probs`` (N, C), ``labels`` (N, C) and
      ``images`` (N, ch, H, W), the normalised images the model saw.
    * ``predict(ckpt_path, input, split="all", **options)``: what
      ``python -m spml_rs.predict`` does, from the checkpoint alone, for a reBEN
      LMDB, a folder of JPEG/PNG images or a folder of GeoTIFF patches; returns the
      pyarrow table (``image_id``, ``p_<class>``..., ``predicted``; ``.to_pandas()``
      for a DataFrame). ``options`` are the keys of ``configs/predict.yaml``
      (``thresholds=0.5 | "val" | <json>``, ``output=<.parquet | .csv>`` to also
      write it, ``input_kind``, ``metadata``, ``band_names``, ``batch_size``,
      ``num_workers``, ``device``, ``overwrite``, ``progress``, ``train_dir``) plus
      ``overrides``: config overrides applied on top of the checkpoint's stored
      config (e.g. ``["dataset.datamodule.root=/data/benv2"]``).
    """
    if isinstance(model, SPMLModule):
        if not isinstance(data, SPMLDataModule) or options:
            raise TypeError(
                "predict(module, datamodule, split, max_batches): a module needs its datamodule "
                f"and takes no other options (got {sorted(options)})"
            )
        return _split_probabilities(model, data, split or "test", max_batches)
    if max_batches is not None:
        raise TypeError("predict(ckpt_path, input, ...): max_batches applies to a module only")
    return _predict_checkpoint(model, data, split or "all", **options)


def _predict_checkpoint(
    ckpt_path: str | Path,
    data: object,
    split: str,
    *,
    overrides: Sequence[str] = (),
    **options: Any,
) -> Any:
    from spml_rs.inference import predict_images

    if not isinstance(data, str | Path):
        raise TypeError(f"predict(ckpt_path, input): input must be a path, got {type(data)}")
    settings = {"output": None, **options, "ckpt_path": str(ckpt_path), "input": str(data)}
    given = [f"{k}={_override_value(v)}" for k, v in settings.items()] + [f"split={split}"]
    cfg = compose([*given, *overrides], config_name="predict")
    return predict_images(cfg, overrides=list(overrides))


def _override_value(value: Any) -> str:
    """A Python value as a Hydra override value: None -> null, lists, quoted strings."""
    if value is None:
        return "null"
    if isinstance(value, list | tuple):
        return "[" + ",".join(_override_value(v) for v in value) + "]"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int | float):
        return repr(value)
    return "'" + str(value).replace("'", "\\'") + "'"


@torch.no_grad()
def _split_probabilities(
    module: SPMLModule, datamodule: SPMLDataModule, split: str, max_batches: int | None
) -> dict[str, torch.Tensor]:
    """See :func:`predict` (a module and its datamodule)."""
    module.eval()
    out: dict[str, list[torch.Tensor]] = {"probs": [], "labels": [], "images": []}
    for i, batch in enumerate(datamodule.dataloader(split)):
        if max_batches is not None and i >= max_batches:
            break
        batch = {k: v.to(module.device) if torch.is_tensor(v) else v for k, v in batch.items()}
        batch = datamodule.on_after_batch_transfer(batch, 0)  # normalisation, no augmentation
        out["probs"].append(torch.sigmoid(module(batch["image"]).float()).cpu())
        out["labels"].append(batch["label"].cpu())
        out["images"].append(batch["image"].cpu())
    return {k: torch.cat(v) for k, v in out.items()}
