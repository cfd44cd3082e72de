"""Optimizers and learning-rate schedules of the paper and of common practice.

The paper trains with TF-style RMSProp and a step-wise exponential decay after a warm-up; fine-tuning
uses cosine decay. All schedules here are per optimizer step, so they stay correct under gradient
accumulation and progressive learning (the number of steps per epoch is constant across stages).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

import torch
from torch import nn

from effnetv2.errors import ConfigError


class RMSpropTF(torch.optim.Optimizer):
    """RMSProp as in TensorFlow 1 (the paper's optimizer): epsilon inside the square root, the
    squared-gradient average starts at one, and momentum is applied to the scaled step.

    PyTorch's own RMSprop puts epsilon outside the root and starts the average at zero, which with the
    paper's eps=1e-3 gives much larger first steps.

    `foreach=True` (default) updates all tensors of a parameter group with a few `torch._foreach_*`
    calls (a handful of fused kernel launches) instead of a Python loop of ~8 launches per tensor; the
    loop (`foreach=False`) is the reference the foreach path is tested against.
    """

    def __init__(
        self,
        params: Iterable,
        lr: float = 0.016,
        alpha: float = 0.9,
        eps: float = 1e-3,
        momentum: float = 0.9,
        weight_decay: float = 0.0,
        foreach: bool = True,
    ) -> None:
        if lr <= 0 or not 0 <= alpha < 1 or eps <= 0 or momentum < 0:
            raise ConfigError(f"RMSpropTF: invalid lr={lr}, alpha={alpha}, eps={eps}, momentum={momentum}")
        super().__init__(
            params,
            dict(lr=lr, alpha=alpha, eps=eps, momentum=momentum, weight_decay=weight_decay, foreach=foreach),
        )

    def _state_of(self, p: torch.Tensor) -> dict:
        state = self.state[p]
        if not state:
            state["square_avg"] = torch.ones_like(p, memory_format=torch.preserve_format)
            state["momentum_buffer"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        return state

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            if group.get("foreach", True):
                self._foreach_update(group, params)
            else:
                self._loop_update(group, params)
        return loss

    def _loop_update(self, group: dict, params: list[torch.Tensor]) -> None:
        for p in params:
            grad = p.grad
            if group["weight_decay"]:
                grad = grad.add(p, alpha=group["weight_decay"])
            state = self._state_of(p)
            square_avg = state["square_avg"]
            square_avg.mul_(group["alpha"]).addcmul_(grad, grad, value=1 - group["alpha"])
            scaled = grad / square_avg.add(group["eps"]).sqrt_()
            buf = state["momentum_buffer"]
            buf.mul_(group["momentum"]).add_(scaled, alpha=group["lr"])
            p.sub_(buf)

    def _foreach_update(self, group: dict, params: list[torch.Tensor]) -> None:
        grads = [p.grad for p in params]
        if group["weight_decay"]:
            grads = torch._foreach_add(grads, params, alpha=group["weight_decay"])
        states = [self._state_of(p) for p in params]
        square_avgs = [state["square_avg"] for state in states]
        buffers = [state["momentum_buffer"] for state in states]
        torch._foreach_mul_(square_avgs, group["alpha"])
        torch._foreach_addcmul_(square_avgs, grads, grads, value=1 - group["alpha"])
        denominators = torch._foreach_add(square_avgs, group["eps"])
        torch._foreach_sqrt_(denominators)
        torch._foreach_mul_(buffers, group["momentum"])
        torch._foreach_addcdiv_(buffers, grads, denominators, value=group["lr"])
        torch._foreach_sub_(params, buffers)


def parameter_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Split parameters so that norm weights and biases (all 0-d/1-d tensors) get no weight decay,
    as the paper and every strong ImageNet recipe do."""
    decay, no_decay = [], []
    for param in model.parameters():
        if not param.requires_grad:
            continue
        (no_decay if param.ndim <= 1 else decay).append(param)
    return [
        {"params": decay, "weight_decay": weight_decay, "name": "decay"},
        {"params": no_decay, "weight_decay": 0.0, "name": "no_decay"},
    ]


def lr_lambda(
    name: str,
    total_steps: int,
    steps_per_epoch: int,
    warmup_epochs: float = 0.0,
    min_lr_ratio: float = 0.0,
    decay_rate: float = 0.97,
    decay_epochs: float = 2.4,
) -> Callable[[int], float]:
    """Multiplier of the base learning rate at each optimizer step.

    `cosine`: linear warm-up, then cosine from 1 to `min_lr_ratio` over the remaining steps.
    `paper`: linear warm-up, then x`decay_rate` every `decay_epochs` epochs (staircase), the decay
    counted from step 0 as the official code does (not from the end of the warm-up).
    `constant`: linear warm-up, then 1.
    """
    if name not in ("cosine", "paper", "constant"):
        raise ConfigError(f"lr_scheduler.name={name!r} is unknown; choose cosine, paper or constant")
    warmup_steps = int(round(warmup_epochs * steps_per_epoch))
    steps_per_decay = max(1, int(round(decay_epochs * steps_per_epoch)))

    def multiplier(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        if name == "constant":
            return 1.0
        if name == "paper":
            return decay_rate ** (step // steps_per_decay)
        progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
        return min_lr_ratio + (1 - min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))

    return multiplier
