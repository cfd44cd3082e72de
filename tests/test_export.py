"""Export: the ONNX and TorchScript files reproduce the checkpoint's logits (any batch size), the
parity check catches a model that does not, and the CLI reports both."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from effnetv2.errors import ConfigError
from effnetv2.inference.checkpoint import load_classifier
from effnetv2.inference.export import (
    example_images,
    export,
    max_logit_difference,
    onnx_logits,
    reference_logits,
    torchscript_logits,
)
from helpers.paths import ROOT

pytest_plugins = ["fixtures_data", "fixtures_inference"]


@pytest.fixture(scope="module")
def exported(make_checkpoint, tmp_path_factory) -> tuple[Path, dict, str]:
    """The CLI export of a checkpoint (eval size 48) at a chosen 32 px: checkpoint, files, printed output."""
    checkpoint = make_checkpoint("export", class_names=("a", "b", "c", "d"), eval_size=48)
    output_dir = tmp_path_factory.mktemp("export")
    result = subprocess.run(
        [
            sys.executable,
            "src/export.py",
            f"checkpoint={checkpoint}",
            "image_size=32",
            f"output_dir={output_dir}",
            f"hydra.run.dir={output_dir / 'hydra'}",
        ],
        cwd=ROOT,
        env={**os.environ, "NO_ALBUMENTATIONS_UPDATE": "1"},
        capture_output=True,
        text=True,
        timeout=280,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    files = {
        "onnx": output_dir / "export_32px.onnx",
        "torchscript": output_dir / "export_32px.torchscript.pt",
        "metadata": output_dir / "export_32px.json",
    }
    return checkpoint, files, result.stdout


@pytest.mark.subprocess
@pytest.mark.timeout(300)
def test_cli_prints_parity_within_tolerance_for_both_formats(exported) -> None:
    _, files, stdout = exported
    for fmt in ("onnx", "torchscript"):
        match = re.search(rf"{fmt} parity at 32px: max \|logit difference\| = (\S+) .* OK", stdout)
        assert match, stdout
        assert float(match.group(1)) <= 1e-4
        assert files[fmt].is_file()
    metadata = json.loads(files["metadata"].read_text())
    assert metadata["image_size"] == 32 and metadata["class_names"] == ["a", "b", "c", "d"]


@pytest.mark.subprocess
@pytest.mark.timeout(300)
def test_exports_match_pytorch_at_another_batch_size(exported) -> None:
    checkpoint, files, _ = exported
    classifier = load_classifier(checkpoint)
    images = example_images(classifier, 32, batch=3, seed=5)
    expected = reference_logits(classifier, images)
    assert expected.shape == (3, 4) and expected.std() > 0.1, (
        "logits must be non-trivial for the check to mean anything"
    )
    np.testing.assert_allclose(onnx_logits(files["onnx"], images), expected, atol=1e-4, rtol=0)
    np.testing.assert_allclose(torchscript_logits(files["torchscript"], images), expected, atol=1e-4, rtol=0)


@pytest.mark.subprocess
@pytest.mark.timeout(300)
def test_parity_check_detects_a_different_model(exported) -> None:
    checkpoint, files, _ = exported
    classifier = load_classifier(checkpoint)
    with torch.no_grad():
        classifier.model.classifier.bias += 0.01
    images = example_images(classifier, 32, batch=2)
    assert max_logit_difference(classifier, "onnx", files["onnx"], images) == pytest.approx(0.01, abs=1e-4)


def test_unknown_format_is_a_config_error(make_checkpoint, tmp_path) -> None:
    classifier = load_classifier(make_checkpoint("export", class_names=("a", "b", "c", "d"), eval_size=48))
    with pytest.raises(ConfigError, match="formats"):
        export(classifier, 32, ["tflite"], tmp_path, "model")
