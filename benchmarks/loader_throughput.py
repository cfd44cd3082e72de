"""Images/sec of the FFCV loader vs the torch loader, beside the model's training images/sec (issue 4).

CIFAR-10 JPEGs upscaled to 128 and 224 px (re-encoded as JPEG, quality 90) are loaded by both
loaders with 2 workers: random-resized crop + flip + normalise alone, then with RandAugment at
magnitude 5 and 15 (set between epochs through the DataModule, as progressive learning does).
Epochs alternate between the loaders (torch, ffcv, torch, ffcv, ...) so both see the same machine
load; the table gives medians and the ratio ffcv / torch. Beside them: EfficientNetV2-B0 training
images/sec (forward + backward + SGD step) at the same size, which says whether the loader is the
bottleneck. A last row measures Fashion-MNIST (in memory, 28 -> 32 px, RandAugment magnitude 5).

    python benchmarks/loader_throughput.py            # ~10 minutes on 2 shared cores
    python benchmarks/loader_throughput.py --quick    # plumbing check
"""

from __future__ import annotations

import argparse
import os
import statistics
import tarfile
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from effnetv2.data.datamodule import ImageDataModule  # noqa: E402
from effnetv2.models import create_model  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
CIFAR_ARCHIVE = ROOT.parent / "shared" / "data" / "cifar10-jpeg.tar.gz"
CIFAR_MEAN, CIFAR_STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)


def extract_upscaled(destination: Path, images_per_class: int, sizes: Iterable[int]) -> dict[int, Path]:
    """root/train/<class>/NNNN.jpg per size: the first CIFAR-10 train images, upscaled (bicubic)."""
    roots = {size: destination / f"cifar_{size}" for size in sizes}
    with tarfile.open(CIFAR_ARCHIVE) as archive:
        for member in archive:
            parts = member.name.split("/")  # cifar10/train/<class>/NNNN.jpg
            if not member.isfile() or parts[1] != "train" or int(parts[3][:-4]) >= images_per_class:
                continue
            data = np.frombuffer(archive.extractfile(member).read(), np.uint8)
            image = cv2.imdecode(data, cv2.IMREAD_COLOR)
            for size, root in roots.items():
                path = root / "train" / parts[2] / parts[3]
                path.parent.mkdir(parents=True, exist_ok=True)
                upscaled = cv2.resize(image, (size, size), interpolation=cv2.INTER_CUBIC)
                cv2.imwrite(str(path), upscaled, [cv2.IMWRITE_JPEG_QUALITY, 90])
    return roots


def images_per_second(loader: Iterable, limit: int | None = None) -> float:
    """One pass (or `limit` batches) over a loader, touching every batch as training would."""
    count, start = 0, time.perf_counter()
    for i, (images, labels) in enumerate(loader):
        count += len(labels)
        images.sum()
        if limit is not None and i + 1 >= limit:
            break
    return count / (time.perf_counter() - start)


def model_images_per_second(size: int, in_chans: int, batch_size: int, steps: int) -> tuple[float, int]:
    """EfficientNetV2-B0 training steps on random batches (forward, backward, SGD): the best
    images/sec over 1 and 2 torch threads, and that thread count. On a shared, oversubscribed CPU
    two OpenMP threads can be several times slower than one (they wait for each other)."""
    model = create_model("v2_b0", num_classes=10, in_chans=in_chans)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    images = torch.randn(batch_size, in_chans, size, size)
    labels = torch.randint(0, 10, (batch_size,))
    best = (0.0, 0)
    for threads in (1, 2):
        torch.set_num_threads(threads)
        timings = []
        for step in range(steps + 1):
            start = time.perf_counter()
            loss = torch.nn.functional.cross_entropy(model(images), labels)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            if step:  # the first step warms up
                timings.append(time.perf_counter() - start)
        best = max(best, (batch_size / statistics.median(timings), threads))
    torch.set_num_threads(2)
    return best


def datamodule(
    root: Path, loader: str, size: int, num_ops: int, beton_dir: Path, batch_size: int
) -> ImageDataModule:
    dm = ImageDataModule(
        source="image_folder",
        root=str(root),
        name=f"bench_{size}",
        in_chans=3,
        loader=loader,
        batch_size=batch_size,
        num_workers=2,
        val_fraction=0.0,
        image_size=size,
        eval_size=size,
        crop_scale=(0.35, 1.0),
        randaug_num_ops=num_ops,
        randaug_magnitude=5,
        mean=CIFAR_MEAN,
        std=CIFAR_STD,
        beton_dir=str(beton_dir),
        beton_max_resolution=size,
        beton_write_mode="jpg",
        beton_jpeg_quality=90,
    )
    dm.prepare_data()
    dm.setup("fit")
    return dm


def interleaved(loaders: dict[str, Iterable], repeats: int) -> dict[str, float]:
    """Median images/sec per loader over `repeats` alternating epochs (after one warm-up epoch each)."""
    for loader in loaders.values():
        images_per_second(loader)  # FFCV compiles here; torch starts its workers
    results: dict[str, list[float]] = {name: [] for name in loaders}
    for _ in range(repeats):
        for name, loader in loaders.items():
            results[name].append(images_per_second(loader))
    return {name: statistics.median(values) for name, values in results.items()}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="few images, one repeat: checks the plumbing")
    parser.add_argument("--images-per-class", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--sizes", type=int, nargs="+", default=[128, 224])
    parser.add_argument("--out", type=Path, default=None, help="also write the markdown table here")
    args = parser.parse_args()
    if args.quick:
        args.images_per_class, args.repeats = 10, 1
    torch.set_num_threads(2)
    if not CIFAR_ARCHIVE.is_file():
        raise SystemExit(f"needs {CIFAR_ARCHIVE} (the shared CIFAR-10 JPEGs)")

    load_before = os.getloadavg()[0]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        roots = extract_upscaled(Path(tmp), args.images_per_class, args.sizes)
        for size, root in roots.items():
            model_speed = model_images_per_second(size, 3, 16, steps=2 if args.quick else 3)
            plain = {
                name: datamodule(root, name, size, 0, Path(tmp), args.batch_size).train_dataloader()
                for name in ("torch", "ffcv")
            }
            speeds = interleaved(plain, args.repeats)
            rows.append((f"CIFAR-10 JPEG {size} px", "crop + flip", speeds, model_speed))
            modules = {
                name: datamodule(root, name, size, 2, Path(tmp), args.batch_size)
                for name in ("torch", "ffcv")
            }
            for magnitude in (5, 15):
                for dm in modules.values():
                    dm.set_randaug_magnitude(magnitude)
                speeds = interleaved(
                    {name: dm.train_dataloader() for name, dm in modules.items()}, args.repeats
                )
                rows.append(
                    (f"CIFAR-10 JPEG {size} px", f"+ RandAugment 2 ops, M={magnitude}", speeds, model_speed)
                )

        fashion = ImageDataModule(
            loader="torch", num_workers=2, batch_size=128, randaug_magnitude=5, image_size=32, subset=None
        )
        fashion.setup("fit")
        batches = 20 if args.quick else 200
        speed = statistics.median(
            images_per_second(fashion.train_dataloader(), limit=batches) for _ in range(args.repeats)
        )
        model_speed = model_images_per_second(32, 1, 128, steps=2 if args.quick else 3)
        rows.append(
            (
                "Fashion-MNIST in memory, 32 px",
                "crop + flip + RandAugment 2 ops, M=5",
                {"torch": speed},
                model_speed,
            )
        )

    lines = [
        "| data | augmentation | torch img/s | ffcv img/s | ffcv / torch | v2_b0 training img/s (threads) |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for data, augmentation, speeds, model_speed in rows:
        ffcv = speeds.get("ffcv")
        ratio = f"{ffcv / speeds['torch']:.2f}x" if ffcv else "-"
        ffcv_text = f"{ffcv:.0f}" if ffcv else "-"
        lines.append(
            f"| {data} | {augmentation} | {speeds['torch']:.0f} | {ffcv_text} | {ratio} "
            f"| {model_speed[0]:.0f} ({model_speed[1]}) |"
        )
    load_after = os.getloadavg()[0]
    lines.append("")
    lines.append(
        f"{os.cpu_count()} cores, 2 loader workers, batch {args.batch_size} (Fashion-MNIST 128), "
        f"{args.images_per_class * 10} images per size, median of {args.repeats} interleaved epochs; "
        f"load average {load_before:.1f} before, {load_after:.1f} after (other processes share the CPU)."
    )
    table = "\n".join(lines)
    print(table)
    if args.out:
        args.out.write_text(table + "\n")


if __name__ == "__main__":
    main()
