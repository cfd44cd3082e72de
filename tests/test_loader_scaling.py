"""benchmarks/loader_scaling.py --quick runs end to end and writes its JSON and table."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from helpers.paths import ROOT


@pytest.mark.subprocess
@pytest.mark.timeout(600)
def test_quick_mode_writes_json_and_table(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "benchmarks/loader_scaling.py", "--quick", "--results", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=580,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    measured = json.loads((tmp_path / "loader_scaling.json").read_text())
    assert {row["size"] for row in measured["scaling"]} == {32, 48}
    assert all(row["workers_1"] > 0 and row["workers_2"] > 0 for row in measured["scaling"])
    assert "| torch | 32 |" in (tmp_path / "loader_scaling.md").read_text()
    for row in measured["stage"].values():  # FFCV's RandAugment stage, where FFCV is installed
        assert min(row["seconds_1_thread"], row["seconds_2_threads"], row["seconds_2_processes"]) > 0
        assert 0 <= row["gil_share"] <= 1 and 0 <= row["serial_share_processes"] <= 1
