"""The LightningModule: one EfficientNetV2 classifier, its loss, metrics and optimizer.

Everything the progressive-learning callback changes between stages is a setter here
(mixup/CutMix alpha, dropout, drop-path), so the callback never reaches into internals.

`monitor` names the validation metric that picks the best checkpoint (conf/callbacks/default.yaml
reads it, with its mode from `monitor_mode`), which the final test and the out-of-fold predictions use.
Macro-F1 is logged always (it costs a confusion count per batch); macro AUROC keeps every validation
probability until the epoch ends, so it is computed only when monitored.
"""

from __future__ import annotations

import random
import time
from typing import Any

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from torchmetrics.classification import (
    MulticlassAccuracy,
    MulticlassAUROC,
    MulticlassConfusionMatrix,
    MulticlassF1Score,
)

from effnetv2.checkpoint import check_checkpoint_fits
from effnetv2.config import monitor_mode
from effnetv2.data.balance import balanced_class_weights
from effnetv2.data.mixup import MixupCutmix
from effnetv2.errors import ConfigError
from effnetv2.training.finetune import parameter_groups as finetune_parameter_groups
from effnetv2.training.optim import lr_lambda, parameter_groups

CLASS_WEIGHTS = (None, "balanced")


def _plain(config: Any) -> Any:
    """Hydra configs become plain containers so checkpoints and W&B store readable values."""
    if isinstance(config, DictConfig):
        return OmegaConf.to_container(config, resolve=True)
    return config


def collect_rng_states(mixup: MixupCutmix) -> dict[str, Any]:
    """Every random stream training draws from, as plain values (loadable with weights_only=True).

    Lightning does not checkpoint random states, so without them a resumed run shuffles, drops out and
    mixes differently from an uninterrupted one.
    """
    name, keys, pos, has_gauss, cached = np.random.get_state()  # noqa: NPY002 (the global stream itself)
    states: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": (name, keys.tolist(), pos, has_gauss, cached),
        "python": random.getstate(),
        "mixup": mixup.rng.bit_generator.state,
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def restore_rng_states(states: dict[str, Any], mixup: MixupCutmix) -> None:
    torch.set_rng_state(states["torch"])
    name, keys, pos, has_gauss, cached = states["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))  # noqa: NPY002
    version, internal, gauss = states["python"]
    random.setstate((version, tuple(internal), gauss))
    mixup.rng.bit_generator.state = states["mixup"]
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


def allow_one_graph_per_size() -> None:
    """torch.compile keeps 8 graphs per function by default, then silently runs eagerly: progressive
    learning needs one per stage size, train and eval, plus a smaller last batch of each."""
    config = torch._dynamo.config
    name = "recompile_limit" if hasattr(config, "recompile_limit") else "cache_size_limit"
    setattr(config, name, max(getattr(config, name), 64))


def build_model(
    config: dict, num_classes: int, in_chans: int, channels_last: bool, compile: bool, compile_backend: str
) -> torch.nn.Module:
    """The network of `config` (`model.*`), in channels-last memory format and compiled when asked."""
    model = instantiate(config, num_classes=num_classes, in_chans=in_chans)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    if compile:
        # In place: checkpoints keep the plain `model.*` keys and load with or without compile.
        # dynamic=False: one static graph per image size (a stage's size compiles once; without it
        # the second size would make every size dynamic). Drop rates live in buffers, not guarded.
        model.compile(dynamic=False, backend=compile_backend)
        allow_one_graph_per_size()
    return model


class ClassificationModule(L.LightningModule):
    """Image classification with EfficientNetV2, as trained in the paper (label smoothing, mixup,
    no weight decay on norms and biases, learning rate scaled with the batch size)."""

    def __init__(
        self,
        model: dict,
        optimizer: dict,
        lr_scheduler: dict,
        num_classes: int,
        in_chans: int = 3,
        class_names: list[str] | None = None,
        label_smoothing: float = 0.1,
        mixup_alpha: float = 0.0,
        cutmix_alpha: float = 0.0,
        lr_batch_base: int | None = 256,
        channels_last: bool = False,
        compile: bool = False,
        compile_backend: str = "inductor",
        monitor: str = "val/acc",
        class_weights: str | None = None,
        max_logged_classes: int = 50,
        data: dict | None = None,
    ) -> None:
        super().__init__()
        monitor_mode(monitor)
        if class_weights not in CLASS_WEIGHTS:
            raise ConfigError(f"module.class_weights={class_weights!r} is not one of {list(CLASS_WEIGHTS)}")
        model, optimizer, lr_scheduler = _plain(model), _plain(optimizer), _plain(lr_scheduler)
        self.save_hyperparameters(
            dict(
                model=model,
                optimizer=optimizer,
                lr_scheduler=lr_scheduler,
                num_classes=num_classes,
                in_chans=in_chans,
                class_names=list(class_names) if class_names is not None else None,
                label_smoothing=label_smoothing,
                mixup_alpha=mixup_alpha,
                cutmix_alpha=cutmix_alpha,
                lr_batch_base=lr_batch_base,
                channels_last=channels_last,
                compile=compile,
                compile_backend=compile_backend,
                monitor=monitor,
                class_weights=class_weights,
                max_logged_classes=max_logged_classes,
                data=_plain(data),
            ),
            logger=False,  # the pipeline logs the whole run config, these values included
        )
        self.model = build_model(model, num_classes, in_chans, channels_last, compile, compile_backend)
        self.mixup = MixupCutmix(
            num_classes, mixup_alpha=mixup_alpha, cutmix_alpha=cutmix_alpha, label_smoothing=label_smoothing
        )
        # module.class_weights=balanced: set in `setup` from the train split's labels; not in checkpoints
        self.register_buffer("class_weight", None, persistent=False)
        self._add_metrics(num_classes, with_auroc=monitor == "val/auroc")
        self._epoch_start: float | None = None
        self._epoch_images = 0
        self._epoch_image_size: int | None = None

    def _add_metrics(self, num_classes: int, with_auroc: bool) -> None:
        """Accuracy, top-5 and macro-F1 for train/val/test; per-class accuracy and the confusion matrix
        for the test; macro AUROC only when monitored (it keeps every probability until the epoch ends)."""
        top5 = min(5, num_classes)
        self.train_acc = MulticlassAccuracy(num_classes, average="micro")
        self.val_acc = MulticlassAccuracy(num_classes, average="micro")
        self.val_acc_top5 = MulticlassAccuracy(num_classes, top_k=top5, average="micro")
        self.val_f1 = MulticlassF1Score(num_classes, average="macro")
        self.test_acc = MulticlassAccuracy(num_classes, average="micro")
        self.test_acc_top5 = MulticlassAccuracy(num_classes, top_k=top5, average="micro")
        self.test_f1 = MulticlassF1Score(num_classes, average="macro")
        self.val_auroc = MulticlassAUROC(num_classes, average="macro") if with_auroc else None
        self.test_auroc = MulticlassAUROC(num_classes, average="macro") if with_auroc else None
        self.test_acc_per_class = MulticlassAccuracy(num_classes, average=None)
        self.test_confusion = MulticlassConfusionMatrix(num_classes)

    # Setters used by progressive learning -------------------------------------------------------
    def set_mixup_alpha(self, alpha: float) -> None:
        self.mixup.mixup_alpha = float(alpha)

    def set_cutmix_alpha(self, alpha: float) -> None:
        self.mixup.cutmix_alpha = float(alpha)

    def set_dropout(self, p: float) -> None:
        self.model.set_dropout(p)

    def set_drop_path_rate(self, rate: float) -> None:
        self.model.set_drop_path_rate(rate)

    def setup(self, stage: str) -> None:
        """Balanced class weights need the train split, which the data module knows once set up."""
        if stage == "fit" and self.hparams.class_weights == "balanced":
            weights = balanced_class_weights(self.trainer.datamodule.train_labels(), self.hparams.num_classes)
            self.class_weight = torch.as_tensor(weights, dtype=torch.float32, device=self.device)

    # Forward and steps ----------------------------------------------------------------------------
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if self.hparams.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        return self.model(images)

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        images, targets = batch
        mixed, soft_targets = self.mixup(images, targets)
        logits = self(mixed)
        loss = F.cross_entropy(logits, soft_targets, weight=self.class_weight)
        self.train_acc(logits.detach(), targets)
        self._epoch_images += images.shape[0]
        self._epoch_image_size = images.shape[
            -1
        ]  # logged once per epoch: a float per step is a copy per step
        # not prog_bar: Lightning converts progress-bar values to Python floats after every step (a
        # host-device sync per step); StageProgressBar shows train/loss every log_every_n_steps instead
        self.log("train/loss", loss, on_step=True, on_epoch=True)
        self.log("train/acc", self.train_acc, on_step=False, on_epoch=True)
        return loss

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        images, targets = batch
        logits = self(images)
        self.log("val/loss", F.cross_entropy(logits, targets), prog_bar=True, sync_dist=True)
        self.val_acc(logits, targets)
        self.val_acc_top5(logits, targets)
        self.val_f1(logits, targets)
        self.log("val/acc", self.val_acc, prog_bar=True)
        self.log("val/acc_top5", self.val_acc_top5)
        self.log("val/f1_macro", self.val_f1)
        if self.val_auroc is not None:
            self.val_auroc(logits, targets)
            self.log("val/auroc", self.val_auroc)

    def test_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        images, targets = batch
        logits = self(images)
        self.log("test/loss", F.cross_entropy(logits, targets), sync_dist=True)
        self.test_acc(logits, targets)
        self.test_acc_top5(logits, targets)
        self.test_f1(logits, targets)
        self.test_acc_per_class.update(logits, targets)
        self.test_confusion.update(logits, targets)
        self.log("test/acc", self.test_acc)
        self.log("test/acc_top5", self.test_acc_top5)
        self.log("test/f1_macro", self.test_f1)
        if self.test_auroc is not None:
            self.test_auroc(logits, targets)
            self.log("test/auroc", self.test_auroc)

    def on_test_epoch_start(self) -> None:
        self.test_acc_per_class.reset()
        self.test_confusion.reset()

    def on_test_epoch_end(self) -> None:
        """Keep the confusion matrix and per-class accuracy for the loggers and the run folder."""
        self.test_confusion_matrix = self.test_confusion.compute().cpu()
        per_class = self.test_acc_per_class.compute().cpu()
        self.test_per_class_accuracy = per_class
        if len(per_class) > self.hparams.max_logged_classes:
            return  # a metric per class would swamp the loggers: per_class_accuracy.csv has them
        names = self.hparams.class_names or [str(i) for i in range(len(per_class))]
        for name, acc in zip(names, per_class.tolist()):
            self.log(f"test/acc_class/{name}", acc)

    # Checkpoints ------------------------------------------------------------------------------------
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Store what a resumed run needs to continue the same random stream (data order, dropout,
        mixup), and the evaluation size in force, which eval/predict use by default."""
        checkpoint["rng_states"] = collect_rng_states(self.mixup)
        datamodule = self._trainer.datamodule if self._trainer is not None else None
        if getattr(datamodule, "eval_size", None):
            checkpoint["eval_size"] = int(datamodule.eval_size)

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        source = self._trainer.ckpt_path if self._trainer is not None and self._trainer.ckpt_path else None
        check_checkpoint_fits(checkpoint, self, f"ckpt_path={source}" if source else "the checkpoint")
        fitting = self._trainer is not None and self._trainer.state.fn == "fit"
        if fitting and "rng_states" in checkpoint:
            restore_rng_states(checkpoint["rng_states"], self.mixup)

    def predict_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        images = batch[0] if isinstance(batch, (tuple, list)) else batch
        return self(images).softmax(dim=-1)

    # Throughput -------------------------------------------------------------------------------------
    def on_train_epoch_start(self) -> None:
        self._epoch_start = time.perf_counter()
        self._epoch_images = 0
        self._epoch_image_size = None

    def on_train_epoch_end(self) -> None:
        if self._epoch_image_size is not None:
            self.log("train/image_size", float(self._epoch_image_size), prog_bar=True)
        if self._epoch_start is not None and self._epoch_images:
            seconds = time.perf_counter() - self._epoch_start
            self.log("train/images_per_sec", self._epoch_images / seconds * self.trainer.world_size)

    # Optimizer ---------------------------------------------------------------------------------------
    def scaled_lr(self, base_lr: float) -> float:
        """The config's learning rate is per `lr_batch_base` images (paper: 0.016 per 256)."""
        base = self.hparams.lr_batch_base
        if not base:
            return base_lr
        batch_size = getattr(self.trainer.datamodule, "batch_size", base) if self.trainer else base
        effective = batch_size * self.trainer.accumulate_grad_batches * self.trainer.world_size
        return base_lr * effective / base

    def configure_optimizers(self) -> dict:
        config = dict(self.hparams.optimizer)
        weight_decay = config.pop("weight_decay", 0.0)
        backbone_lr_scale = config.pop("backbone_lr_scale", None)  # fine-tuning: see training/finetune.py
        lr = config["lr"] = self.scaled_lr(config["lr"])
        groups = (
            parameter_groups(self.model, weight_decay)
            if backbone_lr_scale is None
            else finetune_parameter_groups(self.model, weight_decay, lr, lr * backbone_lr_scale)
        )
        optimizer = instantiate(config, groups, _convert_="all")
        scheduler_config = dict(self.hparams.lr_scheduler)
        total_steps = max(1, int(self.trainer.estimated_stepping_batches))
        steps_per_epoch = max(1, total_steps // max(1, self.trainer.max_epochs or 1))
        multiplier = lr_lambda(total_steps=total_steps, steps_per_epoch=steps_per_epoch, **scheduler_config)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, multiplier)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
