"""Bad input across the entry points, one case at a time, through the real command line: each gives one
`error:` line that names the problem and the fix, exit status 1 and no traceback. W&B online without
credentials is the exception: it warns and logs offline."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest

from helpers.environment import train_env
from helpers.runs import run_train
from helpers.tiny import TINY

ONE_STEP = [*TINY, "trainer.max_epochs=1", "schedule=fixed", "trainer.limit_train_batches=1", "test=false"]


def error_line(result: subprocess.CompletedProcess) -> str:
    """The single `error:` line of a run that failed the way a user error should."""
    assert result.returncode == 1, f"exit {result.returncode}:\n{result.stderr[-4000:]}"
    assert "Traceback" not in result.stderr, result.stderr[-4000:]
    lines = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1, result.stderr[-4000:]
    return lines[0]


def write_images(folder: Path, count: int) -> None:
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(count):
        Image.fromarray(rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)).save(folder / f"{i}.png")


@pytest.fixture(scope="module")
def trained_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """last.ckpt of one training step: v2_b0 on Fashion-MNIST (10 classes, 1 channel)."""
    run_dir = tmp_path_factory.mktemp("trained") / "run"
    result = run_train(*ONE_STEP, f"hydra.run.dir={run_dir}")
    assert result.returncode == 0, result.stderr[-4000:]
    return run_dir / "checkpoints" / "last.ckpt"


# Configuration ------------------------------------------------------------------------------------------
@pytest.mark.subprocess
@pytest.mark.parametrize(
    ("script", "override", "expected"),
    [
        (
            "src/train.py",
            "trainer.max_epoch=3",
            ["unknown config key trainer.max_epoch", "did you mean trainer.max_epochs"],
        ),
        (
            "src/train.py",
            "data.batchsize=8",
            ["unknown config key data.batchsize", "did you mean data.batch_size"],
        ),
        ("src/train.py", "optimiser=sgd", ["unknown config key optimiser", "did you mean optimizer?"]),
        ("src/train.py", "model=v2_z", ["model=v2_z is not an option of config group model", "v2_b0, v2_b1"]),
        ("src/train.py", "schedule=progresive", ["not an option of config group schedule", "progressive"]),
        ("src/eval.py", "eval.size=[32]", ["unknown config key eval.size", "did you mean eval.sizes"]),
        ("src/predict.py", "tta.hfilp=true", ["unknown config key tta.hfilp", "did you mean tta.hflip"]),
    ],
)
def test_unknown_config_keys_groups_and_options(script: str, override: str, expected: list[str]) -> None:
    line = error_line(run_train(override, script=script, timeout=120))
    for text in expected:
        assert text in line
    assert "Could not override" not in line


# Required values ----------------------------------------------------------------------------------------
CHECKPOINT = "outputs/train/runs/<time>/checkpoints/last.ckpt"


@pytest.mark.subprocess
@pytest.mark.parametrize(
    ("script", "overrides", "expected"),
    [
        (
            "src/train.py",
            ["data=image_folder"],
            "data.root is required for data=image_folder: "
            "python src/train.py data=image_folder data.root=/path/to/images",
        ),
        (
            "src/train.py",
            ["experiment=paper_s"],
            "data.root is required for data=image_folder: "
            "python src/train.py experiment=paper_s data.root=/path/to/images",
        ),
        (
            "src/train.py",
            ["data=csv", "data.root=null", "trainer.max_epochs=1"],
            "data.root is required for data=csv: "
            "python src/train.py data=csv trainer.max_epochs=1 data.root=/path/to/images",
        ),
        (
            "src/prepare_data.py",
            ["data=image_folder"],
            "data.root is required for data=image_folder: "
            "python src/prepare_data.py data=image_folder data.root=/path/to/images",
        ),
        ("src/eval.py", [], f"ckpt_path is required: python src/eval.py 'ckpt_path={CHECKPOINT}'"),
        (
            "src/eval.py",
            ["ckpt_path=null"],
            f"ckpt_path is required: python src/eval.py 'ckpt_path={CHECKPOINT}'",
        ),
        (
            "src/predict.py",
            ["input.folder=data/test"],
            "checkpoints is required: "
            f"python src/predict.py input.folder=data/test 'checkpoints=[{CHECKPOINT}]'",
        ),
        ("src/export.py", [], f"checkpoint is required: python src/export.py 'checkpoint={CHECKPOINT}'"),
        ("src/oof.py", [], "run_dir is required: python src/oof.py 'run_dir=outputs/train/multiruns/<time>'"),
    ],
    ids=["train_image_folder", "train_paper_s", "train_csv_null", "prepare_data", "eval", "eval_null"]
    + ["predict", "export", "oof"],
)
def test_missing_required_values(tmp_path, script: str, overrides: list[str], expected: str) -> None:
    """`???` in conf/ (or null where a value is required): one line naming the key and the command that
    sets it, the user's other overrides kept, instead of OmegaConf's MissingMandatoryValue traceback."""
    result = run_train(*overrides, f"hydra.run.dir={tmp_path / 'run'}", script=script, timeout=120)
    assert error_line(result) == f"error: {expected}"


# Data ---------------------------------------------------------------------------------------------------
@pytest.mark.subprocess
def test_missing_data_path(tmp_path) -> None:
    line = error_line(run_train(*ONE_STEP, "data=image_folder", f"data.root={tmp_path / 'nope'}"))
    assert f"{tmp_path / 'nope' / 'train'} does not exist" in line and "data.root=" in line


@pytest.mark.subprocess
def test_empty_data_set(tmp_path) -> None:
    (tmp_path / "images" / "train").mkdir(parents=True)
    line = error_line(run_train(*ONE_STEP, "data=image_folder", f"data.root={tmp_path / 'images'}"))
    assert "no class folders with images" in line and "train/<class>/<image>" in line


@pytest.mark.subprocess
def test_corrupt_image(tmp_path) -> None:
    root = tmp_path / "images"
    for name in ("cat", "dog"):
        write_images(root / "train" / name, 4)
    (root / "train" / "cat" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not a whole jpeg")
    result = run_train(
        *ONE_STEP,
        "data=image_folder",
        f"data.root={root}",
        "data.subset=null",
        "data.image_size=16",
        "data.eval_size=16",
    )
    line = error_line(result)
    assert "bad image" in line
    # The data module lists each bad file on its own line after the error line, then the fix.
    assert "broken.jpg" in result.stderr and "data.on_bad_image=skip" in result.stderr


# Checkpoints --------------------------------------------------------------------------------------------
@pytest.mark.subprocess
def test_missing_ckpt_path(tmp_path) -> None:
    line = error_line(run_train(*ONE_STEP, f"ckpt_path={tmp_path / 'nope.ckpt'}"))
    assert "nope.ckpt does not exist" in line and ".ckpt file" in line


@pytest.mark.subprocess
def test_checkpoint_of_another_variant(trained_checkpoint) -> None:
    line = error_line(run_train(*ONE_STEP, "model=v2_b1", f"ckpt_path={trained_checkpoint}"))
    assert "does not fit this model" in line
    assert "trained as v2_b0 with 10 classes" in line and "this run builds v2_b1 with 10 classes" in line
    assert "model.pretrained=" in line


@pytest.mark.subprocess
def test_checkpoint_of_another_class_count(trained_checkpoint, tmp_path) -> None:
    for name in ("cat", "dog"):
        write_images(tmp_path / "images" / "train" / name, 4)
    data = ["data=image_folder", f"data.root={tmp_path / 'images'}", "data.subset=null", "data.in_chans=1"]
    data += ["data.mean=[0.5]", "data.std=[0.5]", "data.image_size=16", "data.eval_size=16"]
    line = error_line(run_train(*ONE_STEP, *data, f"ckpt_path={trained_checkpoint}"))
    assert "trained as v2_b0 with 10 classes" in line and "this run builds v2_b0 with 2 classes" in line


@pytest.mark.subprocess
def test_truncated_checkpoint(trained_checkpoint, tmp_path) -> None:
    truncated = tmp_path / "last.ckpt"
    truncated.write_bytes(trained_checkpoint.read_bytes()[:100_000])
    line = error_line(run_train(*ONE_STEP, f"ckpt_path={truncated}"))
    assert "truncated or not a torch checkpoint" in line


@pytest.mark.subprocess
def test_eval_and_predict_with_a_missing_checkpoint(tmp_path) -> None:
    line = error_line(run_train(f"ckpt_path={tmp_path / 'nope.ckpt'}", script="src/eval.py"))
    assert "nope.ckpt does not exist" in line
    write_images(tmp_path / "images", 1)
    overrides = [f"checkpoints=[{tmp_path / 'nope.ckpt'}]", f"input.folder={tmp_path / 'images'}"]
    line = error_line(run_train(*overrides, f"hydra.run.dir={tmp_path / 'predict'}", script="src/predict.py"))
    assert "nope.ckpt does not exist" in line


# Loggers ------------------------------------------------------------------------------------------------
@pytest.mark.subprocess
def test_wandb_online_without_credentials_falls_back_to_offline(tmp_path) -> None:
    env = train_env(HOME=str(tmp_path / "home"))
    for name in ("WANDB_MODE", "WANDB_API_KEY"):
        env.pop(name, None)
    run_dir = tmp_path / "run"
    overrides = ["logger=wandb", "logger.wandb.mode=online", "train=false", "test=false"]
    result = run_train(*TINY, *overrides, f"hydra.run.dir={run_dir}", env=env)
    assert result.returncode == 0, result.stderr[-4000:]
    output = result.stdout + result.stderr  # Hydra's console log handler writes to stdout
    assert "W&B online mode needs credentials" in output and "logging offline instead" in output
    assert list((run_dir / "wandb").glob("offline-run-*")), "no offline W&B run was written"
