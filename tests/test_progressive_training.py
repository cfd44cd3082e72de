"""ProgressiveLearning in real Lightning training runs: every epoch must train with its stage's values,
observed from inside training (the batches `training_step` receives, the magnitude the augmentation
used, the mixup alpha and dropout in force), also after resuming from a checkpoint."""

from __future__ import annotations

import csv
import json
import logging
from pathlib import Path

import lightning as L
import pytest
import torch
from hydra.utils import instantiate
from lightning.pytorch.callbacks import ModelCheckpoint
from torch import nn
from torch.utils.data import DataLoader, Dataset

from effnetv2.data.mixup import MixupCutmix
from effnetv2.data.randaugment import RandAugment
from effnetv2.errors import ConfigError
from effnetv2.models.blocks import Dropout
from effnetv2.training.callbacks.progressive import ProgressiveLearning
from effnetv2.training.callbacks.reporting import StageReport
from effnetv2.training.module import ClassificationModule
from effnetv2.training.pipeline import build_module, train
from effnetv2.training.progressive import ProgressiveSchedule
from helpers.environment import require_module
from helpers.tiny import TINY

pytest_plugins = ["fixtures_data"]
torch.set_num_threads(1)

MAX_EPOCHS = 6
BATCHES_PER_EPOCH = 3
BATCH_SIZE = 4


def three_stages(**overrides) -> ProgressiveSchedule:
    """Epochs 0-1: stage 0, 2-3: stage 1, 4-5: stage 2 (with MAX_EPOCHS = 6)."""
    values = dict(
        num_stages=3,
        image_size=[8, 16],
        randaug_magnitude=[1, 9],
        mixup_alpha=[0.0, 0.4],
        dropout=[0.1, 0.5],
        eval_size=20,
        size_multiple=4,
    )
    values.update(overrides)
    return ProgressiveSchedule(**values)


# A datamodule and module with the setter contract of ImageDataModule / ClassificationModule -------------
class SizedDataset(Dataset):
    """Images of the currently set size; each sample also carries the magnitude its augmentation used."""

    def __init__(self) -> None:
        self.image_size = 32
        self.randaug_magnitude = -1.0

    def __len__(self) -> int:
        return BATCHES_PER_EPOCH * BATCH_SIZE

    def __getitem__(self, index: int):
        image = torch.rand(1, self.image_size, self.image_size)
        return image, index % 2, torch.tensor(self.randaug_magnitude)


class FakeDataModule(L.LightningDataModule):
    def __init__(self, num_workers: int = 0) -> None:
        super().__init__()
        self.num_workers = num_workers
        self.train_set = SizedDataset()
        self.eval_size = 32

    @property
    def image_size(self) -> int:
        return self.train_set.image_size

    def set_image_size(self, size: int) -> None:
        self.train_set.image_size = size

    def set_eval_size(self, size: int) -> None:
        self.eval_size = size

    def set_randaug_magnitude(self, magnitude: float) -> None:
        self.train_set.randaug_magnitude = magnitude

    def train_dataloader(self) -> DataLoader:
        return DataLoader(self.train_set, batch_size=BATCH_SIZE, num_workers=self.num_workers)

    def val_dataloader(self) -> DataLoader:
        return DataLoader([(torch.rand(1, self.eval_size, self.eval_size), 0)] * 4, batch_size=BATCH_SIZE)


class RecordingModule(L.LightningModule):
    """Records, per training step, what the step actually trained with."""

    def __init__(self) -> None:
        super().__init__()
        self.dropout = nn.Dropout(0.0)
        self.head = nn.Linear(1, 2)
        self.mixup_alpha = -1.0
        self.cutmix_alpha = -1.0
        self.drop_path_rate = -1.0
        self.steps: list[dict] = []

    def set_mixup_alpha(self, alpha: float) -> None:
        self.mixup_alpha = alpha

    def set_cutmix_alpha(self, alpha: float) -> None:
        self.cutmix_alpha = alpha

    def set_dropout(self, p: float) -> None:
        self.dropout.p = p

    def set_drop_path_rate(self, rate: float) -> None:
        self.drop_path_rate = rate

    def training_step(self, batch, batch_idx):
        images, targets, magnitudes = batch
        self.steps.append(
            dict(
                epoch=self.current_epoch,
                image_size=tuple(images.shape[-2:]),
                magnitudes=sorted(set(magnitudes.tolist())),
                mixup_alpha=self.mixup_alpha,
                cutmix_alpha=self.cutmix_alpha,
                dropout=self.dropout.p,
                drop_path_rate=self.drop_path_rate,
            )
        )
        logits = self.head(self.dropout(images.mean(dim=(2, 3))))
        return nn.functional.cross_entropy(logits, targets)

    def validation_step(self, batch, batch_idx):
        images, targets = batch
        self.log("val/loss", nn.functional.cross_entropy(self.head(images.mean(dim=(2, 3))), targets))

    def configure_optimizers(self):
        # As ClassificationModule does: this creates the first train iterator before on_fit_start.
        assert self.trainer.estimated_stepping_batches > 0
        return torch.optim.SGD(self.parameters(), lr=0.01)


class StopAfterEpoch(L.Callback):
    """Ends fit after epoch `epoch`, or after batch `batch` of that epoch (a mid-epoch checkpoint)."""

    def __init__(self, epoch: int, batch: int | None = None) -> None:
        self.epoch, self.batch = epoch, batch

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if self.batch is not None and trainer.current_epoch == self.epoch and batch_idx == self.batch:
            trainer.should_stop = True

    def on_train_epoch_end(self, trainer, pl_module):
        if self.batch is None and trainer.current_epoch == self.epoch:
            trainer.should_stop = True


def make_trainer(tmp_path: Path, callbacks: list, with_validation: bool = False, **overrides) -> L.Trainer:
    options = dict(
        max_epochs=MAX_EPOCHS,
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=any(isinstance(c, ModelCheckpoint) for c in callbacks),
        limit_val_batches=1 if with_validation else 0,
        num_sanity_val_steps=0,
        default_root_dir=tmp_path,
    )
    options.update(overrides)
    return L.Trainer(callbacks=callbacks, **options)


def assert_steps_follow_schedule(steps: list[dict], schedule: ProgressiveSchedule) -> None:
    assert steps, "no training step ran"
    for step in steps:
        expected = schedule.values_at_epoch(step["epoch"], MAX_EPOCHS)
        size = expected.image_size
        assert step["image_size"] == (size, size), step
        assert step["magnitudes"] == pytest.approx([expected.randaug_magnitude]), step
        assert step["mixup_alpha"] == pytest.approx(expected.mixup_alpha), step
        assert step["dropout"] == pytest.approx(expected.dropout), step
        if expected.cutmix_alpha is not None:
            assert step["cutmix_alpha"] == pytest.approx(expected.cutmix_alpha), step
        if expected.drop_path_rate is not None:
            assert step["drop_path_rate"] == pytest.approx(expected.drop_path_rate), step


# Tests -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("num_workers", [0, 2])
def test_every_epoch_trains_with_its_stage_values(tmp_path, num_workers):
    """With worker processes too: they are forked when the epoch's iterator is created, so this
    checks that each stage is in place before that happens."""
    schedule = three_stages(cutmix_alpha=[0.0, 1.0], drop_path_rate=[0.0, 0.2])
    module, datamodule = RecordingModule(), FakeDataModule(num_workers)
    make_trainer(tmp_path, [ProgressiveLearning(schedule)]).fit(module, datamodule=datamodule)

    assert_steps_follow_schedule(module.steps, schedule)
    assert [s["epoch"] for s in module.steps] == [
        e for e in range(MAX_EPOCHS) for _ in range(BATCHES_PER_EPOCH)
    ]
    assert sorted({s["image_size"][0] for s in module.steps}) == [8, 12, 16]


@pytest.mark.parametrize(
    ("checkpointing", "stop_epoch", "stop_batch", "first_resumed_epoch"),
    [
        ("epoch_end", 3, None, 4),  # end of stage 1, saved in on_train_epoch_end
        ("validation", 3, None, 4),  # saved at validation end, before the epoch is counted
        ("every_step", 3, None, 4),  # saved after the epoch's last batch
        ("every_step", 2, None, 3),  # in the middle of stage 1
        ("every_step", 3, 0, 3),  # in the middle of epoch 3
    ],
)
@pytest.mark.parametrize("num_workers", [0, 2])
def test_resume_from_last_ckpt_restores_the_stage(
    tmp_path, checkpointing, stop_epoch, stop_batch, first_resumed_epoch, num_workers
):
    schedule = three_stages()
    stop = StopAfterEpoch(stop_epoch, stop_batch)
    checkpoint_options = {
        "epoch_end": dict(save_on_train_epoch_end=True),
        "validation": dict(save_on_train_epoch_end=False),
        "every_step": dict(every_n_train_steps=1),
    }[checkpointing]
    checkpoint = ModelCheckpoint(dirpath=tmp_path / "ckpt", save_last=True, **checkpoint_options)
    first = RecordingModule()
    make_trainer(
        tmp_path,
        [ProgressiveLearning(schedule), checkpoint, stop],
        with_validation=checkpointing == "validation",
    ).fit(first, datamodule=FakeDataModule(num_workers))
    assert first.steps[-1]["epoch"] == stop.epoch

    # A new process would start with fresh objects at their defaults (size 32, no magnitude).
    resumed, datamodule = RecordingModule(), FakeDataModule(num_workers)
    make_trainer(
        tmp_path, [ProgressiveLearning(schedule)], with_validation=checkpointing == "validation"
    ).fit(resumed, datamodule=datamodule, ckpt_path=tmp_path / "ckpt" / "last.ckpt")
    assert resumed.steps[0]["epoch"] == first_resumed_epoch
    assert_steps_follow_schedule(resumed.steps, schedule)
    assert resumed.steps[-1]["epoch"] == MAX_EPOCHS - 1


class RankRecorder(L.Callback):
    """Under DDP the module's records live in the worker processes: each rank writes its own."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def on_train_end(self, trainer, pl_module):
        (self.directory / f"rank{trainer.global_rank}.json").write_text(json.dumps(pl_module.steps))


@pytest.mark.timeout(300)
def test_every_ddp_rank_trains_with_the_same_stages(tmp_path):
    """Two CPU processes (gloo): every rank derives the stage from the epoch, no communication."""
    schedule = three_stages()
    trainer = make_trainer(
        tmp_path,
        [ProgressiveLearning(schedule), RankRecorder(tmp_path)],
        devices=2,
        strategy="ddp_spawn",
    )
    trainer.fit(RecordingModule(), datamodule=FakeDataModule())
    ranks = [json.loads((tmp_path / f"rank{rank}.json").read_text()) for rank in (0, 1)]
    for steps in ranks:
        for step in steps:
            step["image_size"] = tuple(step["image_size"])
        assert_steps_follow_schedule(steps, schedule)
        assert sorted({step["epoch"] for step in steps}) == list(range(MAX_EPOCHS))
    assert [s["image_size"] for s in ranks[0]] == [s["image_size"] for s in ranks[1]]


def test_resume_with_a_different_schedule_warns(tmp_path):
    checkpoint = ModelCheckpoint(dirpath=tmp_path / "ckpt", save_last=True)
    make_trainer(tmp_path, [ProgressiveLearning(three_stages()), checkpoint, StopAfterEpoch(1)]).fit(
        RecordingModule(), datamodule=FakeDataModule()
    )
    changed = three_stages(dropout=[0.2, 0.3])
    resumed = RecordingModule()
    with pytest.warns(UserWarning, match="different schedule"):
        make_trainer(tmp_path, [ProgressiveLearning(changed)]).fit(
            resumed, datamodule=FakeDataModule(), ckpt_path=tmp_path / "ckpt" / "last.ckpt"
        )
    assert_steps_follow_schedule(resumed.steps, changed)


def test_progressive_metrics_are_logged_every_epoch(tmp_path):
    schedule = three_stages()
    logger = L.pytorch.loggers.CSVLogger(tmp_path, name="run", version=0)
    make_trainer(tmp_path, [ProgressiveLearning(schedule)], logger=logger).fit(
        RecordingModule(), datamodule=FakeDataModule()
    )
    with open(Path(logger.log_dir) / "metrics.csv") as file:
        rows = [row for row in csv.DictReader(file) if row.get("progressive/stage")]
    assert [int(row["epoch"]) for row in rows] == list(range(MAX_EPOCHS))
    for row in rows:
        expected = schedule.values_at_epoch(int(row["epoch"]), MAX_EPOCHS)
        assert float(row["progressive/stage"]) == expected.stage
        assert float(row["progressive/image_size"]) == expected.image_size
        assert float(row["progressive/randaug_magnitude"]) == pytest.approx(expected.randaug_magnitude)
        assert float(row["progressive/mixup_alpha"]) == pytest.approx(expected.mixup_alpha)
        assert float(row["progressive/dropout"]) == pytest.approx(expected.dropout)
    assert "progressive/cutmix_alpha" not in rows[0]  # not scheduled, not logged


def test_stage_changes_and_the_schedule_are_printed(tmp_path, caplog):
    report = StageReport(dirpath=str(tmp_path / "images"))
    with caplog.at_level(logging.INFO):
        make_trainer(tmp_path, [ProgressiveLearning(three_stages()), report]).fit(
            RecordingModule(), datamodule=FakeDataModule()
        )
    # each stage's values once (the image report used to repeat them), then its saved batch
    assert sum("image size 8, RandAugment 1" in r.getMessage() for r in caplog.records) == 1
    saved = [r.getMessage() for r in caplog.records if "first training batch" in r.getMessage()]
    assert len(saved) == 3 and saved[1].endswith(str(tmp_path / "images" / "stage1_epoch002.png"))
    changes = [r.getMessage() for r in caplog.records if "Progressive learning: epoch" in r.getMessage()]
    assert changes == [
        "Progressive learning: epoch 0 trains stage 0: image size 8, RandAugment 1, mixup 0, dropout 0.1",
        "Progressive learning: epoch 2 trains stage 1: image size 12, RandAugment 5, mixup 0.2, dropout 0.3",
        "Progressive learning: epoch 4 trains stage 2: image size 16, RandAugment 9, mixup 0.4, dropout 0.5",
    ]
    assert any("3 stage(s) over 6 epochs" in r.getMessage() for r in caplog.records)


def test_eval_size_is_set_for_fit_and_evaluation(tmp_path):
    datamodule = FakeDataModule()
    trainer = make_trainer(
        tmp_path, [ProgressiveLearning(three_stages(eval_size=None))], with_validation=True
    )
    trainer.validate(RecordingModule(), datamodule=datamodule)
    assert datamodule.eval_size == 16  # the last stage's size when eval_size is unset
    datamodule = FakeDataModule()
    make_trainer(tmp_path, [ProgressiveLearning(three_stages())], with_validation=True).fit(
        RecordingModule(), datamodule=datamodule
    )
    assert datamodule.eval_size == 20


def test_evaluation_without_a_datamodule_is_left_alone(tmp_path):
    datamodule = FakeDataModule()
    trainer = make_trainer(tmp_path, [ProgressiveLearning(three_stages())], with_validation=True)
    trainer.validate(RecordingModule(), dataloaders=datamodule.val_dataloader())
    assert datamodule.eval_size == 32


def test_fast_dev_run_trains_the_first_stage(tmp_path):
    module = RecordingModule()
    make_trainer(tmp_path, [ProgressiveLearning(three_stages())], fast_dev_run=True).fit(
        module, datamodule=FakeDataModule()
    )
    assert [s["image_size"] for s in module.steps] == [(8, 8)]


def test_fewer_epochs_than_stages_is_a_config_error(tmp_path):
    trainer = make_trainer(tmp_path, [ProgressiveLearning(three_stages())], max_epochs=2)
    with pytest.raises(ConfigError, match="trainer.max_epochs=2"):
        trainer.fit(RecordingModule(), datamodule=FakeDataModule())


def test_training_without_a_datamodule_is_a_config_error(tmp_path):
    datamodule = FakeDataModule()
    trainer = make_trainer(tmp_path, [ProgressiveLearning(three_stages())])
    with pytest.raises(ConfigError, match="datamodule"):
        trainer.fit(RecordingModule(), train_dataloaders=datamodule.train_dataloader())


def test_module_without_setters_is_a_config_error(tmp_path):
    class PlainModule(L.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.head = nn.Linear(1, 2)

        def training_step(self, batch, batch_idx):
            return self.head(batch[0].mean(dim=(2, 3))).sum()

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.01)

    trainer = make_trainer(tmp_path, [ProgressiveLearning(three_stages())])
    with pytest.raises(ConfigError, match="set_mixup_alpha, set_dropout"):
        trainer.fit(PlainModule(), datamodule=FakeDataModule())


def test_schedule_must_be_a_progressive_schedule():
    with pytest.raises(ConfigError, match="ProgressiveSchedule"):
        ProgressiveLearning({"num_stages": 4})


# Through the real pieces: ImageDataModule, ClassificationModule, EfficientNetV2 and the train pipeline -----
REAL_SCHEDULE = [
    "schedule=progressive",
    "schedule.num_stages=4",
    "schedule.image_size=[16,40]",  # stages: 16, 24, 32, 40
    "schedule.size_multiple=8",
    "schedule.randaug_magnitude=[2,14]",
    "schedule.mixup_alpha=[0.0,0.6]",
    "schedule.cutmix_alpha=[0.0,0.3]",
    "schedule.dropout=[0.1,0.4]",
    "schedule.drop_path_rate=[0.0,0.3]",
    "schedule.eval_size=24",
]
REAL_TRAINING = [
    *TINY,
    "model=v2_b0",
    "data=fashion_mnist",
    "trainer.max_epochs=4",
    "trainer.limit_train_batches=2",
    "logger=csv",
]


class TrainingSpy:
    """Records what each training step of the real module trained with: the batch it received, the
    RandAugment magnitudes applied to that batch's samples, the alphas of its MixupCutmix call, and the
    p of the model's dropout layers; also the size of the images validation received."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, augment_log: Path | None = None) -> None:
        self.steps: list[dict] = []
        self.augment_log = augment_log
        self.val_sizes: set[tuple[int, int]] = set()
        self._magnitudes: list[float] = []
        self._mixup_calls: list[tuple[float, float]] = []
        spy = self
        apply, mix = RandAugment.apply, MixupCutmix.__call__
        training_step, validation_step = (
            ClassificationModule.training_step,
            ClassificationModule.validation_step,
        )

        def recording_apply(transform, img, *args, **params):
            spy._magnitudes.append(params["magnitude"])
            if augment_log is not None:  # one line per call, also from worker processes and FFCV threads
                with augment_log.open("a") as file:
                    file.write(f"{img.shape[0]} {img.shape[1]} {params['magnitude']}\n")
            return apply(transform, img, *args, **params)

        def recording_mix(mixup, x, y):
            spy._mixup_calls.append((mixup.mixup_alpha, mixup.cutmix_alpha))
            return mix(mixup, x, y)

        def recording_training_step(module, batch, batch_idx):
            magnitudes, spy._magnitudes = spy._magnitudes, []  # the samples of this batch
            loss = training_step(module, batch, batch_idx)
            calls, spy._mixup_calls = spy._mixup_calls, []
            dropouts = {m.p for m in module.model.modules() if isinstance(m, (nn.Dropout, Dropout))}
            spy.steps.append(
                dict(
                    epoch=module.current_epoch,
                    image_size=tuple(batch[0].shape[-2:]),
                    batch_size=batch[0].shape[0],
                    magnitudes=sorted(set(magnitudes)),
                    mixup_calls=calls,
                    dropouts=sorted(dropouts),
                    drop_path_rate=module.model.drop_path_rate,
                )
            )
            return loss

        def recording_validation_step(module, batch, batch_idx):
            spy.val_sizes.add(tuple(batch[0].shape[-2:]))
            return validation_step(module, batch, batch_idx)

        monkeypatch.setattr(RandAugment, "apply", recording_apply)
        monkeypatch.setattr(MixupCutmix, "__call__", recording_mix)
        monkeypatch.setattr(ClassificationModule, "training_step", recording_training_step)
        monkeypatch.setattr(ClassificationModule, "validation_step", recording_validation_step)

    def assert_magnitudes_follow_sizes(self, schedule: ProgressiveSchedule, max_epochs: int) -> None:
        """Where samples are augmented ahead (workers, FFCV's thread), each augmented image's size names
        its stage (sizes differ per stage): its magnitude must be that stage's, and every stage is seen."""
        expected = {}
        for epoch in range(max_epochs):
            values = schedule.values_at_epoch(epoch, max_epochs)
            expected[values.image_size] = values.randaug_magnitude
        seen: dict[int, set[float]] = {}
        for line in self.augment_log.read_text().splitlines():
            height, width, magnitude = line.split()
            assert height == width, line  # augmented after the crop to the stage's square size
            seen.setdefault(int(height), set()).add(float(magnitude))
        assert set(seen) == set(expected), (seen, expected)
        for size, magnitudes in seen.items():
            assert all(m == pytest.approx(expected[size]) for m in magnitudes), (size, magnitudes, expected)

    def assert_follows(
        self, schedule: ProgressiveSchedule, max_epochs: int, epochs: list[int], check_magnitudes: bool = True
    ) -> None:
        """Magnitudes can be attributed to steps only when samples are augmented on demand in this
        process (torch loader, num_workers=0): workers and FFCV's loader thread work ahead."""
        assert sorted({step["epoch"] for step in self.steps}) == epochs
        for step in self.steps:
            expected = schedule.values_at_epoch(step["epoch"], max_epochs)
            assert step["image_size"] == (expected.image_size, expected.image_size), step
            assert step["batch_size"] == 8, step  # constant across stages, as in the paper
            if check_magnitudes:
                assert step["magnitudes"] == pytest.approx([expected.randaug_magnitude]), step
            assert step["mixup_calls"] == [
                (pytest.approx(expected.mixup_alpha), pytest.approx(expected.cutmix_alpha))
            ], step
            assert step["dropouts"] == pytest.approx([expected.dropout]), step
            assert step["drop_path_rate"] == pytest.approx(expected.drop_path_rate), step


@pytest.mark.timeout(600)
@pytest.mark.parametrize("num_workers", [0, 2])
def test_train_pipeline_trains_every_epoch_with_its_stage(compose_train, monkeypatch, tmp_path, num_workers):
    """num_workers=2 runs the default loader set-up (persistent workers) of conf/data."""
    spy = TrainingSpy(monkeypatch, augment_log=tmp_path / "augmented.txt")
    out = tmp_path / "run"
    cfg = compose_train([*REAL_TRAINING, *REAL_SCHEDULE, f"data.num_workers={num_workers}"], output_dir=out)
    train(cfg)
    schedule = instantiate(cfg.schedule)

    spy.assert_follows(schedule, 4, epochs=[0, 1, 2, 3], check_magnitudes=num_workers == 0)
    spy.assert_magnitudes_follow_sizes(schedule, 4)  # also in the worker processes
    assert [step["image_size"][0] for step in spy.steps] == [16, 16, 24, 24, 32, 32, 40, 40]
    assert spy.val_sizes == {(24, 24)}  # evaluation at schedule.eval_size
    with open(out / "csv" / "metrics.csv") as file:
        rows = [row for row in csv.DictReader(file) if row.get("progressive/stage")]
    assert [int(row["epoch"]) for row in rows] == [0, 1, 2, 3]
    for row in rows:
        expected = schedule.values_at_epoch(int(row["epoch"]), 4)
        assert float(row["progressive/image_size"]) == expected.image_size
        assert float(row["train/image_size"]) == expected.image_size  # from the batches themselves
        assert float(row["progressive/randaug_magnitude"]) == pytest.approx(expected.randaug_magnitude)
        assert float(row["progressive/mixup_alpha"]) == pytest.approx(expected.mixup_alpha)
        assert float(row["progressive/cutmix_alpha"]) == pytest.approx(expected.cutmix_alpha)
        assert float(row["progressive/dropout"]) == pytest.approx(expected.dropout)
        assert float(row["progressive/drop_path_rate"]) == pytest.approx(expected.drop_path_rate)


@pytest.mark.ffcv
@pytest.mark.timeout(300)
def test_train_pipeline_with_the_ffcv_loader_follows_the_schedule(
    compose_train, monkeypatch, tmp_path, colour_folder
):
    require_module("ffcv", "the ffcv extra")
    spy = TrainingSpy(monkeypatch, augment_log=tmp_path / "augmented.txt")
    overrides = [
        "data=cifar10",
        f"data.root={colour_folder}",
        "data.loader=ffcv",
        f"data.beton_dir={tmp_path}",
    ]
    cfg = compose_train([*REAL_TRAINING, *REAL_SCHEDULE, *overrides, "data.subset=null"])
    train(cfg)
    spy.assert_follows(instantiate(cfg.schedule), 4, epochs=[0, 1, 2, 3], check_magnitudes=False)
    spy.assert_magnitudes_follow_sizes(instantiate(cfg.schedule), 4)  # applied in FFCV's loader thread
    assert [step["image_size"][0] for step in spy.steps] == [16, 16, 24, 24, 32, 32, 40, 40]
    assert spy.val_sizes == {(24, 24)}


@pytest.mark.timeout(600)
def test_real_training_resumed_from_last_ckpt_continues_with_the_next_stage(
    compose_train, monkeypatch, tmp_path
):
    """Stop after stage 1 (epoch 1 of 4), resume from last.ckpt in fresh objects: stage 2 applies.

    The checkpoint callback is our own: with `monitor` set, Lightning 2.6 rewrites last.ckpt only in
    steps that also save a top-k checkpoint, which would make the resumed epoch depend on val/acc."""
    cfg = compose_train([*REAL_TRAINING, *REAL_SCHEDULE], output_dir=tmp_path / "run")
    schedule = instantiate(cfg.schedule)
    checkpoints = tmp_path / "run" / "checkpoints"

    def fit(extra_callbacks: list, ckpt_path: Path | None = None) -> None:
        datamodule = instantiate(cfg.data)
        module = build_module(cfg, datamodule)
        callbacks = [instantiate(cfg.callbacks.progressive), *extra_callbacks]
        trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=False, enable_progress_bar=False)
        trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path)

    fit([ModelCheckpoint(dirpath=checkpoints, save_last=True), StopAfterEpoch(1)])
    spy = TrainingSpy(monkeypatch)
    fit([], ckpt_path=checkpoints / "last.ckpt")
    spy.assert_follows(schedule, 4, epochs=[2, 3])
    assert spy.steps[0]["image_size"] == (32, 32)


def test_paper_presets_compose_with_any_model(compose_train):
    """`python src/train.py model=v2_m schedule=progressive` (and the paper presets) compose and describe."""
    for schedule_name in ("progressive", "fixed", "resize_only", "paper_m", "official_l"):
        cfg = compose_train(["model=v2_m", f"schedule={schedule_name}"])
        schedule = instantiate(cfg.schedule)
        assert f"over {cfg.trainer.max_epochs} epochs" in schedule.describe(cfg.trainer.max_epochs)
        assert instantiate(cfg.callbacks.progressive).schedule == schedule
