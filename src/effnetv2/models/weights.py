"""Loading weights from local files: our own checkpoints, timm and torchvision state_dicts.

Files are read without unpickling anything but tensors and plain containers. The key layout is
detected from a marker key; timm and torchvision names are then mapped onto ours by walking our
model's structure (stage s, block i, which parts that block has), so every parameter has exactly one
counterpart and whatever does not fit is reported instead of guessed.
"""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path
from typing import Literal

import torch
from safetensors.torch import load_file as load_safetensors

from effnetv2.checkpoint import load_without_code
from effnetv2.errors import CheckpointError
from effnetv2.models.blocks import FusedMBConv
from effnetv2.models.efficientnetv2 import Block, EfficientNetV2

log = logging.getLogger(__name__)

Layout = Literal["effnetv2", "timm", "torchvision"]
StateDict = dict[str, torch.Tensor]

TORCH_SUFFIXES = (".pth", ".pt", ".bin", ".ckpt")
SAFETENSORS_SUFFIX = ".safetensors"
# One key every checkpoint of a layout has, written without any wrapper prefix.
LAYOUT_MARKERS: dict[Layout, str] = {
    "effnetv2": "stem.conv.weight",
    "timm": "conv_stem.weight",
    "torchvision": "features.0.0.weight",
}
# Prefixes that wrappers add to every key: a LightningModule's `model` attribute, DDP, torch.compile.
WRAPPER_PREFIXES = ("", "model.", "module.", "_orig_mod.", "model._orig_mod.", "module._orig_mod.")
MAX_LISTED_PROBLEMS = 10


def read_weights_file(path: str | os.PathLike[str]) -> StateDict:
    """The tensors in a .pth/.pt/.bin/.ckpt (torch, weights_only) or .safetensors file.

    A checkpoint dict with a `state_dict` entry (Lightning, timm training) yields that entry.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(
            f"weights file not found: {path}. Pass pretrained=<path to a local "
            f"{'/'.join(TORCH_SUFFIXES + (SAFETENSORS_SUFFIX,))} file> or pretrained=null."
        )
    suffix = path.suffix.lower()
    if suffix == SAFETENSORS_SUFFIX:
        try:
            return load_safetensors(path, device="cpu")
        except Exception as err:
            raise CheckpointError(f"cannot read {path} as safetensors: {err}") from err
    if suffix not in TORCH_SUFFIXES:
        raise CheckpointError(
            f"unsupported weights file type {suffix!r}: {path}; "
            f"use one of {', '.join(TORCH_SUFFIXES + (SAFETENSORS_SUFFIX,))}"
        )
    content = load_without_code(
        path,
        "cpu",
        if_refused="Re-save just the weights: torch.save(model.state_dict(), path) or a .safetensors file.",
        if_unreadable="pass another weights file or pretrained=null",
    )
    return _tensors_of(content, path)


def _tensors_of(content: object, path: Path) -> StateDict:
    if isinstance(content, dict) and isinstance(content.get("state_dict"), dict):
        content = content["state_dict"]
    tensors = (
        {key: value for key, value in content.items() if isinstance(value, torch.Tensor)}
        if isinstance(content, dict)
        else {}
    )
    if not tensors:
        raise CheckpointError(f"{path} holds no state_dict (found {type(content).__name__} without tensors)")
    return tensors


def detect_layout(state: StateDict) -> tuple[Layout, str]:
    """(layout, wrapper prefix) from the marker keys; None of them present means an unknown file."""
    for prefix in WRAPPER_PREFIXES:
        for layout, marker in LAYOUT_MARKERS.items():
            if prefix + marker in state:
                return layout, prefix
    raise CheckpointError(
        "unrecognised weights layout (first keys: "
        f"{', '.join(list(state)[:5])}); expected our own ({LAYOUT_MARKERS['effnetv2']}), "
        f"timm ({LAYOUT_MARKERS['timm']}) or torchvision ({LAYOUT_MARKERS['torchvision']}) names"
    )


def _timm_block_parts(block: Block) -> list[tuple[str, str]]:
    """Our sub-module -> timm's, for one block (timm: ConvBnAct, EdgeResidual, InvertedResidual)."""
    if isinstance(block, FusedMBConv):
        if block.project is None:
            return [("fused.conv", "conv"), ("fused.bn", "bn1")]
        return [
            ("fused.conv", "conv_exp"),
            ("fused.bn", "bn1"),
            ("project.conv", "conv_pwl"),
            ("project.bn", "bn2"),
        ]
    parts = [("expand.conv", "conv_pw"), ("expand.bn", "bn1")] if block.expand is not None else []
    parts += [("depthwise.conv", "conv_dw"), ("depthwise.bn", "bn2")]
    if block.se is not None:
        parts += [("se.reduce", "se.conv_reduce"), ("se.expand", "se.conv_expand")]
    return parts + [("project.conv", "conv_pwl"), ("project.bn", "bn3")]


def _torchvision_block_parts(block: Block) -> list[tuple[str, str]]:
    """Our sub-module -> torchvision's `block.{j}`: its layers are numbered in the order they exist."""
    if isinstance(block, FusedMBConv):
        layers = ["fused", "project"] if block.project is not None else ["fused"]
    else:
        layers = ["expand"] if block.expand is not None else []
        layers += ["depthwise", "se", "project"] if block.se is not None else ["depthwise", "project"]
    parts = []
    for index, layer in enumerate(layers):
        if layer == "se":
            parts += [("se.reduce", f"block.{index}.fc1"), ("se.expand", f"block.{index}.fc2")]
        else:
            parts += [(f"{layer}.conv", f"block.{index}.0"), (f"{layer}.bn", f"block.{index}.1")]
    return parts


def module_name_map(model: EfficientNetV2, layout: Layout) -> dict[str, str]:
    """Our module name -> the layout's module name, for every module that holds weights."""
    if layout == "effnetv2":
        return {name: name for name, _ in model.named_modules() if name}
    if layout == "timm":
        names = {"stem.conv": "conv_stem", "stem.bn": "bn1"}
        for s, stage in enumerate(model.stages):
            for i, block in enumerate(stage):
                for ours, theirs in _timm_block_parts(block):
                    names[f"stages.{s}.{i}.{ours}"] = f"blocks.{s}.{i}.{theirs}"
        names.update({"head.conv": "conv_head", "head.bn": "bn2", "classifier": "classifier"})
        return names
    # torchvision: features.0 is the stem, features.1..n the stages, features.n+1 the head.
    names = {"stem.conv": "features.0.0", "stem.bn": "features.0.1"}
    for s, stage in enumerate(model.stages):
        for i, block in enumerate(stage):
            for ours, theirs in _torchvision_block_parts(block):
                names[f"stages.{s}.{i}.{ours}"] = f"features.{s + 1}.{i}.{theirs}"
    head = len(model.stages) + 1
    names.update({"head.conv": f"features.{head}.0", "head.bn": f"features.{head}.1"})
    names["classifier"] = "classifier.1"
    return names


def adapt_input_conv(weight: torch.Tensor, in_chans: int) -> torch.Tensor:
    """Stem weights for `in_chans` inputs from weights trained on weight.shape[1] (RGB) channels.

    One channel: the sum over the trained channels, so a grey image gives exactly the activations the
    original model gives on that image replicated to RGB. Other counts: the trained channels repeated
    cyclically, scaled by trained / new so the activation magnitude stays the same on average.
    """
    trained = weight.shape[1]
    if in_chans == 1:
        return weight.sum(dim=1, keepdim=True)
    repeats = math.ceil(in_chans / trained)
    return weight.repeat(1, repeats, 1, 1)[:, :in_chans] * (trained / in_chans)


def convert_state_dict(
    model: EfficientNetV2, state: StateDict, layout: Layout
) -> tuple[StateDict, list[str]]:
    """Checkpoint tensors renamed to our keys, plus a list of everything that does not fit.

    Two differences are adapted rather than reported: another class count (our classifier is kept,
    i.e. freshly initialised) and another input channel count (the stem is adapted).
    """
    names = module_name_map(model, layout)
    ours = model.state_dict()
    converted: StateDict = {}
    problems: list[str] = []
    used: set[str] = set()
    for key, target in ours.items():
        module, leaf = key.rsplit(".", 1)
        source = f"{names[module]}.{leaf}"
        if source not in state:
            if leaf != "num_batches_tracked":
                problems.append(f"missing {source} (for {key} {tuple(target.shape)})")
            continue
        used.add(source)
        tensor = state[source]
        if tensor.shape == target.shape:
            converted[key] = tensor
        elif key.startswith("classifier.") and tensor.shape[1:] == target.shape[1:]:
            continue
        elif key == "stem.conv.weight" and (tensor.shape[0], *tensor.shape[2:]) == (
            target.shape[0],
            *target.shape[2:],
        ):
            converted[key] = adapt_input_conv(tensor, target.shape[1])
            log.warning(
                "adapted the stem from %d to %d input channels (%s)",
                tensor.shape[1],
                target.shape[1],
                "sum over channels" if target.shape[1] == 1 else "repeated and rescaled",
            )
        else:
            shapes = f"checkpoint {tuple(tensor.shape)} vs model {tuple(target.shape)}"
            problems.append(f"{source}: {shapes} ({key})")
    problems += [f"unexpected {key} {tuple(state[key].shape)}" for key in state if key not in used]
    if "classifier.weight" in ours and "classifier.weight" not in converted and not problems:
        log.warning(
            "checkpoint classifier has %d classes, the model %d: classifier re-initialised, rest loaded",
            state[f"{names['classifier']}.weight"].shape[0],
            model.num_classes,
        )
    return converted, problems


def load_pretrained(model: EfficientNetV2, path: str | os.PathLike[str]) -> None:
    """Load a local weights file (our own, timm or torchvision layout) into `model` in place."""
    state = read_weights_file(path)
    layout, prefix = detect_layout(state)
    state = {key[len(prefix) :]: value for key, value in state.items() if key.startswith(prefix)}
    converted, problems = convert_state_dict(model, state, layout)
    if problems:
        listed = "\n  ".join(problems[:MAX_LISTED_PROBLEMS])
        more = len(problems) - MAX_LISTED_PROBLEMS
        raise CheckpointError(
            f"{path} ({layout} layout) does not fit model {model.variant.name}: {len(problems)} mismatched "
            f"key(s)/shape(s):\n  {listed}" + (f"\n  ... and {more} more" if more > 0 else "") + "\n"
            "Is it a checkpoint of another variant? Create the matching model (see list_models()) "
            "or pass pretrained=null."
        )
    model.load_state_dict({**model.state_dict(), **converted})
    log.info("loaded %s (%s layout, %d tensors) into %s", path, layout, len(converted), model.variant.name)
