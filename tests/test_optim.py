"""Optimizers and schedules: the paper's TF RMSProp, no weight decay on norms/biases, warm-up + decay."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from effnetv2.errors import ConfigError
from effnetv2.models import create_model
from effnetv2.training.optim import RMSpropTF, lr_lambda, parameter_groups


def tf_rmsprop_reference(grads: list[float], lr: float, alpha: float, eps: float, momentum: float) -> float:
    """TF1 `RMSPropOptimizer` on one scalar starting at 0, written out from its documented update:
    ms = alpha * ms + (1 - alpha) * g^2 (ms starts at 1); mom = momentum * mom + lr * g / sqrt(ms + eps)."""
    value, ms, mom = 0.0, 1.0, 0.0
    for g in grads:
        ms = alpha * ms + (1 - alpha) * g * g
        mom = momentum * mom + lr * g / math.sqrt(ms + eps)
        value -= mom
    return value


def test_rmsprop_tf_matches_the_tf1_update() -> None:
    grads = [0.5, -1.0, 2.0, 0.1]
    param = nn.Parameter(torch.zeros((), dtype=torch.float64))
    optimizer = RMSpropTF([param], lr=0.016, alpha=0.9, eps=1e-3, momentum=0.9)
    for g in grads:
        param.grad = torch.tensor(g, dtype=torch.float64)
        optimizer.step()
    expected = tf_rmsprop_reference(grads, lr=0.016, alpha=0.9, eps=1e-3, momentum=0.9)
    assert param.item() == pytest.approx(expected, rel=1e-12)


def test_rmsprop_tf_first_step_is_small_unlike_torch_rmsprop() -> None:
    """Why a TF variant exists: the squared average starting at 1 keeps the first step near lr * g."""
    ours, theirs = nn.Parameter(torch.zeros(1)), nn.Parameter(torch.zeros(1))
    torch_opt = torch.optim.RMSprop([theirs], lr=0.016, alpha=0.9, eps=1e-3, momentum=0.9)
    tf_opt = RMSpropTF([ours], lr=0.016, alpha=0.9, eps=1e-3, momentum=0.9)
    for param, optimizer in ((ours, tf_opt), (theirs, torch_opt)):
        param.grad = torch.full((1,), 1e-3)
        optimizer.step()
    assert abs(ours.item()) < 0.1 * abs(theirs.item())


def test_rmsprop_tf_weight_decay_adds_to_the_gradient() -> None:
    param = nn.Parameter(torch.ones(1))
    optimizer = RMSpropTF([param], lr=0.1, alpha=0.9, eps=1e-3, momentum=0.0, weight_decay=0.5)
    param.grad = torch.zeros(1)
    optimizer.step()
    assert param.item() < 1.0  # moved by decay alone


@pytest.mark.parametrize("bad", [dict(lr=0.0), dict(alpha=1.0), dict(eps=0.0), dict(momentum=-0.1)])
def test_rmsprop_tf_rejects_invalid_settings(bad: dict) -> None:
    with pytest.raises(ConfigError, match="RMSpropTF"):
        RMSpropTF([nn.Parameter(torch.zeros(1))], **bad)


def test_norm_weights_and_biases_get_no_weight_decay() -> None:
    model = nn.Sequential(nn.Conv2d(3, 8, 3, bias=False), nn.BatchNorm2d(8), nn.Flatten(), nn.LazyLinear(4))
    model(torch.zeros(1, 3, 5, 5))
    decay, no_decay = parameter_groups(model, weight_decay=0.05)
    assert decay["weight_decay"] == 0.05 and no_decay["weight_decay"] == 0.0
    assert (decay["name"], no_decay["name"]) == ("decay", "no_decay")  # LearningRateMonitor's labels
    ids = lambda params: {id(p) for p in params}  # noqa: E731
    assert ids(decay["params"]) == {id(model[0].weight), id(model[3].weight)}
    assert ids(no_decay["params"]) == {id(model[1].weight), id(model[1].bias), id(model[3].bias)}


def test_frozen_parameters_are_left_out() -> None:
    model = nn.Linear(3, 2)
    model.bias.requires_grad_(False)
    decay, no_decay = parameter_groups(model, weight_decay=0.1)
    assert len(decay["params"]) == 1 and no_decay["params"] == []


def test_cosine_warms_up_linearly_then_decays_to_the_floor() -> None:
    f = lr_lambda("cosine", total_steps=100, steps_per_epoch=10, warmup_epochs=1, min_lr_ratio=0.01)
    assert [f(s) for s in range(10)] == pytest.approx([(s + 1) / 10 for s in range(10)])
    assert f(10) == pytest.approx(1.0)
    assert f(55) == pytest.approx(0.01 + 0.99 * 0.5)  # half-way through the decay
    assert f(100) == pytest.approx(0.01)
    values = [f(s) for s in range(10, 101)]
    assert all(a >= b for a, b in zip(values, values[1:]))


def test_paper_schedule_is_a_staircase_of_097_every_24_epochs() -> None:
    f = lr_lambda(
        "paper", total_steps=1000, steps_per_epoch=10, warmup_epochs=5, decay_rate=0.97, decay_epochs=2.4
    )
    assert f(0) == pytest.approx(1 / 50) and f(49) == pytest.approx(1.0)
    # official: lr * 0.97 ** floor(step / decay_steps), the staircase counted from step 0 (24 steps
    # per decay), so the first step after the 50 warm-up steps already has 2 decays behind it
    assert f(50) == f(71) == pytest.approx(0.97**2)
    assert f(72) == pytest.approx(0.97**3)
    assert f(240) == pytest.approx(0.97**10)
    official = [0.97 ** (step // 24) for step in range(50, 1000)]
    assert [f(step) for step in range(50, 1000)] == pytest.approx(official)


def test_constant_schedule_and_unknown_names() -> None:
    f = lr_lambda("constant", total_steps=10, steps_per_epoch=5, warmup_epochs=0)
    assert {f(s) for s in range(10)} == {1.0}
    with pytest.raises(ConfigError, match="cosine, paper or constant"):
        lr_lambda("step", total_steps=10, steps_per_epoch=5)


@pytest.mark.parametrize("momentum", [0.9, 0.0])
def test_rmsprop_tf_foreach_equals_the_loop_after_20_steps(momentum) -> None:
    """The foreach path (default) against the per-tensor loop, on a real model's parameter groups
    (weight decay on some), with gradients of every size: within 1e-6 on every parameter."""
    torch.manual_seed(0)
    models = [create_model("v2_b0", num_classes=10) for _ in range(2)]
    models[1].load_state_dict(models[0].state_dict())
    optimizers = [
        RMSpropTF(parameter_groups(model, 1e-5), lr=0.016, momentum=momentum, foreach=foreach)
        for model, foreach in zip(models, (False, True))
    ]
    assert (
        optimizers[1].param_groups[0]["foreach"]
        and RMSpropTF([nn.Parameter(torch.zeros(1))]).defaults["foreach"]
    )
    for _ in range(20):
        for reference, vectorised in zip(models[0].parameters(), models[1].parameters()):
            grad = torch.randn_like(reference) * 10 ** torch.empty(1).uniform_(-4, 0)
            reference.grad, vectorised.grad = grad, grad.clone()
        for optimizer in optimizers:
            optimizer.step()
    for (name, reference), vectorised in zip(models[0].named_parameters(), models[1].parameters()):
        assert (reference - vectorised).abs().max() <= 1e-6, name
