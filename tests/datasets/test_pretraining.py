"""The pretraining world: its own classes, signatures and textures; the backbone file it leaves."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from spml_rs.data.classes import AID17_CLASSES, BEN19_CLASSES
from spml_rs.data.pretraining import PRETRAIN_CLASSES, backbone_path, backbone_state_dict
from spml_rs.data.synthetic import SyntheticDataModule
from spml_rs.data.synthetic_scenes import PRESETS, SceneWorld, generate_split
from spml_rs.heads import BoostedCAMHead
from spml_rs.models import create_backbone

PRETRAIN = PRESETS["pretrain"]
TARGET = PRESETS["multispectral"]


def test_the_pretraining_world_shares_no_class_with_a_target() -> None:
    assert PRETRAIN.class_names == PRETRAIN_CLASSES and len(set(PRETRAIN_CLASSES)) == 32
    assert not set(PRETRAIN_CLASSES) & (set(BEN19_CLASSES) | set(AID17_CLASSES))
    assert PRETRAIN.num_bands == TARGET.num_bands  # its backbone takes the target's 10 bands
    assert len(PRETRAIN.families) == 32 and max(PRETRAIN.families) == 11
    members = {c for _, classes in PRETRAIN.landscapes for c in classes}
    assert members == set(range(32))  # every class occurs in some landscape


def family_shape_correlation(pretrain: SceneWorld, target: SceneWorld) -> float:
    """Mean correlation of the band profiles (shape, not level) of every pretraining class
    with every target class of the same family index."""
    pairs = [
        (pretrain.signature[i], target.signature[j])
        for i, fi in enumerate(PRETRAIN.families)
        for j, fj in enumerate(TARGET.families)
        if fi == fj
    ]
    return float(np.mean([np.corrcoef(a, b)[0, 1] for a, b in pairs]))


@pytest.mark.parametrize("seed", [0, 1, 3])
def test_its_signatures_are_not_the_targets_at_the_same_seed(seed: int) -> None:
    """With the target's world stream, the same seed would repeat the target's family curves
    (numpy fills them row by row from the same draws): the shapes would correlate ~0.95.
    The pretraining world's own stream leaves them unrelated."""
    target = SceneWorld(TARGET, seed)
    leaky = SceneWorld(replace(PRETRAIN, world_stream=TARGET.world_stream), seed)
    assert family_shape_correlation(leaky, target) > 0.85
    assert abs(family_shape_correlation(SceneWorld(PRETRAIN, seed), target)) < 0.4
    textures = SceneWorld(PRETRAIN, seed).texture_amplitude[: len(TARGET.class_names)]
    assert not np.allclose(textures, target.texture_amplitude)


def test_the_target_presets_keep_their_world() -> None:
    """The world stream field did not change what the target presets draw."""
    world = SceneWorld(TARGET, 0)
    rng = np.random.default_rng([0, 0xC0FFEE])
    families = max(TARGET.families) + 1
    curves = np.cumsum(rng.normal(0.0, 0.25, (families, TARGET.num_bands)), axis=1)
    curves += rng.uniform(0.3, 1.5, (families, 1))
    deviation = rng.normal(0.0, TARGET.class_spread, (len(TARGET.class_names), TARGET.num_bands))
    expected = np.clip(curves[list(TARGET.families)] + deviation, 0.05, None)
    np.testing.assert_array_equal(world.signature, expected)


def test_pretraining_scenes_have_full_multi_labels(tmp_path: Path) -> None:
    scenes = generate_split(replace(PRETRAIN, num_train=300), seed=0, split="train", count=300)
    assert scenes.images.shape == (300, 10, 32, 32) and scenes.labels.shape == (300, 32)
    assert scenes.labels.sum(axis=1).min() >= 1 and 2.0 <= scenes.labels.sum(axis=1).mean() <= 4
    assert scenes.labels.mean(axis=0).min() > 0.01  # every class is seen in pretraining
    module = SyntheticDataModule(
        preset="pretrain", num_train=64, num_val=16, num_test=16, root=str(tmp_path),
        label_mode="full",
    )  # fmt: skip
    assert module.in_chans == 10 and module.info().class_names == PRETRAIN_CLASSES


def network_state(model: torch.nn.Module, prefix: str = "net.") -> dict[str, torch.Tensor]:
    """A LightningModule-like state dict: the network under ``prefix`` and a loss buffer."""
    state = {f"{prefix}{k}": v for k, v in model.state_dict().items()}
    return {**state, "loss.score_state": torch.zeros(3, 4)}


def test_backbone_state_dict_strips_the_prefix_and_drops_the_classifier() -> None:
    model = create_backbone(name="test_resnet", in_chans=10, num_classes=32)
    exported = backbone_state_dict(network_state(model), prefix="net.", classifier="fc")
    expected = {k for k in model.state_dict() if not k.startswith("fc.")}
    assert set(exported) == expected and "loss.score_state" not in exported
    for key, tensor in exported.items():
        assert torch.equal(tensor, model.state_dict()[key])


def test_backbone_state_dict_refuses_other_layouts() -> None:
    model = create_backbone(name="test_resnet", in_chans=10, num_classes=32)
    with pytest.raises(ValueError, match=r"no key starting with 'net\.'"):
        backbone_state_dict(network_state(model, "model."), prefix="net.", classifier="fc")
    with pytest.raises(ValueError, match="expected a classifier 'head'"):
        backbone_state_dict(network_state(model), prefix="net.", classifier="head")


@pytest.mark.parametrize("head", [None, "boostlu"])
def test_a_10_band_backbone_file_loads_exactly_through_weights_path(
    tmp_path: Path, head: str | None
) -> None:
    """timm adapts a first convolution it believes to be 3-band and drops the classifier
    (strict=False): every other tensor must arrive unchanged, the 10-band stem included."""
    pretrained = create_backbone(name="resnet10t", in_chans=10, num_classes=32)
    exported = backbone_state_dict(network_state(pretrained), prefix="net.", classifier="fc")
    path = backbone_path(tmp_path, "resnet10t")
    path.parent.mkdir(parents=True)
    torch.save(exported, path)
    factory = BoostedCAMHead if head == "boostlu" else None
    model = create_backbone(
        name="resnet10t", in_chans=10, num_classes=19, pretrained=True, weights_path=str(path),
        head=factory,
    )  # fmt: skip
    state = model.state_dict()
    prefix = "backbone." if head else ""
    for key, tensor in exported.items():
        assert torch.equal(state[prefix + key], tensor), key
    assert state[prefix + "conv1.0.weight"].shape[1] == 10
    if head is None:
        assert state["fc.weight"].shape == (19, pretrained.num_features)
    fresh = create_backbone(name="resnet10t", in_chans=10, num_classes=19)
    assert not torch.equal(fresh.state_dict()["conv1.0.weight"], exported["conv1.0.weight"])
