"""Entry points (`src/train.py` and the others) in subprocesses: run to completion, or start in a
process group a test can signal, and wait for a file the run writes."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from helpers.environment import train_env
from helpers.paths import ROOT


def train_command(*overrides: str, script: str = "src/train.py") -> list[str]:
    return [sys.executable, script, *overrides]


def run_train(
    *overrides: str, timeout: int = 300, env: dict[str, str] | None = None, script: str = "src/train.py"
) -> subprocess.CompletedProcess:
    """Run an entry point to completion; stdout and stderr captured as text."""
    return subprocess.run(
        train_command(*overrides, script=script),
        cwd=ROOT,
        env=env or train_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def start_train(*overrides: str, log: Path, env: dict[str, str] | None = None) -> subprocess.Popen:
    """Start src/train.py in its own process group (a test can signal or kill all of it), output to `log`."""
    with log.open("w") as output:
        return subprocess.Popen(
            train_command(*overrides),
            cwd=ROOT,
            env=env or train_env(),
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def wait_for(path: Path, process: subprocess.Popen, log: Path, timeout: float = 240) -> None:
    """Wait until `path` exists; fail with the run's output if the process ended or time ran out."""
    deadline = time.monotonic() + timeout
    while not path.exists():
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise AssertionError(
                f"{path.name} never appeared (exit {process.poll()}):\n{log.read_text()[-4000:]}"
            )
        time.sleep(0.1)
