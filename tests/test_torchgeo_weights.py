"""TorchGeo Sentinel-2 weights without network: band mapping by name, loading a state dict of
the real shapes written here, and the exact conversion of our normalisation to the weights'."""

from __future__ import annotations

from pathlib import Path

import pytest
import timm
import torch
from torch import nn
from torchvision.transforms import v2

from spml_rs import builders
from spml_rs.data.benv2_bands import BAND_SETS, BAND_STATS
from spml_rs.torchgeo_weights import (
    WeightsInputAdapter,
    band_indices,
    canonical_band,
    create_torchgeo_backbone,
    torchgeo_normalization,
)
from spml_testing import DATASET_TINY

#: ResNet50_Weights.SENTINEL2_ALL_MOCO's meta["bands"], as TorchGeo spells them
SSL4EO_BANDS = ["B1", "B2", "B3", "B4", "B5", "B6", "B7", "B8", "B8a", "B9", "B10", "B11", "B12"]


def write_weights(path: Path, name: str = "resnet18", seed: int = 0) -> dict[str, torch.Tensor]:
    """A 13-band state dict with the layout TorchGeo publishes (timm keys, no classifier)."""
    torch.manual_seed(seed)
    model = timm.create_model(name, in_chans=13, num_classes=0)
    for module in model.modules():  # non-trivial running statistics, so eval mode tests them
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
    state = model.state_dict()
    torch.save(state, path)
    return state


def build(path: Path, bands: str, name: str = "resnet18", **kwargs) -> nn.Module:
    return create_torchgeo_backbone(
        weights=f"{name.replace('resnet', 'ResNet')}_Weights.SENTINEL2_ALL_MOCO",
        weights_bands=SSL4EO_BANDS, bands=bands, name=name, in_chans=len(BAND_SETS[bands]),
        num_classes=19, weights_path=str(path), **kwargs,
    )  # fmt: skip


def test_band_names_are_compared_in_one_spelling() -> None:
    assert [canonical_band(b) for b in ("B01", "B1", "b8a", "B8A", "B10", "VV")] == [
        "B1", "B1", "B8A", "B8A", "B10", "VV",
    ]  # fmt: skip


def test_our_band_sets_pick_the_matching_channels_in_our_order() -> None:
    # s2: B02 B03 B04 B05 B06 B07 B08 B8A B11 B12; B1, B9 and B10 (cirrus) are dropped
    assert band_indices(BAND_SETS["s2"], SSL4EO_BANDS) == [1, 2, 3, 4, 5, 6, 7, 8, 11, 12]
    # s2_all adds B01 and B09; only B10, absent from L2A, is dropped
    assert band_indices(BAND_SETS["s2_all"], SSL4EO_BANDS) == [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 11, 12]
    assert band_indices(("B04", "B03", "B02"), SSL4EO_BANDS) == [3, 2, 1]  # order is ours


def test_a_band_the_weights_lack_is_an_error_or_a_zero_channel() -> None:
    with pytest.raises(ValueError, match=r"no input channel for band\(s\) \['VV', 'VH'\]"):
        band_indices(BAND_SETS["s1s2"], SSL4EO_BANDS)
    assert band_indices(BAND_SETS["s1s2"], SSL4EO_BANDS, "zero")[:3] == [None, None, 1]


@pytest.mark.parametrize(("bands", "name"), [("s2", "resnet50"), ("s2_all", "resnet18")])
def test_state_dict_loads_with_the_first_layer_remapped(
    tmp_path: Path, bands: str, name: str
) -> None:
    """The shipped configs' architectures, with state dicts of the published shapes."""
    source = write_weights(tmp_path / "weights.pth", name=name)
    net = build(tmp_path / "weights.pth", bands, name=name)
    assert isinstance(net, WeightsInputAdapter)
    loaded = net.net.state_dict()
    indices = band_indices(BAND_SETS[bands], SSL4EO_BANDS)
    torch.testing.assert_close(loaded["conv1.weight"], source["conv1.weight"][:, indices])
    for key, value in source.items():
        if key != "conv1.weight":
            assert torch.equal(loaded[key], value), key
    assert loaded["fc.weight"].shape == (19, {"resnet50": 2048, "resnet18": 512}[name])


@pytest.mark.parametrize("bands", ["s2"])  # 3 of the 13 bands missing: the harder case
def test_our_standardised_input_gives_the_pretrained_function(tmp_path: Path, bands: str) -> None:
    """model(z), z = (x - m) / s with reBEN's statistics, equals the 13-band pretrained model on
    x / 10000 with the bands we lack at 0 (their channels are dropped), borders included."""
    source = write_weights(tmp_path / "weights.pth", name="resnet18")
    ours = BAND_SETS[bands]
    net = create_torchgeo_backbone(
        weights="ResNet18_Weights.SENTINEL2_ALL_MOCO", weights_bands=SSL4EO_BANDS, bands=bands,
        name="resnet18", in_chans=len(ours), num_classes=0, weights_path=str(tmp_path / "weights.pth"),
    ).eval()  # fmt: skip
    reference = timm.create_model("resnet18", in_chans=13, num_classes=0)
    reference.load_state_dict(source)
    x = torch.randint(0, 6000, (2, len(ours), 40, 40)).double()  # raw L2A digital numbers
    stats = torch.tensor([BAND_STATS[b] for b in ours], dtype=torch.float64)
    z = (x - stats[:, 0, None, None]) / stats[:, 1, None, None]
    u = torch.zeros(2, 13, 40, 40, dtype=torch.float64)
    u[:, band_indices(ours, SSL4EO_BANDS)] = x / 10000
    with torch.no_grad():
        torch.testing.assert_close(
            net(z.float()), reference.eval()(u.float()), rtol=1e-4, atol=1e-4
        )


def test_without_conversion_the_standardised_bands_go_in_unchanged(tmp_path: Path) -> None:
    write_weights(tmp_path / "weights.pth")
    net = build(tmp_path / "weights.pth", "s2", match_normalization=False)
    assert isinstance(net, timm.models.ResNet)


def test_zero_channel_for_sar_bands_of_s1s2(tmp_path: Path) -> None:
    source = write_weights(tmp_path / "weights.pth")
    net = build(tmp_path / "weights.pth", "s1s2", unmatched_bands="zero")
    weight = net.net.state_dict()["conv1.weight"]
    assert weight.shape[1] == 12 and not weight[:, :2].any()  # VV, VH start at zero
    torch.testing.assert_close(
        weight[:, 2:], source["conv1.weight"][:, [1, 2, 3, 4, 5, 6, 7, 8, 11, 12]]
    )
    assert net.scale.flatten()[:2].tolist() == [1.0, 1.0] and not net.shift.flatten()[:2].any()


def test_wrong_architecture_or_file_is_a_clear_error(tmp_path: Path) -> None:
    write_weights(tmp_path / "r18.pth", name="resnet18")
    with pytest.raises(ValueError, match=r"does not fit model.net.name=ResNet: size mismatch"):
        build(tmp_path / "r18.pth", "s2", name="resnet26")  # bottleneck blocks: other shapes
    with pytest.raises(
        ValueError, match=r"does not fit model.net.name=ResNet: missing \['layer1.2"
    ):
        build(tmp_path / "r18.pth", "s2", name="resnet34")  # more blocks than the file has
    with pytest.raises(FileNotFoundError, match=r"model.net.weights_path: no such file"):
        build(tmp_path / "absent.pth", "s2")
    torch.save({"conv1.weight": torch.zeros(64, 12, 7, 7)}, tmp_path / "bands12.pth")
    with pytest.raises(ValueError, match=r"exactly one convolution with 13 input channels"):
        build(tmp_path / "bands12.pth", "s2")


def test_pretrained_weights_need_named_bands() -> None:
    with pytest.raises(ValueError, match=r"model.net.bands=None: TorchGeo weights are mapped"):
        create_torchgeo_backbone(weights="x", weights_bands=SSL4EO_BANDS, bands=None)
    with pytest.raises(ValueError, match=r"model.net.bands=s2 has 10 bands, the data 12"):
        create_torchgeo_backbone(weights="x", weights_bands=SSL4EO_BANDS, bands="s2", in_chans=12)


def test_normalisation_is_read_from_torchgeo_style_transforms() -> None:
    """TorchGeo's transforms for SSL4EO-S12 (torchvision v2 steps), and a chained pair."""
    ssl4eo = nn.Sequential(v2.Resize((256, 256)), v2.CenterCrop(224), v2.Normalize([0], [10000]))
    mean, std = torchgeo_normalization(ssl4eo)
    assert mean.tolist() == [0.0] and std.tolist() == [10000.0]
    chained = nn.Sequential(v2.Normalize([3.0], [85.0]), v2.Normalize([0.5], [0.25]))
    mean, std = torchgeo_normalization(chained)  # ((x - 3) / 85 - 0.5) / 0.25
    assert mean.tolist() == pytest.approx([3.0 + 0.5 * 85.0]) and std.tolist() == [85.0 * 0.25]
    assert torchgeo_normalization(nn.Sequential(v2.CenterCrop(224))) is None


def test_model_config_trains_on_the_reben_fixture_offline(make_cfg, tmp_path: Path) -> None:
    """model=resnet18_s2_moco with weights_path: composes, maps dataset.datamodule.bands, runs."""
    write_weights(tmp_path / "weights.pth", name="resnet18")
    overrides = [o for o in DATASET_TINY["benv2"] if not o.startswith("model.net.name")]
    cfg = make_cfg(
        *overrides, "model=resnet18_s2_moco", f"model.net.weights_path={tmp_path / 'weights.pth'}",
        "method=an", "logger=none", "+trainer.fast_dev_run=true", tiny=False,
    )  # fmt: skip
    assert cfg.model.net.bands == "s2"
    module = builders.build_module(cfg, builders.build_datamodule(cfg).info())
    assert isinstance(module.net, WeightsInputAdapter)
    from spml_rs.train import train

    assert 0.0 <= float(train(cfg)["test/mAP_macro"]) <= 1.0


def test_model_config_without_band_names_builds_the_architecture(make_cfg) -> None:
    cfg = make_cfg("model=resnet50_s2_moco", "model.net.pretrained=false", tiny=False)
    assert cfg.model.net.bands is None  # the synthetic dataset names no bands
    net = builders.build_module(cfg, builders.build_datamodule(cfg).info()).net
    assert isinstance(net, timm.models.ResNet)
