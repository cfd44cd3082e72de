"""Exporting a trained classifier at a fixed image size (any batch size) and checking the export.

ONNX uses torch's `torch.export`-based exporter (the TorchScript-based one is deprecated). TorchScript
(`torch.jit.trace`) is deprecated in PyTorch 2.x too but still what many serving stacks load.
A metadata JSON beside the files records the input the model expects (size, channels, mean/std, classes).
"""

from __future__ import annotations

import json
import logging
import warnings
from pathlib import Path

import numpy as np
import torch

from effnetv2.errors import ConfigError
from effnetv2.inference.checkpoint import TrainedClassifier

log = logging.getLogger(__name__)

FORMATS = ("onnx", "torchscript")
SUFFIXES = {"onnx": ".onnx", "torchscript": ".torchscript.pt"}


def example_images(
    classifier: TrainedClassifier, image_size: int, batch: int = 2, seed: int = 0
) -> torch.Tensor:
    """Normalised-looking random images (standard normal) for tracing and parity checks."""
    generator = torch.Generator().manual_seed(seed)
    shape = (batch, classifier.preprocessing.in_chans, image_size, image_size)
    return torch.randn(shape, generator=generator)


def export_onnx(classifier: TrainedClassifier, image_size: int, path: Path, opset: int = 18) -> Path:
    """ONNX model with input `images` (N x C x size x size, N dynamic) and output `logits`."""
    model = classifier.model.eval().cpu()
    images = example_images(classifier, image_size)
    batch = torch.export.Dim("batch", min=1)
    program = torch.onnx.export(
        model,
        (images,),
        dynamo=True,
        input_names=["images"],
        output_names=["logits"],
        dynamic_shapes=({0: batch},),
        opset_version=opset,
        external_data=False,
        verbose=False,
    )
    program.save(str(path))
    return path


def export_torchscript(classifier: TrainedClassifier, image_size: int, path: Path) -> Path:
    """A traced TorchScript module (no Python needed to run it)."""
    model = classifier.model.eval().cpu()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*is deprecated.*", category=FutureWarning)
        warnings.filterwarnings("ignore", message=".*deprecated.*", category=DeprecationWarning)
        traced = torch.jit.trace(model, example_images(classifier, image_size), check_trace=False)
        traced.save(str(path))
    return path


@torch.inference_mode()
def reference_logits(classifier: TrainedClassifier, images: torch.Tensor) -> np.ndarray:
    return classifier.model.eval().cpu()(images).numpy()


def onnx_logits(path: Path, images: torch.Tensor) -> np.ndarray:
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(["logits"], {"images": images.numpy()})[0]


@torch.inference_mode()
def torchscript_logits(path: Path, images: torch.Tensor) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*deprecated.*", category=FutureWarning)
        return torch.jit.load(str(path)).eval()(images).numpy()


def max_logit_difference(classifier: TrainedClassifier, fmt: str, path: Path, images: torch.Tensor) -> float:
    """Largest |logit difference| between the PyTorch model and the exported file on `images`."""
    exported = onnx_logits(path, images) if fmt == "onnx" else torchscript_logits(path, images)
    return float(np.abs(exported - reference_logits(classifier, images)).max())


def write_metadata(classifier: TrainedClassifier, image_size: int, path: Path) -> Path:
    """What a deployment must feed the model: RGB/grey pixels scaled to 0-1, then (x - mean) / std."""
    prep = classifier.preprocessing
    content = {
        "checkpoint": classifier.name,
        "input": "images: float32 N x C x H x W, RGB (or grey) scaled to [0, 1], then (x - mean) / std",
        "image_size": image_size,
        "in_chans": prep.in_chans,
        "mean": list(prep.mean),
        "std": list(prep.std),
        "resize": f"shorter side to round(image_size / crop_pct), centre crop (crop_pct={prep.crop_pct})",
        "crop_pct": prep.crop_pct,
        "class_names": classifier.class_names,
        "output": "logits: float32 N x num_classes (softmax for probabilities)",
    }
    path.write_text(json.dumps(content, indent=2))
    return path


def export(
    classifier: TrainedClassifier,
    image_size: int,
    formats: list[str],
    output_dir: Path,
    stem: str,
    opset: int = 18,
) -> dict[str, Path]:
    """Write each format as output_dir/<stem>_<size>px<suffix> plus <stem>_<size>px.json (metadata)."""
    unknown = sorted(set(formats) - set(FORMATS))
    if unknown or not formats:
        raise ConfigError(f"formats={list(formats)}: choose one or more of {FORMATS}")
    if image_size < 1:
        raise ConfigError(f"image_size={image_size} must be positive")
    output_dir.mkdir(parents=True, exist_ok=True)
    base = output_dir / f"{stem}_{image_size}px"
    paths = {}
    for fmt in formats:
        path = base.with_name(base.name + SUFFIXES[fmt])
        if fmt == "onnx":
            export_onnx(classifier, image_size, path, opset)
        else:
            export_torchscript(classifier, image_size, path)
        log.info("wrote %s", path)
        paths[fmt] = path
    paths["metadata"] = write_metadata(classifier, image_size, base.with_name(base.name + ".json"))
    return paths
