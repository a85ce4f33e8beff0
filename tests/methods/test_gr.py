"""GR loss (Chen et al., IJCAI 2024): formula, schedule, reducing cases, gradient signs."""

from __future__ import annotations

import math

import pytest
import torch
from loss_testing import (
    an_value,
    assert_finite_at_extremes,
    logit_grad,
    make_batch,
    make_info,
    make_logits,
)

from spml_rs.methods.gr import GeneralizedRobustLoss, box_cox, linear_schedule
from spml_rs.train import train
from spml_testing import DATASET_TINY

INF = math.inf


def naive_gr(logits, target, w, b, mu, sigma, q2, q3):
    """The paper's per-entry loss written out with Python floats, then the mean."""
    total = 0.0
    for x, z in zip(logits.flatten().tolist(), target.flatten().tolist(), strict=True):
        p = 1.0 / (1.0 + math.exp(-x))
        if z == 1:
            total += -math.log(p)
        elif z == 0:
            total += -math.log(1.0 - p)
        else:
            k = 1.0 / (1.0 + math.exp(-(w * p + b)))
            v = math.exp(-((p - mu) ** 2) / (2 * sigma**2))
            l2 = -math.log(p) if q2 == 0 else (1 - p**q2) / q2
            l3 = -math.log(1 - p) if q3 == 0 else (1 - (1 - p) ** q3) / q3
            total += v * (k * l2 + (1 - k) * l3)
    return torch.tensor(total / target.numel(), dtype=torch.float64)


@pytest.mark.parametrize("epoch", [0, 3, 9])
def test_value_matches_formula_with_the_paper_defaults(info, epoch: int) -> None:
    loss = GeneralizedRobustLoss(info=info)
    loss.set_epoch(epoch, 10)
    batch, logits = make_batch(1), make_logits(1)
    batch["target"][0, :2] = 0  # observed negatives (label mode full) too
    t = epoch / 10
    expected = naive_gr(
        logits.detach(), batch["target"], w=2.0 * t, b=-2.0, mu=0.5 + 0.3 * t,
        sigma=2.0 - 1.5 * t, q2=0.01, q3=1.0,
    )  # fmt: skip
    torch.testing.assert_close(loss(logits, batch)["loss"].double(), expected)


def test_schedule_is_linear_from_start_to_end_over_the_epochs(info) -> None:
    loss = GeneralizedRobustLoss(info=info)
    expected = {0: (0.0, 0.5, 2.0), 5: (1.0, 0.65, 1.25), 9: (1.8, 0.77, 0.65)}
    for epoch, (w, mu, sigma) in expected.items():
        loss.set_epoch(epoch, 10)
        s = loss.schedule()
        assert (s["w"], s["b"], s["mu"], s["sigma"]) == pytest.approx((w, -2.0, mu, sigma))
    assert linear_schedule((-INF, -INF), 4, 10) == -INF  # constants stay exact, even infinite


def test_reducing_case_is_an(info) -> None:
    """k = 0 (b = -inf), v = 1 (sigma = inf), L3 = -log(1 - p) (q3 = 0): AN."""
    loss = GeneralizedRobustLoss(info=info, b=(-INF, -INF), sigma=(INF, INF), q3=0.0)
    loss.set_epoch(4, 10)
    batch, logits = make_batch(2), make_logits(2)
    torch.testing.assert_close(
        loss(logits, batch)["loss"].double(), an_value(logits.detach(), batch["target"])
    )


def test_reducing_case_is_label_smoothing_of_the_unknowns(info) -> None:
    """Constant k = eps, v = 1, q2 = q3 = 0: BCE(p; eps) on unknowns, -log p on positives."""
    eps = 0.1
    loss = GeneralizedRobustLoss(
        info=info, w=(0.0, 0.0), b=(math.log(eps / (1 - eps)),) * 2, sigma=(INF, INF),
        q2=0.0, q3=0.0,
    )  # fmt: skip
    batch, logits = make_batch(3), make_logits(3)
    y = torch.where(batch["target"] == 1, 1.0, eps).double()
    p = torch.sigmoid(logits.detach().double())
    expected = (-(y * torch.log(p) + (1 - y) * torch.log(1 - p))).mean()
    torch.testing.assert_close(loss(logits, batch)["loss"].double(), expected)


def test_box_cox_tends_to_cross_entropy_as_q_goes_to_zero() -> None:
    log_p = torch.log(torch.tensor([1e-6, 0.1, 0.5, 0.99]))
    torch.testing.assert_close(box_cox(log_p, 1e-7), box_cox(log_p, 0.0), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(box_cox(log_p, 1.0), 1 - log_p.exp())  # MAE


def test_unknown_gradient_pulls_toward_the_soft_pseudo_label(info) -> None:
    """First epoch, paper defaults: k = sigmoid(-2) for every p, q2 = 0.01, q3 = 1. The unknown
    logit's gradient is v (1 - p) [(1 - k) p - k p^q2]: negative (pulled up) below
    p* = (k / (1 - k))^(1 / (1 - q2)) and positive (pushed down) above it."""
    loss = GeneralizedRobustLoss(info=info)
    loss.set_epoch(0, 10)
    batch = make_batch(4)
    k = 1 / (1 + math.exp(2.0))
    p_star = (k / (1 - k)) ** (1 / 0.99)
    logits = torch.linspace(-6.0, 6.0, 48).view(8, 6)
    grad = logit_grad(loss, logits, batch)
    unknown = batch["target"] == -1
    p = torch.sigmoid(logits)
    below, above = unknown & (p < p_star * 0.98), unknown & (p > p_star * 1.02)
    assert below.sum() >= 5 and above.sum() >= 5
    assert (grad[below] < 0).all() and (grad[above] > 0).all()
    assert (grad[batch["target"] == 1] < 0).all()  # observed positives: -log p


def test_without_pseudo_labels_every_unknown_is_pushed_down(info) -> None:
    loss = GeneralizedRobustLoss(info=info, b=(-INF, -INF))
    loss.set_epoch(7, 10)
    batch = make_batch(5)
    grad = logit_grad(loss, make_logits(5), batch)
    assert (grad[batch["target"] == -1] > 0).all()


def test_pseudo_labels_and_weights_are_constants_for_the_gradient(info) -> None:
    """d loss / d x on an unknown entry is v [k dL2/dx + (1 - k) dL3/dx] with k, v fixed."""
    loss = GeneralizedRobustLoss(info=info)
    loss.set_epoch(6, 10)
    batch, logits = make_batch(6), make_logits(6, scale=1.0)
    grad = logit_grad(loss, logits, batch)
    x = logits.detach().double()
    p = torch.sigmoid(x)
    s = loss.schedule()
    k = torch.sigmoid(s["w"] * p + s["b"])
    v = torch.exp(-((p - s["mu"]) ** 2) / (2 * s["sigma"] ** 2))
    by_hand = v * (-k * p**0.01 * (1 - p) + (1 - k) * (1 - p) * p) / batch["target"].numel()
    unknown = batch["target"] == -1
    torch.testing.assert_close(grad[unknown].double(), by_hand[unknown], rtol=1e-4, atol=1e-8)


def test_logged_parts_are_the_mean_pseudo_label_and_weight(info) -> None:
    loss = GeneralizedRobustLoss(info=info)
    loss.set_epoch(0, 10)
    batch = make_batch()
    parts = loss(torch.zeros(8, 6), batch)  # p = 0.5: k = sigmoid(-2), v = 1 (mu_0 = 0.5)
    assert float(parts["pseudo_label"]) == pytest.approx(1 / (1 + math.exp(2.0)))
    assert float(parts["weight"]) == pytest.approx(1.0)


@pytest.mark.parametrize("epoch", [0, 9])
def test_finite_at_extreme_logits(info, epoch: int) -> None:
    loss = GeneralizedRobustLoss(info=info)
    loss.set_epoch(epoch, 10)
    batch = make_batch()
    batch["target"][0, :2] = 0
    assert_finite_at_extremes(loss, batch)
    assert_finite_at_extremes(GeneralizedRobustLoss(info=info, q2=0.0, q3=0.0), batch)


def test_no_state_the_schedule_follows_the_trainer_epoch() -> None:
    """A resumed run sets the epoch again: a fresh loss at epoch 6 equals one that lived
    through epochs 0..6, and there is nothing else to checkpoint."""
    info = make_info()
    lived, fresh = GeneralizedRobustLoss(info=info), GeneralizedRobustLoss(info=info)
    batch, logits = make_batch(), make_logits()
    for epoch in range(7):
        lived.set_epoch(epoch, 10)
        lived(logits, batch)
    fresh.set_epoch(6, 10)
    assert lived.state_dict() == {} == fresh.state_dict()
    torch.testing.assert_close(fresh(logits, batch)["loss"], lived(logits, batch)["loss"])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"sigma": (2.0, 0.0)}, r"sigma must be > 0"),
        ({"q2": -0.1}, r"q2 must lie in \[0, 1\]"),
        ({"q3": 1.5}, r"q3 must lie in \[0, 1\]"),
        ({"w": (0.0, 1.0, 2.0)}, r"w must be \[start, end\]"),
        ({"mu": (0.5, math.nan)}, r"mu must not be NaN"),
    ],
)
def test_bad_hyperparameters_are_refused(info, kwargs, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        GeneralizedRobustLoss(info=info, **kwargs)


@pytest.mark.parametrize("dataset", sorted(DATASET_TINY))
def test_fast_dev_run_on_every_dataset_preset(make_cfg, dataset: str) -> None:
    cfg = make_cfg(
        *DATASET_TINY[dataset], "method=gr", "logger=none", "+trainer.fast_dev_run=true",
        tiny=False,
    )  # fmt: skip
    metrics = train(cfg)
    assert 0.0 <= float(metrics["test/mAP_macro"]) <= 1.0
