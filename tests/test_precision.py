"""`trainer.precision: auto` (trainer=gpu|ddp): bf16 where the GPU has it natively, 16-bit with loss
scaling before compute capability 8.0, full precision without a GPU; an explicit value wins."""

from __future__ import annotations

import pytest
import torch

from effnetv2.training.precision import resolve_precision


@pytest.mark.parametrize(
    ("capability", "expected"),
    [
        ((9, 0), "bf16-mixed"),
        ((8, 0), "bf16-mixed"),
        ((8, 6), "bf16-mixed"),
        ((7, 5), "16-mixed"),
        ((6, 0), "16-mixed"),
    ],
)
def test_auto_precision_follows_the_compute_capability(monkeypatch, capability, expected) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
    assert resolve_precision("auto") == expected


def test_auto_precision_without_a_gpu_is_full_precision(monkeypatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_precision("auto") == "32-true"


@pytest.mark.parametrize("explicit", ["32-true", "bf16-mixed", "16-mixed", 32])
def test_an_explicit_precision_wins(monkeypatch, explicit) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (7, 5))
    assert resolve_precision(explicit) == explicit


def test_gpu_and_ddp_trainers_default_to_auto(compose_train) -> None:
    for trainer in ("gpu", "ddp"):
        cfg = compose_train([f"trainer={trainer}"])
        assert cfg.trainer.precision == "auto"
    ddp = compose_train(["trainer=ddp"]).trainer
    assert ddp.benchmark is True and ddp.sync_batchnorm is False
