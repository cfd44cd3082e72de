"""Kaggle kernels without internet (docs/finetune.md): training reads a data.root it never writes to
(Kaggle mounts /kaggle/input read-only) and `make wheelhouse` installs with `pip --no-index` beside a
preinstalled torch, as a kernel does."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import torch
from packaging.requirements import Requirement

from helpers.environment import require_module, train_env
from helpers.paths import ROOT
from helpers.runs import run_train
from helpers.tiny import TINY


def load_wheelhouse_tool() -> ModuleType:
    """tools/wheelhouse.py, which is a script rather than part of the package."""
    spec = importlib.util.spec_from_file_location("wheelhouse_tool", ROOT / "tools" / "wheelhouse.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def competition_images(tmp_path: Path) -> Path:
    """root/{train,test}/<a|b>/*.jpg: 6 train and 2 test JPEGs per class, as a Kaggle data set."""
    from PIL import Image

    rng = np.random.default_rng(0)
    root = tmp_path / "input" / "competition"
    for split, count in (("train", 6), ("test", 2)):
        for name, value in (("a", 50), ("b", 190)):
            (root / split / name).mkdir(parents=True)
            for i in range(count):
                pixels = np.clip(rng.normal(value, 20, size=(40, 36, 3)), 0, 255).astype(np.uint8)
                Image.fromarray(pixels).save(root / split / name / f"{i}.jpg", quality=90)
    return root


def tree_state(root: Path) -> dict[str, tuple[int, int, int, int]]:
    """(mtime, ctime, size, mode) of `root` and of everything under it: an added, removed, rewritten or
    re-permissioned file or folder changes it (a new file changes its folder's mtime too)."""
    entries = {".": root.lstat(), **{str(p.relative_to(root)): p.lstat() for p in root.rglob("*")}}
    return {name: (s.st_mtime_ns, s.st_ctime_ns, s.st_size, s.st_mode) for name, s in entries.items()}


def kernel_overrides(data_root: Path, working: Path, loader: str) -> list[str]:
    """The Kaggle training cell of docs/finetune.md at tiny sizes: data.root read-only, everything the
    run writes (outputs, .beton files, checkpoints) under `working`."""
    return [
        *TINY,
        "data=image_folder",
        f"data.root={data_root}",
        "data.name=competition",
        "data.subset=null",
        "data.image_size=32",
        "data.eval_size=32",
        f"data.loader={loader}",
        f"data.beton_dir={working / 'betons'}",
        f"paths.root_dir={working}",
        f"hydra.run.dir={working / 'run'}",
        "schedule=fixed",
        "trainer.max_epochs=1",
        "trainer.max_time=00:11:00:00",
        "resume=auto",
    ]


@pytest.mark.subprocess
@pytest.mark.timeout(900)  # 20-60 s on an idle machine; several minutes under load
@pytest.mark.parametrize("loader", ["torch", pytest.param("ffcv", marks=pytest.mark.ffcv)])
def test_training_writes_nothing_under_data_root(competition_images: Path, tmp_path: Path, loader) -> None:
    if loader == "ffcv":
        require_module("ffcv", "the ffcv extra")
    working = tmp_path / "working"
    before = tree_state(competition_images)
    result = run_train(*kernel_overrides(competition_images, working, loader), timeout=800)
    assert result.returncode == 0, result.stderr[-4000:]
    assert tree_state(competition_images) == before
    checkpoint = torch.load(
        working / "run" / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True
    )
    timers = [state for key, state in checkpoint["callbacks"].items() if key.startswith("Timer")]
    assert len(timers) == 1, "trainer.max_time did not reach the Trainer"
    betons = sorted(p.name for p in (working / "betons").glob("*.beton"))
    assert betons == (["competition_test.beton", "competition_train.beton"] if loader == "ffcv" else [])


def test_requirement_closure_leaves_torch_to_the_image_unless_asked() -> None:
    tool = load_wheelhouse_tool()
    dependencies, ffcv_needs, ffcv = tool.project_requirements()
    assert ffcv.name == "ffcv" and "numba" in {r.name for r in ffcv_needs}
    without = tool.requirement_closure(dependencies + ffcv_needs, skip={"torch", "torchvision"})
    with_torch = tool.requirement_closure(dependencies + ffcv_needs, skip=set())
    assert {"lightning", "albumentations", "opencv-python-headless", "numba", "llvmlite"} <= without.keys()
    assert not {"torch", "torchvision", "triton", "sympy"} & without.keys()
    assert {"torch", "torchvision"} <= with_torch.keys() and without.keys() < with_torch.keys()
    assert without["lightning"] == metadata.version("lightning")


@pytest.mark.parametrize(("with_torch", "flag"), [("0", ""), ("1", " --with-torch")])
def test_make_wheelhouse_passes_the_folder_and_the_torch_choice(
    tmp_path: Path, with_torch: str, flag
) -> None:
    folder = tmp_path / "wheels"
    make = [
        "make",
        "-n",
        "--no-print-directory",
        "wheelhouse",
        f"WHEELHOUSE={folder}",
        f"WITH_TORCH={with_torch}",
    ]
    # Under `make test` this is a sub-make: without the parent's MAKEFLAGS/MAKELEVEL it prints the same lines.
    env = {k: v for k, v in os.environ.items() if k not in {"MAKEFLAGS", "MAKELEVEL", "MFLAGS"}}
    dry_run = subprocess.run(make, cwd=ROOT, capture_output=True, text=True, check=True, env=env)
    assert dry_run.stdout.splitlines()[-1].strip() == f".venv/bin/python tools/wheelhouse.py {folder}{flag}"


def expose_preinstalled(python: Path, names: list[str], shelf: Path) -> None:
    """Make this environment's `names` and everything they need importable from the venv of `python`
    without installing them (symlinks on a .pth path): a Kaggle image, where pip and torch come installed."""
    tool = load_wheelhouse_tool()
    shelf.mkdir()
    for name in tool.requirement_closure([Requirement(n) for n in names], skip=set()):
        distribution = metadata.distribution(name)
        site = Path(distribution.locate_file(""))
        for top in {Path(f).parts[0] for f in distribution.files or []} - {"..", "__pycache__"}:
            if not (shelf / top).exists():
                (shelf / top).symlink_to(site / top)
    purelib = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    (Path(purelib) / "preinstalled.pth").write_text(f"{shelf}\n")


# Where the installed package and FFCV's compiled extension are.
PROBE = """
import effnetv2, ffcv.libffcv, cv2, lightning, albumentations
print(effnetv2.__file__)
print(ffcv._libffcv.__file__)
"""


@pytest.mark.subprocess
@pytest.mark.slow
@pytest.mark.ffcv
@pytest.mark.timeout(3600)  # minutes on an idle machine; the pip and training steps starve under load
def test_wheelhouse_installs_offline_beside_a_preinstalled_torch(
    competition_images: Path, tmp_path: Path
) -> None:
    require_module("ffcv", "the ffcv extra")
    # The script `make wheelhouse` runs, with this environment (make would first re-run `setup` when
    # pyproject.toml is newer than the environment).
    wheelhouse = tmp_path / "wheelhouse"
    built = subprocess.run(
        [sys.executable, ROOT / "tools" / "wheelhouse.py", wheelhouse],
        capture_output=True,
        text=True,
        timeout=1500,
    )
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    wheels = {p.name.split("-")[0].lower() for p in wheelhouse.glob("*.whl")}
    assert {"effnetv2", "ffcv", "lightning", "albumentations", "numba", "hydra_core"} <= wheels
    assert not {"torch", "torchvision"} & wheels

    # A fresh venv that sees only pip, torch, torchvision and their needs; pip sees only the wheelhouse.
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", venv], check=True, timeout=600)
    python = venv / "bin" / "python"
    expose_preinstalled(python, ["pip", "torch", "torchvision"], tmp_path / "preinstalled")
    pip_env = {**os.environ, "PIP_CONFIG_FILE": os.devnull, "PIP_FIND_LINKS": ""}
    offline = [python, "-m", "pip", "install", "--no-index", "--find-links"]
    for args in (["-r", wheelhouse / "requirements.txt"], ["--no-deps", "ffcv"]):
        installed = subprocess.run(
            [*offline, wheelhouse, *args], env=pip_env, capture_output=True, text=True, timeout=1500
        )
        assert installed.returncode == 0, installed.stdout[-3000:] + installed.stderr[-3000:]

    env = train_env()
    env.pop("PYTHONPATH")
    probe = subprocess.run([python, "-c", PROBE], env=env, capture_output=True, text=True, timeout=300)
    assert probe.returncode == 0, probe.stderr[-3000:]
    package, extension = probe.stdout.split()
    assert Path(package).is_relative_to(venv)
    # FFCV's extension finds libturbojpeg and OpenCV inside its wheel, whatever the system has.
    linked = subprocess.run(["ldd", extension], capture_output=True, text=True, check=True).stdout
    for library in ("libturbojpeg", "libopencv_core", "libopencv_imgproc"):
        line = next(line for line in linked.splitlines() if library in line)
        assert "/ffcv.libs/" in line, line

    # The kernel's training cell, with the entry point and configs the wheelhouse carries.
    working = tmp_path / "working"
    working.mkdir()
    before = tree_state(competition_images)
    trained = subprocess.run(
        [
            python,
            wheelhouse / "project" / "src" / "train.py",
            *kernel_overrides(competition_images, working, "ffcv"),
        ],
        cwd=working,
        env=env,
        capture_output=True,
        text=True,
        timeout=1200,
    )
    assert trained.returncode == 0, trained.stderr[-4000:]
    checkpoint = working / "run" / "checkpoints" / "last.ckpt"
    assert checkpoint.is_file()

    # The inference cell: the checkpoint with TTA over the test images, the submission under working.
    predict = [
        f"checkpoints=[{checkpoint}]",
        f"input.folder={competition_images / 'test'}",
        "tta.hflip=true",
        "tta.sizes=[32,40]",
        f"output.path={working / 'submission.csv'}",
        f"paths.root_dir={working}",
        f"hydra.run.dir={working / 'predict'}",
    ]
    predicted = subprocess.run(
        [python, wheelhouse / "project" / "src" / "predict.py", *predict],
        cwd=working,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert predicted.returncode == 0, predicted.stderr[-4000:]
    rows = (working / "submission.csv").read_text().splitlines()
    ids, labels = zip(*(row.split(",") for row in rows[1:]), strict=True)
    assert rows[0] == "id,label" and sorted(ids) == ["a/0.jpg", "a/1.jpg", "b/0.jpg", "b/1.jpg"]
    assert set(labels) <= {"a", "b"}
    assert tree_state(competition_images) == before
