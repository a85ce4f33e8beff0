"""The config of an evaluation or a prediction: the checkpoint's training config, overrides on top.

``python -m spml_rs.test ckpt_path=FILE`` (and ``spml_rs.predict``) composes its own
small config (``test.yaml``), but the model and data to rebuild are the training
run's, stored in the checkpoint (:mod:`spml_rs.checkpoints`).
:func:`checkpoint_config` merges the two:

1. start from the stored training config (resolved when training started);
2. take from the entry point's config what belongs to this invocation: the keys in
   :data:`ENTRY_KEYS` (its run directory, its logger, the checkpoint) and every key
   the training config does not have (``split``, ``input``, ``thresholds``, ...);
   ``trainer.default_root_dir`` follows the new run directory;
3. apply the command-line overrides: a ``key=value`` (or ``+key``, ``++key``,
   ``~key``) sets that key, e.g. ``dataset.datamodule.root=/data/benv2`` on another
   machine; a choice in an environment group (:data:`ENVIRONMENT_GROUPS`, e.g.
   ``trainer=cpu``) replaces that whole section. A choice in any other group
   (``dataset=``, ``model=``, ``method=``, ``experiment=`` ...) must name the option
   the run was trained with, or it is refused: it would swap the stored section for
   the packaged defaults of another option.

A checkpoint without a stored config (older than this module) is evaluated with
the entry point's own config when the overrides name the dataset or model (the old
way), and refused with a message saying which overrides to pass otherwise.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from importlib.resources import files
from pathlib import Path
from typing import Any, cast

from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override
from lightning.pytorch.utilities import rank_zero_warn
from omegaconf import DictConfig, OmegaConf

from spml_rs.checkpoints import (
    MissingRunConfigError,
    missing_config_message,
    stored_choices,
    stored_run_config,
)
from spml_rs.data.base import SPMLDataModule
from spml_rs.dataset_info import DatasetInfo

#: top-level keys that always come from the entry point: where it writes and what it logs
ENTRY_KEYS = ("task_name", "ckpt_path", "paths", "logger")
#: config groups that say where and how a job runs, not what was trained
ENVIRONMENT_GROUPS = ("trainer", "logger", "paths", "callbacks")
#: top-level sections that define the trained model and its data (old checkpoints: see above)
TRAINED_SECTIONS = ("dataset", "model", "method", "label_mode", "experiment")
CONFIG_PACKAGE = "spml_rs.configs"


def task_overrides() -> list[str]:
    """The command line's overrides of this Hydra job (none outside Hydra)."""
    if not HydraConfig.initialized():
        return []
    return list(HydraConfig.get().overrides.task)


def config_groups() -> set[str]:
    """Config group names: the packaged config folders and, in a Hydra job, its choices."""
    root = Path(str(files(CONFIG_PACKAGE)))
    groups = {str(p.relative_to(root)) for p in root.rglob("*") if p.is_dir()}
    if HydraConfig.initialized():
        groups |= {str(group) for group in HydraConfig.get().runtime.choices}
    return {g for g in groups if not g.startswith(("hydra", "__"))}


def checkpoint_config(
    entry: DictConfig, checkpoint: Mapping[str, Any], ckpt_path: str, overrides: Sequence[str]
) -> DictConfig:
    """The config to rebuild ``checkpoint``'s model and data with (see the module docstring).

    Args:
        entry: the entry point's composed config (``test.yaml``, ``predict.yaml``).
        checkpoint: the checkpoint dict (:func:`spml_rs.checkpoints.read_checkpoint`).
        ckpt_path: its file, for messages.
        overrides: the command-line overrides (:func:`task_overrides`).
    """
    parsed = OverridesParser.create().parse_overrides(list(overrides))
    stored = stored_run_config(checkpoint)
    if stored is None:
        return _entry_config_for_old_checkpoint(entry, parsed, ckpt_path)
    own = OmegaConf.create(cast(dict[str, Any], OmegaConf.to_container(entry, resolve=True)))
    merged = stored
    for key in own:
        if key in ENTRY_KEYS or key not in merged:
            merged[key] = own[key]
    if "trainer" in merged:
        merged.trainer.default_root_dir = own.paths.output_dir
    groups, choices = config_groups(), stored_choices(checkpoint)
    for override in parsed:
        _apply(merged, own, override, groups, choices, ckpt_path)
    return merged


def _entry_config_for_old_checkpoint(
    entry: DictConfig, parsed: list[Override], ckpt_path: str
) -> DictConfig:
    named = {o.key_or_group.split(".")[0].split("/")[0] for o in parsed}
    if not named & set(TRAINED_SECTIONS):
        raise MissingRunConfigError(missing_config_message(ckpt_path))
    rank_zero_warn(
        f"{ckpt_path}: the checkpoint holds no training config; rebuilding the model and data "
        "from the command line's overrides, as given"
    )
    return entry


def _apply(
    merged: DictConfig,
    own: DictConfig,
    override: Override,
    groups: set[str],
    choices: dict[str, str] | None,
    ckpt_path: str,
) -> None:
    key = override.key_or_group
    if key.startswith("hydra"):
        return
    if key in groups:
        _apply_group_choice(merged, own, override, choices, ckpt_path)
    elif override.is_delete():
        parent, _, leaf = key.rpartition(".")
        node = OmegaConf.select(merged, parent) if parent else merged
        if not isinstance(node, DictConfig) or leaf not in node:
            raise KeyError(f"override {override.input_line}: the checkpoint's config has no {key}")
        del node[leaf]
    else:
        OmegaConf.update(merged, key, OmegaConf.select(own, key), merge=False, force_add=True)


def _apply_group_choice(
    merged: DictConfig,
    own: DictConfig,
    override: Override,
    choices: dict[str, str] | None,
    ckpt_path: str,
) -> None:
    group, option = override.key_or_group, override.get_value_element_as_str()
    if group in ENVIRONMENT_GROUPS:
        merged[group] = own[group]
        if group == "trainer":
            merged.trainer.default_root_dir = own.paths.output_dir
        return
    trained = (choices or {}).get(group)
    if trained == option:
        return  # the option the run was trained with: its settings are in the checkpoint already
    was = f"was trained with {group}={trained}" if trained else "stores its training config"
    raise ValueError(
        f"{override.input_line}: {ckpt_path} {was}, which is rebuilt from the checkpoint; a "
        f"different {group}= would replace that section with the packaged defaults of "
        f"{option!r}. Override single keys instead (e.g. dataset.datamodule.root=<path>, "
        f"model.net.head.alpha=1); groups that may be chosen: {', '.join(ENVIRONMENT_GROUPS)}"
    )


def check_inputs_match(datamodule: SPMLDataModule, info: DatasetInfo, ckpt_path: str) -> None:
    """The datamodule must feed the model the channels and classes it was trained on."""
    if datamodule.in_chans != info.in_chans:
        raise ValueError(
            f"{ckpt_path}: the model was trained on {info.in_chans} input channel(s) of "
            f"{info.name!r}, but the dataset config now gives {datamodule.in_chans} (an override "
            "of dataset.datamodule.bands?)"
        )
    if tuple(datamodule.class_names) != tuple(info.class_names):
        raise ValueError(
            f"{ckpt_path}: the model predicts the classes {list(info.class_names)}, the dataset "
            f"config has {list(datamodule.class_names)}"
        )
