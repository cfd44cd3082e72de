"""Fine-tuning callbacks: `FreezeBackbone` keeps the pre-trained backbone frozen for the first epochs,
`NewHead` starts a classifier for new classes at zero. Why the backbone stays in the optimizer while
frozen: `effnetv2.training.finetune`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import BaseFinetuning
from lightning.pytorch.utilities import rank_zero_info
from torch import nn
from torch.optim import Optimizer

from effnetv2.checkpoint import read_checkpoint
from effnetv2.errors import ConfigError
from effnetv2.models.weights import detect_layout, module_name_map, read_weights_file
from effnetv2.training.finetune import backbone_modules


class FreezeBackbone(BaseFinetuning):
    """Keep the pre-trained backbone frozen for the first `epochs` epochs, then train everything.

    BatchNorm layers stay trainable while frozen by default (`train_bn`), so their statistics adapt to
    the new data; `train_bn=False` freezes them too (their running statistics stop updating).
    Needs the backbone in the optimizer, i.e. `optimizer.backbone_lr_scale` set (experiment=finetune).
    Not with DDP (epochs=0 there): DDP never synchronises parameters that were frozen when it started.
    """

    def __init__(self, epochs: int = 1, train_bn: bool = True) -> None:
        super().__init__()
        if epochs < 0:
            raise ConfigError(f"FreezeBackbone(epochs={epochs}): the number of frozen epochs must be >= 0")
        self.epochs = int(epochs)
        self.train_bn = train_bn
        self._frozen = False

    def freeze_before_training(self, pl_module: L.LightningModule) -> None:
        if self.epochs > 0:
            self.freeze(backbone_modules(pl_module.model), train_bn=self.train_bn)
            self._frozen = True

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        super().on_fit_start(trainer, pl_module)
        if self.epochs == 0:
            return
        if trainer.world_size > 1:
            raise ConfigError(
                "callbacks.freeze_backbone.epochs > 0 under DDP: DDP only synchronises the parameters that "
                "train when it starts, so an unfrozen backbone would drift apart between processes. Set "
                "callbacks.freeze_backbone.epochs=0 (the backbone still learns at its own learning rate)."
            )
        optimized = {
            id(param)
            for optimizer in trainer.optimizers
            for group in optimizer.param_groups
            for param in group["params"]
        }
        backbone = [param for module in backbone_modules(pl_module.model) for param in module.parameters()]
        if any(id(param) not in optimized for param in backbone):
            raise ConfigError(
                "callbacks.freeze_backbone: the frozen backbone is not in the optimizer, so it would never "
                "train after unfreezing. Set optimizer.backbone_lr_scale (e.g. 0.1; experiment=finetune "
                "does) or remove the callback (callbacks.freeze_backbone=null)."
            )

    def finetune_function(self, pl_module: L.LightningModule, epoch: int, optimizer: Optimizer) -> None:
        if self._frozen and epoch >= self.epochs:
            self.make_trainable(backbone_modules(pl_module.model))
            self._frozen = False
            rank_zero_info(f"FreezeBackbone: backbone unfrozen at epoch {epoch}")

    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        """Lightning skips `on_train_epoch_start` for an epoch it resumes mid-way: catch up here."""
        if self._frozen:
            for optimizer in trainer.optimizers:
                self.finetune_function(pl_module, trainer.current_epoch, optimizer)


def pretrained_head(path: str, model: nn.Module) -> tuple[bool, list[str] | None]:
    """(whether the weights file holds a classifier of the model's shape, the class names it records).

    Only checkpoints of src/train.py record class names; timm / torchvision files give None.
    """
    state = read_weights_file(path)
    layout, prefix = detect_layout(state)
    weight = state.get(f"{prefix}{module_name_map(model, layout)['classifier']}.weight")
    fits = weight is not None and weight.shape == model.classifier.weight.shape
    names = None
    if Path(path).suffix == ".ckpt":
        names = read_checkpoint(path).get("hyper_parameters", {}).get("class_names")
    return fits, names


class NewHead(L.Callback):
    """Fine-tuning on other classes starts from a zero classifier (as BiT does).

    Loading keeps a checkpoint's classifier whenever its shape fits, so a model pre-trained on 5 other
    classes would start fine-tuning on 5 new ones with a head that confidently maps them to the old
    classes. And with `model.classifier_init=uniform` (the official rule, for 1000 classes from
    scratch) few classes on pre-trained features start at large logits that a short fine-tuning
    cannot undo. A zero head starts every class at equal probability, whatever the model's rule.

    The head is kept when the weights file's classifier is for the same classes: same class names
    (checkpoints of src/train.py), or same shape where the file records no names (timm, torchvision).
    Applied when fitting starts, so a resumed run gets its trained head back from its checkpoint.
    """

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        pretrained = pl_module.hparams.model.get("pretrained")
        if stage != "fit" or not pretrained:
            return
        fits, names = pretrained_head(pretrained, pl_module.model)
        if fits and (names is None or names == pl_module.hparams.class_names):
            rank_zero_info(f"NewHead: the classifier of {pretrained} is for these classes: kept")
            return
        with torch.no_grad():
            pl_module.model.classifier.weight.zero_()
            pl_module.model.classifier.bias.zero_()
        rank_zero_info(
            f"NewHead: new classes ({', '.join(pl_module.hparams.class_names)}): the classifier starts at 0"
        )
