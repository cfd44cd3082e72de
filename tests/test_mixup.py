"""Mixup / CutMix: soft targets, identity at alpha 0, CutMix area matches lambda."""

from __future__ import annotations

import pytest
import torch

from effnetv2.data.mixup import MixupCutmix, smooth_one_hot
from helpers.environment import require_module

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


def test_mixup_blends_each_sample_with_its_own_lambda() -> None:
    x, y = batch()
    mixed, targets = MixupCutmix(NUM_CLASSES, mixup_alpha=1.0, seed=0)(x, y)
    lam = targets[torch.arange(len(y)), y]  # labels are distinct: the own-class weight is lambda
    assert ((lam >= 0.5) & (lam < 1.0)).all()  # folded to max(lambda, 1 - lambda), as the official code
    assert len(set(lam.tolist())) == len(y)  # one lambda per sample, not one per batch
    assert torch.allclose(targets.sum(1), torch.ones(len(y)))
    expected = lam.view(-1, 1, 1, 1) * x + (1 - lam.view(-1, 1, 1, 1)) * x.flip(0)
    assert torch.allclose(mixed, expected)


def test_mixup_lambda_follows_folded_beta_alpha_alpha() -> None:
    """Kolmogorov-Smirnov against max(B, 1 - B), B ~ Beta(alpha, alpha), for two alphas; a lambda drawn
    from another alpha (or one per batch) fails."""
    scipy_stats = require_module("scipy.stats")
    n = 64
    x = torch.zeros(n, 1, 2, 2)
    y = torch.arange(n)  # 64 distinct classes: lambda is the own-class weight
    for alpha in (0.2, 1.0):
        mixer = MixupCutmix(n, mixup_alpha=alpha, seed=3)
        lams = torch.cat([mixer(x, y)[1][torch.arange(n // 2), y[: n // 2]] for _ in range(40)]).numpy()

        def folded_cdf(v, a=alpha):
            return scipy_stats.beta.cdf(v, a, a) - scipy_stats.beta.cdf(1 - v, a, a)

        assert scipy_stats.kstest(lams, folded_cdf).pvalue > 0.01, alpha
        other = 1.0 if alpha == 0.2 else 0.2
        assert scipy_stats.kstest(lams, lambda v, a=other: folded_cdf(v, a)).pvalue < 1e-6


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


def test_both_methods_split_the_batch_half_mixup_half_cutmix() -> None:
    """Official: the first half gets Mixup, the second CutMix, each mixed within its own half."""
    x, y = batch(size=32)
    mixer = MixupCutmix(NUM_CLASSES, mixup_alpha=1.0, cutmix_alpha=1.0, seed=0)
    for _ in range(5):
        mixed, _ = mixer(x, y)
        first, second = mixed[:4], mixed[4:]
        assert not torch.isin(first, torch.arange(8, dtype=torch.float32)).all()  # blended values
        for i, image in enumerate(second):  # CutMix pastes from the second half reversed
            assert set(image.unique().tolist()) <= {float(4 + i), float(7 - i)}


def test_smooth_one_hot_rows() -> None:
    targets = smooth_one_hot(torch.tensor([2, 0]), 4, 0.2)
    assert torch.allclose(targets, torch.tensor([[0.05, 0.05, 0.85, 0.05], [0.85, 0.05, 0.05, 0.05]]))
