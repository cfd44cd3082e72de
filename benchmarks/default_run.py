"""The default run (`python src/train.py`: B0, progressive learning, Fashion-MNIST) as a measured result.

Runs it in a subprocess, or reads a run folder it already wrote (--report), and writes
benchmarks/default_run.json: test and validation top-1, wall time (from the run's own log, first to
last line), the machine's load average around it and the commit. The README's line is generated
from that JSON (tools/readme_tables.py). The wall time depends on the machine and on what else runs
on it: the JSON says both.

    python benchmarks/default_run.py                         # train, then record
    python benchmarks/default_run.py --report outputs/train/runs/<run>   # record a finished run
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "default_run.json"
LOG_TIME = "%Y-%m-%d %H:%M:%S,%f"


def log_seconds(run_dir: Path) -> float:
    """Seconds from the run's first log line to its last (set-up, training, validation, test)."""
    stamps = [
        datetime.strptime(line[1:24], LOG_TIME)
        for line in (run_dir / "train.log").read_text().splitlines()
        if line.startswith("[20")
    ]
    return (stamps[-1] - stamps[0]).total_seconds()


def current_commit() -> str:
    """The checkout's short commit hash, recorded beside each measurement."""
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    return commit.stdout.strip()


def record(run_dir: Path, load_before: str, load_after: str, note: str) -> dict:
    metrics = json.loads((run_dir / "metrics.json").read_text())
    return {
        "test_acc": metrics["test/acc"],
        "val_acc": metrics["val/acc"],
        "wall_seconds": round(log_seconds(run_dir), 1),
        "load_average_before": load_before,
        "load_average_after": load_after,
        "cores": os.cpu_count(),
        "commit": current_commit(),
        "note": note,
    }


def table(result: dict) -> str:
    """The README's line about the default run."""
    minutes, seconds = divmod(round(result["wall_seconds"]), 60)
    return (
        f"| test top-1 | validation top-1 | wall time | load average before / after | commit |\n"
        f"|---|---|---|---|---|\n"
        f"| {100 * result['test_acc']:.2f}% | {100 * result['val_acc']:.2f}% | {minutes}:{seconds:02d} "
        f"| {result['load_average_before']} / {result['load_average_after']} | {result['commit']} |\n\n"
        f"{result['note']}"
    )


def load_average() -> str:
    return ", ".join(f"{value:.1f}" for value in os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--report", type=Path, help="a finished run folder of the default run")
    parser.add_argument("--load-before", default=None, help="with --report: the load average before it")
    parser.add_argument("--load-after", default=None, help="with --report: the load average after it")
    parser.add_argument("--note", default="", help="what else ran on the machine")
    parser.add_argument("overrides", nargs="*", help="extra src/train.py overrides (none: the default run)")
    args = parser.parse_args()
    if args.report:
        run_dir, before = args.report, args.load_before or "unknown"
    else:
        before = load_average()
        run_dir = ROOT / "outputs" / "default_run" / datetime.now().strftime("%Y-%m-%d_%H-%M-%S")
        command = [sys.executable, "src/train.py", *args.overrides, f"hydra.run.dir={run_dir}"]
        if subprocess.run(command, cwd=ROOT).returncode != 0:
            sys.exit(f"the default run failed: see {run_dir}/train.log")
    result = record(run_dir, before, args.load_after or load_average(), args.note)
    RESULTS.write_text(json.dumps(result, indent=1) + "\n")
    print(table(result))


if __name__ == "__main__":
    main()
