"""Imbalanced data: `module.class_weights: balanced` (inverse-frequency cross-entropy weights from the train
split) and `data.sampler: balanced` (every class drawn about equally often, sharded under DDP)."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
from lightning.pytorch.trainer.states import RunningStage
from torch.utils.data import DataLoader, TensorDataset

from effnetv2.data.balance import BalancedSampler, balanced_class_weights
from effnetv2.data.datamodule import ImageDataModule
from effnetv2.errors import ConfigError
from effnetv2.training.module import ClassificationModule
from fixtures_data import write_png
from helpers.environment import require_module

MODEL = {"_target_": "effnetv2.models.create_model", "name": "v2_b0", "drop_rate": 0.0, "drop_path_rate": 0.0}
NINE_TO_ONE = np.repeat([0, 1], [900, 100])


def imbalanced_folder(root: Path, counts: dict[str, int]) -> Path:
    """root/train/<class>/ with `count` tiny PNGs per class."""
    rng = np.random.default_rng(0)
    for name, count in counts.items():
        for i in range(count):
            write_png(root / "train" / name / f"{i}.png", rng.integers(0, 256, (8, 8, 3), dtype=np.uint8))
    return root


def folder_module(root: Path, **overrides) -> ImageDataModule:
    options = dict(
        source="image_folder", root=str(root), in_chans=3, mean=(0.5,) * 3, std=(0.25,) * 3,
        batch_size=10, num_workers=0, image_size=8, eval_size=8, crop_pct=1.0, randaug_num_ops=0,
    )  # fmt: skip
    return ImageDataModule(**{**options, **overrides})


# Class weights -----------------------------------------------------------------------------------------


def test_class_weights_are_n_over_classes_times_class_count() -> None:
    labels = np.repeat([0, 1, 2], [60, 30, 10])  # n = 100, k = 3
    np.testing.assert_allclose(balanced_class_weights(labels, 3), [100 / 180, 100 / 90, 100 / 30])
    np.testing.assert_allclose(balanced_class_weights(NINE_TO_ONE, 2), [1000 / 1800, 1000 / 200])
    # a class without training samples weighs 0; k counts the classes present
    missing_class = np.repeat([0, 2], [75, 25])
    np.testing.assert_allclose(balanced_class_weights(missing_class, 3), [100 / 150, 0, 100 / 50])


@pytest.mark.timeout(300)
def test_training_weights_the_loss_by_the_train_splits_classes(tmp_path: Path) -> None:
    datamodule = folder_module(imbalanced_folder(tmp_path, {"a": 45, "b": 5}))
    module = ClassificationModule(
        model=MODEL, optimizer={"_target_": "torch.optim.AdamW", "lr": 1e-3},
        lr_scheduler={"name": "constant"}, num_classes=2, in_chans=3, lr_batch_base=None,
        class_weights="balanced",
    )  # fmt: skip
    trainer = L.Trainer(
        max_epochs=1, limit_train_batches=1, limit_val_batches=0, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False,
    )  # fmt: skip
    trainer.fit(module, datamodule=datamodule)

    counts = np.bincount(datamodule.train_labels())
    assert counts.sum() == 45 and counts[1] < 6  # the train split, not the whole folder (val took 5)
    expected = [45 / (2 * counts[0]), 45 / (2 * counts[1])]
    np.testing.assert_allclose(module.class_weight.numpy(), expected, rtol=1e-6)

    module.trainer = None  # outside a loop: training_step's logging is a no-op, as in test_module
    module.eval()  # no dropout: the same logits twice
    torch.manual_seed(0)
    images, targets = torch.randn(4, 3, 8, 8), torch.tensor([0, 0, 0, 1])
    loss = module.training_step((images, targets), 0)
    soft = torch.full((4, 2), 0.05).scatter_(1, targets[:, None], 0.95)  # label smoothing 0.1
    weighted = -(torch.tensor(expected, dtype=torch.float32) * soft * module(images).log_softmax(-1)).sum(-1)
    assert loss.item() == pytest.approx(weighted.mean().item(), rel=1e-5)


def test_unknown_class_weights_are_refused() -> None:
    with pytest.raises(ConfigError, match="module.class_weights='inverse'"):
        ClassificationModule(
            model=MODEL, optimizer={}, lr_scheduler={}, num_classes=2, class_weights="inverse"
        )


# Balanced sampler ---------------------------------------------------------------------------------------


def test_balanced_sampler_draws_both_classes_of_a_nine_to_one_set_about_equally() -> None:
    sampler = BalancedSampler(NINE_TO_ONE, seed=0)
    draws = np.array(list(sampler))
    assert len(draws) == len(NINE_TO_ONE) == len(sampler)
    assert 0.45 < NINE_TO_ONE[draws].mean() < 0.55  # share of the minority class (0.1 in the data)
    assert len(np.unique(draws[NINE_TO_ONE[draws] == 0])) > 300  # majority samples vary, not a few repeated


def test_balanced_sampler_is_seeded_by_epoch_and_shards_one_draw_over_ranks() -> None:
    single = BalancedSampler(NINE_TO_ONE, seed=3)
    ranks = [BalancedSampler(NINE_TO_ONE, num_replicas=2, rank=rank, seed=3) for rank in (0, 1)]
    for epoch in (0, 1):
        for sampler in (single, *ranks):
            sampler.set_epoch(epoch)
        whole = list(single)
        assert list(single) == whole  # the same epoch draws the same samples (e.g. after a resume)
        assert list(ranks[0]) == whole[0::2] and list(ranks[1]) == whole[1::2]
    single.set_epoch(0)
    assert list(single) != whole


def test_lightning_keeps_the_balanced_sampler_under_ddp() -> None:
    """Lightning replaces a plain shuffle by a DistributedSampler and wraps other samplers; a
    DistributedSampler (ours is one, already sharded) it leaves in place."""
    dataset = TensorDataset(torch.zeros(len(NINE_TO_ONE), 1), torch.as_tensor(NINE_TO_ONE))
    trainer = L.Trainer(accelerator="cpu", devices=2, strategy="ddp", logger=False, enable_progress_bar=False)
    sampler = BalancedSampler(NINE_TO_ONE, num_replicas=2, rank=0)
    prepared = trainer._data_connector._prepare_dataloader(
        DataLoader(dataset, batch_size=10, sampler=sampler), shuffle=True, mode=RunningStage.TRAINING
    )
    assert prepared.sampler is sampler


def test_the_train_loader_draws_classes_about_equally(tmp_path: Path) -> None:
    root = imbalanced_folder(tmp_path, {"a": 90, "b": 10})
    balanced = folder_module(root, sampler="balanced")
    loader = balanced.train_dataloader()
    assert isinstance(loader.sampler, BalancedSampler)
    labels = torch.cat([batch_labels for _, batch_labels in loader]).numpy()
    assert len(labels) == 90 and 0.35 < labels.mean() < 0.65
    plain = folder_module(root).train_dataloader()
    assert torch.cat([batch_labels for _, batch_labels in plain]).float().mean().item() == pytest.approx(0.1)


def test_sampler_choices_and_the_ffcv_loader_are_checked(tmp_path: Path) -> None:
    root = imbalanced_folder(tmp_path, {"a": 2, "b": 2})
    with pytest.raises(ConfigError, match="data.sampler='weighted'.*random.*balanced"):
        folder_module(root, sampler="weighted")
    require_module("ffcv", "the ffcv extra")
    with pytest.raises(ConfigError, match="data.sampler=balanced needs data.loader=torch"):
        folder_module(root, sampler="balanced", loader="ffcv", beton_dir=str(tmp_path / "betons"))
