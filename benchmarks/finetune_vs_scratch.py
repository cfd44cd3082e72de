"""Fine-tuning a pre-trained checkpoint vs training from scratch on a small data set.

Transfer learning in miniature on CIFAR-10 JPEGs: v2_b0 is pre-trained on classes 0-4 (airplane,
automobile, bird, cat, deer), then trained on 250 images of classes 5-9 (dog, frog, horse, ship,
truck), starting either from scratch or from the pre-trained checkpoint (`experiment=finetune`: new
zero classifier, backbone at 0.1x the classifier's rate, frozen for the first epoch; from scratch the
backbone trains at the full rate from the start).

Selection never sees the test images. Both starts are tried with the same small grid of recipes
(learning rate, epochs);
every run validates each epoch on 250 held-out *training* images of classes 5-9 (target/val) and its
best epoch by val top-1 is the checkpoint it keeps; per start, the recipe with the best mean val top-1
over seeds is chosen, and its top-1 on 500 CIFAR-10 *test* images of classes 5-9 (target/test,
evaluated by `src/train.py` on the kept checkpoint) is the reported figure. The other recipes' test
figures are in the JSON but take no part in the choice.

Every run is the real product, `python src/train.py` in a subprocess, at 32 px.

    python benchmarks/finetune_vs_scratch.py            # ~25 minutes on 2 cores
    python benchmarks/finetune_vs_scratch.py --quick    # plumbing check
    python benchmarks/finetune_vs_scratch.py --report   # JSON and table again from the run folders
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import statistics
import subprocess
import sys
import tarfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CIFAR_ARCHIVE = ROOT.parent / "shared" / "data" / "cifar10-jpeg.tar.gz"  # or --cifar-archive
PRETRAIN_CLASSES = ("airplane", "automobile", "bird", "cat", "deer")
TARGET_CLASSES = ("dog", "frog", "horse", "ship", "truck")
RESULTS = ROOT / "benchmarks" / "finetune_vs_scratch.json"
# The recipes each start is tried with (learning rate per 256 images, module.lr_batch_base: 8e-3 is 1e-3
# at batch 32; epochs: 8 epochs of 250 images are 64 steps, little for a network that starts from nothing).
RECIPES = {
    f"lr {lr} x {epochs} epochs": [f"optimizer.lr={lr}", f"trainer.max_epochs={epochs}"]
    for lr in ("8e-3", "3.2e-2")
    for epochs in (8, 32)
}
# start -> its overrides: from scratch the backbone trains at the classifier's rate and is never frozen
STARTS = {
    "scratch": [
        "model.pretrained=null",
        "optimizer.backbone_lr_scale=1.0",
        "callbacks.freeze_backbone.epochs=0",
    ],
    "fine-tuned": [],  # + model.pretrained=<the classes 0-4 checkpoint>
}
COMMON = [
    "data.loader=torch",
    "data.image_size=32",
    "data.eval_size=32",
    "data.crop_pct=1.0",
    "data.crop_scale=[0.35,1.0]",
    "data.mean=[0.4914,0.4822,0.4465]",
    "data.std=[0.2470,0.2435,0.2616]",
    "data.num_workers=1",
    "data.persistent_workers=false",
    "torch_threads=1",  # on shared cores, one thread wastes no time spin-waiting for a second
    "logger=csv",
]


def extract(
    archive_path: Path, destination: Path, pretrain_per_class: int, per_class: int, test_per_class: int
) -> None:
    """pretrain/train/<class 0-4>/; target/train/<class 5-9>/ (a small subset of CIFAR-10's training
    images), target/val/<class 5-9>/ (as many other training images: for choosing) and
    target/test/<class 5-9>/ (CIFAR-10 test images: for reporting), read from the archive in one pass."""
    settings = [pretrain_per_class, per_class, test_per_class]
    if (destination / "done.json").is_file() and json.loads(
        (destination / "done.json").read_text()
    ) == settings:
        return
    with tarfile.open(archive_path) as archive:
        for member in archive:
            parts = member.name.split("/")  # cifar10/<split>/<class>/NNNN.jpg
            if not member.isfile() or len(parts) != 4:
                continue
            _, split, name, file = parts
            index = int(file.split(".")[0])
            if split == "train" and name in PRETRAIN_CLASSES and index < pretrain_per_class:
                target = destination / "pretrain" / "train" / name / file
            elif split == "train" and name in TARGET_CLASSES and index < per_class:
                target = destination / "target" / "train" / name / file
            elif split == "train" and name in TARGET_CLASSES and index < 2 * per_class:
                target = destination / "target" / "val" / name / file
            elif split == "test" and name in TARGET_CLASSES and index < test_per_class:
                target = destination / "target" / "test" / name / file
            else:
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(archive.extractfile(member).read())
    (destination / "done.json").write_text(json.dumps(settings))


def run_train(overrides: list[str], run_dir: Path) -> tuple[dict, float]:
    """`python src/train.py <overrides>` writing to run_dir; (its metrics.json, wall seconds). A run
    folder that already holds results is read, not trained again."""
    if (run_dir / "run.json").is_file():
        done = json.loads((run_dir / "run.json").read_text())
        return done["metrics"], done["seconds"]
    env = {**os.environ, "NO_ALBUMENTATIONS_UPDATE": "1", "WANDB_MODE": "offline"}
    command = [sys.executable, "src/train.py", *overrides, *COMMON, f"hydra.run.dir={run_dir}"]
    start = time.perf_counter()
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if result.returncode != 0:
        sys.exit(f"failed: {' '.join(command)}\n{result.stderr[-4000:]}")
    metrics = json.loads((run_dir / "metrics.json").read_text())
    (run_dir / "run.json").write_text(json.dumps({"metrics": metrics, "seconds": seconds}))
    return metrics, seconds


def best_validation(run_dir: Path) -> tuple[int, float]:
    """(epoch, val top-1) of the best validation epoch in the run's CSV log: the kept checkpoint's."""
    best = (-1, -1.0)
    with (run_dir / "csv" / "metrics.csv").open() as file:
        for row in csv.DictReader(file):
            if row.get("val/acc") and float(row["val/acc"]) > best[1]:
                best = (int(row["epoch"]), float(row["val/acc"]))
    return best


def choose(results: list[dict]) -> dict[str, str]:
    """Per start, the recipe with the best mean val top-1 over seeds (ties: the first in the grid)."""
    chosen = {}
    for start in dict.fromkeys(r["start"] for r in results):
        recipes = dict.fromkeys(r["recipe"] for r in results if r["start"] == start)
        means = {
            recipe: statistics.mean(
                r["val_acc"] for r in results if (r["start"], r["recipe"]) == (start, recipe)
            )
            for recipe in recipes
        }
        chosen[start] = max(recipes, key=lambda recipe: means[recipe])
    return chosen


def table(results: list[dict], chosen: dict[str, str]) -> str:
    """The README/docs table: every recipe's val top-1; test top-1 only for the chosen ones."""
    seeds = sorted({r["seed"] for r in results})
    lines = [
        f"| start | recipe | val top-1 (seeds {', '.join(map(str, seeds))}) | mean val | test top-1 |",
        "|---|---|---|---:|---|",
    ]
    for start, recipe in dict.fromkeys((r["start"], r["recipe"]) for r in results):
        rows = [r for r in results if (r["start"], r["recipe"]) == (start, recipe)]
        val = ", ".join(f"{r['val_acc']:.3f}" for r in rows)
        mean = statistics.mean(r["val_acc"] for r in rows)
        is_chosen = chosen[start] == recipe
        test = (
            ", ".join(f"{r['test_acc']:.3f}" for r in rows)
            + " (mean "
            + (f"{statistics.mean(r['test_acc'] for r in rows):.3f})")
        )
        lines.append(
            f"| {start} | {'**' + recipe + '** (chosen)' if is_chosen else recipe} | {val} | {mean:.3f} "
            f"| {test if is_chosen else '-'} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--pretrain-per-class", type=int, default=1000)
    parser.add_argument("--pretrain-epochs", type=int, default=6)
    parser.add_argument(
        "--per-class", type=int, default=50, help="training (and validation) images per class"
    )
    parser.add_argument("--test-per-class", type=int, default=100)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--cifar-archive", type=Path, default=CIFAR_ARCHIVE, help="cifar10-jpeg.tar.gz")
    parser.add_argument("--work-dir", type=Path, default=ROOT / "data" / "benchmarks" / "finetune_vs_scratch")
    parser.add_argument("--report", action="store_true", help="no training: read the run folders")
    parser.add_argument("--quick", action="store_true", help="tiny sizes: checks the plumbing only")
    args = parser.parse_args()
    recipes = RECIPES
    if args.quick:
        args.pretrain_per_class, args.pretrain_epochs, args.per_class, args.test_per_class = 40, 1, 8, 8
        args.seeds, args.work_dir = [0], args.work_dir.with_name(args.work_dir.name + "_quick")
        recipes = {
            f"{name} (quick: 2 epochs)": [*o, "trainer.max_epochs=2"] for name, o in list(RECIPES.items())[:1]
        }
    if not args.report and not args.cifar_archive.is_file():
        sys.exit(f"CIFAR-10 JPEG archive not found at {args.cifar_archive}: pass --cifar-archive")

    data = args.work_dir / "data"
    if not args.report:
        extract(args.cifar_archive, data, args.pretrain_per_class, args.per_class, args.test_per_class)
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
            "test=false",
        ],
        runs / "pretrain",
    )
    checkpoint = runs / "pretrain" / "checkpoints" / "last.ckpt"
    print(f"  val top-1 {pre_metrics['val/acc']:.4f} in {pre_seconds:.0f} s")

    target = ["experiment=finetune", f"data.root={data / 'target'}", "data.batch_size=32"]
    starts = {**STARTS, "fine-tuned": [*STARTS["fine-tuned"], f"model.pretrained={checkpoint}"]}
    results = []
    for seed in args.seeds:
        for start, start_overrides in starts.items():
            for recipe, overrides in recipes.items():
                run_dir = runs / f"{start}-{re.sub(r'[^0-9a-z.-]+', '_', recipe)}-seed{seed}"
                metrics, seconds = run_train([*target, *start_overrides, *overrides, f"seed={seed}"], run_dir)
                epoch, val_acc = best_validation(run_dir)
                results.append(
                    {
                        "start": start,
                        "recipe": recipe,
                        "seed": seed,
                        "best_epoch": epoch,
                        "val_acc": val_acc,
                        "test_acc": metrics["test/acc"],
                        "seconds": round(seconds, 1),
                    }
                )
                print(f"  {start:<10} {recipe:<22} seed {seed}: val top-1 {val_acc:.3f} ({seconds:.0f} s)")

    chosen = choose(results)
    n_train, n_test = args.per_class * len(TARGET_CLASSES), args.test_per_class * len(TARGET_CLASSES)
    settings = (
        f"v2_b0, 32 px, batch 32, {n_train} training and {n_train} validation images of classes 5-9 "
        f"(CIFAR-10 train), {n_test} test images (CIFAR-10 test); pre-trained on "
        f"{args.pretrain_per_class * 5} images of classes 0-4 for {args.pretrain_epochs} epochs "
        f"(val top-1 {pre_metrics['val/acc']:.3f}, {pre_seconds:.0f} s); chance 0.200"
    )
    markdown = f"{settings}\n\n{table(results, chosen)}\n"
    print("\n" + markdown)
    output = RESULTS if not args.quick else args.work_dir / RESULTS.name
    record = {"settings": settings, "args": {k: str(v) for k, v in vars(args).items()}, "chosen": chosen}
    output.write_text(json.dumps({**record, "results": results}, indent=1) + "\n")
    output.with_suffix(".md").write_text(markdown)
    print(f"results: {output}")


if __name__ == "__main__":
    main()
