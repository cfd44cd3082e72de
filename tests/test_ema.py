"""EMA of the weights: the official warm-up rule, one vectorised update, integer buffers copied."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel

from effnetv2.training.callbacks.ema import EMAWeightAveraging, ema_decay


def test_decay_warms_up_as_the_official_rule() -> None:
    assert ema_decay(0.9999, 0, warmup=True) == pytest.approx(1 / 10)
    assert ema_decay(0.9999, 90, warmup=True) == pytest.approx(91 / 100)
    assert ema_decay(0.9999, 10**6, warmup=True) == 0.9999
    assert ema_decay(0.9999, 0, warmup=False) == 0.9999
    # after 20k steps a fixed 0.9999 keeps 13.5% of the start in the average; the warm-up ~nothing
    fixed = 0.9999**20_000
    warm = 1.0
    for step in range(20_000):
        warm *= ema_decay(0.9999, step, warmup=True)
    assert fixed == pytest.approx(0.135, abs=1e-3) and warm < 1e-3


@pytest.mark.parametrize("warmup", [True, False])
def test_update_equals_the_formula_on_every_tensor(warmup: bool) -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))
    callback = EMAWeightAveraging(decay=0.99, warmup=warmup)
    average = AveragedModel(model, use_buffers=True, **{k: v for k, v in callback._kwargs.items()})
    average.update_parameters(model)  # the first call copies
    expected = {k: v.clone() for k, v in model.state_dict().items()}
    for step in range(1, 6):
        with torch.no_grad():
            for param in model.parameters():
                param.add_(torch.randn_like(param))
        model(torch.randn(2, 3, 8, 8))  # moves BN's running stats and its integer batch counter
        callback.should_update(step_idx=step)
        average.update_parameters(model)
        decay = ema_decay(0.99, step, warmup)
        for name, value in model.state_dict().items():
            if value.is_floating_point():
                expected[name] = decay * expected[name] + (1 - decay) * value
            else:
                expected[name] = value.clone()
    averaged = average.module.state_dict()
    for name, value in expected.items():
        torch.testing.assert_close(averaged[name], value, rtol=1e-5, atol=1e-6)
