"""GC loss: gradients against the closed forms, Mixup, temporal EMA, thresholds, state."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from spml_rs.dataset_info import DatasetInfo
from spml_rs.methods.adagc import AdaGCLoss, GCTargets, adagc_batch, mixup, sample_mixup

B, C, N = 6, 5, 20


def make_info(num_samples: int = N, num_classes: int = C) -> DatasetInfo:
    names = tuple(f"c{i}" for i in range(num_classes))
    return DatasetInfo("toy", names, 3, num_samples, 1.5)


def single_positive_targets(generator: torch.Generator) -> torch.Tensor:
    target = torch.full((B, C), -1, dtype=torch.int8)
    target[torch.arange(B), torch.randint(0, C, (B,), generator=generator)] = 1
    return target


def stage2_batch(loss: AdaGCLoss, seed: int = 0) -> tuple[torch.Tensor, dict, torch.Tensor]:
    """(logits requiring grad, batch with GC keys, pseudo-labels t (B, C))."""
    g = torch.Generator().manual_seed(seed)
    index = torch.randperm(N, generator=g)[:B]
    target = single_positive_targets(g)
    probs = torch.rand(B, C, generator=g) * 0.9 + 0.05
    loss.update_scores(index, probs, momentum=0.0)
    batch = {"index": index, "target": target}
    loss.calibrated(index, target).to_batch(batch)
    logits = (torch.randn(B, C, generator=g) * 1.5).requires_grad_(True)
    return logits, batch, probs


def logit_gradient(loss: AdaGCLoss, logits: torch.Tensor, batch: dict) -> torch.Tensor:
    (grad,) = torch.autograd.grad(loss(logits, batch)["loss"], logits)
    return grad * B * C  # undo the mean over the B*C entries


def test_stage1_is_assume_negative() -> None:
    loss = AdaGCLoss(info=make_info())
    logits, batch, _ = stage2_batch(loss)
    assert not loss.calibrating  # a new loss starts in the AN warm-up
    p = torch.sigmoid(logits.detach())
    expected = p - (batch["target"] == 1).float()
    assert torch.allclose(logit_gradient(loss, logits, batch), expected, atol=1e-6)


def test_target_form_gradient_is_p_minus_t() -> None:
    loss = AdaGCLoss(info=make_info(), form="target")
    logits, batch, t = stage2_batch(loss)
    loss.start_calibration()
    p = torch.sigmoid(logits.detach())
    positive = batch["target"] == 1
    expected = torch.where(positive, p - 1.0, p - t)
    assert torch.allclose(logit_gradient(loss, logits, batch), expected, atol=1e-6)


@pytest.mark.parametrize("lam", [0.5, 2.0])
def test_elr_form_gradient_matches_closed_form(lam: float) -> None:
    loss = AdaGCLoss(info=make_info(), form="elr", lam=lam)
    logits, batch, t = stage2_batch(loss)
    loss.start_calibration()
    p = torch.sigmoid(logits.detach())
    positive = batch["target"] == 1
    calibrated = p - lam * t * p * (1 - p) / (1 - t * p)
    expected = torch.where(positive, p - 1.0, calibrated)
    assert torch.allclose(logit_gradient(loss, logits, batch), expected, atol=1e-5)
    # the calibration cancels the push-down where the teacher believes positive
    confident = (~positive) & (t > 0.8) & (p < 0.5)
    assert (expected[confident] < p[confident]).all()


def test_thresholds_harden_confident_pseudo_labels() -> None:
    loss = AdaGCLoss(info=make_info(), tau_pos=0.7, tau_neg=0.2)
    index = torch.arange(3)
    loss.update_scores(index, torch.tensor([[0.9, 0.5, 0.1, 0.75, 0.2]] * 3), momentum=0.0)
    target = torch.tensor([[1, -1, -1, -1, -1]] * 3, dtype=torch.int8)
    gc = loss.calibrated(index, target)
    assert gc.target[0].tolist() == pytest.approx([1.0, 0.5, 0.0, 1.0, 0.0])
    with pytest.raises(ValueError, match="tau_neg < tau_pos"):
        AdaGCLoss(info=make_info(), tau_pos=0.3, tau_neg=0.5)
    with pytest.raises(ValueError, match="form"):
        AdaGCLoss(info=make_info(), form="nope")


def test_temporal_ema_is_bias_corrected() -> None:
    loss = AdaGCLoss(info=make_info())
    index = torch.tensor([2, 7])
    first, second = torch.rand(2, C), torch.rand(2, C)
    loss.update_scores(index, first, momentum=0.9)
    assert torch.allclose(loss.scores(index), first)  # first visit: the prediction itself
    loss.update_scores(index, second, momentum=0.9)
    expected = (0.9 * 0.1 * first + 0.1 * second) / (1 - 0.9**2)
    assert torch.allclose(loss.scores(index), expected, atol=1e-6)
    assert loss.scores(torch.tensor([0])).abs().sum() == 0  # never seen


def test_mixup_of_multilabel_targets() -> None:
    targets = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.2], [0.0, 0.0, 1.0]])
    perm = torch.tensor([1, 2, 0])
    mixed = mixup(targets, perm, 0.7)
    assert torch.allclose(mixed[0], torch.tensor([0.7, 0.3, 0.3 * 0.2]))
    assert torch.allclose(mixed[1], torch.tensor([0.0, 0.7, 0.3 * 1.0 + 0.7 * 0.2]))
    # every class present in either image keeps a share; lambda = 1 is the identity
    assert ((mixed > 0) == ((targets > 0) | (targets[perm] > 0))).all()
    assert torch.equal(mixup(targets, perm, 1.0), targets)
    lam, order = sample_mixup(8, 1.0, keep_larger=True, rng=np.random.default_rng(0))
    assert 0.5 <= lam <= 1.0 and sorted(order.tolist()) == list(range(8))
    again = sample_mixup(8, 1.0, keep_larger=True, rng=np.random.default_rng(0))
    assert again[0] == lam and torch.equal(again[1], order)  # keyed, not global, randomness


def test_mixed_gc_targets_reduce_to_the_elr_form_per_image() -> None:
    """Mixing (T, observed, unknown) alike keeps t = (T - observed) / unknown convex."""
    loss = AdaGCLoss(info=make_info(), form="elr", lam=1.0)
    _, batch, t = stage2_batch(loss)
    gc = batch["adagc"].gc
    perm = torch.roll(torch.arange(B), 1)
    mixed = gc.mixed(perm, 0.6)
    u = mixed.unknown
    recovered = (mixed.target - mixed.observed) / u.clamp_min(1e-12)
    expected = (0.6 * gc.unknown * t + 0.4 * (gc.unknown * t)[perm]) / u.clamp_min(1e-12)
    assert torch.allclose(recovered[u > 0], expected[u > 0], atol=1e-6)
    assert torch.allclose(mixed.target, mixup(gc.target, perm, 0.6))


def test_stage2_targets_travel_as_one_object_under_one_key() -> None:
    """The batch contract (methods/base.py): AdaGC adds ``batch["adagc"]`` and nothing else."""
    loss = AdaGCLoss(info=make_info())
    _, batch, _ = stage2_batch(loss)
    assert set(batch) == {"index", "target", "adagc"}
    gc = batch["adagc"].gc
    assert isinstance(gc, GCTargets) and gc.mixup_lambda is None
    assert gc.mixed(torch.roll(torch.arange(B), 1), 0.3).mixup_lambda == 0.3
    assert adagc_batch(batch) is batch["adagc"]  # created once, then reused
    with pytest.raises(TypeError, match="reserved for AdaGC"):
        adagc_batch({"adagc": torch.zeros(1)})


def test_stage2_without_pseudo_labels_is_a_clear_error() -> None:
    loss = AdaGCLoss(info=make_info())
    loss.start_calibration()
    batch = {"target": torch.full((B, C), -1, dtype=torch.int8), "index": torch.arange(B)}
    with pytest.raises(KeyError, match="PseudoLabels"):
        loss(torch.zeros(B, C), batch)


def test_stage_and_scores_are_saved_with_the_module() -> None:
    loss = AdaGCLoss(info=make_info())
    loss.update_scores(torch.arange(4), torch.rand(4, C), momentum=0.5)
    loss.start_calibration()
    restored = AdaGCLoss(info=make_info())
    restored.load_state_dict(loss.state_dict())
    assert restored.stage == 2
    assert torch.equal(restored.score_state, loss.score_state)


def test_label_frequency_rescale_follows_elkan_noto() -> None:
    """c_k = mean score on observed positives; t = min(1, s / c); unseen classes keep c = 1."""
    loss = AdaGCLoss(info=make_info(num_samples=4, num_classes=3), rescale="label_frequency")
    scores = torch.tensor([[0.4, 0.1, 0.3], [0.2, 0.2, 0.6], [0.1, 0.05, 0.5], [0.3, 0.3, 0.1]])
    target = torch.tensor([[1, -1, -1], [1, -1, -1], [-1, 1, -1], [-1, -1, -1]], dtype=torch.int8)
    loss.update_scores(torch.arange(4), scores, momentum=0.0, target=target)
    loss.on_train_epoch_end()
    # class 0: observed positives are samples 0 and 1; class 1: sample 2; class 2: none
    assert loss.label_frequency.tolist() == pytest.approx([0.3, 0.05, 1.0])
    gc = loss.calibrated(torch.arange(4), target)
    expected = torch.tensor([[1.0, 1.0, 0.3], [1.0, 1.0, 0.6], [1 / 3, 1.0, 0.5], [1.0, 1.0, 0.1]])
    assert torch.allclose(gc.target, expected)
    # the estimate is state: it survives a save/load round trip
    restored = AdaGCLoss(info=make_info(num_samples=4, num_classes=3), rescale="label_frequency")
    restored.load_state_dict(loss.state_dict())
    assert torch.equal(restored.calibrated(torch.arange(4), target).target, gc.target)
    # without rescale the scores are used as they are
    plain = AdaGCLoss(info=make_info(num_samples=4, num_classes=3))
    plain.load_state_dict(loss.state_dict())
    assert torch.allclose(plain.calibrated(torch.arange(4), target).target[3], scores[3])
    with pytest.raises(ValueError, match="rescale"):
        AdaGCLoss(info=make_info(), rescale="prior")
