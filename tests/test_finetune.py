"""Fine-tuning: backbone/head learning rates, a frozen backbone that unfreezes on time, and the whole
Kaggle loop on generated colour images: pre-train (folder layout), fine-tune from that checkpoint on other
classes (CSV layout, K-fold), join the out-of-fold predictions, predict with TTA, write a submission."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import lightning as L
import numpy as np
import pytest
import torch

from effnetv2.data.datamodule import ImageDataModule
from effnetv2.errors import ConfigError
from effnetv2.inference.checkpoint import load_classifier
from effnetv2.inference.inputs import csv_inputs, folder_inputs
from effnetv2.inference.oof import collect_out_of_fold, cv_scores
from effnetv2.inference.predictor import predict_probabilities
from effnetv2.inference.submission import write_submission
from effnetv2.models import create_model
from effnetv2.training.callbacks.finetune import FreezeBackbone, NewHead
from effnetv2.training.finetune import backbone_modules, parameter_groups
from effnetv2.training.module import ClassificationModule
from effnetv2.training.pipeline import train
from helpers.configs import compose_config
from helpers.paths import ROOT
from helpers.tiny import TINY

pytest_plugins = ["fixtures_data", "fixtures_inference"]

MODEL = {"_target_": "effnetv2.models.create_model", "name": "v2_b0"}
FINETUNE_CLASSES = ("green", "red", "yellow")


def backbone_weights(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Convolution weights of the backbone (what a frozen backbone must keep; BatchNorm may adapt)."""
    return {
        key: value.clone()
        for key, value in state.items()
        if key.endswith(".weight") and value.ndim == 4 and not key.startswith("classifier")
    }


def assert_same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys() and a
    changed = [key for key in a if not torch.equal(a[key], b[key])]
    assert not changed, f"{len(changed)} tensors changed, e.g. {changed[:3]}"


# Unit level ---------------------------------------------------------------------------------------


def test_parameter_groups_put_every_parameter_in_one_group_with_its_rate() -> None:
    model = create_model("v2_b0", num_classes=3)
    next(model.stem.parameters()).requires_grad_(False)  # frozen parameters must stay in the optimizer
    groups = parameter_groups(model, weight_decay=0.05, lr=1e-3, backbone_lr=1e-4)
    seen = [id(p) for group in groups for p in group["params"]]
    assert sorted(seen) == sorted(id(p) for p in model.parameters())
    head = {id(p) for p in model.classifier.parameters()}
    for group in groups:
        in_head = {id(p) in head for p in group["params"]}
        assert in_head == {group["name"].startswith("head")}
        assert group["lr"] == (1e-3 if group["name"].startswith("head") else 1e-4)
        assert group["weight_decay"] == (0.0 if group["name"].endswith("no_decay") else 0.05)
        assert all((p.ndim <= 1) == group["name"].endswith("no_decay") for p in group["params"])


def test_freeze_backbone_rejects_negative_epochs() -> None:
    with pytest.raises(ConfigError, match="frozen epochs"):
        FreezeBackbone(epochs=-1)


def test_freezing_under_ddp_is_refused() -> None:
    module = ClassificationModule(
        model=MODEL, optimizer={"_target_": "torch.optim.AdamW", "lr": 1e-3}, lr_scheduler={}, num_classes=2
    )
    trainer = SimpleNamespace(world_size=2, optimizers=[])
    with pytest.raises(ConfigError, match="DDP"):
        FreezeBackbone(epochs=1).on_fit_start(trainer, module)
    FreezeBackbone(epochs=0).on_fit_start(SimpleNamespace(world_size=2, optimizers=[]), module)


@pytest.mark.parametrize(
    ("pretrained_classes", "classes", "kept"),
    [
        (("cat", "dog", "frog"), ("cat", "dog", "frog"), True),  # same classes: continue with their head
        (("cat", "dog", "frog"), ("ship", "truck", "horse"), False),  # same count, other classes
        (("cat", "dog", "frog"), ("ship", "truck"), False),  # other count: re-initialised, then zeroed
    ],
)
def test_new_head_starts_at_zero_only_for_other_classes(
    make_checkpoint, pretrained_classes, classes, kept
) -> None:
    pretrained = make_checkpoint("-".join(pretrained_classes), class_names=pretrained_classes)
    module = ClassificationModule(
        model={**MODEL, "pretrained": str(pretrained)},
        optimizer={"_target_": "torch.optim.AdamW", "lr": 1e-3},
        lr_scheduler={},
        num_classes=len(classes),
        class_names=list(classes),
    )
    before = module.model.classifier.weight.detach().clone()
    NewHead().setup(None, module, stage="fit")
    head = module.model.classifier
    if kept:
        loaded = torch.load(pretrained, weights_only=True)["state_dict"]["model.classifier.weight"]
        assert torch.equal(head.weight, before) and torch.equal(head.weight, loaded)
    else:
        assert not head.weight.any() and not head.bias.any()


def test_new_head_leaves_models_without_pretrained_weights_alone() -> None:
    model = {**MODEL, "classifier_init": "uniform"}  # a head with weights to leave alone
    module = ClassificationModule(
        model=model, optimizer={"_target_": "torch.optim.AdamW", "lr": 1e-3}, lr_scheduler={}, num_classes=3
    )
    before = module.model.classifier.weight.detach().clone()
    NewHead().setup(None, module, stage="fit")
    assert torch.equal(module.model.classifier.weight, before) and before.any()


class WeightSnapshots(L.Callback):
    """State dicts of the model before training and after each training epoch."""

    def __init__(self) -> None:
        self.before: dict[str, torch.Tensor] = {}
        self.after_epoch: list[dict[str, torch.Tensor]] = []

    @staticmethod
    def _copy(module: L.LightningModule) -> dict[str, torch.Tensor]:
        return {k: v.detach().clone() for k, v in module.model.state_dict().items()}

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.before = self._copy(pl_module)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.after_epoch.append(self._copy(pl_module))


def tiny_fit(
    root: Path, optimizer: dict, callbacks: list[L.Callback], epochs: int = 2
) -> ClassificationModule:
    datamodule = ImageDataModule(
        source="image_folder",
        root=str(root),
        in_chans=3,
        mean=(0.5, 0.5, 0.5),
        std=(0.25, 0.25, 0.25),
        batch_size=4,
        num_workers=0,
        image_size=16,
        eval_size=16,
    )
    module = ClassificationModule(
        model=MODEL,
        optimizer=optimizer,
        lr_scheduler={"name": "constant"},
        num_classes=datamodule.num_classes,
        lr_batch_base=None,
    )
    trainer = L.Trainer(
        max_epochs=epochs,
        limit_train_batches=2,
        limit_val_batches=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=callbacks,
    )
    trainer.fit(module, datamodule=datamodule)
    return module


@pytest.mark.timeout(300)
def test_frozen_backbone_trains_only_the_head_then_everything(tiny_folder) -> None:
    snapshots = WeightSnapshots()
    optimizer = {"_target_": "torch.optim.AdamW", "lr": 1e-2, "weight_decay": 0.0, "backbone_lr_scale": 0.1}
    module = tiny_fit(tiny_folder, optimizer, [FreezeBackbone(epochs=1), snapshots])
    lrs = {group["name"]: group["lr"] for group in module.optimizers().optimizer.param_groups}
    assert lrs["backbone"] == pytest.approx(1e-3) and lrs["head"] == pytest.approx(1e-2)
    before, first, second = snapshots.before, *snapshots.after_epoch
    # Epoch 0: the backbone's convolutions stay frozen, the classifier learns.
    assert_same(backbone_weights(before), backbone_weights(first))
    assert not torch.equal(before["classifier.weight"], first["classifier.weight"])
    # Epoch 1: the backbone learns too.
    changed = [key for key, value in backbone_weights(first).items() if not torch.equal(value, second[key])]
    assert len(changed) > 0.9 * len(backbone_weights(first)), "the backbone did not train after unfreezing"
    assert all(p.requires_grad for m in backbone_modules(module.model) for p in m.parameters())


@pytest.mark.timeout(300)
def test_freezing_without_the_backbone_in_the_optimizer_is_refused(tiny_folder) -> None:
    optimizer = {"_target_": "torch.optim.AdamW", "lr": 1e-2}
    with pytest.raises(ConfigError, match="backbone_lr_scale"):
        tiny_fit(tiny_folder, optimizer, [FreezeBackbone(epochs=1)])


def test_finetune_experiment_composes_the_transfer_recipe(compose_train, tmp_path) -> None:
    cfg = compose_train(["experiment=finetune", "data.root=/images", "model.pretrained=/weights.ckpt"])
    assert cfg.data.source._target_.endswith("ImageFolder") and cfg.model.pretrained == "/weights.ckpt"
    assert cfg.optimizer.weight_decay == 0.0 and cfg.optimizer.backbone_lr_scale < 1
    assert cfg.lr_scheduler.name == "cosine"
    assert cfg.callbacks.freeze_backbone.epochs >= 1
    assert cfg.callbacks.new_head._target_.endswith("NewHead")
    assert cfg.callbacks.val_predictions.path == str(tmp_path / "run" / "val_predictions.csv")


# End to end on real images -------------------------------------------------------------------------


def subset_csv(source: Path, destination: Path, classes: tuple[str, ...], drop_labels: bool = False) -> Path:
    """Rows of a Kaggle-style CSV whose label is in `classes` (labels removed for a test CSV)."""
    with source.open(newline="") as file:
        rows = [row for row in csv.DictReader(file) if row["label"] in classes]
    with destination.open("w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=["id"] if drop_labels else ["id", "label"])
        writer.writeheader()
        writer.writerows({"id": row["id"]} if drop_labels else row for row in rows)
    return destination


@pytest.fixture(scope="module")
def pretrained_checkpoint(colour_folder: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A v2_b0 trained (briefly) on all ten generated classes in the image-folder layout."""

    out = tmp_path_factory.mktemp("pretrain")
    overrides = [
        "data=image_folder",
        f"data.root={colour_folder}",
        "data.image_size=32",
        "data.eval_size=32",
        "data.crop_pct=1.0",
        "schedule=fixed",
        *TINY,
        "trainer.max_epochs=1",
    ]
    train(compose_config("train", overrides, out))
    checkpoint = out / "checkpoints" / "last.ckpt"
    assert checkpoint.is_file()
    return checkpoint


@pytest.mark.subprocess
@pytest.mark.timeout(900)
def test_kaggle_loop_on_generated_images(
    colour_folder: Path, colour_csv: Path, pretrained_checkpoint: Path, tmp_path: Path
) -> None:

    root = tmp_path / "competition"
    root.mkdir()
    subset_csv(colour_csv / "train.csv", root / "train.csv", FINETUNE_CLASSES)
    test_csv = subset_csv(colour_csv / "test.csv", root / "test.csv", FINETUNE_CLASSES, drop_labels=True)
    multirun = tmp_path / "multirun"
    for fold in (0, 1):
        overrides = [
            "experiment=finetune",
            "data=csv",
            f"data.root={root}",
            f"data.image_dir={colour_csv / 'train'}",
            "data.image_size=32",
            "data.eval_size=32",
            "data.crop_pct=1.0",
            f"model.pretrained={pretrained_checkpoint}",
            "data.num_folds=2",
            f"data.fold={fold}",
            *TINY,
            "trainer.max_epochs=1",
            "data.subset=null",
            "trainer.max_epochs=2",
            "callbacks.freeze_backbone.epochs=2",  # frozen throughout: the backbone must stay as pre-trained
            "test=false",
        ]
        train(compose_config("train", overrides, multirun / str(fold)))

    # Fine-tuned from the 10-class checkpoint with a new 3-class head; the frozen backbone is unchanged.
    pretrained = torch.load(pretrained_checkpoint, map_location="cpu", weights_only=True)["state_dict"]
    fold_checkpoints = sorted(multirun.glob("*/checkpoints/epoch*.ckpt"))
    assert len(fold_checkpoints) == 2
    finetuned = torch.load(fold_checkpoints[0], map_location="cpu", weights_only=True)
    assert finetuned["hyper_parameters"]["class_names"] == list(FINETUNE_CLASSES)
    assert finetuned["state_dict"]["model.classifier.weight"].shape[0] == 3
    assert pretrained["model.classifier.weight"].shape[0] == 10
    assert_same(backbone_weights(pretrained), backbone_weights(finetuned["state_dict"]))

    # Out-of-fold: every training sample predicted once, by the fold that did not train on it.
    oof, files = collect_out_of_fold(multirun)
    assert len(files) == 2 and len(oof) == 96 and len(set(oof.ids)) == 96  # 3 classes x 32
    assert sorted(set(oof.folds.tolist())) == [0, 1]
    np.testing.assert_allclose(oof.probabilities.sum(axis=1), 1.0, atol=1e-4)
    scores = cv_scores(oof)
    assert scores["accuracy"] == pytest.approx(float((oof.probabilities.argmax(1) == oof.targets).mean()))
    assert scores["missing_folds"] == []
    result = subprocess.run(
        [sys.executable, "src/oof.py", f"run_dir={multirun}", f"hydra.run.dir={tmp_path / 'oof'}"],
        cwd=ROOT,
        env={**os.environ, "NO_ALBUMENTATIONS_UPDATE": "1"},
        capture_output=True,
        text=True,
        timeout=200,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"top-1 {scores['accuracy']:.4f}" in result.stdout
    assert json.loads((multirun / "cv_score.json").read_text())["samples"] == 96
    assert (multirun / "oof_predictions.csv").read_text().count("\n") == 97

    # Fold ensemble with TTA over the test CSV -> a valid submission in the CSV's order.
    classifiers = [load_classifier(path) for path in fold_checkpoints]
    inputs = csv_inputs(test_csv, colour_csv / "test")
    probabilities = predict_probabilities(
        classifiers, inputs.samples, sizes=[32, 40], hflip=True, progress=False
    )
    submission = write_submission(
        tmp_path / "submission.csv", inputs.ids, probabilities, classifiers[0].class_names
    )
    with submission.open(newline="") as file:
        rows = list(csv.DictReader(file))
    with test_csv.open(newline="") as file:
        expected_ids = [row["id"] for row in csv.DictReader(file)]
    assert [row["id"] for row in rows] == expected_ids and len(rows) == 24  # 3 classes x 8
    assert {row["label"] for row in rows} <= set(FINETUNE_CLASSES)

    # The same models on a folder of images.
    folder = folder_inputs(colour_folder / "test" / "green")
    assert predict_probabilities(classifiers, folder.samples, progress=False).shape == (8, 3)
