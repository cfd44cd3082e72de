"""How the loaders scale with CPU workers/threads with RandAugment on (issue 13, item 3).

On a generated JPEG folder (written by this script under --out), images/s of the torch loader
and the FFCV loader at 128 and 224 px, RandAugment 2 ops at magnitude 10, with 1 and 2 workers (both
loaders augment in worker processes; FFCV decodes in threads); each number is the loader alone, its
uint8 batches normalised as on the device. What limits scaling: FFCV's RandAugment stage timed on
one batch in the calling thread, in 2 threads (the earlier design) and in 2 worker processes (the
stage now); the share of its time that does not run in parallel follows from Amdahl's law,
t2 = t1 * (g + (1 - g) / 2), so g = 2 * t2 / t1 - 1 (0: scales perfectly, 1: fully serialised).
With threads that share is the GIL's.

Which loader the Fashion-MNIST default uses is measured on whole default runs instead
(benchmarks/fashion_mnist_loader.py).

    python benchmarks/loader_scaling.py            # a few minutes on 2 cores
    python benchmarks/loader_scaling.py --quick    # plumbing check, no Fashion-MNIST (the test runs it)

Writes benchmarks/loader_scaling.json and benchmarks/loader_scaling.md (the table in docs/data.md).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from effnetv2.data.augment_pool import AugmentPool, augment_images  # noqa: E402
from effnetv2.data.betons import choose_loader  # noqa: E402
from effnetv2.data.datamodule import ImageDataModule  # noqa: E402
from effnetv2.data.randaugment import RandAugment  # noqa: E402

HERE = Path(__file__).resolve().parent
STAGE_BATCH = 128  # a GPU run's per-process batch; the loaders above run batch 32
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def generate_folder(root: Path, count: int, size: int = 256, classes: int = 4) -> Path:
    """root/train/<class>/NNNN.jpg: smooth random colour fields with shapes, JPEG quality 90."""
    rng = np.random.default_rng(0)
    for i in range(count):
        path = root / "train" / f"c{i % classes}" / f"{i:05d}.jpg"
        if path.is_file():
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        small = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
        image = cv2.resize(small, (size, size), interpolation=cv2.INTER_CUBIC)
        centre = tuple(int(c) for c in rng.integers(size // 4, 3 * size // 4, 2))
        cv2.circle(
            image,
            centre,
            int(rng.integers(10, size // 3)),
            tuple(int(c) for c in rng.integers(0, 256, 3)),
            -1,
        )
        cv2.imwrite(str(path), image, [cv2.IMWRITE_JPEG_QUALITY, 90])
    return root


def images_per_second(datamodule: ImageDataModule, epochs: int) -> float:
    """Median images/s over `epochs` passes of the train loader (after a warm-up pass)."""
    loader = datamodule.train_dataloader()
    rates = []
    for epoch in range(epochs + 1):
        count, start = 0, time.perf_counter()
        for images, labels in loader:
            datamodule.normalize(images)
            count += len(labels)
        if epoch:
            rates.append(count / (time.perf_counter() - start))
    return statistics.median(rates)


def folder_module(
    root: Path, loader: str, size: int, workers: int, beton_dir: Path, batch_size: int
) -> ImageDataModule:
    datamodule = ImageDataModule(
        source="image_folder", root=str(root), name="scaling", in_chans=3, loader=loader, batch_size=batch_size,  # noqa: E501
        num_workers=workers, persistent_workers=True, val_fraction=0.0, image_size=size, eval_size=size,
        randaug_num_ops=2, randaug_magnitude=10, mean=MEAN, std=STD, beton_dir=str(beton_dir),
        beton_max_resolution=256, beton_write_mode="jpg",
    )  # fmt: skip
    datamodule.prepare_data()
    datamodule.setup("fit")
    return datamodule


def median_seconds(call: Callable[[], Any], repeats: int) -> float:
    call()  # warm-up (worker processes start here)
    timings = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        timings.append(time.perf_counter() - start)
    return statistics.median(timings)


def serial_share(one: float, two: float) -> float:
    """Amdahl: t2 = t1 * (g + (1 - g) / 2), so g = 2 * t2 / t1 - 1 (0: scales, 1: serialised)."""
    return min(1.0, max(0.0, 2 * two / one - 1))


def randaugment_stage(size: int, batch: int, repeats: int) -> dict[str, float]:
    """FFCV's RandAugment stage on one uint8 batch: in the calling thread, in 2 threads (the earlier
    design, rebuilt here for comparison) and in 2 worker processes (`AugmentPool`, the stage now)."""
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (batch, size, size, 3), dtype=np.uint8)
    destination = np.empty_like(images)
    seeds = rng.integers(0, 2**32, batch)
    halves = [(0, batch // 2), (batch // 2, batch)]
    copies = [RandAugment(2, 10.0) for _ in halves]  # one per thread: a transform's RNG is not shared

    def in_threads(pool: ThreadPoolExecutor) -> None:
        jobs = [
            pool.submit(augment_images, copy, images[a:b], destination[a:b], seeds[a:b], None)
            for copy, (a, b) in zip(copies, halves)
        ]
        for job in jobs:
            job.result()

    threads_before = cv2.getNumThreads()
    cv2.setNumThreads(1)  # one core per thread, as in each worker process
    try:
        one = median_seconds(lambda: augment_images(copies[0], images, destination, seeds, None), repeats)
        with ThreadPoolExecutor(2) as threads:
            two_threads = median_seconds(lambda: in_threads(threads), repeats)
    finally:
        cv2.setNumThreads(threads_before)
    processes = AugmentPool(RandAugment(2, 10.0), 2)
    try:
        two_processes = median_seconds(lambda: processes(images, destination), repeats)
    finally:
        processes.close()
    return {
        "seconds_1_thread": one,
        "seconds_2_threads": two_threads,
        "gil_share": serial_share(one, two_threads),
        "seconds_2_processes": two_processes,
        "serial_share_processes": serial_share(one, two_processes),
    }


def markdown(result: dict[str, Any]) -> str:
    lines = [
        f"RandAugment 2 ops at magnitude 10, batch 32, {result['images']} generated JPEGs; loader alone "
        f"(images/s, median of {result['epochs']} epochs); {result['machine']}.",
        "",
        "| loader | size | 1 worker | 2 workers | 2 / 1 |",
        "|---|---|---|---|---|",
    ]
    for row in result["scaling"]:
        lines.append(
            f"| {row['loader']} | {row['size']} | {row['workers_1']:.0f} | {row['workers_2']:.0f} | "
            f"{row['workers_2'] / row['workers_1']:.2f}x |"
        )
    if result["stage"]:
        lines += [
            "",
            "| FFCV RandAugment stage, one batch | 1 thread (ms) | 2 threads (ms) | GIL share "
            "| 2 processes (ms) | serial share |",
            "|---|---|---|---|---|---|",
        ]
        for size, row in result["stage"].items():
            lines.append(
                f"| {size} px, batch {result['stage_batch']} | {1000 * row['seconds_1_thread']:.1f} | "
                f"{1000 * row['seconds_2_threads']:.1f} | {row['gil_share']:.0%} | "
                f"{1000 * row['seconds_2_processes']:.1f} | {row['serial_share_processes']:.0%} |"
            )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="tiny sizes and counts: checks the plumbing")
    parser.add_argument("--images", type=int, default=2048)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument(
        "--out", type=Path, default=None, help="where images and betons go (default: a temp dir)"
    )
    parser.add_argument("--results", type=Path, default=HERE, help="folder for loader_scaling.json/.md")
    args = parser.parse_args()
    sizes = (32, 48) if args.quick else (128, 224)
    images = 16 if args.quick else args.images
    epochs = 1 if args.quick else args.epochs
    loaders = ["torch"] + (["ffcv"] if choose_loader("auto")[0] == "ffcv" else [])
    with tempfile.TemporaryDirectory() as temporary:
        out = args.out or Path(temporary)
        root = generate_folder(out / "jpegs", images)
        scaling = []
        for size in sizes:
            for loader in loaders:
                rates = {}
                for workers in (1, 2):
                    datamodule = folder_module(
                        root, loader, size, workers, out / "betons", 4 if args.quick else 32
                    )
                    rates[workers] = images_per_second(datamodule, epochs)
                    print(f"{loader} {size}px {workers} worker(s): {rates[workers]:.0f} images/s", flush=True)
                scaling.append({"loader": loader, "size": size, "workers_1": rates[1], "workers_2": rates[2]})
        stage = {}
        if "ffcv" in loaders:
            for size in sizes:
                stage[str(size)] = randaugment_stage(size, STAGE_BATCH, 3 if args.quick else 20)
                print(f"RandAugment stage {size}px: {stage[str(size)]}", flush=True)
    result = {
        "machine": f"{os.cpu_count()} CPU cores ({platform.machine()}), torch {torch.__version__}",
        "images": images,
        "epochs": epochs,
        "scaling": scaling,
        "stage_batch": STAGE_BATCH,
        "stage": stage,
    }
    args.results.mkdir(parents=True, exist_ok=True)
    (args.results / "loader_scaling.json").write_text(json.dumps(result, indent=2) + "\n")
    (args.results / "loader_scaling.md").write_text(markdown(result))
    print(markdown(result))


if __name__ == "__main__":
    main()
