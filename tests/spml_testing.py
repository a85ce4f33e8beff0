"""Test settings shared by every test module: tiny run sizes and config composition."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from hydra import compose, initialize_config_module
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig, open_dict

#: Synthetic split sizes and batch size that make a synthetic run take seconds.
TINY_SYNTHETIC = (
    "dataset.datamodule.num_train=96",
    "dataset.datamodule.num_val=48",
    "dataset.datamodule.num_test=48",
    "dataset.datamodule.batch_size=32",
)
#: A tiny timm model, one epoch and no progress bar: the dataset-independent part.
TINY_RUN = (
    "model.net.name=test_resnet",
    "model.net.stem_stride=null",
    "trainer.max_epochs=1",
    "callbacks.progress_bar=null",
)
#: Overrides that make any synthetic run take seconds: tiny splits, a tiny timm model.
TINY = (*TINY_SYNTHETIC, *TINY_RUN)


def tiny(*overrides: str) -> list[str]:
    """:data:`TINY` with ``overrides`` applied; one replaces the TINY entry of the same key.

    Hydra rejects a key given twice on one command line, so callers that change a
    TINY setting (e.g. ``trainer.max_epochs``) go through this instead of appending.
    """
    keys = {o.split("=", 1)[0] for o in overrides}
    return [o for o in TINY if o.split("=", 1)[0] not in keys] + list(overrides)


DATA = Path(__file__).parent / "data"

#: Per dataset config: overrides that make a run take seconds (fixtures for the real formats).
DATASET_TINY: dict[str, tuple[str, ...]] = {
    "synthetic": ("dataset=synthetic", *TINY),
    "synthetic_rgb": ("dataset=synthetic_rgb", *TINY),
    "benv2": (
        "dataset=benv2",
        f"dataset.datamodule.root={DATA / 'benv2'}",
        "dataset.datamodule.batch_size=4",
        "dataset.datamodule.num_workers=0",
        "dataset.datamodule.pin_memory=false",
        *TINY_RUN,
    ),
    "aid": (
        "dataset=aid",
        f"dataset.datamodule.root={DATA / 'aid'}",
        "dataset.datamodule.image_size=48",  # != the 64 px fixture: exercises the device resize
        "dataset.datamodule.batch_size=8",
        "dataset.datamodule.num_workers=0",
        "dataset.datamodule.pin_memory=false",
        *TINY_RUN,
    ),
}


def compose_config(
    overrides: Sequence[str], output_dir: Path, cache: Path, config_name: str = "train"
) -> DictConfig:
    """Compose the packaged configs as the command line would, outside a Hydra run."""
    GlobalHydra.instance().clear()
    with initialize_config_module(config_module="spml_rs.configs", version_base="1.3"):
        cfg = compose(config_name=config_name, overrides=list(overrides))
    with open_dict(cfg):
        cfg.paths.output_dir = str(output_dir)
        cfg.paths.cache_dir = str(cache)
    return cfg


def put_lmdb_value(lmdb_dir: Path, key: str, value: bytes | None) -> None:
    """Write (or, with ``None``, delete) one key of a test LMDB in place.

    The library's cached handles of that path are closed before and after: py-lmdb opens
    a path once per process, and a handle opened before would keep an older snapshot.
    """
    import lmdb

    from spml_rs.data.benv2_lmdb import LazyLMDB

    LazyLMDB(lmdb_dir).close()
    env = lmdb.open(str(lmdb_dir), map_size=1 << 27)
    with env.begin(write=True) as txn:
        if value is None:
            txn.delete(key.encode())
        else:
            txn.put(key.encode(), value)
    env.close()
    LazyLMDB(lmdb_dir).close()
