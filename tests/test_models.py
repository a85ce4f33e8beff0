"""The backbone factory and its head extension point (model/head): default = timm's model."""

from __future__ import annotations

import functools

import pytest
import timm
import torch
from torch import nn

from spml_rs import builders
from spml_rs.heads import BoostedCAMHead, FeatureMapClassifier
from spml_rs.models import create_backbone


def cam_head(alpha: float = 1.0) -> functools.partial[BoostedCAMHead]:
    return functools.partial(BoostedCAMHead, alpha=alpha)


def test_default_head_is_timms_model_with_the_same_state_dict_keys() -> None:
    """Existing checkpoints load: no head means exactly timm's classifier."""
    built = create_backbone(name="test_resnet", in_chans=10, num_classes=19)
    reference = timm.create_model("test_resnet", in_chans=10, num_classes=19)
    assert type(built) is type(reference)
    assert list(built.state_dict()) == list(reference.state_dict())
    assert {k: v.shape for k, v in built.state_dict().items()}["fc.weight"] == (19, 96)


def test_head_gets_the_last_feature_map_and_its_width() -> None:
    seen: dict[str, object] = {}

    class Recorder(nn.Module):
        def __init__(self, *, num_features: int, num_classes: int) -> None:
            super().__init__()
            seen.update(num_features=num_features, num_classes=num_classes)
            self.fc = nn.Linear(num_features, num_classes)

        def forward(self, features: torch.Tensor) -> torch.Tensor:
            seen["shape"] = tuple(features.shape)
            return self.fc(features.mean(dim=(2, 3)))

    net = create_backbone(name="resnet10t", in_chans=4, num_classes=7, head=Recorder, stem_stride=1)
    assert isinstance(net, FeatureMapClassifier)
    assert net(torch.zeros(2, 4, 32, 32)).shape == (2, 7)
    # resnet10t: 512 channels; stride-1 stem without max-pool: 32 px / 8 = 4 x 4 positions
    assert seen == {"num_features": 512, "num_classes": 7, "shape": (2, 512, 4, 4)}


def test_cam_head_with_alpha_one_equals_timms_head_up_to_the_weight_layout() -> None:
    torch.manual_seed(0)
    timm_net = create_backbone(name="test_resnet", in_chans=3, num_classes=5).eval()
    cam_net = create_backbone(name="test_resnet", in_chans=3, num_classes=5, head=cam_head(1.0))
    assert isinstance(cam_net, FeatureMapClassifier)
    backbone = {k: v for k, v in timm_net.state_dict().items() if not k.startswith("fc.")}
    cam_net.backbone.load_state_dict(backbone)
    classifier = cam_net.head.classifier
    assert isinstance(classifier, nn.Conv2d)
    with torch.no_grad():
        classifier.weight.copy_(timm_net.fc.weight.view(5, -1, 1, 1))  # (C, D) -> (C, D, 1, 1)
        classifier.bias.copy_(timm_net.fc.bias)
    image = torch.randn(3, 3, 48, 48)
    torch.testing.assert_close(cam_net.eval()(image), timm_net(image), rtol=1e-5, atol=1e-5)


def test_non_spatial_backbone_output_is_a_clear_error() -> None:
    net = FeatureMapClassifier(
        backbone=nn.Flatten(), head=BoostedCAMHead(num_features=12, num_classes=2)
    )
    with pytest.raises(ValueError, match=r"needs a \(B, D, H, W\) feature map.*model/head=timm"):
        net(torch.zeros(2, 3, 2, 2))


@pytest.mark.parametrize(
    ("overrides", "alpha"),
    [
        (("method=an",), None),
        (("method=boostlu_ll_r",), 5.0),
        (("method=boostlu_ll_ct", "model=resnet50"), 5.0),
        (("model=resnet50", "method=boostlu"), 5.0),
        (("method=boostlu_ll_cp", "model/head=cam"), 1.0),  # the command line wins
        (("method=boostlu_ll_r", "model/head=timm"), None),
        (("method=an", "model/head=boostlu"), 5.0),  # any method with the head
        (("method=boostlu", "model.net.head.alpha=2.5"), 2.5),
    ],
)
def test_method_configs_choose_the_head(make_cfg, overrides: tuple[str, ...], alpha) -> None:
    cfg = make_cfg(*overrides, tiny=False)  # composition only (TINY renames the model)
    head = cfg.model.net.head
    assert (head is None) if alpha is None else (head.alpha == alpha)
    if "model=resnet50" in overrides:
        assert cfg.model.net.name == "resnet50"


@pytest.mark.parametrize("experiment", ["benv2_random", "aid_manual"])
def test_experiment_presets_keep_the_methods_head(make_cfg, experiment: str) -> None:
    cfg = make_cfg(f"experiment={experiment}", "method=boostlu_ll_r", tiny=False)
    assert cfg.model.net.name == "resnet50"  # the preset's model ...
    assert cfg.model.net.head.alpha == 5.0  # ... with the method's head
    assert cfg.method.loss._target_.endswith("LargeLossRejection")


def test_built_module_has_the_boosted_head(make_cfg) -> None:
    cfg = make_cfg("method=boostlu_ll_r")
    module = builders.build_module(cfg, builders.build_datamodule(cfg).info())
    assert isinstance(module.net, FeatureMapClassifier)
    assert isinstance(module.net.head, BoostedCAMHead) and module.net.head.alpha == 5.0
    assert module(torch.zeros(2, 10, 32, 32)).shape == (2, 19)
