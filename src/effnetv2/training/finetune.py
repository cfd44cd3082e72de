"""Fine-tuning a pre-trained network on a new data set: the backbone learns at a lower rate than the
new classifier, and may stay frozen for the first epochs while the classifier settles.

Why not Lightning's `BackboneFinetuning` as is: it leaves the backbone out of the optimizer and adds it
as a new parameter group when it unfreezes it, with its own per-epoch learning-rate rule (x1.5 per
epoch by default). Our schedules are per step (`optim.lr_lambda` in a LambdaLR) and would never reach
a group added later, and that group would get the optimizer's default weight decay. So here the
backbone is in the optimizer from the first step, with its own lower learning rate under the same
schedule (`parameter_groups`), and `callbacks.finetune.FreezeBackbone` (a Lightning `BaseFinetuning`,
which also keeps its state in checkpoints) only switches `requires_grad`: optimizers skip parameters
without gradients.
"""

from __future__ import annotations

from torch import nn

HEAD_MODULES = ("classifier",)


def backbone_modules(model: nn.Module) -> list[nn.Module]:
    """Every top-level part of the network except the classifier: what a pre-trained checkpoint provides."""
    return [module for name, module in model.named_children() if name not in HEAD_MODULES]


def parameter_groups(model: nn.Module, weight_decay: float, lr: float, backbone_lr: float) -> list[dict]:
    """Optimizer groups: backbone at `backbone_lr`, classifier at `lr`, each split so that norm weights
    and biases (0-d/1-d tensors) get no weight decay.

    Frozen parameters are included on purpose: `FreezeBackbone` unfreezes them later, and a parameter
    that is not in the optimizer would never train.
    """
    head = {id(param) for name in HEAD_MODULES for param in getattr(model, name).parameters()}
    groups = []
    for part, part_lr in (("backbone", backbone_lr), ("head", lr)):
        params = [param for param in model.parameters() if (id(param) in head) == (part == "head")]
        decay = [param for param in params if param.ndim > 1]
        no_decay = [param for param in params if param.ndim <= 1]
        groups += [
            {"params": decay, "weight_decay": weight_decay, "lr": part_lr, "name": part},
            {"params": no_decay, "weight_decay": 0.0, "lr": part_lr, "name": f"{part}_no_decay"},
        ]
    return [group for group in groups if group["params"]]
