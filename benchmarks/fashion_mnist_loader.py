"""Which loader the Fashion-MNIST default should use: the default run, once per loader.

`data.loader` is the only change: `python src/train.py data.loader=torch` and `... data.loader=ffcv`
(FFCV writes its betons first when they are missing; that time is reported apart). Each run is
the whole default run (5 epochs, 4 progressive stages, validation and test), one after the other
on the same machine, so the figures include what differs between the loaders at stage boundaries
(FFCV compiles its pipeline for each new size and magnitude). Recorded per loader: wall time of the
run (its log, first to last line), training images/s of each epoch (`train/images_per_sec`), test and
validation top-1. Writes benchmarks/fashion_mnist_loader.json and .md (docs/data.md).

    python benchmarks/fashion_mnist_loader.py                   # two default runs, ~20 min on 2 idle cores
    python benchmarks/fashion_mnist_loader.py --quick           # plumbing check on 512 images
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from default_run import current_commit, load_average, log_seconds

ROOT = Path(__file__).resolve().parents[1]
HERE = ROOT / "benchmarks"
QUICK = ["data.subset=512", "trainer.max_epochs=2", "schedule.num_stages=2", "data.batch_size=64"]


def epoch_rates(run_dir: Path) -> list[float]:
    """`train/images_per_sec` of each training epoch, from the run's CSV log."""
    with (run_dir / "csv" / "metrics.csv").open() as handle:
        return [
            float(row["train/images_per_sec"])
            for row in csv.DictReader(handle)
            if row.get("train/images_per_sec")
        ]


def write_betons(overrides: list[str]) -> float:
    """Seconds to write the FFCV betons the runs will read (rewritten, so the time is the full cost)."""
    data = [override for override in overrides if override.startswith("data.")]
    start = time.perf_counter()
    subprocess.run([sys.executable, "src/prepare_data.py", *data, "overwrite=true"], cwd=ROOT, check=True)
    return time.perf_counter() - start


def run(loader: str, overrides: list[str], out: Path) -> dict[str, Any]:
    run_dir = out / f"{loader}-{datetime.now():%Y-%m-%d_%H-%M-%S}"
    before = load_average()
    command = [
        sys.executable,
        "src/train.py",
        f"data.loader={loader}",
        *overrides,
        f"hydra.run.dir={run_dir}",
    ]
    if subprocess.run(command, cwd=ROOT).returncode != 0:
        sys.exit(f"the {loader} run failed: see {run_dir}/train.log")
    metrics = json.loads((run_dir / "metrics.json").read_text())
    return {
        "loader": loader,
        "test_acc": metrics["test/acc"],
        "val_acc": metrics["val/acc"],
        "wall_seconds": round(log_seconds(run_dir), 1),
        "epoch_images_per_sec": epoch_rates(run_dir),
        "load_average_before": before,
        "load_average_after": load_average(),
    }


def markdown(result: dict[str, Any]) -> str:
    lines = [
        f"The default run (`{' '.join(['python src/train.py', *result['overrides']])}`) "
        f"with each loader, one after the other; {result['machine']}, commit {result['commit']}.",
        "",
        "| loader | wall time | training images/s per epoch | test top-1 | validation top-1 "
        "| load average before / after |",
        "|---|---|---|---|---|---|",
    ]
    for row in result["runs"]:
        minutes, seconds = divmod(round(row["wall_seconds"]), 60)
        rates = ", ".join(f"{rate:.0f}" for rate in row["epoch_images_per_sec"])
        lines.append(
            f"| {row['loader']} | {minutes}:{seconds:02d} | {rates} | {100 * row['test_acc']:.2f}% | "
            f"{100 * row['val_acc']:.2f}% | {row['load_average_before']} / {row['load_average_after']} |"
        )
    lines += [
        "",
        f"Writing the FFCV betons before the runs: {result['beton_seconds']:.0f} s (once; reused after).",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="512 images, 2 epochs: checks the plumbing")
    parser.add_argument("--loaders", nargs="+", default=["torch", "ffcv"], choices=["torch", "ffcv"])
    parser.add_argument("--out", type=Path, default=ROOT / "outputs" / "fashion_mnist_loader")
    parser.add_argument("--results", type=Path, default=HERE, help="folder for fashion_mnist_loader.json/.md")
    args = parser.parse_args()
    overrides = QUICK if args.quick else []
    beton_seconds = write_betons(overrides) if "ffcv" in args.loaders else 0.0
    runs = [run(loader, overrides, args.out) for loader in args.loaders]
    result = {
        "machine": f"{os.cpu_count()} CPU cores",
        "commit": current_commit(),
        "overrides": overrides,
        "beton_seconds": round(beton_seconds, 1),
        "runs": runs,
    }
    args.results.mkdir(parents=True, exist_ok=True)
    (args.results / "fashion_mnist_loader.json").write_text(json.dumps(result, indent=1) + "\n")
    (args.results / "fashion_mnist_loader.md").write_text(markdown(result))
    print(markdown(result))


if __name__ == "__main__":
    main()
