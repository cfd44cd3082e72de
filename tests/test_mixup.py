"""Mixup / CutMix: soft targets, identity at alpha 0, CutMix area matches lambda."""

from __future__ import annotations

import pytest
import torch

from effnetv2.data.mixup import MixupCutmix, smooth_one_hot

NUM_CLASSES = 10


def batch(n: int = 8, size: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    """Sample i is filled with the value i; labels are distinct so lambda is readable from targets."""
    x = torch.arange(n, dtype=torch.float32).view(n, 1, 1, 1).expand(n, 3, size, size).clone()
    return x, torch.arange(n) % NUM_CLASSES


def test_alpha_zero_is_identity_with_smoothed_one_hot_targets() -> None:
    x, y = batch()
    mixed, targets = MixupCutmix(NUM_CLASSES, label_smoothing=0.1)(x, y)
    assert torch.equal(mixed, x)
    assert torch.allclose(targets.sum(1), torch.ones(len(y)))
    assert torch.allclose(targets[torch.arange(len(y)), y], torch.full((len(y),), 0.9 + 0.1 / NUM_CLASSES))
    assert torch.equal(targets.argmax(1), y)


def test_mixup_blends_images_and_targets_with_one_lambda() -> None:
    x, y = batch()
    mixed, targets = MixupCutmix(NUM_CLASSES, mixup_alpha=1.0, seed=0)(x, y)
    lam = targets[0, y[0]].item()
    assert 0.0 < lam < 1.0
    assert torch.allclose(targets.sum(1), torch.ones(len(y)))
    assert torch.allclose(mixed, lam * x + (1 - lam) * x.flip(0))
    assert torch.allclose(targets[torch.arange(len(y)), y], torch.full((len(y),), lam))


@pytest.mark.parametrize("seed", range(5))
def test_cutmix_pasted_area_matches_lambda(seed: int) -> None:
    x, y = batch(size=32)
    mixed, targets = MixupCutmix(NUM_CLASSES, cutmix_alpha=1.0, seed=seed)(x, y)
    assert torch.allclose(targets.sum(1), torch.ones(len(y)))
    for i in range(len(y)):
        pasted = (mixed[i] != x[i]).float().mean().item()
        lam = targets[i, y[i]].item()
        assert pasted == pytest.approx(1.0 - lam, abs=1e-6)
        assert set(mixed[i].unique().tolist()) <= {float(i), float(len(y) - 1 - i)}


def test_targets_sum_to_one_with_smoothing_and_both_methods() -> None:
    x, y = batch()
    mixer = MixupCutmix(NUM_CLASSES, mixup_alpha=0.4, cutmix_alpha=1.0, label_smoothing=0.1, seed=1)
    for _ in range(10):
        _, targets = mixer(x, y)
        assert torch.allclose(targets.sum(1), torch.ones(len(y)))
        assert (targets > 0).all()


def test_alphas_can_be_switched_on_at_run_time() -> None:
    x, y = batch()
    mixer = MixupCutmix(NUM_CLASSES, seed=0)
    assert torch.equal(mixer(x, y)[0], x)
    mixer.mixup_alpha = 0.4
    assert not torch.equal(mixer(x, y)[0], x)


@pytest.mark.parametrize(("switch_prob", "cutmix"), [(0.0, False), (1.0, True)])
def test_switch_prob_chooses_the_method(switch_prob: float, cutmix: bool) -> None:
    x, y = batch()
    mixer = MixupCutmix(NUM_CLASSES, mixup_alpha=1.0, cutmix_alpha=1.0, switch_prob=switch_prob, seed=0)
    for _ in range(5):
        mixed, _ = mixer(x, y)
        only_original_values = bool(torch.isin(mixed, torch.arange(len(y), dtype=torch.float32)).all())
        assert only_original_values == cutmix


def test_smooth_one_hot_rows() -> None:
    targets = smooth_one_hot(torch.tensor([2, 0]), 4, 0.2)
    assert torch.allclose(targets, torch.tensor([[0.05, 0.05, 0.85, 0.05], [0.85, 0.05, 0.05, 0.05]]))
