"""FFCV as the default fast path: `loader: auto` chooses and says why; betons are written on first use,
announced with their cost, reused while the source is unchanged and rewritten when it changes."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

import numpy as np
import pytest

from effnetv2.data.betons import announce_beton, choose_loader, source_fingerprint
from effnetv2.data.datamodule import ImageDataModule
from effnetv2.data.sources import ImageFolder
from effnetv2.errors import DataError

pytest_plugins = ["fixtures_data"]


def ffcv_importable() -> bool:
    try:
        import effnetv2.data.ffcv_loader  # noqa: F401
    except DataError:
        return False
    return True


def test_auto_is_torch_where_ffcv_cannot_be_imported(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [name for name in sys.modules if name == "ffcv" or name.startswith("ffcv.")]:
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.setitem(sys.modules, "ffcv", None)
    monkeypatch.delitem(sys.modules, "effnetv2.data.ffcv_loader", raising=False)
    loader, why = choose_loader("auto")
    assert loader == "torch" and "data.loader=auto and FFCV cannot be imported" in why
    assert choose_loader("torch") == ("torch", "data.loader=torch")


def test_auto_says_which_loader_and_why(tiny_folder: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO):
        datamodule = ImageDataModule(source="image_folder", root=str(tiny_folder), loader="auto", in_chans=3,
                                     mean=(0.5,) * 3, std=(0.25,) * 3)  # fmt: skip
    lines = [
        record.getMessage() for record in caplog.records if record.getMessage().startswith("data loader:")
    ]
    expected = "ffcv" if ffcv_importable() else "torch"
    assert datamodule.loader == expected and lines == [
        f"data loader: {expected} ({choose_loader('auto')[1]})"
    ]
    balanced = ImageDataModule(source="image_folder", root=str(tiny_folder), loader="auto", in_chans=3,
                               mean=(0.5,) * 3, std=(0.25,) * 3, sampler="balanced")  # fmt: skip
    assert balanced.loader == "torch"


def test_fingerprint_follows_paths_sizes_and_mtimes(tiny_folder: Path) -> None:
    def fingerprint() -> str:
        return source_fingerprint(ImageFolder(tiny_folder).load("train"))

    first = fingerprint()
    assert fingerprint() == first
    image = tiny_folder / "train" / "a" / "0.png"
    stat = image.stat()
    os.utime(image, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    touched = fingerprint()
    assert touched != first
    (tiny_folder / "train" / "b" / "5.png").rename(tiny_folder / "train" / "a" / "9.png")  # relabelled
    assert fingerprint() not in (first, touched)


def test_large_writes_say_hours_and_how_to_opt_out() -> None:
    small = announce_beton(Path("b/x_train.beton"), 1000, 5e7, 20.0)
    assert "about 0.05 GB and 20 s" in small and "data.loader=torch" in small and "hours" not in small
    huge = announce_beton(Path("b/imagenet_train.beton"), 1_281_167, 1.4e11, 5 * 3600.0)
    assert "5.0 h" in huge and "100+ GB" in huge and "data.loader=torch" in huge


@pytest.mark.ffcv
@pytest.mark.timeout(300)
def test_betons_are_reused_while_unchanged_and_rewritten_when_changed(
    tiny_folder: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    pytest.importorskip("ffcv")
    options = dict(source="image_folder", root=str(tiny_folder), name="tiny", loader="auto", in_chans=3,
                   mean=(0.5,) * 3, std=(0.25,) * 3, beton_dir=str(tmp_path / "betons"), val_fraction=0.0,
                   num_workers=1, batch_size=4, image_size=16, eval_size=16)  # fmt: skip
    beton = tmp_path / "betons" / "tiny_train.beton"
    with caplog.at_level(logging.WARNING):
        assert ImageDataModule(**options).write_betons(overwrite=False) == {"train": beton}
    assert any("writing" in r.getMessage() and "GB" in r.getMessage() for r in caplog.records)
    assert ImageDataModule(**options).write_betons(overwrite=False) == {}  # unchanged: reused
    assert ImageDataModule(**options, beton_jpeg_quality=80).write_betons(overwrite=False) == {"train": beton}
    image = tiny_folder / "train" / "a" / "0.png"
    image.write_bytes(image.read_bytes())  # same pixels, new mtime
    stat = image.stat()
    os.utime(image, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    options["beton_jpeg_quality"] = 80
    changed = ImageDataModule(**options)
    assert changed.write_betons(overwrite=False) == {"train": beton}
    changed.setup("fit")
    images, labels = next(iter(changed.train_dataloader()))
    assert images.shape == (4, 3, 16, 16) and np.isin(labels.numpy(), [0, 1]).all()
