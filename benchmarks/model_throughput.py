"""Images/sec of our EfficientNetV2 vs timm and torchvision (issue 3 benchmark).

Training step (forward + backward + AdamW step) and eval forward, float32, contiguous and
channels_last, for V2-S and V2-B0. All implementations run the same network: symmetric padding (timm's
B0 exists only as a `tf_` port, so it is built with pad_type=""), classifier dropout 0.2 and
stochastic depth 0.2 (timm defaults to none of either, which would skip work the others do). Measurements are
interleaved: each round visits every cell and rotates the order of the implementations, and the table
reports the median over rounds, so load from other processes hits all implementations alike.

    python benchmarks/model_throughput.py            # full settings (several minutes on 2 cores)
    python benchmarks/model_throughput.py --quick    # smoke run (B0, 64 px, one round)
    python benchmarks/model_throughput.py --clock cpu --threads 1   # on a machine other jobs share

It also times the default run's training step (B0, 1 channel, 10 classes, 32 px, batch 256) in both
memory formats, the measurement behind `module.channels_last: true`. Results go to
benchmarks/model_throughput.json (every round of every cell) and .md (the tables); the README's table
is `readme_table` of that JSON, checked by tests/test_result_tables.py.

--clock cpu divides by the process's CPU time instead of wall time: images per CPU-second, which
other processes on the machine barely disturb. Use it with --threads 1, where no thread waits for a
descheduled sibling (with several threads, OpenMP's spin-waiting would count as work).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import timm
import torch
import torchvision
from torch import nn

from effnetv2.models import create_model

NUM_CLASSES = 1000
FORMATS = {"contiguous": torch.contiguous_format, "channels_last": torch.channels_last}
TIMM_REGULARISATION = {"drop_rate": 0.2, "drop_path_rate": 0.2}  # ours and torchvision's defaults
# model -> implementation -> builder (random init, no download)
PEERS: dict[str, dict[str, Callable[[], nn.Module]]] = {
    "v2_s": {
        "ours": lambda: create_model("v2_s"),
        "timm": lambda: timm.create_model("efficientnetv2_s", pretrained=False, **TIMM_REGULARISATION),
        "torchvision": lambda: torchvision.models.efficientnet_v2_s(weights=None),
    },
    "v2_b0": {
        "ours": lambda: create_model("v2_b0"),
        "timm": lambda: timm.create_model(
            "tf_efficientnetv2_b0", pretrained=False, pad_type="", **TIMM_REGULARISATION
        ),
    },
}
IMPLEMENTATIONS = ("ours", "timm", "torchvision")
ROOT = Path(__file__).resolve().parents[1]
# The default run's step (conf/train.yaml with data=fashion_mnist): what module.channels_last was chosen on.
RECIPE = {"model": "v2_b0", "in_chans": 1, "num_classes": 10, "size": 32, "batch": 256}
CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}


@dataclass(frozen=True)
class Cell:
    """One table row: what is measured, for every implementation."""

    model: str
    mode: str  # "train" or "eval"
    size: int
    fmt: str


class Runner:
    """One model instance in one memory format, with its optimizer, ready to time."""

    def __init__(
        self,
        build: Callable[[], nn.Module],
        fmt: str,
        clock: Callable[[], float],
        in_chans: int = 3,
        num_classes: int = NUM_CLASSES,
    ) -> None:
        self.clock = clock
        self.memory_format = FORMATS[fmt]
        self.model = build().to(memory_format=self.memory_format)
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=1e-4)
        self.in_chans, self.num_classes = in_chans, num_classes

    def _images(self, batch: int, size: int) -> torch.Tensor:
        return torch.randn(batch, self.in_chans, size, size).contiguous(memory_format=self.memory_format)

    def train_steps(self, batch: int, size: int, steps: int) -> float:
        """Images/sec over `steps` full training steps."""
        self.model.train()
        images = self._images(batch, size)
        targets = torch.randint(0, self.num_classes, (batch,))
        start = self.clock()
        for _ in range(steps):
            loss = nn.functional.cross_entropy(self.model(images), targets)
            loss.backward()
            self.optimizer.step()
            self.optimizer.zero_grad(set_to_none=True)
        return batch * steps / (self.clock() - start)

    @torch.inference_mode()
    def eval_steps(self, batch: int, size: int, steps: int) -> float:
        """Images/sec over `steps` eval forward passes."""
        self.model.eval()
        images = self._images(batch, size)
        start = self.clock()
        for _ in range(steps):
            self.model(images)
        return batch * steps / (self.clock() - start)


def measure(runner: Runner, cell: Cell, args: argparse.Namespace, steps: int) -> float:
    if cell.mode == "train":
        return runner.train_steps(args.train_batch, cell.size, steps)
    return runner.eval_steps(args.eval_batch, cell.size, steps)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--models", nargs="+", default=["v2_s", "v2_b0"], choices=list(PEERS))
    parser.add_argument("--train-sizes", nargs="+", type=int, default=[128, 224])
    parser.add_argument("--eval-sizes", nargs="+", type=int, default=[224])
    parser.add_argument("--formats", nargs="+", default=list(FORMATS), choices=list(FORMATS))
    parser.add_argument("--train-batch", type=int, default=16)
    parser.add_argument("--eval-batch", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3, help="timed rounds (median reported)")
    parser.add_argument("--steps", type=int, default=2, help="timed steps per cell and round")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--clock", choices=["wall", "cpu"], default="wall", help="see the module docstring")
    parser.add_argument("--recipe-steps", type=int, default=2, help="timed default-run steps per round")
    parser.add_argument("--quick", action="store_true", help="smoke run: B0, 64 px, batch 4, one round")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks", help="folder of the JSON and .md")
    args = parser.parse_args()
    if args.quick:
        args.models, args.train_sizes, args.eval_sizes = ["v2_b0"], [64], [64]
        args.train_batch, args.eval_batch, args.rounds, args.steps = 4, 4, 1, 1
        args.recipe_steps = 1
    return args


def ratios_over_rounds(cell: dict) -> list[float]:
    """ours / fastest peer, taken within each round (the implementations of one cell run back to back,
    so they share the machine's conditions)."""
    rounds = cell["rounds"]
    peers = [impl for impl in rounds if impl != "ours"]
    return [ours / max(rounds[impl][i] for impl in peers) for i, ours in enumerate(rounds["ours"])]


def full_table(results: dict) -> str:
    """Median throughput per implementation, and ours / fastest peer as the median and the range over
    rounds."""
    unit = results["settings"]["unit"]
    lines = [
        f"| model | mode | px | format | ours {unit} | timm {unit} | torchvision {unit} "
        "| ours / fastest peer | range over rounds |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for cell in results["cells"]:
        rounds = cell["rounds"]
        shown = [f"{statistics.median(rounds[i]):.1f}" if i in rounds else "n/a" for i in IMPLEMENTATIONS]
        ratios = ratios_over_rounds(cell)
        lines.append(
            f"| {cell['model']} | {cell['mode']} | {cell['size']} | {cell['fmt']} | {' | '.join(shown)} "
            f"| {statistics.median(ratios):.2f}x | {min(ratios):.2f}-{max(ratios):.2f}x |"
        )
    return "\n".join(lines)


def channels_last_gain(results: dict) -> list[float]:
    """channels_last / contiguous of the default run's step, per round."""
    recipe = results["recipe"]["rounds"]
    return [last / first for last, first in zip(recipe["channels_last"], recipe["contiguous"], strict=True)]


def readme_table(results: dict) -> str:
    """The README's summary: ours / fastest peer per model and format (median over rounds, with the range
    where it crosses 1.0x), and the default run's channels_last gain."""
    columns = sorted(
        {(c["mode"], c["size"]) for c in results["cells"]}, key=lambda m: (m[0] != "train", m[1])
    )
    lines = [
        "| | " + " | ".join(f"{mode} {size} px" for mode, size in columns) + " |",
        "|---|" + "---:|" * len(columns),
    ]
    for model in dict.fromkeys(c["model"] for c in results["cells"]):
        for fmt in dict.fromkeys(c["fmt"] for c in results["cells"]):
            row = []
            for mode, size in columns:
                cell = next(
                    c
                    for c in results["cells"]
                    if (c["model"], c["fmt"], c["mode"], c["size"]) == (model, fmt, mode, size)
                )
                ratios = ratios_over_rounds(cell)
                crosses = min(ratios) < 1.0 < max(ratios)
                note = f" ({min(ratios):.2f}-{max(ratios):.2f})" if crosses else ""
                row.append(f"{statistics.median(ratios):.2f}x{note}")
            lines.append(f"| {model} {fmt} | " + " | ".join(row) + " |")
    gain = channels_last_gain(results)
    settings = results["settings"]
    lines.append(
        f"\nDefault run's step (B0, 1 channel, 32 px, batch 256): channels_last is "
        f"{statistics.median(gain):.2f}x contiguous ({min(gain):.2f}-{max(gain):.2f} over rounds). "
        f"{settings['threads']} thread(s), {settings['clock']} clock, median of {settings['rounds']} rounds."
    )
    return "\n".join(lines)


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    cells = [
        Cell(model, mode, size, fmt)
        for model in args.models
        for mode, sizes in (("train", args.train_sizes), ("eval", args.eval_sizes))
        for size in sizes
        for fmt in args.formats
    ]
    runners = {
        (model, impl, fmt): Runner(build, fmt, CLOCKS[args.clock])
        for model in args.models
        for impl, build in PEERS[model].items()
        for fmt in args.formats
    }
    started = time.perf_counter()
    for cell in cells:  # warm-up: oneDNN primitive creation, allocator growth
        for impl in PEERS[cell.model]:
            measure(runners[cell.model, impl, cell.fmt], cell, args, steps=1)
    print(f"warm-up {time.perf_counter() - started:.0f} s", flush=True)
    results: dict[tuple[Cell, str], list[float]] = {}
    for round_index in range(args.rounds):
        for cell in cells:
            impls = list(PEERS[cell.model])
            shift = round_index % len(impls)
            for impl in itertools.chain(impls[shift:], impls[:shift]):
                value = measure(runners[cell.model, impl, cell.fmt], cell, args, args.steps)
                results.setdefault((cell, impl), []).append(value)
        elapsed = time.perf_counter() - started
        print(f"round {round_index + 1}/{args.rounds} done at {elapsed:.0f} s", flush=True)
    recipe = measure_recipe(args)
    elapsed = time.perf_counter() - started
    load = ", ".join(f"{value:.1f}" for value in os.getloadavg())
    settings = {
        "torch": torch.__version__,
        "timm": timm.__version__,
        "torchvision": torchvision.__version__,
        "threads": args.threads,
        "train_batch": args.train_batch,
        "eval_batch": args.eval_batch,
        "rounds": args.rounds,
        "steps": args.steps,
        "clock": args.clock,
        "unit": "img/s" if args.clock == "wall" else "img/CPU-s",
        "seconds": round(elapsed),
        "load_average_at_end": load,
        "cores": os.cpu_count(),
    }
    record = {
        "settings": settings,
        "cells": [
            {**asdict(cell), "rounds": {i: results[cell, i] for i in PEERS[cell.model]}} for cell in cells
        ],
        "recipe": recipe,
    }
    markdown = (
        f"torch {settings['torch']}, timm {settings['timm']}, torchvision {settings['torchvision']}, "
        f"{args.threads} threads, train batch {args.train_batch}, eval batch {args.eval_batch}, median of "
        f"{args.rounds} rounds x {args.steps} steps, {args.clock} clock, {elapsed:.0f} s, load average at "
        f"the end {load} on {os.cpu_count()} cores\n\n{full_table(record)}\n\n{readme_table(record)}\n"
    )
    print("\n" + markdown)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "model_throughput.json").write_text(json.dumps(record, indent=1) + "\n")
    (args.out / "model_throughput.md").write_text(markdown)
    print(f"results: {args.out / 'model_throughput.json'}")


def measure_recipe(args: argparse.Namespace) -> dict:
    """The default run's training step in both memory formats, interleaved over rounds."""
    settings = {k: RECIPE[k] for k in ("in_chans", "num_classes")}
    build = lambda: create_model(RECIPE["model"], **settings)  # noqa: E731
    runners = {fmt: Runner(build, fmt, CLOCKS[args.clock], **settings) for fmt in FORMATS}
    for runner in runners.values():
        runner.train_steps(RECIPE["batch"], RECIPE["size"], 1)
    rounds: dict[str, list[float]] = {fmt: [] for fmt in FORMATS}
    for round_index in range(args.rounds):
        order = list(FORMATS)[:: 1 if round_index % 2 == 0 else -1]
        for fmt in order:
            rounds[fmt].append(runners[fmt].train_steps(RECIPE["batch"], RECIPE["size"], args.recipe_steps))
    return {**RECIPE, "rounds": rounds}


if __name__ == "__main__":
    main()
