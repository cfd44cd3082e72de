"""Reading image files into uint8 arrays with the model's channel count.

Files in the wild come as grayscale, RGBA, 16-bit, palette or CMYK images, with wrong extensions,
truncated or empty. Everything here either returns an RGB (or grayscale) uint8 array of shape
H x W x C or raises DataError naming the file, so no caller ever sees a bare decoder traceback.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from effnetv2.errors import DataError

IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pbm"}
)

# cv2 applies the EXIF orientation with these flags (IMREAD_UNCHANGED ignores it) and keeps
# 1-channel and 16-bit images as they are; alpha is dropped, which is what we want anyway.
_CV2_FLAGS = cv2.IMREAD_ANYCOLOR | cv2.IMREAD_ANYDEPTH

_MAGIC = (
    (b"\xff\xd8\xff", "jpeg"),
    (b"\x89PNG\r\n\x1a\n", "png"),
    (b"GIF87a", "gif"),
    (b"GIF89a", "gif"),
    (b"BM", "bmp"),
    (b"II*\x00", "tiff"),
    (b"MM\x00*", "tiff"),
    (b"P1", "pnm"),
    (b"P2", "pnm"),
    (b"P3", "pnm"),
    (b"P4", "pnm"),
    (b"P5", "pnm"),
    (b"P6", "pnm"),
)
_TAIL_BYTES = 1024


def image_format(head: bytes) -> str | None:
    """The format named by a file's first bytes (None when no image format matches)."""
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    for magic, name in _MAGIC:
        if head.startswith(magic):
            return name
    return None


def check_image_file(path: Path) -> str | None:
    """Cheap validity check (header and end marker, no decoding): the reason a file is bad, or None.

    Catches empty files, non-images and truncated JPEG/PNG files so a scan can report them up
    front; what only a full decode can find is caught at load time.
    """
    try:
        size = path.stat().st_size
        if size == 0:
            return "empty file (0 bytes)"
        with path.open("rb") as file:
            head = file.read(16)
            file.seek(max(0, size - _TAIL_BYTES))
            tail = file.read()
    except OSError as error:
        return f"cannot read the file ({error.strerror or error})"
    kind = image_format(head)
    if kind is None:
        return "not an image (unknown file header)"
    if kind == "jpeg" and b"\xff\xd9" not in tail:
        return "truncated JPEG (no end-of-image marker)"
    if kind == "png" and b"IEND" not in tail:
        return "truncated PNG (no IEND chunk)"
    return None


def read_image(path: Path, channels: int) -> np.ndarray:
    """Decode a file into uint8 H x W x `channels` (RGB order for 3); DataError naming the file if it fails.

    cv2 decodes first (fast, handles CMYK, palette and 16-bit); PIL is the fallback for what cv2
    cannot read.
    """
    try:
        data = np.fromfile(path, dtype=np.uint8)
    except OSError as error:
        raise DataError(f"cannot read image {path}: {error.strerror or error}") from error
    if data.size == 0:
        raise DataError(f"cannot decode image {path}: empty file (0 bytes)")
    image = cv2.imdecode(data, _CV2_FLAGS)
    image = _bgr_to_rgb(image) if image is not None else _read_with_pil(path)
    return convert_channels(to_uint8(image, path), channels, path)


def _read_with_pil(path: Path) -> np.ndarray:
    from PIL import Image, ImageOps

    try:
        with Image.open(path) as pil_image:
            pil_image = ImageOps.exif_transpose(pil_image)
            if pil_image.mode not in ("L", "RGB", "I;16", "I", "F"):
                pil_image = pil_image.convert("RGB")
            return np.asarray(pil_image)
    except Exception as error:  # PIL raises many types for corrupt files; all mean "unreadable".
        raise DataError(f"cannot decode image {path}: {error}") from error


def _bgr_to_rgb(image: np.ndarray) -> np.ndarray:
    if image.ndim == 3 and image.shape[2] == 3:
        return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    if image.ndim == 3 and image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2RGB)
    return image


def to_uint8(image: np.ndarray, path: Path | str = "<array>") -> np.ndarray:
    """Scale 16-bit and float images to uint8 (16-bit: value / 257; float: 0..1 -> 0..255)."""
    if image.dtype == np.uint8:
        return image
    if image.dtype == np.uint16:
        return (image.astype(np.float32) / 257.0 + 0.5).astype(np.uint8)
    if image.dtype.kind == "f":
        return (np.clip(image, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    if image.dtype.kind in "iu":  # e.g. PIL mode "I": 16-bit data in 32-bit integers
        scale = 257.0 if image.max(initial=0) > 255 else 1.0
        return (np.clip(image, 0, 255 * scale) / scale + 0.5).astype(np.uint8)
    raise DataError(f"cannot use image {path}: unsupported pixel type {image.dtype}")


def convert_channels(image: np.ndarray, channels: int, path: Path | str = "<array>") -> np.ndarray:
    """Gray / RGB / RGBA uint8 input -> H x W x `channels` (1 or 3), always 3-dimensional."""
    if image.ndim == 2:
        image = image[:, :, None]
    if image.ndim != 3 or image.shape[2] not in (1, 3, 4):
        raise DataError(f"cannot use image {path}: unsupported shape {image.shape}")
    if image.shape[2] == 4:
        image = image[:, :, :3]
    have = image.shape[2]
    if have == channels:
        return np.ascontiguousarray(image)
    if channels == 3:
        return np.ascontiguousarray(np.repeat(image, 3, axis=2))
    if channels == 1:
        return cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)[:, :, None]
    raise DataError(f"cannot convert image {path} to {channels} channels (supported: 1 or 3)")
