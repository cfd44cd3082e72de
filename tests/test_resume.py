"""Checkpoints: `ckpt_path=` and `resume=auto` pick the right file, and a resumed run ends exactly where an
uninterrupted one does (same weights, same metrics) for a deterministic config."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import pytest
import torch

from effnetv2.errors import CheckpointError
from effnetv2.training.pipeline import resolve_ckpt_path, train
from helpers.tiny import TINY


class StopAfterEpochs(L.Callback):
    """Ends `fit` after `epochs` epochs as if the job were killed there (max_epochs, and so the stage
    plan and the learning-rate schedule, stay those of the full run)."""

    def __init__(self, epochs: int) -> None:
        self.epochs = epochs

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.current_epoch + 1 >= self.epochs:
            trainer.should_stop = True


DETERMINISTIC = [
    *TINY,
    "data.batch_size=16",
    "trainer.max_epochs=2",
    "trainer.limit_train_batches=2",
    "trainer.deterministic=true",
    "schedule.num_stages=2",  # the resumed epoch is a new stage (size, RandAugment, dropout change)
    "schedule.mixup_alpha=[0.2,0.4]",  # mixup draws random numbers too
]
# Random augmentation runs in the DataLoader: worker processes are reseeded from torch's (restored)
# random state at every epoch unless they persist; with num_workers=0 its stream is not checkpointed.
NO_RANDOM_AUGMENTATION = [
    "data.hflip=false",
    "data.randaug_num_ops=0",
    "data.crop_scale=[1,1]",
    "data.crop_ratio=[1,1]",
]
FRESH_WORKERS = ["data.num_workers=1", "data.persistent_workers=false"]
STOP_AFTER_FIRST_EPOCH = [f"+callbacks.stop._target_={__name__}.StopAfterEpochs", "+callbacks.stop.epochs=1"]
TIMING = ("train/images_per_sec",)


def test_ckpt_path_must_exist(compose_train, tmp_path) -> None:
    cfg = compose_train([f"ckpt_path={tmp_path / 'missing.ckpt'}"])
    with pytest.raises(CheckpointError, match="missing.ckpt does not exist"):
        resolve_ckpt_path(cfg)


def test_resume_auto_uses_last_ckpt_of_the_run_folder_when_present(compose_train, tmp_path) -> None:
    run = tmp_path / "run"
    cfg = compose_train(["resume=auto"], output_dir=run)
    assert resolve_ckpt_path(cfg) is None  # fresh start
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints" / "last.ckpt").write_bytes(b"")
    assert resolve_ckpt_path(cfg) == str(run / "checkpoints" / "last.ckpt")
    explicit = tmp_path / "other.ckpt"
    explicit.write_bytes(b"")
    cfg = compose_train(["resume=auto", f"ckpt_path={explicit}"], output_dir=run)
    assert resolve_ckpt_path(cfg) == str(explicit)  # an explicit path wins


def final_state(run: Path) -> dict[str, torch.Tensor]:
    return torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]


@pytest.mark.timeout(600)
@pytest.mark.parametrize(
    ("callbacks", "data"),
    [("default", NO_RANDOM_AUGMENTATION), ("ema", FRESH_WORKERS)],
    ids=["in-process-loading", "ema-augmenting-workers"],
)
def test_resumed_run_ends_like_an_uninterrupted_one(
    compose_train, tmp_path, callbacks: str, data: list
) -> None:
    overrides = [*DETERMINISTIC, *data, f"callbacks={callbacks}"]
    full = tmp_path / "full"
    expected = train(compose_train(overrides, output_dir=full))

    resumed = tmp_path / "resumed"
    first = train(compose_train([*overrides, *STOP_AFTER_FIRST_EPOCH, "test=false"], output_dir=resumed))
    assert first["progressive/stage"] == 0.0
    assert torch.load(resumed / "checkpoints" / "last.ckpt", weights_only=True)["epoch"] == 0
    metrics = train(compose_train([*overrides, "resume=auto"], output_dir=resumed))

    assert metrics["progressive/stage"] == 1.0
    compared = sorted(k for k in expected if k not in TIMING)
    assert "val/acc" in compared and "test/acc" in compared and "train/loss_epoch" in compared
    assert {k: metrics[k] for k in compared} == {k: expected[k] for k in compared}
    files = [sorted(p.name for p in (run / "checkpoints").iterdir()) for run in (full, resumed)]
    assert files[0] == files[1]  # the best checkpoint's tracking survived the restart
    expected_state, state = final_state(full), final_state(resumed)
    assert expected_state.keys() == state.keys()
    for name, tensor in expected_state.items():
        assert torch.equal(state[name], tensor), name
