"""notebooks/finetune_walkthrough.ipynb runs from top to bottom on tiny generated data (3 colour classes,
32 px, a few batches), and is stored without outputs."""

from __future__ import annotations

import csv
import json
import re
import shutil
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient
from safetensors.torch import save_file

from effnetv2.models import create_model
from helpers.paths import ROOT

pytest_plugins = ["fixtures_data"]

NOTEBOOK = ROOT / "notebooks" / "finetune_walkthrough.ipynb"


def test_notebook_is_stored_without_outputs() -> None:
    notebook = json.loads(NOTEBOOK.read_text())
    code = [cell for cell in notebook["cells"] if cell["cell_type"] == "code"]
    assert code and all(not cell["outputs"] and cell["execution_count"] is None for cell in code)


@pytest.mark.timeout(900)
def test_notebook_runs_on_a_small_image_folder(colour_folder: Path, tmp_path: Path) -> None:
    data = tmp_path / "images"
    for split in ("train", "test"):
        for name in ("green", "red", "yellow"):
            shutil.copytree(colour_folder / split / name, data / split / name)
    weights = tmp_path / "v2_b0.safetensors"
    save_file(create_model("v2_b0", num_classes=10).state_dict(), weights)
    run_dir = tmp_path / "run"

    notebook = nbformat.read(NOTEBOOK, as_version=4)
    (parameters,) = [cell for cell in notebook.cells if "parameters" in cell.metadata.get("tags", [])]
    overrides = [
        "data.batch_size=16",
        "data.num_workers=0",
        "trainer.limit_train_batches=2",
        "data.crop_pct=1.0",
    ]
    parameters.source = "\n".join(
        [
            f"DATA_ROOT = {str(data)!r}",
            f"PRETRAINED = {str(weights)!r}",
            'MODEL = "v2_b0"',
            "IMAGE_SIZE = 32",
            "EPOCHS = 2",
            f"RUN_DIR = {str(run_dir)!r}",
            f"EXTRA_OVERRIDES = {overrides!r}",
        ]
    )
    NotebookClient(
        notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOK.parent)}}
    ).execute()

    outputs = "".join(
        output.get("text", "")
        for cell in notebook.cells
        if cell.cell_type == "code"
        for output in cell.outputs
    )
    validation = re.search(r"validation images: (\d+), top-1:", outputs)
    with (run_dir / "val_predictions.csv").open() as file:
        assert validation and int(validation.group(1)) == len(list(csv.DictReader(file))) == 10  # 10% of 96
    assert "24 predictions; first rows:" in outputs  # the 3 x 8 test images
    assert (run_dir / "submission.csv").is_file()
    images = sum(
        1
        for cell in notebook.cells
        for output in cell.get("outputs", [])
        if "image/png" in output.get("data", {})
    )
    assert images >= 3, "the data grid, curves and confusion matrix should be drawn"
