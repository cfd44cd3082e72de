"""A run with 1000 classes (ImageNet's count) on tiny generated images finishes with bounded reports:
the confusion matrix as CSV plus its most-confused pairs, no figure, no metric per class, peak RSS of the
training process under 3 GB, metrics.json written."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from helpers.environment import train_env
from helpers.paths import ROOT
from helpers.runs import train_command

NUM_CLASSES = 1000
PEAK_RSS_LIMIT_GB = 3.0

# Runs src/train.py as a child and prints its peak RSS: getrusage(RUSAGE_CHILDREN) of a fresh parent
# counts that child only (the test process has waited for other children before).
MEASURE = """
import resource, subprocess, sys
code = subprocess.run(sys.argv[1:]).returncode
print("peak_rss_kb", resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
sys.exit(code)
"""


def write_class_folders(root: Path, per_class: dict[str, int]) -> None:
    rng = np.random.default_rng(0)
    for split, count in per_class.items():
        for label in range(NUM_CLASSES):
            folder = root / split / f"class{label:04d}"
            folder.mkdir(parents=True)
            for index in range(count):
                pixels = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(folder / f"{index}.png")


@pytest.mark.subprocess
@pytest.mark.timeout(600)
def test_thousand_classes_finish_with_bounded_reports(tmp_path) -> None:
    data, run_dir = tmp_path / "data", tmp_path / "run"
    write_class_folders(data, {"train": 2, "test": 1})
    overrides = [
        "data=image_folder",
        f"data.root={data}",
        "data.image_size=16",
        "data.eval_size=16",
        "data.batch_size=64",
        "data.num_workers=0",
        "schedule=fixed",
        "trainer.max_epochs=1",
        "trainer.limit_train_batches=4",
        "trainer.limit_val_batches=2",
        "torch_threads=1",
        f"hydra.run.dir={run_dir}",
    ]
    result = subprocess.run(
        [sys.executable, "-c", MEASURE, *train_command(*overrides)],
        cwd=ROOT,
        env=train_env(),
        capture_output=True,
        text=True,
        timeout=540,
    )
    assert result.returncode == 0, result.stderr[-5000:]
    peak_gb = int(result.stdout.split("peak_rss_kb")[-1]) / 1024**2
    assert peak_gb < PEAK_RSS_LIMIT_GB, f"peak RSS {peak_gb:.2f} GB"
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert "test/acc" in metrics and not [name for name in metrics if name.startswith("test/acc_class/")]
    assert not (run_dir / "confusion_matrix.png").exists()
    with (run_dir / "confusion_matrix.csv").open() as file:
        rows = list(csv.reader(file))
    assert len(rows) == NUM_CLASSES + 1 and len(rows[0]) == NUM_CLASSES + 1
    with (run_dir / "confusion_top_pairs.csv").open() as file:
        pairs = list(csv.reader(file))
    assert pairs[0] == ["true", "predicted", "count", "share_of_true"] and 1 < len(pairs) <= 51
    assert len((run_dir / "per_class_accuracy.csv").read_text().splitlines()) == NUM_CLASSES + 1
