"""Bad input never crashes with a bare traceback and is never lost silently.

Every case builds its files in tmp_path: unreadable, truncated and zero-byte files and wrong
extensions fail with a DataError naming the file (on_bad_image=error) or are skipped and counted
(on_bad_image=skip); odd image modes are converted to the model's channel count.
"""

from __future__ import annotations

import csv
import logging
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from effnetv2.data.datamodule import ImageDataModule
from effnetv2.data.decode import check_image_file, read_image
from effnetv2.data.sources import CsvSource, ImageFolder
from effnetv2.data.torch_loader import ImageDataset, LiveSettings, Uint8Collate
from effnetv2.data.transforms import EvalTransform
from effnetv2.errors import DataError

pytest_plugins = ["fixtures_data"]

RGB = np.random.default_rng(0).integers(0, 256, (20, 24, 3), dtype=np.uint8)


def save(path: Path, image: Image.Image, **options: object) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, **options)
    return path


def jpeg_bytes() -> bytes:
    from io import BytesIO

    buffer = BytesIO()
    Image.fromarray(RGB).save(buffer, format="JPEG", quality=95)
    return buffer.getvalue()


BAD_FILES = {
    "zero_byte.jpg": (b"", "empty file"),
    "truncated.jpg": (jpeg_bytes()[: len(jpeg_bytes()) // 2], "truncated JPEG"),
    "random_bytes.jpg": (np.random.default_rng(1).bytes(600), "not an image"),
}


@pytest.mark.parametrize("name", list(BAD_FILES))
def test_bad_file_fails_the_header_check_and_the_decoder_naming_it(tmp_path: Path, name: str) -> None:
    content, reason = BAD_FILES[name]
    path = tmp_path / name
    path.write_bytes(content)
    assert reason in check_image_file(path)
    with pytest.raises(DataError, match=name):
        read_image(path, 3)


@pytest.mark.parametrize("name", list(BAD_FILES))
def test_bad_file_in_a_class_folder_errors_or_is_skipped_and_counted(
    tiny_folder: Path, name: str, caplog: pytest.LogCaptureFixture
) -> None:
    (tiny_folder / "train" / "a" / name).write_bytes(BAD_FILES[name][0])
    with pytest.raises(DataError, match=rf"(?s)1 bad image files.*{name}.*on_bad_image=skip"):
        ImageFolder(tiny_folder).load("train")
    with caplog.at_level(logging.WARNING):
        samples = ImageFolder(tiny_folder, on_bad_image="skip").load("train")
    assert len(samples) == 12 and all(path.name != name for path in samples.paths)
    assert "skipped 1 bad image files" in caplog.text and name in caplog.text


def test_png_named_jpg_decodes_by_content(tmp_path: Path) -> None:
    path = save(tmp_path / "actually_png.jpg", Image.fromarray(RGB), format="PNG")
    assert check_image_file(path) is None
    assert np.array_equal(read_image(path, 3), RGB)


def test_16_bit_png_is_scaled_to_8_bits(tmp_path: Path) -> None:
    gray16 = (RGB[:, :, 0].astype(np.uint16) * 257).astype(np.uint16)
    path = save(tmp_path / "deep.png", Image.fromarray(gray16))
    image = read_image(path, 1)
    assert image.dtype == np.uint8 and image.shape == (20, 24, 1)
    assert np.array_equal(image[:, :, 0], RGB[:, :, 0])


def test_rgba_drops_alpha(tmp_path: Path) -> None:
    rgba = np.dstack([RGB, np.full(RGB.shape[:2], 7, np.uint8)])
    path = save(tmp_path / "alpha.png", Image.fromarray(rgba, mode="RGBA"))
    assert np.array_equal(read_image(path, 3), RGB)
    assert read_image(path, 1).shape == (20, 24, 1)


def test_16_bit_rgb_png_keeps_channel_order_and_scales_by_257(tmp_path: Path) -> None:
    """Each channel its own 16-bit ramp (written by cv2, BGR on disk): value v reads as round(v / 257)."""
    rgb16 = np.stack([np.arange(20 * 24, dtype=np.uint16).reshape(20, 24) * k for k in (130, 65, 7)], axis=2)
    path = tmp_path / "deep_rgb.png"
    assert cv2.imwrite(str(path), rgb16[:, :, ::-1])
    image = read_image(path, 3)
    expected = np.floor(rgb16.astype(np.float64) / 257 + 0.5).astype(np.uint8)
    assert image.dtype == np.uint8 and np.array_equal(image, expected)
    assert read_image(path, 1).shape == (20, 24, 1)


def test_rgba_png_drops_a_varying_alpha_without_compositing(tmp_path: Path) -> None:
    """Documented in effnetv2.data.decode: alpha is dropped, colours stay as stored (no blend on white)."""
    alpha = np.tile(np.array([0, 64, 255], np.uint8), 20 * 8).reshape(20, 24)
    path = save(tmp_path / "alpha_varying.png", Image.fromarray(np.dstack([RGB, alpha]), mode="RGBA"))
    assert np.array_equal(read_image(path, 3), RGB)
    rgba16 = (np.dstack([RGB, alpha]).astype(np.uint16) * 257)[:, :, [2, 1, 0, 3]]  # BGRA for cv2
    path16 = tmp_path / "alpha16.png"
    assert cv2.imwrite(str(path16), rgba16)
    assert np.array_equal(read_image(path16, 3), RGB)


def test_palette_png_is_expanded_to_rgb(tmp_path: Path) -> None:
    palette_image = Image.fromarray(RGB).convert("P")
    path = save(tmp_path / "palette.png", palette_image)
    assert np.array_equal(read_image(path, 3), np.asarray(palette_image.convert("RGB")))


def test_cmyk_jpeg_is_converted_to_rgb(tmp_path: Path) -> None:
    path = save(tmp_path / "cmyk.jpg", Image.fromarray(RGB).convert("CMYK"), quality=95)
    expected = np.asarray(Image.open(path).convert("RGB")).astype(int)
    assert np.abs(read_image(path, 3).astype(int) - expected).max() <= 2


def test_grayscale_becomes_three_identical_channels_or_stays_one(tmp_path: Path) -> None:
    path = save(tmp_path / "gray.png", Image.fromarray(RGB[:, :, 1]))
    rgb = read_image(path, 3)
    assert rgb.shape == (20, 24, 3) and (rgb == RGB[:, :, 1:2]).all()
    assert np.array_equal(read_image(path, 1)[:, :, 0], RGB[:, :, 1])


def test_gif_is_read(tmp_path: Path) -> None:
    path = save(tmp_path / "frame.gif", Image.fromarray(RGB).convert("P"))
    assert read_image(path, 3).shape == (20, 24, 3)


def test_empty_class_folder_errors_or_is_dropped(tiny_folder: Path, caplog: pytest.LogCaptureFixture) -> None:
    (tiny_folder / "train" / "empty_class").mkdir()
    (tiny_folder / "train" / "empty_class" / "notes.txt").write_text("no images here")
    with pytest.raises(DataError, match="(?s)empty_class.*class folder without images"):
        ImageFolder(tiny_folder).class_names  # noqa: B018 (the property scans the folders)
    with caplog.at_level(logging.WARNING):
        assert ImageFolder(tiny_folder, on_bad_image="skip").class_names == ["a", "b"]
    assert "skipped 1 bad class folders" in caplog.text


def test_test_classes_unseen_in_training(tiny_folder: Path) -> None:
    for name in ("a", "unknown"):
        save(tiny_folder / "test" / name / "0.png", Image.fromarray(RGB))
    with pytest.raises(DataError, match="'unknown' is not a training class"):
        ImageFolder(tiny_folder).load("test")
    test = ImageFolder(tiny_folder, on_bad_image="skip").load("test")
    assert len(test) == 1 and test.labels.tolist() == [0]


def write_csv(path: Path, rows: list[dict[str, str]]) -> Path:
    with path.open("w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=["id", "label"])
        writer.writeheader()
        writer.writerows(rows)
    return path


@pytest.fixture
def csv_root(tiny_folder: Path) -> Path:
    """train.csv rows for the 12 tiny images (ids like "a/3", extension .png)."""
    rows = [
        {"id": f"{p.parent.name}/{p.stem}", "label": p.parent.name}
        for p in (tiny_folder / "train").rglob("*.png")
    ]
    write_csv(tiny_folder / "train.csv", rows)
    return tiny_folder


@pytest.mark.parametrize(
    ("row", "reason"),
    [
        ({"id": "a/0", "label": ""}, "label missing for 'a/0'"),
        ({"id": "a/404", "label": "a"}, "image .*a/404.png does not exist"),
        ({"id": "", "label": "a"}, "empty 'id'"),
    ],
)
def test_csv_row_problems_error_naming_the_line_or_are_skipped(
    csv_root: Path, row: dict[str, str], reason: str, caplog: pytest.LogCaptureFixture
) -> None:
    rows = list(csv.DictReader((csv_root / "train.csv").open()))
    write_csv(csv_root / "train.csv", [*rows, row])
    with pytest.raises(DataError, match=rf"train.csv line 14: {reason}"):
        CsvSource(csv_root, extension=".png").load("train")
    with caplog.at_level(logging.WARNING):
        assert len(CsvSource(csv_root, extension=".png", on_bad_image="skip").load("train")) == 12
    assert "skipped 1 bad rows" in caplog.text


def test_csv_test_labels_unseen_in_training(csv_root: Path) -> None:
    write_csv(csv_root / "test.csv", [{"id": "a/0", "label": "a"}, {"id": "b/0", "label": "zebra"}])
    source = CsvSource(csv_root, extension=".png", test_csv="test.csv", test_image_dir="train")
    with pytest.raises(DataError, match="label 'zebra' of 'b/0' is not a training class"):
        source.load("test")
    skipping = CsvSource(
        csv_root, extension=".png", test_csv="test.csv", test_image_dir="train", on_bad_image="skip"
    )
    assert skipping.load("test").labels.tolist() == [0]


def broken_after_scan(tiny_folder: Path, on_bad_image: str) -> tuple[ImageDataset, Path]:
    """A dataset whose first file was overwritten after the scan (found only when decoding)."""
    samples = ImageFolder(tiny_folder, on_bad_image=on_bad_image).load("train")
    samples.paths[0].write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40 + b"IEND")
    dataset = ImageDataset(samples, EvalTransform(16, 1.0), LiveSettings(16, 16, 0.0), 3, on_bad_image)
    return dataset, samples.paths[0]


def test_decode_failure_at_load_time_names_the_file(tiny_folder: Path) -> None:
    dataset, broken = broken_after_scan(tiny_folder, "error")
    with pytest.raises(DataError, match=broken.name):
        dataset[0]
    assert dataset[1][0].shape == (3, 16, 16)


def test_decode_failure_at_load_time_is_skipped_and_logged(
    tiny_folder: Path, caplog: pytest.LogCaptureFixture
) -> None:
    dataset, broken = broken_after_scan(tiny_folder, "skip")
    collate = Uint8Collate()
    with caplog.at_level(logging.WARNING):
        images, labels = collate([dataset[i] for i in range(4)])
    assert images.shape == (3, 3, 16, 16) and images.dtype == torch.uint8 and len(labels) == 3
    assert broken.name in caplog.text
    with pytest.raises(DataError, match="all 1 images of a batch failed"):
        collate([dataset[0]])


def test_decode_failure_in_a_worker_reaches_the_main_process_as_data_error(tiny_folder: Path) -> None:
    datamodule = ImageDataModule(
        source="image_folder",
        root=str(tiny_folder),
        in_chans=3,
        mean=(0.5,) * 3,
        std=(0.25,) * 3,
        val_fraction=0.0,
        batch_size=12,
        num_workers=1,
        image_size=16,
    )
    datamodule.setup("fit")
    datamodule.roles.scanned("train").paths[3].write_bytes(b"")
    with pytest.raises(DataError, match="cannot decode image .*3.png: empty file"):
        next(iter(datamodule.train_dataloader()))
