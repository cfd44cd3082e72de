"""The FFCV path: .beton writing, the loader, its setters and the traps of FFCV 1.0.2 we work around.

FFCV hangs instead of failing in several situations, so every test here runs under a timeout.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import torch

from effnetv2.data import transforms
from effnetv2.data.betons import info_path
from effnetv2.data.datamodule import ImageDataModule
from effnetv2.data.randaugment import RandAugment
from effnetv2.data.settings import Betons
from effnetv2.data.sources import FASHION_MNIST_ROOT, ImageFolder
from effnetv2.errors import DataError
from helpers.environment import require
from helpers.paths import ROOT

try:
    from effnetv2.data import ffcv_loader, ffcv_writer
except DataError as error:
    require(False, f"FFCV cannot be imported: {error}")

from fixtures_data import write_png

pytest_plugins = ["fixtures_data"]
pytestmark = [pytest.mark.ffcv, pytest.mark.timeout(300)]

COLOUR = {"in_chans": 3, "mean": (0.5, 0.5, 0.5), "std": (0.25, 0.25, 0.25)}


def ffcv_module(
    root: Path, beton_dir: Path, source: str = "image_folder", **overrides: Any
) -> ImageDataModule:
    options: dict[str, Any] = {
        "source": source,
        "root": str(root),
        "name": f"colour_{source}",
        "loader": "ffcv",
        "beton_dir": str(beton_dir),
        "beton_write_mode": "raw",
        "image_size": 32,
        "eval_size": 32,
        "crop_pct": 1.0,
        "batch_size": 16,
        "num_workers": 2,
        **COLOUR,
    }
    if source == "csv":
        options.update(test_csv="test.csv")
    return ImageDataModule(**{**options, **overrides})


@pytest.fixture(scope="module")
def beton_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("betons")


class MagnitudeSpy(RandAugment):
    """Returns an image filled with 10 x the magnitude it was called with (in the augmentation worker
    processes too: they import this module to unpickle it)."""

    def apply(self, img: np.ndarray, magnitude: float, **params: Any) -> np.ndarray:  # type: ignore[override]
        return np.full_like(img, int(round(magnitude * 10)))


@pytest.fixture
def magnitude_spy(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(transforms, "RandAugment", MagnitudeSpy)


def test_labels_round_trip_exactly_through_a_beton(colour_folder: Path, tmp_path: Path) -> None:
    samples = ImageFolder(colour_folder).load("train")
    beton = tmp_path / "train.beton"
    settings = Betons(beton_max_resolution=None, beton_jpeg_quality=90, beton_write_mode="raw")
    count = ffcv_writer.write_beton(samples, beton, {"note": "test"}, settings, 2, on_bad_image="error")
    assert count == len(samples)
    assert np.array_equal(ffcv_loader.beton_labels(beton), samples.labels)
    info = json.loads(info_path(beton).read_text())
    assert info["num_samples"] == len(samples) and info["skipped"] == 0 and info["note"] == "test"
    loader = ffcv_loader.FFCVLoader(beton, np.arange(len(samples)), 16, 1, False, 32)
    loaded = torch.cat([labels for _, labels in loader])
    assert loaded.dtype == torch.int64 and torch.equal(loaded, torch.from_numpy(samples.labels))


@pytest.mark.parametrize("source", ["image_folder", "csv"])
def test_generated_images_through_the_ffcv_loader(
    colour_folder: Path, colour_csv: Path, beton_dir: Path, source: str, colour_classes: tuple[str, ...]
) -> None:
    threads = torch.get_num_threads()
    datamodule = ffcv_module(colour_folder if source == "image_folder" else colour_csv, beton_dir, source)
    datamodule.prepare_data()
    assert datamodule.class_names == list(colour_classes)
    datamodule.setup("fit")
    train = datamodule.train_dataloader()
    batches = list(train)
    assert len(batches) == len(train) > 1
    images, labels = batches[0]
    assert images.shape == (16, 3, 32, 32) and images.dtype == torch.uint8 and labels.dtype == torch.int64
    assert images.device == torch.device("cpu")  # ToDevice: the trainer's device (none here)
    assert torch.get_num_threads() == threads  # restored after import, Loader() and the epoch thread


def test_eval_batches_equal_the_torch_loader(colour_folder: Path, beton_dir: Path) -> None:
    """Raw betons and crop_pct=1 at the native size: both loaders must give the same pixels."""
    with_ffcv = ffcv_module(colour_folder, beton_dir)
    with_ffcv.prepare_data()
    with_torch = ffcv_module(colour_folder, beton_dir, loader="torch", num_workers=0)
    for datamodule in (with_ffcv, with_torch):
        datamodule.setup("test")
    ffcv_images, ffcv_labels = next(iter(with_ffcv.test_dataloader()))
    torch_images, torch_labels = next(iter(with_torch.test_dataloader()))
    assert torch.equal(ffcv_labels, torch_labels)
    assert ffcv_images.dtype == torch_images.dtype == torch.uint8 and torch.equal(ffcv_images, torch_images)
    assert torch.equal(with_ffcv.normalize(ffcv_images), with_torch.normalize(torch_images))


def test_fashion_mnist_through_ffcv_keeps_one_channel(tmp_path: Path) -> None:
    require(
        Path(FASHION_MNIST_ROOT, "train-images-idx3-ubyte.gz").is_file(), "Fashion-MNIST is not installed"
    )
    options = {"mean": (0.286,), "std": (0.353,), "image_size": 28, "eval_size": 28, "crop_pct": 1.0}
    with_ffcv = ImageDataModule(loader="ffcv", beton_dir=str(tmp_path), beton_write_mode="raw", **options)
    with_ffcv.prepare_data()
    with_torch = ImageDataModule(num_workers=0, **options)
    for datamodule in (with_ffcv, with_torch):
        datamodule.setup("test")
    ffcv_images, ffcv_labels = next(iter(with_ffcv.test_dataloader()))
    torch_images, torch_labels = next(iter(with_torch.test_dataloader()))
    ffcv_images, torch_images = with_ffcv.normalize(ffcv_images), with_torch.normalize(torch_images)
    assert ffcv_images.shape == (128, 1, 28, 28) and torch.equal(ffcv_labels, torch_labels)
    assert torch.allclose(ffcv_images, torch_images, atol=1e-5)


def test_setters_reach_the_next_epoch(colour_folder: Path, beton_dir: Path, magnitude_spy: None) -> None:
    datamodule = ffcv_module(colour_folder, beton_dir, randaug_magnitude=5, val_fraction=0.2)
    datamodule.prepare_data()
    datamodule.setup("fit")
    train, val = datamodule.train_dataloader(), datamodule.val_dataloader()

    def magnitudes(images: torch.Tensor) -> set[float]:
        return set((images.float() / 10).unique().tolist())  # uint8 as FFCV delivers it

    for images, _ in train:
        assert images.shape[-2:] == (32, 32) and magnitudes(images) == {5.0}
    assert next(iter(val))[0].shape[-2:] == (32, 32)
    datamodule.set_image_size(40)
    datamodule.set_randaug_magnitude(15)
    datamodule.set_eval_size(24)
    assert datamodule.train_dataloader() is train  # the same loader: nothing rebuilt or recompiled
    batches = list(train)
    assert len(batches) == len(train) > 1
    for images, _ in batches:
        assert images.shape[-2:] == (40, 40) and magnitudes(images) == {15.0}
    assert next(iter(val))[0].shape[-2:] == (24, 24)


NAIVE_ORDERS = {
    # decoder -> flip -> ToTensor -> ToTorchImage -> NormalizeImage: the order of ffcv#396's report
    "normalize_after_to_tensor": "[decoder, RandomHorizontalFlip(), ToTensor(), ToTorchImage(), normalize]",
    # RandAugment (a Python stage) followed by FFCV's compiled NormalizeImage
    "normalize_after_randaugment": "[decoder, RandomHorizontalFlip(), randaugment, normalize, ToTensor()]",
    # what image_pipeline builds for the same operations
    "ours": "image_pipeline(decoder, [RandomHorizontalFlip()], [randaugment], torch.device('cpu'), False)",
}
BUILD_LOADER = """
import sys
import numpy as np
import torch
from ffcv.transforms import NormalizeImage, ToTorchImage
from effnetv2.data.ffcv_loader import (
    Loader, RandAugmentOp, RandomHorizontalFlip, RandomResizedCropRGBImageDecoder, ToTensor, image_pipeline,
)
from effnetv2.data.randaugment import RandAugment
from effnetv2.data.settings import Betons
MEAN, STD = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)
print("imported", flush=True)
decoder = RandomResizedCropRGBImageDecoder((32, 32))
normalize = NormalizeImage(np.array(MEAN) * 255, np.array(STD) * 255, np.float32)
randaugment = RandAugmentOp(RandAugment(2, 5.0), 1)
pipeline = {pipeline}
loader = Loader(sys.argv[1], batch_size=8, num_workers=1, pipelines={{"image": pipeline}})
print("built", flush=True)
epoch = iter(loader)
images, labels = next(epoch)
print("batch", tuple(images.shape), flush=True)
epoch.close()  # an epoch thread alive at exit aborts the interpreter (our Loader wrapper does this too)
epoch.join(10)
"""


def run_pipelines(beton: Path, timeouts: dict[str, float]) -> dict[str, str]:
    """Build a Loader with each named pipeline, each in its own subprocess, all at once (the hangs
    cost their timeout once): each one's output, or "hang: <output>" if it still ran at its timeout."""
    started = time.monotonic()
    processes = {
        name: subprocess.Popen(
            [
                sys.executable,
                "-c",
                textwrap.dedent(BUILD_LOADER).format(pipeline=NAIVE_ORDERS[name]),
                str(beton),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=ROOT,
        )
        for name in timeouts
    }
    outputs = {}
    for name, process in processes.items():
        try:
            stdout, stderr = process.communicate(
                timeout=max(0.0, started + timeouts[name] - time.monotonic())
            )
        except subprocess.TimeoutExpired:
            process.kill()
            outputs[name] = "hang: " + process.communicate()[0]
            continue
        assert process.returncode == 0, stderr[-2000:]
        outputs[name] = stdout
    return outputs


@pytest.mark.subprocess
def test_pipeline_order_avoids_the_ffcv_396_hang(colour_folder: Path, beton_dir: Path) -> None:
    datamodule = ffcv_module(colour_folder, beton_dir)
    datamodule.prepare_data()
    beton = beton_dir / "colour_image_folder_train.beton"
    # Without the workaround Loader() never returns (the imports finished, "built" never comes):
    # proof that the check of ours can fail.
    outputs = run_pipelines(
        beton, {"ours": 240, "normalize_after_to_tensor": 45, "normalize_after_randaugment": 45}
    )
    assert "batch (8, 3, 32, 32)" in outputs["ours"]
    assert (
        outputs["normalize_after_to_tensor"] == outputs["normalize_after_randaugment"] == "hang: imported\n"
    )


class FailingOp(ffcv_loader.Operation):
    """A Python stage that raises, as a buggy custom augmentation would."""

    def generate_code(self) -> Any:
        def fail(images: np.ndarray, _: Any) -> np.ndarray:
            raise RuntimeError("augmentation bug")

        return fail

    def declare_state_and_memory(self, previous_state: Any) -> tuple[Any, None]:
        from dataclasses import replace

        return replace(previous_state, jit_mode=False), None


def test_an_error_in_the_loader_thread_raises_instead_of_hanging(
    colour_folder: Path, beton_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    datamodule = ffcv_module(colour_folder, beton_dir)
    datamodule.prepare_data()
    datamodule.setup("fit")
    monkeypatch.setattr(ffcv_loader, "RandAugmentOp", lambda *args: FailingOp())
    loader = datamodule.train_dataloader()
    with pytest.raises(DataError, match="loader thread stopped"):
        next(iter(loader))


def test_stale_beton_is_refused_then_rewritten(colour_folder: Path, tmp_path: Path) -> None:
    ffcv_module(colour_folder, tmp_path).prepare_data()
    changed = ffcv_module(colour_folder, tmp_path, beton_max_resolution=16)
    with pytest.raises(DataError, match="prepare_data.py data=colour_image_folder"):
        changed.setup("fit")
    changed.prepare_data()
    changed.setup("fit")
    images, _ = next(iter(changed.val_dataloader()))
    assert images.shape == (16, 3, 32, 32)


def undecodable_jpeg(path: Path) -> Path:
    """Passes the header check (JPEG start and end markers) but no decoder can read it."""
    path.write_bytes(b"\xff\xd8\xff\xe0" + np.random.default_rng(0).bytes(300) + b"\xff\xd9")
    return path


def test_write_reports_undecodable_images(tiny_folder: Path, tmp_path: Path) -> None:
    broken = undecodable_jpeg(tiny_folder / "train" / "a" / "broken.jpg")
    options = {"source": "image_folder", "root": str(tiny_folder), "name": "tiny", "val_fraction": 0.0}
    strict = ImageDataModule(loader="ffcv", beton_dir=str(tmp_path), **options, **COLOUR)
    with pytest.raises(DataError, match=rf"(?s)1 bad images that do not decode.*{broken.name}"):
        strict.write_betons()
    skipping = ImageDataModule(
        loader="ffcv", beton_dir=str(tmp_path), on_bad_image="skip", **options, **COLOUR
    )
    assert skipping.write_betons() == {"train": tmp_path / "tiny_train.beton"}
    info = json.loads(info_path(tmp_path / "tiny_train.beton").read_text())
    assert (info["num_samples"], info["skipped"]) == (12, 1)


def prepare_data_cli(*overrides: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "src/prepare_data.py", *overrides],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
    )


@pytest.mark.subprocess
def test_prepare_data_cli_writes_betons_and_names_bad_files(tiny_folder: Path, tmp_path: Path) -> None:
    overrides = [
        "data=image_folder",
        f"data.root={tiny_folder}",
        "data.name=tiny",
        f"data.beton_dir={tmp_path}",
        f"hydra.run.dir={tmp_path / 'run'}",
    ]
    result = prepare_data_cli(*overrides)
    assert result.returncode == 0, result.stderr[-3000:]
    assert np.array_equal(np.bincount(ffcv_loader.beton_labels(tmp_path / "tiny_train.beton")), [6, 6])
    (tiny_folder / "train" / "b" / "empty.png").write_bytes(b"")
    result = prepare_data_cli(*overrides)
    assert result.returncode == 1
    assert (
        "error:" in result.stderr
        and "empty.png: empty file" in result.stderr
        and "Traceback" not in result.stderr
    )


def test_ffcv_loader_is_distributed_under_ddp(colour_folder: Path, beton_dir: Path, tmp_path: Path) -> None:
    datamodule = ffcv_module(colour_folder, beton_dir, num_workers=1)
    datamodule.prepare_data()
    datamodule.setup("fit")
    datamodule.trainer = SimpleNamespace(world_size=2)  # what Lightning's trainer reports under DDP
    torch.distributed.init_process_group(
        "gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1
    )
    try:
        loader = datamodule.train_dataloader()
        assert loader.loader.distributed
        assert sum(len(labels) for _, labels in loader) == len(loader) * 16
    finally:
        torch.distributed.destroy_process_group()


def test_missing_ffcv_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [name for name in sys.modules if name == "ffcv" or name.startswith("ffcv.")]:
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.delitem(sys.modules, "effnetv2.data.ffcv_loader")
    with pytest.raises(DataError, match=r"(?s)make setup.*pip install -e .\[ffcv\].*data.loader=torch"):
        ImageDataModule(loader="ffcv")


def test_an_epoch_started_under_inference_mode_loads(colour_folder: Path, beton_dir: Path) -> None:
    """Lightning validates under torch.inference_mode: ToDevice's buffers, allocated when the epoch
    starts, must still be writable by FFCV's loader thread (it copies into them outside that mode)."""
    datamodule = ffcv_module(colour_folder, beton_dir)
    datamodule.prepare_data()
    datamodule.setup("test")
    with torch.inference_mode():
        images, labels = next(iter(datamodule.test_dataloader()))
    assert images.shape[1:] == (3, 32, 32) and images.dtype == torch.uint8 and len(labels) == len(images)


def test_skipped_image_keeps_validation_ids_aligned_with_the_beton(tmp_path: Path) -> None:
    """An undecodable file in the middle of the listing is left out of the beton: the samples and ids a
    role names (what val_predictions.csv and OOF files report) must be the images its loader reads."""
    from effnetv2.data.decode import read_image
    from effnetv2.training.callbacks.val_predictions import validation_samples

    rng = np.random.default_rng(5)
    root = tmp_path / "data"
    for name in ("a", "b", "c"):
        for i in range(6):  # every image its own noise: a pixel comparison names the file
            write_png(root / "train" / name / f"{i}.png", rng.integers(0, 256, (32, 32, 3), dtype=np.uint8))
    undecodable_jpeg(root / "train" / "b" / "3_broken.jpg")
    options = {"name": "aligned", "val_fraction": 0.5, "on_bad_image": "skip"}
    datamodule = ffcv_module(root, tmp_path / "betons", num_workers=1, **options)
    datamodule.prepare_data()
    datamodule.setup("fit")
    ids, samples = validation_samples(datamodule)
    assert samples.paths == datamodule.samples("val").paths
    assert [root / i for i in ids] == list(samples.paths) and "b/3_broken.jpg" not in ids
    assert not set(samples.paths) & set(datamodule.samples("train").paths)
    images, labels = (torch.cat(parts) for parts in zip(*datamodule.val_dataloader()))
    images = datamodule.normalize(images)  # uint8 from the loader, normalised as on the device
    assert len(images) == len(samples) == 9
    assert torch.equal(labels, torch.from_numpy(samples.labels))
    for image, path in zip(images, samples.paths):
        expected = (torch.from_numpy(read_image(path, 3)).permute(2, 0, 1).float() / 255 - 0.5) / 0.25
        assert torch.allclose(image, expected, atol=1e-5), path
