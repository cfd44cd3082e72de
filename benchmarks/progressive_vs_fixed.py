"""Progressive learning vs fixed-size training vs progressive resizing alone, several seeds.

The paper's claim in miniature: progressive learning reaches the accuracy of fixed-size training in
less training time, and adaptive regularization beats resizing alone. Each run is the real product,
`python src/train.py` in a subprocess, with the same model (v2_b0), epochs, data, split and machine;
only `schedule=` and the training seed change:

- `fixed`: every epoch at the last size with the full regularization (one stage);
- `progressive`: 4 stages from half the size with weak regularization to the full size and strength;
- `resize_only`: the same sizes, regularization at full strength throughout (the paper's ablation).

The headline experiment trains on CIFAR-10 JPEGs (a stratified subset; 10% of it validates, the
10,000 test images score) upsampled to 64 px: on a CPU the per-image cost stops falling below ~32 px,
so a speed-up only shows where training is compute-bound. Recipes are compared on validation; the
test split only scores.

Training time is measured inside each run by `EpochTimer` (added through a Hydra override): from the
start of each train epoch to the start of its validation, so data loading counts and evaluation does
not. `train_seconds` is the training process's CPU seconds over those spans (all its threads): other
processes on a shared machine stretch wall time but hardly CPU time. The loader runs in the training
process (`--num-workers 0`) so augmentation counts too, and torch uses one thread (`--threads 1`):
waiting OpenMP threads spin, so with two threads on a busy machine CPU seconds are not comparable.
Each run's `curve` pairs the cumulative training CPU seconds after each epoch with that epoch's
validation top-1 (at the evaluation size), which gives time-to-accuracy.

    python benchmarks/progressive_vs_fixed.py --jobs 2   # headline: JSON, markdown table, plot in benchmarks/
    python benchmarks/progressive_vs_fixed.py --report   # rebuild JSON, table and plot from the run folders
    python benchmarks/progressive_vs_fixed.py --quick    # plumbing check (minutes), output in outputs/
    python benchmarks/progressive_vs_fixed.py --tune --jobs 2   # preset candidates vs fixed, validation only

`--tune` compares candidate recipes for the `progressive` preset (CANDIDATES) with `fixed` on the
validation split only: those runs skip the test split (`test=false`), so a recipe is never chosen on
it. They write progressive_tuning.json/.md/.png.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import subprocess
import sys
import tarfile
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import lightning as L

ROOT = Path(__file__).resolve().parents[1]
CIFAR_ARCHIVE = ROOT.parent / "shared" / "data" / "cifar10-jpeg.tar.gz"
SCHEDULES = ("fixed", "progressive", "resize_only")
# Candidates for the `progressive` preset (--tune): a name and the overrides that make it.
CANDIDATES = {
    # Half the epochs at the smallest size and no middle sizes: per-size costs of the headline run
    # (a 32 px epoch 0.61 of a 64 px one, a 56 px one 0.98) predict ~0.8x fixed's training time.
    "two_stages": ["schedule=progressive", "schedule.num_stages=2"],
    # One middle size (48 px, ~0.8 of a 64 px epoch by pixels) instead of two: a third of the epochs at
    # each of 32, 48 and 64 px, again ~0.8x fixed's time, with a gentler jump to the final size.
    "three_stages": ["schedule=progressive", "schedule.num_stages=3"],
}
# Pinned so that the recorded table does not move when the default run's recipe is retuned: the last
# RandAugment magnitude per data set and one warm-up epoch.
RANDAUG_MAGNITUDE = {"fashion_mnist": 3, "cifar10": 5}
WARMUP_EPOCHS = 1


class EpochTimer(L.Callback):
    """Writes, per train epoch, its seconds (train batches and their loading, no validation), the
    number of images and the image size the module received, to a JSON file after every epoch."""

    def __init__(self, path: str) -> None:
        self.path = Path(path)
        self.epochs: list[dict] = []
        self._start: float | None = None
        self._images = 0
        self._size = 0

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._start, self._cpu_start, self._images = time.perf_counter(), time.process_time(), 0

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self._images += batch[0].shape[0]
        self._size = batch[0].shape[-1]

    def _stop(self, trainer: L.Trainer) -> None:
        if self._start is None:
            return
        seconds, self._start = time.perf_counter() - self._start, None
        self.epochs.append(
            {
                "epoch": trainer.current_epoch,
                "seconds": seconds,
                "cpu_seconds": time.process_time() - self._cpu_start,
                "images": self._images,
                "image_size": self._size,
            }
        )
        self.path.write_text(json.dumps(self.epochs, indent=1))

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.training:
            self._stop(trainer)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._stop(trainer)  # epochs without validation


def prepare_cifar10(archive: Path) -> bool:
    """CIFAR-10 JPEGs in data/cifar10, extracted from `archive` on first use."""
    if (ROOT / "data" / "cifar10" / "train").is_dir():
        return True
    if not archive.is_file():
        return False
    print(f"extracting {archive} to data/ ...", flush=True)
    with tarfile.open(archive) as tar:
        tar.extractall(ROOT / "data", filter="data")
    return True


def overrides(schedule: str, seed: int, args: argparse.Namespace, run_dir: Path) -> list[str]:
    recipe = CANDIDATES.get(schedule, [f"schedule={schedule}"])
    return [
        "model=v2_b0",
        f"data={args.dataset}",
        *recipe,
        f"test={not args.tune}",
        f"data.image_size={args.image_size}",
        f"data.eval_size={args.image_size}",
        f"data.subset={args.subset}",
        f"data.batch_size={args.batch_size}",
        f"data.randaug_magnitude={RANDAUG_MAGNITUDE[args.dataset]}",
        f"lr_scheduler.warmup_epochs={WARMUP_EPOCHS}",
        f"data.num_workers={args.num_workers}",
        f"trainer.max_epochs={args.epochs}",
        f"trainer.limit_test_batches={args.test_batches or 1.0}",
        f"torch_threads={args.threads}",
        f"seed={seed}",
        "logger=csv",
        "callbacks.progress_bar=null",
        f"hydra.run.dir={run_dir}",
        "+callbacks.epoch_timer._target_=progressive_vs_fixed.EpochTimer",
        f"+callbacks.epoch_timer.path={run_dir / 'epoch_times.json'}",
    ]


def train(schedule: str, seed: int, args: argparse.Namespace, run_dir: Path) -> None:
    """One `src/train.py` run in a subprocess; its folder keeps everything `record` reads."""
    if (run_dir / "metrics.json").is_file() and not args.rerun:
        print(f"[{schedule} seed {seed}] kept: {run_dir}", flush=True)
        return
    command = overrides(schedule, seed, args, run_dir)
    env = {
        **os.environ,
        "NO_ALBUMENTATIONS_UPDATE": "1",
        "WANDB_MODE": "offline",
        "PYTHONPATH": os.pathsep.join([str(ROOT / "benchmarks"), os.environ.get("PYTHONPATH", "")]),
    }
    print(f"[{schedule} seed {seed}] python src/train.py {' '.join(command)}", flush=True)
    run_dir.mkdir(parents=True, exist_ok=True)
    log_file = run_dir / "stdout.log"
    start = time.perf_counter()
    with log_file.open("w") as log:
        process = subprocess.Popen(
            [sys.executable, "src/train.py", *command],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        _, status, usage = os.wait4(process.pid, 0)  # this child's own CPU time, also beside others
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{schedule}/{seed} failed, see {log_file}:\n{log_file.read_text()[-3000:]}")
    (run_dir / "process.json").write_text(
        json.dumps(
            {"wall_seconds": time.perf_counter() - start, "cpu_seconds": usage.ru_utime + usage.ru_stime}
        )
    )


def validation_per_epoch(run_dir: Path) -> dict[int, float]:
    """`val/acc` per epoch from the run's CSV log."""
    accuracies = {}
    with (run_dir / "csv" / "metrics.csv").open() as file:
        for row in csv.DictReader(file):
            if row.get("val/acc"):
                accuracies[int(row["epoch"])] = float(row["val/acc"])
    return accuracies


def record(schedule: str, seed: int, run_dir: Path) -> dict:
    """One run as the JSON keeps it: accuracies, training CPU seconds and the time-to-accuracy curve."""
    metrics = json.loads((run_dir / "metrics.json").read_text())
    epochs = json.loads((run_dir / "epoch_times.json").read_text())
    process = json.loads((run_dir / "process.json").read_text())
    val = validation_per_epoch(run_dir)
    curve, spent = [], 0.0
    for epoch in epochs:
        spent += epoch["cpu_seconds"]
        epoch["val_acc"] = val.get(epoch["epoch"])
        curve.append([round(spent, 2), epoch["val_acc"]])
    return {
        "schedule": schedule,
        "seed": seed,
        "test_acc": metrics.get("test/acc"),
        "best_val_acc": max(val.values()),
        "train_seconds": round(spent, 2),
        "train_wall_seconds": round(sum(e["seconds"] for e in epochs), 2),
        "run_wall_seconds": round(process["wall_seconds"], 2),
        "curve": curve,
        "epochs": epochs,
    }


def accuracy_at(curve: list[list[float]], budget: float) -> float:
    """Validation top-1 of the last epoch that ended within `budget` training seconds (0 if none)."""
    reached = [acc for seconds, acc in curve if seconds <= budget * (1 + 1e-9)]
    return reached[-1] if reached else 0.0


def group_runs(runs: list[dict], order: Iterable[str]) -> dict[str, list[dict]]:
    """The runs of each schedule (or recipe) in `order`, leaving out those without runs."""
    return {
        s: [r for r in runs if r["schedule"] == s] for s in order if any(r["schedule"] == s for r in runs)
    }


def cheapest_mean_seconds(by: dict[str, list[dict]]) -> float:
    """The time budget of the comparisons: the cheapest group's mean training seconds."""
    return min(statistics.mean(r["train_seconds"] for r in group) for group in by.values())


def summarize(runs: list[dict]) -> dict:
    """Per schedule: mean and range of test top-1 and training seconds, validation top-1 at the budget
    of the cheapest schedule, and the verdicts of the claim (the issue's targets)."""
    by = group_runs(runs, SCHEDULES)
    budget = cheapest_mean_seconds(by)
    schedules = {}
    for name, group in by.items():
        tests = [r["test_acc"] for r in group]
        schedules[name] = {
            "seeds": [r["seed"] for r in group],
            "test_acc_mean": statistics.mean(tests),
            "test_acc_min": min(tests),
            "test_acc_max": max(tests),
            "train_seconds_mean": statistics.mean(r["train_seconds"] for r in group),
            "final_val_acc_mean": statistics.mean(r["curve"][-1][1] for r in group),
            "val_acc_at_budget_mean": statistics.mean(accuracy_at(r["curve"], budget) for r in group),
        }
    summary: dict = {"budget_seconds": budget, "schedules": schedules}
    if {"fixed", "progressive"} <= by.keys():
        fixed, progressive = schedules["fixed"], schedules["progressive"]
        spread = max(s["test_acc_max"] - s["test_acc_min"] for s in (fixed, progressive))
        gap = progressive["test_acc_mean"] - fixed["test_acc_mean"]
        summary["progressive_minus_fixed"] = gap
        summary["seed_spread"] = spread
        summary["time_ratio"] = progressive["train_seconds_mean"] / fixed["train_seconds_mean"]
        summary["progressive_at_least_fixed"] = gap >= 0
        summary["progressive_within_spread"] = gap >= 0 or -gap < spread
        summary["progressive_time_at_most_0_8"] = summary["time_ratio"] <= 0.8
    if {"progressive", "resize_only"} <= by.keys():
        summary["adaptive_minus_resize_only"] = (
            schedules["progressive"]["test_acc_mean"] - schedules["resize_only"]["test_acc_mean"]
        )
    return summary


def tuning_summary(runs: list[dict]) -> dict:
    """Per recipe, validation only: final and best val top-1 (mean, min, max over seeds), training
    CPU seconds and their ratio to `fixed`, val top-1 at the cheapest recipe's time budget."""
    by = group_runs(runs, dict.fromkeys(r["schedule"] for r in runs))
    budget = cheapest_mean_seconds(by)
    fixed_seconds = statistics.mean(r["train_seconds"] for r in by["fixed"]) if "fixed" in by else None
    recipes = {}
    for name, group in by.items():
        finals = [r["curve"][-1][1] for r in group]
        seconds = statistics.mean(r["train_seconds"] for r in group)
        recipes[name] = {
            "seeds": [r["seed"] for r in group],
            "final_val_acc_mean": statistics.mean(finals),
            "final_val_acc_min": min(finals),
            "final_val_acc_max": max(finals),
            "best_val_acc_mean": statistics.mean(r["best_val_acc"] for r in group),
            "train_seconds_mean": seconds,
            "time_vs_fixed": seconds / fixed_seconds if fixed_seconds else None,
            "val_acc_at_budget_mean": statistics.mean(accuracy_at(r["curve"], budget) for r in group),
        }
    return {"budget_seconds": budget, "recipes": recipes}


def tuning_table(summary: dict) -> str:
    header = ["recipe", "seeds", "final val top-1 mean (min-max)", "best val top-1", "train CPU s"]
    header += ["vs fixed", "val top-1 at the budget"]
    lines = ["| " + " | ".join(header) + " |", "|---" * len(header) + "|"]
    for name, r in summary["recipes"].items():
        ratio = f"{r['time_vs_fixed']:.2f}x" if r["time_vs_fixed"] else "-"
        cells = [
            f"`{name}`",
            str(len(r["seeds"])),
            f"{100 * r['final_val_acc_mean']:.2f}% ({100 * r['final_val_acc_min']:.2f}-"
            f"{100 * r['final_val_acc_max']:.2f})",
            f"{100 * r['best_val_acc_mean']:.2f}%",
            f"{r['train_seconds_mean']:.0f}",
            ratio,
            f"{100 * r['val_acc_at_budget_mean']:.2f}%",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    lines.append(
        f"\nBudget: {summary['budget_seconds']:.0f} training CPU seconds (the cheapest recipe's mean). "
        "Validation only: these runs skip the test split."
    )
    return "\n".join(lines)


def table(summary: dict) -> str:
    """The README table: one row per schedule, figures from the JSON's summary."""
    header = ["schedule", "seeds", "test top-1 mean (min-max)", "train CPU s", "vs fixed"]
    header += ["val top-1 at end", "val top-1 at the budget"]
    lines = ["| " + " | ".join(header) + " |", "|---" * len(header) + "|"]
    fixed = summary["schedules"].get("fixed")
    for name, s in summary["schedules"].items():
        ratio = f"{s['train_seconds_mean'] / fixed['train_seconds_mean']:.2f}x" if fixed else "-"
        cells = [
            f"`{name}`",
            str(len(s["seeds"])),
            f"{100 * s['test_acc_mean']:.2f}% ({100 * s['test_acc_min']:.2f}-{100 * s['test_acc_max']:.2f})",
            f"{s['train_seconds_mean']:.0f}",
            ratio,
            f"{100 * s['final_val_acc_mean']:.2f}%",
            f"{100 * s['val_acc_at_budget_mean']:.2f}%",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    lines.append(
        f"\nBudget: {summary['budget_seconds']:.0f} training CPU seconds (the cheapest schedule's mean)."
    )
    return "\n".join(lines)


def cost_per_size(runs: list[dict]) -> str:
    """Mean training CPU seconds per 1,000 images at each size, over every epoch of every run: why a
    schedule's time is not proportional to its pixels on this machine."""
    costs: dict[int, list[float]] = {}
    for run in runs:
        for epoch in run["epochs"]:
            costs.setdefault(epoch["image_size"], []).append(1000 * epoch["cpu_seconds"] / epoch["images"])
    largest = statistics.mean(costs[max(costs)])
    lines = [
        "| image size | CPU s per 1,000 images | vs the largest | pixels vs the largest |",
        "|---|---|---|---|",
    ]
    for size in sorted(costs):
        mean = statistics.mean(costs[size])
        lines.append(
            f"| {size} px | {mean:.2f} (min {min(costs[size]):.2f}, max {max(costs[size]):.2f}) | "
            f"{mean / largest:.2f} | {(size / max(costs)) ** 2:.2f} |"
        )
    return "\n".join(lines)


def plot(runs: list[dict], path: Path, subtitle: str, tuning: bool = False) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colors = {"fixed": "tab:gray", "progressive": "tab:red", "resize_only": "tab:blue"}
    markers = {"fixed": "s", "progressive": "o", "resize_only": "^"}
    for candidate, color, marker in zip(CANDIDATES, ["tab:green", "tab:purple", "tab:orange"], "Dvp"):
        colors.setdefault(candidate, color)
        markers.setdefault(candidate, marker)
    figure, (left, right) = plt.subplots(1, 2, figsize=(13, 4.8))
    for run in runs:
        seconds = [point[0] for point in run["curve"]]
        accuracy = [100 * point[1] for point in run["curve"]]
        name = run["schedule"]
        color, marker = colors.get(name, "tab:olive"), markers.get(name, "*")
        score = run["curve"][-1][1] if tuning else run["test_acc"]
        left.plot(
            seconds,
            accuracy,
            color=color,
            marker=marker,
            markersize=3,
            linewidth=1,
            label=f"{name} seed {run['seed']}",
        )
        right.scatter(
            run["train_seconds"],
            100 * score,
            color=color,
            marker=marker,
            s=60,
            label=f"{name} seed {run['seed']}",
        )
    left.set_xlabel("training CPU seconds")
    left.set_ylabel("validation top-1 (%) at the eval size")
    left.set_title("time to accuracy (every epoch of every run)")
    left.legend(fontsize=7)
    right.set_xlabel("training CPU seconds")
    what = "final validation top-1" if tuning else "test top-1"
    right.set_ylabel(f"{what} (%)")
    right.set_title(f"{what} vs training time (up-left is better)")
    right.legend(fontsize=7)
    compared = "progressive preset candidates vs fixed" if tuning else "fixed vs progressive vs resize-only"
    figure.suptitle(f"EfficientNetV2-B0: {compared} ({subtitle})")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    print(f"plot: {path}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="tiny settings: checks the plumbing only")
    parser.add_argument(
        "--report", action="store_true", help="only rebuild JSON, table and plot from run folders"
    )
    parser.add_argument(
        "--rerun", action="store_true", help="train again even where a run folder has results"
    )
    parser.add_argument("--dataset", default="cifar10", choices=list(RANDAUG_MAGNITUDE))
    parser.add_argument("--cifar-archive", type=Path, default=CIFAR_ARCHIVE, help="cifar10-jpeg.tar.gz")
    parser.add_argument(
        "--tune", action="store_true", help="CANDIDATES vs fixed on validation only (progressive_tuning)"
    )
    parser.add_argument("--schedules", nargs="+", default=None, choices=[*SCHEDULES, *CANDIDATES])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--subset", type=int, default=7000, help="images drawn (stratified); 10%% validate")
    parser.add_argument("--epochs", type=int, default=24)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--num-workers", type=int, default=0, help="0: augmentation counts in CPU seconds")
    parser.add_argument(
        "--threads", type=int, default=1, help="torch threads; >1 makes CPU seconds unreliable"
    )
    parser.add_argument(
        "--jobs", type=int, default=1, help="runs at once (each --threads threads); 2 on 2 cores"
    )
    parser.add_argument("--test-batches", type=int, default=None, help="test batches (default: all)")
    parser.add_argument("--name", default=None, help="names the JSON, table, plot, run folders")
    parser.add_argument("--out", type=Path, default=ROOT / "outputs" / "benchmarks")
    args = parser.parse_args()
    args.schedules = args.schedules or (["fixed", *CANDIDATES] if args.tune else list(SCHEDULES))
    args.name = args.name or ("progressive_tuning" if args.tune else "progressive_vs_fixed")
    if args.quick:
        args.dataset, args.image_size, args.subset, args.epochs = "fashion_mnist", 32, 400, 4
        args.seeds, args.test_batches = [0], 4
    if args.dataset == "cifar10" and not args.report and not prepare_cifar10(args.cifar_archive):
        sys.exit(
            f"CIFAR-10 not found: put cifar10-jpeg.tar.gz at {args.cifar_archive} or pass --cifar-archive"
        )

    out = args.out / args.name
    jobs = [(schedule, seed) for seed in args.seeds for schedule in args.schedules]
    if not args.report:
        with ThreadPoolExecutor(max_workers=args.jobs) as pool:
            list(pool.map(lambda job: train(*job, args, out / f"{job[0]}-seed{job[1]}"), jobs))
    runs = [record(schedule, seed, out / f"{schedule}-seed{seed}") for schedule, seed in jobs]
    summary = tuning_summary(runs) if args.tune else summarize(runs)
    settings = (
        f"v2_b0, {args.dataset}, {args.image_size} px, {args.subset} images drawn (stratified; 10% of them "
        f"validate), {args.epochs} epochs, batch {args.batch_size}, {args.threads} torch thread(s), "
        f"{args.num_workers} loader workers, seeds {args.seeds}"
    )
    results_table = tuning_table(summary) if args.tune else table(summary)
    markdown = f"Settings: {settings}\n\n{cost_per_size(runs)}\n\n{results_table}\n"
    print("\n" + markdown)
    folder = out if args.quick else ROOT / "benchmarks"
    results = folder / f"{args.name}.json"
    results.write_text(json.dumps({"settings": settings, "summary": summary, "runs": runs}, indent=1) + "\n")
    (folder / f"{args.name}.md").write_text(markdown)
    subtitle = f"{args.image_size} px, {args.epochs} epochs, {args.subset} images"
    plot(runs, folder / f"{args.name}.png", subtitle, tuning=args.tune)
    print(f"results: {results}")


if __name__ == "__main__":
    main()
