"""What a checkpoint says about its run: the stored training config, and the checks built on it.

Every checkpoint of :class:`spml_rs.module.SPMLModule` carries, in Lightning's
``hyper_parameters``, the run's composed and resolved config (``run_config``),
its :class:`~spml_rs.dataset_info.DatasetInfo` (``dataset_info``) and, when the run
was launched through Hydra, the option chosen in each config group
(``config_choices``, e.g. ``{"dataset": "benv2", "method": "adagc"}``). Three
things rest on it:

* ``spml_rs.test`` and ``spml_rs.predict`` rebuild the model and data from the
  checkpoint alone (:func:`load_run_config`; overrides are applied by
  :mod:`spml_rs.run_config`);
* resuming refuses a checkpoint whose config differs from the launched one
  (:func:`check_resumable`), except in :data:`MAY_CHANGE_ON_RESUME`;
* a file that is not a Lightning checkpoint is named as such
  (:func:`read_checkpoint`, :func:`check_is_checkpoint`) instead of surfacing as
  torch's ``UnpicklingError``.
"""

from __future__ import annotations

import fnmatch
import json
import pickle
import zipfile
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from spml_rs.dataset_info import DatasetInfo
from spml_rs.fileio import atomic_write_bytes

HPARAMS = "hyper_parameters"
CONFIG_KEY = "run_config"
INFO_KEY = "dataset_info"
CHOICES_KEY = "config_choices"

#: Config keys (dotted; ``*`` matches one level, a key matches its sub-keys too) that may
#: differ between a checkpoint and the run that resumes it: where files are, how many
#: processes and workers, what is logged and shown. Anything else is a different run.
MAY_CHANGE_ON_RESUME: tuple[str, ...] = (
    "paths",
    "ckpt_path",
    "auto_resume",
    "overwrite",
    "task_name",
    "tags",
    "run_test",
    "optimized_metric",
    "logger",
    "callbacks.progress_bar",
    "callbacks.*.dirpath",
    "trainer.default_root_dir",
    "trainer.devices",
    "trainer.num_nodes",
    "trainer.enable_progress_bar",
    "trainer.log_every_n_steps",
    "dataset.datamodule.root",
    "dataset.datamodule.num_workers",
    "dataset.datamodule.pin_memory",
    "dataset.datamodule.readahead",
    "dataset.datamodule.verify",
    "dataset.datamodule.label_path",
    "label_mode.path",
    "model.net.weights_path",
)
_ABSENT = "<absent>"


class NotACheckpointError(ValueError):
    """The file is not a Lightning checkpoint."""


class MissingRunConfigError(ValueError):
    """The checkpoint predates stored configs (or was not written by ``SPMLModule``)."""


class ConfigMismatchError(ValueError):
    """A run would resume a checkpoint written under a different config."""


def check_is_checkpoint(path: str | Path) -> None:
    """Cheap test (no unpickling) that ``path`` is a torch archive, as Lightning writes them."""
    if not zipfile.is_zipfile(path):
        raise NotACheckpointError(
            f"{path}: not a Lightning checkpoint (torch.save writes a zip archive; this file is "
            "not one). Give a .ckpt file written by spml_rs.train (checkpoints/last.ckpt or "
            "checkpoints/best-*.ckpt)"
        )
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
    if not any(name.endswith("data.pkl") for name in names):
        raise NotACheckpointError(
            f"{path}: not a Lightning checkpoint (a zip archive without torch's data.pkl)"
        )


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """The checkpoint dict, on the CPU; :class:`NotACheckpointError` for anything else."""
    check_is_checkpoint(path)
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    except (pickle.UnpicklingError, RuntimeError, EOFError, zipfile.BadZipFile) as error:
        raise NotACheckpointError(
            f"{path}: not a Lightning checkpoint (torch.load failed: {error})"
        ) from error
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        found = sorted(checkpoint)[:8] if isinstance(checkpoint, dict) else type(checkpoint)
        raise NotACheckpointError(
            f"{path}: not a Lightning checkpoint (no 'state_dict'; found {found}): a bare "
            "state dict or pretrained weights go to model.net.weights_path, not ckpt_path"
        )
    return checkpoint


def stored_run_config(checkpoint: Mapping[str, Any]) -> DictConfig | None:
    """The training run's resolved config, or None for a checkpoint without one."""
    stored = (checkpoint.get(HPARAMS) or {}).get(CONFIG_KEY)
    return None if stored is None else OmegaConf.create(stored)


def stored_dataset_info(checkpoint: Mapping[str, Any]) -> DatasetInfo | None:
    stored = (checkpoint.get(HPARAMS) or {}).get(INFO_KEY)
    if stored is None:
        return None
    return DatasetInfo(**{**stored, "class_names": tuple(stored["class_names"])})


def stored_choices(checkpoint: Mapping[str, Any]) -> dict[str, str] | None:
    """Config group -> option of the training launch; None when it was not launched by Hydra."""
    choices = (checkpoint.get(HPARAMS) or {}).get(CHOICES_KEY)
    return None if choices is None else {str(k): str(v) for k, v in choices.items()}


def load_run_config(ckpt_path: str | Path) -> DictConfig:
    """The resolved config the checkpoint's run was trained with."""
    config = stored_run_config(read_checkpoint(ckpt_path))
    if config is None:
        raise MissingRunConfigError(missing_config_message(ckpt_path))
    return config


def missing_config_message(ckpt_path: str | Path) -> str:
    return (
        f"{ckpt_path}: the checkpoint holds no training config (it was written before spml_rs "
        "stored one). Pass the overrides used for training, e.g. dataset=benv2 "
        "dataset.datamodule.root=<data> model=resnet50 method=<method> (a method with its "
        "own head needs method=...)"
    )


# ------------------------------------------------------------------ comparison
def _matches(key: str, patterns: Sequence[str]) -> bool:
    """Whether ``key`` or one of its parent keys matches a pattern (``*``: one level)."""
    parts = key.split(".")
    prefixes = [".".join(parts[: i + 1]) for i in range(len(parts))]
    return any(fnmatch.fnmatchcase(p, pattern) for pattern in patterns for p in prefixes)


def _differences(old: Any, new: Any, prefix: str) -> Iterator[tuple[str, Any, Any]]:
    if isinstance(old, Mapping) and isinstance(new, Mapping):
        for key in sorted(old.keys() | new.keys(), key=str):
            path = f"{prefix}.{key}" if prefix else str(key)
            if key in old and key in new:
                yield from _differences(old[key], new[key], path)
            else:  # a whole section on one side only: one line, not one per leaf
                yield path, old.get(key, _ABSENT), new.get(key, _ABSENT)
    elif old != new:
        yield prefix, old, new


def config_differences(
    stored: Mapping[str, Any],
    current: Mapping[str, Any],
    may_change: Sequence[str] = MAY_CHANGE_ON_RESUME,
) -> list[tuple[str, Any, Any]]:
    """``(dotted key, stored value, current value)`` of every difference, in key order.

    A section present on one side only is one difference (its key and the section).
    """
    return [d for d in _differences(stored, current, "") if not _matches(d[0], may_change)]


def _short(value: Any, limit: int = 70) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def check_resumable(
    checkpoint: Mapping[str, Any], current: Mapping[str, Any], ckpt_path: str | Path
) -> None:
    """Refuse to resume ``checkpoint`` (read from ``ckpt_path``) under a different config.

    ``current`` is the launched run's resolved config; keys in
    :data:`MAY_CHANGE_ON_RESUME` are not compared.
    """
    stored = (checkpoint.get(HPARAMS) or {}).get(CONFIG_KEY)
    if stored is None:
        raise MissingRunConfigError(
            f"{ckpt_path}: the checkpoint holds no training config (written before spml_rs "
            "stored one), so resuming it cannot be checked against this run's config. Train "
            "into a new directory, or resume with the spml_rs version that wrote it"
        )
    differences = config_differences(stored, current)
    if not differences:
        return
    shown = "\n".join(
        f"  {k}: checkpoint {_short(a)}, now {_short(b)}" for k, a, b in differences[:25]
    )
    more = f"\n  ... and {len(differences) - 25} more" if len(differences) > 25 else ""
    raise ConfigMismatchError(
        f"{ckpt_path} was trained with a different config; resuming it would mix two runs. "
        f"Differing keys:\n{shown}{more}\nLaunch the new config into its own directory (leave "
        "hydra.run.dir / hydra.sweep.dir at their defaults, or choose new ones); a re-launched "
        "sweep whose override lists changed needs a new hydra.sweep.dir. Keys allowed to "
        "differ on resume: "
        f"{', '.join(MAY_CHANGE_ON_RESUME)}"
    )


# ---------------------------------------------------------------------- weights
NET_PREFIX = "net."
THRESHOLDS_KEY = "val_thresholds"


def load_net_weights(net: torch.nn.Module, checkpoint: Mapping[str, Any], ckpt_path: str) -> None:
    """Copy the checkpoint's ``net.*`` weights (backbone and head) into ``net``.

    Only the network is read, so any method's checkpoint loads the same way; the
    loss's own state (per-sample tensors, ROLE's label matrix) is not needed to predict.
    """
    state = checkpoint["state_dict"]
    net_state = {k[len(NET_PREFIX) :]: v for k, v in state.items() if k.startswith(NET_PREFIX)}
    if not net_state:
        raise NotACheckpointError(
            f"{ckpt_path}: holds no network weights (no state_dict key starts with 'net.')"
        )
    try:
        net.load_state_dict(net_state)
    except RuntimeError as error:
        raise ValueError(
            f"{ckpt_path}: the network weights do not fit {type(net).__name__} as configured "
            f"(a changed model.* override?): {error}"
        ) from error


def stored_thresholds(checkpoint: Mapping[str, Any]) -> torch.Tensor | None:
    """(C,) per-class thresholds tuned at the checkpoint's validation; None if never tuned."""
    thresholds = checkpoint["state_dict"].get(THRESHOLDS_KEY)
    if thresholds is None or not bool(torch.isfinite(thresholds).all()):
        return None
    return thresholds.float()


# ------------------------------------------------------------------- thresholds
THRESHOLDS_SUFFIX = ".thresholds.json"


def thresholds_file(ckpt_path: str | Path) -> Path:
    """``<checkpoint>.thresholds.json``: thresholds tuned for a checkpoint, next to it."""
    return Path(f"{ckpt_path}{THRESHOLDS_SUFFIX}")


def write_thresholds(
    path: Path,
    thresholds: torch.Tensor,
    class_names: Sequence[str],
    *,
    source: str,
    positives: Sequence[int] | None = None,
    overwrite: bool = False,
) -> None:
    """Write per-class thresholds as JSON (atomically); an existing file needs ``overwrite``."""
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists; pass overwrite=true to replace it")
    payload: dict[str, Any] = {
        "source": source,
        "rule": "per class, the threshold maximising F1 on the validation split (p > t is "
        "positive); a class without positives there keeps 0.5",
        "thresholds": dict(zip(class_names, thresholds.tolist(), strict=True)),
    }
    if positives is not None:
        payload["validation_positives"] = dict(zip(class_names, positives, strict=True))
    atomic_write_bytes(path, json.dumps(payload, indent=2).encode())


def read_thresholds(path: Path, class_names: Sequence[str]) -> torch.Tensor:
    """(C,) thresholds of a JSON file (``{"thresholds": {class: t}}``), in ``class_names`` order."""
    with open(path, encoding="utf-8") as handle:
        stored = json.load(handle).get("thresholds")
    if not isinstance(stored, dict) or sorted(stored) != sorted(class_names):
        found = sorted(stored) if isinstance(stored, dict) else stored
        raise ValueError(
            f"{path}: expected {{'thresholds': {{class: threshold}}}} for the model's classes "
            f"{list(class_names)}; found {found}"
        )
    values = torch.tensor([float(stored[name]) for name in class_names])
    bad = [n for n, v in zip(class_names, values.tolist(), strict=True) if not 0 <= v <= 1]
    if bad:
        raise ValueError(f"{path}: thresholds outside [0, 1] for {bad}")
    return values
