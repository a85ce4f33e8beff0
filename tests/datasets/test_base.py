"""The datamodule base: its options are a schema, misspelled keys name the real ones."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest
from hydra.errors import InstantiationException
from hydra.utils import instantiate

from spml_rs.data.aid import AIDDataModule
from spml_rs.data.base import DataModuleOptions, SPMLDataModule
from spml_rs.data.benv2 import BENv2DataModule
from spml_rs.data.synthetic import SyntheticDataModule
from spml_testing import DATA, DATASET_TINY


def test_options_typed_dict_is_the_base_signature() -> None:
    """``DataModuleOptions`` (what mypy checks) and the base's keyword arguments agree."""
    parameters = inspect.signature(SPMLDataModule.__init__).parameters
    keyword = [n for n, p in parameters.items() if p.kind is p.KEYWORD_ONLY]
    assert keyword == list(DataModuleOptions.__annotations__)


def test_misspelled_key_names_the_real_parameters(tmp_path: Path) -> None:
    with pytest.raises(TypeError) as raised:
        SyntheticDataModule(root=str(tmp_path), num_trian=5)  # type: ignore[call-arg]
    message = str(raised.value)
    assert "SyntheticDataModule got unknown parameter(s) ['num_trian']" in message
    assert "did you mean 'num_train'?" in message
    # Its own parameters and the base's, so the reader sees the whole schema.
    assert "'preset'" in message and "'batch_size'" in message and "'label_mode'" in message
    with pytest.raises(TypeError, match=r"'batch_sise': did you mean 'batch_size'\?"):
        AIDDataModule(root=str(DATA / "aid"), batch_sise=8)  # type: ignore[call-arg]
    with pytest.raises(TypeError, match=r"BENv2DataModule got unknown.*'lmdb_nam'.*'lmdb_name'"):
        BENv2DataModule(root=str(DATA / "benv2"), lmdb_nam="x")  # type: ignore[call-arg]


def test_misspelled_config_key_fails_at_instantiation_with_the_real_names(make_cfg) -> None:
    cfg = make_cfg(*DATASET_TINY["synthetic"], "+dataset.datamodule.num_trian=5", tiny=False)
    with pytest.raises(InstantiationException, match=r"num_trian.*did you mean 'num_train'"):
        instantiate(cfg.dataset.datamodule)


@pytest.mark.parametrize("dataset", ["aid", "benv2"])
def test_index_from_config_is_the_datamodules_index(make_cfg, dataset: str) -> None:
    """An index built from a config's keys alone (as ``prepare`` does) sees the same splits."""
    overrides = {
        "aid": "dataset.datamodule.val_seed=3",
        "benv2": "dataset.datamodule.include_snow_cloud=true",
    }
    cfg = make_cfg(*DATASET_TINY[dataset], "label_mode=full", overrides[dataset], tiny=False)
    datamodule = instantiate(cfg.dataset.datamodule)
    index = type(datamodule).index_class.from_config(cfg.dataset.datamodule)
    assert type(index) is type(datamodule.index)
    for split in ("train", "val", "test"):
        ids, labels = index.split_labels(split)
        expected_ids, expected_labels = datamodule.index.split_labels(split)
        assert ids.tolist() == expected_ids.tolist()
        assert (labels == expected_labels).all()
