"""benchmarks/gpu_check.py: `--smoke` runs every part of the GPU check tiny on the CPU, from the same code,
where W&B, FFCV and TensorBoard cannot be imported (as on the GPU machine); a failing part is recorded and
the others still run. No figure is checked: the smoke run's figures mean nothing."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from helpers.configs import compose_config
from helpers.paths import ROOT

PARTS = {
    "synthetic_train",
    "synthetic_eval",
    "jpeg_folder",
    "end_to_end_torch",
    "progressive",
    "end_to_end_ffcv",
}
# What the GPU machine lacks (beside hydra-core and albumentations, which its carried wheels bring).
UNAVAILABLE = ("wandb", "ffcv", "tensorboard", "tensorboardX", "onnx", "onnxruntime", "optuna")
BLOCKER = f"""import importlib.machinery

_find_spec = importlib.machinery.PathFinder.find_spec.__func__


def find_spec(cls, name, path=None, target=None):
    if name.split(".")[0] in {UNAVAILABLE!r}:
        return None  # as if not installed
    return _find_spec(cls, name, path, target)


importlib.machinery.PathFinder.find_spec = classmethod(find_spec)
"""


def load_gpu_check():
    spec = importlib.util.spec_from_file_location("gpu_check", ROOT / "benchmarks" / "gpu_check.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["gpu_check"] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.mark.subprocess
def test_smoke_run_writes_every_part_without_wandb_or_ffcv(tmp_path: Path) -> None:
    blocker = tmp_path / "blocker"
    blocker.mkdir()
    (blocker / "sitecustomize.py").write_text(BLOCKER)
    env = {
        **os.environ,
        "NO_ALBUMENTATIONS_UPDATE": "1",
        "PYTHONPATH": os.pathsep.join([str(blocker), os.environ.get("PYTHONPATH", "")]),
    }
    out = tmp_path / "out"
    command = [
        sys.executable,
        "benchmarks/gpu_check.py",
        "--smoke",
        "--out",
        str(out),
        "--work",
        str(tmp_path),
    ]
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]

    check = json.loads((out / "gpu_check.json").read_text())
    assert check["smoke"] is True
    parts = check["parts"]
    assert set(parts) == PARTS
    failed = {name: part for name, part in parts.items() if part["status"] not in ("ok", "skipped")}
    assert not failed, json.dumps(failed, indent=1)[-4000:]
    assert parts["end_to_end_ffcv"]["status"] == "skipped" and parts["end_to_end_ffcv"]["reason"]
    for name in ("synthetic_train", "synthetic_eval"):
        for row in parts[name]["rows"]:
            assert {"size", "ours", "timm", "ratio"} <= set(row)
    assert [row["size"] for row in parts["synthetic_train"]["rows"]] == list(check["settings"]["train_sizes"])
    end_to_end = parts["end_to_end_torch"]
    assert {"images_per_sec", "synthetic_images_per_sec", "fraction_of_synthetic"} <= set(end_to_end)
    assert "data.loader=torch" in end_to_end["command"] and "data=image_folder" in end_to_end["command"]
    sizes = parts["progressive"]["sizes_per_epoch"]
    assert len(sizes) == 3 and sizes == sorted(sizes) and len({tuple(s) for s in sizes}) == 3
    logged = parts["progressive"]["logged_image_sizes"]
    assert [logged[str(epoch)] for epoch in range(3)] == [s[0] for s in sizes]  # CSV agrees with the batches

    table = (out / "gpu_check.md").read_text()
    assert table == load_gpu_check().table(check)
    for heading in ("**Synthetic training**", "**Synthetic eval**", "**End to end**", "**Progressive run**"):
        assert heading in table
    assert "| ffcv | - | - | - | skipped:" in table


def test_a_failing_part_is_recorded_and_the_table_still_renders() -> None:
    gpu_check = load_gpu_check()

    def broken(deadline: float) -> dict:
        raise RuntimeError("CUDA out of memory")

    part = gpu_check.run_part("synthetic_eval", broken, gpu_check.SMOKE, overall=float("inf"))
    assert part["status"] == "failed" and "CUDA out of memory" in part["error"]
    spent = gpu_check.run_part("progressive", broken, gpu_check.SMOKE, overall=0.0)
    assert spent["status"] == "skipped"

    check = {
        "created": "now",
        "total_seconds": 1.0,
        "machine": {"cpu_count": 2, "torch": "x", "timm": "y"},
        "settings": {
            "model": "v2_s",
            "peer": "efficientnetv2_s",
            "e2e_size": 128,
            "batch": 128,
            "workers": 16,
        },
        "parts": {name: part for name in PARTS},
    }
    table = gpu_check.table(check)
    assert table.count("failed: RuntimeError: CUDA out of memory") >= 4


@pytest.mark.parametrize("run", ["end_to_end_torch", "end_to_end_ffcv", "progressive"])
def test_the_gpu_runs_compose(run: str, tmp_path: Path) -> None:
    """The GPU settings' `src/train.py` overrides (which --smoke does not use: trainer=gpu, V2-S, ...) make
    a valid config with the values the docs state."""
    gpu_check = load_gpu_check()
    settings = gpu_check.GPU
    extra = (
        gpu_check.progressive_overrides(settings)
        if run == "progressive"
        else gpu_check.end_to_end_overrides(run.rsplit("_", 1)[1], settings)
    )
    overrides = gpu_check.train_overrides(settings, tmp_path, tmp_path / run) + extra
    cfg = compose_config("train", overrides, tmp_path)
    assert cfg.model.name == "v2_s" and cfg.trainer.accelerator == "gpu"
    assert cfg.trainer.precision == "bf16-mixed" and cfg.logger.keys() == {"csv"}
    assert (cfg.data.image_size, cfg.data.batch_size, cfg.data.randaug_magnitude) == (128, 128, 10)
    assert cfg.data.root == str(gpu_check.jpeg_folder_path(settings, tmp_path))
    assert cfg.callbacks.gpu_check_timer._target_ == "gpu_check.EpochTimer"
    assert cfg.callbacks.progress_bar is not None  # the default callbacks stay
    if run == "progressive":
        assert (cfg.schedule.num_stages, cfg.trainer.max_epochs) == (3, 3)
    else:
        assert cfg.data.loader == run.rsplit("_", 1)[1] and cfg.schedule.num_stages == 1
