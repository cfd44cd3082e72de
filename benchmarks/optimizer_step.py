"""Optimizer step time on V2-S's parameters: RMSpropTF's per-tensor loop and its foreach path against
torch's own `RMSprop(foreach=True)` (same tensors, same groups, random gradients), measured interleaved in
one run so machine load hits all three alike. Writes benchmarks/optimizer_step.json and .md (the table
in docs/training.md).

    python benchmarks/optimizer_step.py                  # CPU (and CUDA too where available)
    python benchmarks/optimizer_step.py --rounds 3 --steps 3 --threads 1
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from effnetv2.models import create_model
from effnetv2.training.optim import RMSpropTF, parameter_groups

HERE = Path(__file__).resolve().parent
OPTIMIZERS = {
    "RMSpropTF loop": lambda groups: RMSpropTF(groups, foreach=False),
    "RMSpropTF foreach": lambda groups: RMSpropTF(groups, foreach=True),
    "torch RMSprop foreach": lambda groups: torch.optim.RMSprop(
        groups, lr=0.016, alpha=0.9, eps=1e-3, momentum=0.9, foreach=True
    ),
}


def step_seconds(device: str, rounds: int, steps: int) -> dict[str, float]:
    """Median seconds per `optimizer.step()` for each optimizer, rounds interleaved."""
    setups = {}
    for name, build in OPTIMIZERS.items():
        model = create_model("v2_s", num_classes=1000).to(device)
        for parameter in model.parameters():
            parameter.grad = torch.randn_like(parameter) * 1e-3
        optimizer = build(parameter_groups(model, 1e-5))
        optimizer.step()  # state allocated outside the timing
        setups[name] = optimizer
    times: dict[str, list[float]] = {name: [] for name in OPTIMIZERS}
    for round_index in range(rounds):
        names = list(OPTIMIZERS)
        names = names[round_index % len(names) :] + names[: round_index % len(names)]
        for name in names:
            if device == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            for _ in range(steps):
                setups[name].step()
            if device == "cuda":
                torch.cuda.synchronize()
            times[name].append((time.perf_counter() - start) / steps)
    return {name: statistics.median(values) for name, values in times.items()}


def markdown(results: dict) -> str:
    lines = [
        f"V2-S ({results['tensors']} tensors, {results['parameters'] / 1e6:.1f} M parameters), median of "
        f"{results['rounds']} rounds x {results['steps']} steps, torch {results['torch']}.",
        "",
        "| device | optimizer | ms per step | vs torch RMSprop foreach |",
        "|---|---|---:|---:|",
    ]
    for device, seconds in results["devices"].items():
        reference = seconds["torch RMSprop foreach"]
        for name, value in seconds.items():
            lines.append(f"| {device} | {name} | {value * 1e3:.1f} | {value / reference:.2f}x |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--out", type=Path, default=HERE / "optimizer_step.json")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    model = create_model("v2_s", num_classes=1000)
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    results = {
        "tensors": sum(1 for _ in model.parameters()),
        "parameters": sum(p.numel() for p in model.parameters()),
        "rounds": args.rounds,
        "steps": args.steps,
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "devices": {device: step_seconds(device, args.rounds, args.steps) for device in devices},
    }
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    table = markdown(results)
    args.out.with_suffix(".md").write_text(table)
    print(table)


if __name__ == "__main__":
    main()
