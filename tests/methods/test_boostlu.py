"""BoostLU (Kim et al., CVPR 2023): the boosted CAM head against its formula, its gradient,
the limit alpha = 1, checkpoints, and a short run of every BoostLU config on every dataset."""

from __future__ import annotations

import io

import pytest
import torch
from loss_testing import EXTREME_LOGITS, make_batch, make_info

from spml_rs import builders
from spml_rs.heads import BoostedCAMHead, boost_lu
from spml_rs.methods.large_loss import LargeLossRejection
from spml_rs.train import train
from spml_testing import DATASET_TINY

BOOSTLU_METHODS = ["boostlu", "boostlu_ll_r", "boostlu_ll_ct", "boostlu_ll_cp"]


def seeded_head(alpha: float, num_features: int = 5, num_classes: int = 6) -> BoostedCAMHead:
    torch.manual_seed(0)
    head = BoostedCAMHead(num_features=num_features, num_classes=num_classes, alpha=alpha)
    with torch.no_grad():  # bias of both signs, so some CAM values are positive and some not
        head.classifier.bias.copy_(torch.linspace(-1.0, 1.0, num_classes))
    return head


def naive_boosted_logits(head: BoostedCAMHead, features: torch.Tensor) -> torch.Tensor:
    """CAM by explicit sums over channels, boost, average over positions, one entry at a time."""
    weight = head.classifier.weight.detach().double()[:, :, 0, 0]
    bias = head.classifier.bias.detach().double()
    batch, channels, height, width = features.shape
    out = torch.zeros(batch, weight.shape[0], dtype=torch.float64)
    for b in range(batch):
        for c in range(weight.shape[0]):
            total = 0.0
            for h in range(height):
                for w in range(width):
                    cam = bias[c] + sum(
                        weight[c, d] * features[b, d, h, w] for d in range(channels)
                    )
                    total += head.alpha * cam if cam > 0 else cam
            out[b, c] = total / (height * width)
    return out


def test_boost_lu_is_alpha_times_positive_part_plus_negative_part() -> None:
    x = torch.tensor([-3.0, -0.5, 0.0, 0.25, 4.0])
    expected = torch.tensor([-3.0, -0.5, 0.0, 1.25, 20.0])
    torch.testing.assert_close(boost_lu(x, 5.0), expected)
    torch.testing.assert_close(boost_lu(x, 5.0), x + 4.0 * torch.relu(x))
    torch.testing.assert_close(boost_lu(x, 1.0), x)


@pytest.mark.parametrize("alpha", [1.0, 5.0])
def test_head_value_matches_naive_cam_computation(alpha: float) -> None:
    head = seeded_head(alpha)
    features = torch.randn(3, 5, 4, 3, generator=torch.Generator().manual_seed(1))
    expected = naive_boosted_logits(head, features.double())
    torch.testing.assert_close(head(features).double(), expected, rtol=1e-5, atol=1e-6)


def test_alpha_one_is_the_plain_cam_head_gap_then_linear() -> None:
    head = seeded_head(1.0)
    features = torch.randn(2, 5, 3, 3, generator=torch.Generator().manual_seed(2))
    linear = torch.nn.functional.linear(
        features.mean(dim=(2, 3)), head.classifier.weight[:, :, 0, 0], head.classifier.bias
    )
    torch.testing.assert_close(head(features), linear, rtol=1e-5, atol=1e-6)


def test_logit_gradient_is_alpha_over_positions_on_positive_cam_values() -> None:
    cam = torch.tensor([[[[2.0, -1.0], [0.5, -0.2]]]], requires_grad=True)  # (1, 1, 2, 2)
    boost_lu(cam, 5.0).mean(dim=(2, 3)).sum().backward()
    assert cam.grad is not None
    torch.testing.assert_close(cam.grad, torch.tensor([[[[5.0, 1.0], [5.0, 1.0]]]]) / 4)


def test_unknown_entries_are_pushed_down_and_positive_attributions_boosted() -> None:
    """With the LL loss on top (rate 0: AN), the gradient on an unknown class's CAM is
    positive everywhere (pushed down) and alpha times larger where the CAM is positive."""
    info = make_info()
    head, loss = seeded_head(5.0), LargeLossRejection(info=info, delta_rel=0.0)
    features = torch.randn(8, 5, 3, 3, generator=torch.Generator().manual_seed(3))
    cam = head.class_activation_map(features).detach().requires_grad_(True)
    batch = make_batch()
    loss(boost_lu(cam, head.alpha).mean(dim=(2, 3)), batch)["loss"].backward()
    assert cam.grad is not None
    unknown = (batch["target"] == -1)[:, :, None, None].expand_as(cam)
    positive = (batch["target"] == 1)[:, :, None, None].expand_as(cam)
    assert (cam.grad[unknown] > 0).all() and (cam.grad[positive] < 0).all()
    # per entry, the positions with CAM > 0 get exactly alpha times the others' gradient
    mixed = 0
    for grads, values in zip(cam.grad.flatten(0, 1), cam.detach().flatten(0, 1), strict=True):
        up, down = values > 0, values <= 0
        if up.any() and down.any():
            mixed += 1
            torch.testing.assert_close(grads[up], torch.full_like(grads[up], grads[down][0] * 5))
    assert mixed >= 5  # the check ran on entries whose CAM has both signs


@pytest.mark.parametrize("scale", EXTREME_LOGITS)
def test_finite_values_and_gradients_at_extreme_activations(scale: float) -> None:
    """Feature maps of +-1e4 give logits of order 1e4 x alpha: loss and gradients stay finite."""
    head = seeded_head(5.0)
    features = torch.full((8, 5, 2, 2), scale)
    features[::2] *= -1  # both signs of CAM in one batch
    loss = LargeLossRejection(info=make_info(), delta_rel=10.0)
    loss.set_epoch(2, 10)
    logits = head(features)
    assert torch.isfinite(logits).all() and logits.abs().max() > 10
    value = loss(logits, make_batch())["loss"]
    value.backward()
    assert torch.isfinite(value)
    for parameter in head.parameters():
        assert parameter.grad is not None and torch.isfinite(parameter.grad).all()


def test_alpha_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match=r"alpha must be >= 1"):
        BoostedCAMHead(num_features=4, num_classes=2, alpha=0.5)


def test_the_boost_also_applies_in_eval_mode(make_cfg) -> None:
    cfg = make_cfg("method=boostlu_ll_r")
    net = builders.build_module(cfg, builders.build_datamodule(cfg).info()).net.eval()
    image = torch.randn(4, 10, 32, 32, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        features = net.backbone(image)
        cam = net.head.class_activation_map(features)
        assert (cam > 0).any() and (cam < 0).any()
        torch.testing.assert_close(net(image), boost_lu(cam, 5.0).mean(dim=(2, 3)))
        assert not torch.allclose(net(image), cam.mean(dim=(2, 3)))


def test_head_weights_survive_a_checkpoint_round_trip(make_cfg) -> None:
    cfg = make_cfg("method=boostlu_ll_cp")
    info = builders.build_datamodule(cfg).info()
    torch.manual_seed(0)
    trained = builders.build_module(cfg, info)
    torch.manual_seed(1)
    fresh = builders.build_module(cfg, info)
    buffer = io.BytesIO()
    torch.save(trained.state_dict(), buffer)
    buffer.seek(0)
    fresh.load_state_dict(torch.load(buffer))
    assert {"net.head.classifier.weight", "loss.flipped"} <= set(fresh.state_dict())
    image = torch.randn(2, 10, 32, 32)
    torch.testing.assert_close(fresh.eval()(image), trained.eval()(image))


@pytest.mark.parametrize("dataset", sorted(DATASET_TINY))
@pytest.mark.parametrize("method", BOOSTLU_METHODS)
def test_fast_dev_run_on_every_dataset_preset(make_cfg, method: str, dataset: str) -> None:
    cfg = make_cfg(
        *DATASET_TINY[dataset], f"method={method}", "logger=none", "+trainer.fast_dev_run=true",
        tiny=False,
    )  # fmt: skip
    metrics = train(cfg)
    assert 0.0 <= float(metrics["test/mAP_macro"]) <= 1.0
