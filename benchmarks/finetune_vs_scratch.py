"""Fine-tuning a pre-trained checkpoint vs training from scratch on a small data set (issue 7 benchmark).

Transfer learning in miniature on CIFAR-10 JPEGs: v2_b0 is pre-trained on classes 0-4 (airplane,
automobile, bird, cat, deer), then trained on a small subset of classes 5-9 (dog, frog, horse, ship,
truck) for the same number of epochs in three ways:

- `scratch (default recipe)`: `src/train.py` defaults (AdamW 2e-3/256 images, weight decay 0.05,
  progressive learning), random initialisation;
- `scratch (finetune recipe)`: `experiment=finetune` with `model.pretrained=null`, the backbone at the
  classifier's learning rate and never frozen (a frozen random backbone makes no sense);
- `fine-tuned`: `experiment=finetune` from the pre-trained checkpoint (new zero classifier, backbone at
  0.1x the classifier's rate, frozen for the first epoch).
Both finetune-recipe runs use lr 1e-3 at batch 32 (`optimizer.lr=8e-3` per 256 images).

Every run is the real product, `python src/train.py` in a subprocess, at 32 px, same seed and epochs.
Accuracy is the final epoch's top-1 on 500 held-out CIFAR-10 test images of classes 5-9 (used as
the data's val split, evaluated once after the last epoch, so nothing is selected on it).

    python benchmarks/finetune_vs_scratch.py            # ~6-10 minutes on 2 shared cores
    python benchmarks/finetune_vs_scratch.py --quick    # plumbing check
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tarfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CIFAR_ARCHIVE = ROOT.parent / "shared" / "data" / "cifar10-jpeg.tar.gz"
PRETRAIN_CLASSES = ("airplane", "automobile", "bird", "cat", "deer")
TARGET_CLASSES = ("dog", "frog", "horse", "ship", "truck")
RESULTS = ROOT / "benchmarks" / "finetune_vs_scratch.json"
COMMON = [
    "data.image_size=32",
    "data.eval_size=32",
    "data.crop_pct=1.0",
    "data.crop_scale=[0.35,1.0]",
    "data.mean=[0.4914,0.4822,0.4465]",
    "data.std=[0.2470,0.2435,0.2616]",
    "data.num_workers=1",
    "data.persistent_workers=false",
    "torch_threads=1",  # on shared cores, one thread wastes no time spin-waiting for a second
    "test=false",
    "logger=csv",
    "callbacks.progress_bar=null",
]


def extract(destination: Path, pretrain_per_class: int, target_per_class: int, test_per_class: int) -> None:
    """pretrain/train/<class 0-4>/, target/train/<class 5-9>/ (a small subset), target/val/<class 5-9>/
    (CIFAR-10 test images), read from the archive in one pass."""
    if (destination / "done.json").is_file():
        settings = json.loads((destination / "done.json").read_text())
        if settings == [pretrain_per_class, target_per_class, test_per_class]:
            return
    with tarfile.open(CIFAR_ARCHIVE) as archive:
        for member in archive:
            parts = member.name.split("/")  # cifar10/<split>/<class>/NNNN.jpg
            if not member.isfile() or len(parts) != 4:
                continue
            _, split, name, file = parts
            index = int(file.split(".")[0])
            if split == "train" and name in PRETRAIN_CLASSES and index < pretrain_per_class:
                target = destination / "pretrain" / "train" / name / file
            elif split == "train" and name in TARGET_CLASSES and index < target_per_class:
                target = destination / "target" / "train" / name / file
            elif split == "test" and name in TARGET_CLASSES and index < test_per_class:
                target = destination / "target" / "val" / name / file
            else:
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(archive.extractfile(member).read())
    (destination / "done.json").write_text(json.dumps([pretrain_per_class, target_per_class, test_per_class]))


def run_train(overrides: list[str], run_dir: Path) -> tuple[dict, float]:
    """`python src/train.py <overrides>` writing to run_dir; (its metrics.json, wall seconds)."""
    env = {**os.environ, "NO_ALBUMENTATIONS_UPDATE": "1", "WANDB_MODE": "offline"}
    command = [sys.executable, "src/train.py", *overrides, *COMMON, f"hydra.run.dir={run_dir}"]
    start = time.perf_counter()
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if result.returncode != 0:
        sys.exit(f"failed: {' '.join(command)}\n{result.stderr[-4000:]}")
    return json.loads((run_dir / "metrics.json").read_text()), seconds


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--pretrain-per-class", type=int, default=1000)
    parser.add_argument("--pretrain-epochs", type=int, default=6)
    parser.add_argument("--per-class", type=int, default=50, help="training images per target class")
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--test-per-class", type=int, default=100)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--work-dir", type=Path, default=ROOT / "data" / "benchmarks" / "finetune_vs_scratch")
    parser.add_argument("--quick", action="store_true", help="tiny sizes: checks the plumbing only")
    args = parser.parse_args()
    if args.quick:
        args.pretrain_per_class, args.pretrain_epochs, args.per_class, args.test_per_class = 40, 1, 8, 8
        args.epochs = 4  # progressive learning (the default recipe) needs an epoch per stage
    if not CIFAR_ARCHIVE.is_file():
        sys.exit(f"CIFAR-10 JPEG archive not found at {CIFAR_ARCHIVE}")

    data = args.work_dir / "data"
    extract(data, args.pretrain_per_class, args.per_class, args.test_per_class)
    runs = args.work_dir / "runs"

    print(
        f"pre-training v2_b0 on classes 0-4, {args.pretrain_per_class}/class, {args.pretrain_epochs} epochs"
    )
    pre_metrics, pre_seconds = run_train(
        [
            "data=image_folder",
            f"data.root={data / 'pretrain'}",
            "data.batch_size=32",
            "optimizer.lr=8e-3",  # per 256 images: 1e-3 at batch 32
            "schedule=fixed",
            "schedule.randaug_magnitude=[0,0]",  # few epochs on few images: light regularization
            "model.drop_path_rate=0.0",
            f"trainer.max_epochs={args.pretrain_epochs}",
            f"trainer.check_val_every_n_epoch={args.pretrain_epochs}",
        ],
        runs / "pretrain",
    )
    checkpoint = runs / "pretrain" / "checkpoints" / "last.ckpt"
    print(f"  val top-1 {pre_metrics['val/acc']:.4f} in {pre_seconds:.0f} s")

    target = [
        f"data.root={data / 'target'}",
        "data.batch_size=32",
        f"trainer.max_epochs={args.epochs}",
        f"trainer.check_val_every_n_epoch={args.epochs}",  # validate once, at the end: less CPU
    ]
    variants = {
        "scratch (default recipe)": ["data=image_folder", *target],
        "scratch (finetune recipe)": [
            "experiment=finetune",
            *target,
            "optimizer.lr=8e-3",
            "model.pretrained=null",
            "optimizer.backbone_lr_scale=1.0",
            "callbacks.freeze_backbone.epochs=0",
        ],
        "fine-tuned": ["experiment=finetune", *target, "optimizer.lr=8e-3", f"model.pretrained={checkpoint}"],
    }
    results = []
    for seed in args.seeds:
        for name, overrides in variants.items():
            run_dir = runs / f"{name.split()[0]}-{len(results)}-seed{seed}"
            metrics, seconds = run_train([*overrides, f"seed={seed}"], run_dir)
            results.append({"variant": name, "seed": seed, "val_acc": metrics["val/acc"], "seconds": seconds})
            print(f"  {name:<26} seed {seed}: top-1 {metrics['val/acc']:.4f} ({seconds:.0f} s)")

    n_train, n_test = args.per_class * len(TARGET_CLASSES), args.test_per_class * len(TARGET_CLASSES)
    print(
        f"\nv2_b0, 32 px, {n_train} training images of classes 5-9, {args.epochs} epochs, top-1 on {n_test} "
        f"test images; pre-trained on {args.pretrain_per_class * 5} images of classes 0-4 for "
        f"{args.pretrain_epochs} epochs ({pre_seconds:.0f} s, val top-1 {pre_metrics['val/acc']:.3f})\n"
    )
    print("| start | top-1 | wall time |\n|---|---|---|")
    for name in variants:
        rows = [r for r in results if r["variant"] == name]
        accuracy = ", ".join(f"{r['val_acc']:.3f}" for r in rows)
        seconds = sum(r["seconds"] for r in rows) / len(rows)
        print(f"| {name} | {accuracy} | {seconds:.0f} s |")
    RESULTS.write_text(
        json.dumps({"settings": vars(args) | {"work_dir": str(args.work_dir)}, "results": results}, indent=2)
    )
    print(f"\nresults: {RESULTS}")


if __name__ == "__main__":
    main()
