"""Every paper preset composes with every method, and states the recipe it promises."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import pytest
from hydra import compose as hydra_compose
from hydra import initialize_config_module
from omegaconf import OmegaConf

from spml_rs import compose

CONFIGS = resources.files("spml_rs.configs")
PRESETS = {
    "benv2_random": ("benv2", "random"),
    "benv2_dominant": ("benv2", "dominant"),
    "aid_random": ("aid", "random"),
    "aid_manual": ("aid", "manual"),
}
#: the synthetic benchmark's presets: tests/configs/test_benchmark_presets.py
SYNTHETIC_PRESETS = {"benchmark_pretrained", "benchmark_scratch", "pretrain_backbone"}
METHODS = sorted(
    p.name[: -len(".yaml")]
    for p in CONFIGS.joinpath("method").iterdir()
    if p.name.endswith(".yaml")
)


def test_every_preset_file_is_tested() -> None:
    files = {
        p.name[: -len(".yaml")]
        for p in CONFIGS.joinpath("experiment").iterdir()
        if p.name.endswith(".yaml")
    }
    assert files == set(PRESETS) | SYNTHETIC_PRESETS


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_preset_states_its_setting(preset: str, tmp_path: Path) -> None:
    cfg = compose([f"experiment={preset}"], output_dir=tmp_path)
    OmegaConf.resolve(cfg)  # every interpolation resolves
    dataset, mode = PRESETS[preset]
    assert cfg.dataset.name == dataset
    assert cfg.label_mode.mode == mode
    assert cfg.model.net.name == "resnet50" and cfg.model.net.pretrained is True
    assert cfg.trainer.accelerator == "gpu"
    assert cfg.model.scheduler.T_max == cfg.trainer.max_epochs
    assert list(cfg.tags) == [dataset, mode]


def test_every_method_composes_with_a_preset() -> None:
    """Method configs do not depend on the dataset: one preset covers them."""
    with initialize_config_module("spml_rs.configs", version_base="1.3"):
        for preset in ("aid_manual",):
            for method in METHODS:
                cfg = hydra_compose(
                    "train", [f"experiment={preset}", f"method={method}", "paths.output_dir=x"]
                )
                OmegaConf.resolve(cfg)
                assert cfg.method.name == method and cfg.label_mode.mode == PRESETS[preset][1]


def test_recipe_stated_once_per_dataset(tmp_path: Path) -> None:
    """Both settings of a dataset share the recipe; the datasets differ where they should."""
    ben = [
        compose([f"experiment={p}"], output_dir=tmp_path)
        for p in ("benv2_random", "benv2_dominant")
    ]
    aid = [compose([f"experiment={p}"], output_dir=tmp_path) for p in ("aid_random", "aid_manual")]
    for a, b in (ben, aid):
        assert a.model == b.model and a.trainer == b.trainer
    assert ben[0].dataset.datamodule.bands == "s2"
    assert aid[0].dataset.datamodule.image_size == 224
    assert aid[1].label_mode.path.endswith("single_positive_labels_manual.csv")


def test_paper_methods_sweep_names_existing_methods() -> None:
    with initialize_config_module("spml_rs.configs", version_base="1.3"):
        cfg = hydra_compose("train", ["+sweep=paper_methods"], return_hydra_config=True)
    swept = str(cfg.hydra.sweeper.params.method).split(",")
    assert {"full", "an", "adagc"} <= set(swept)
    assert set(swept) <= set(METHODS), f"unknown methods: {set(swept) - set(METHODS)}"
