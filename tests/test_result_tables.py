"""README tables are generated from the JSON results the benchmark scripts commit: a table edited by
hand, or a JSON re-measured without regenerating the table, fails here."""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def load_benchmark(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def marked_block(text: str, name: str) -> str:
    """The text between `<!-- name -->` and `<!-- /name -->`."""
    match = re.search(rf"<!-- {name} -->\n(.*?)<!-- /{name} -->", text, flags=re.S)
    assert match, f"README has no <!-- {name} --> block"
    return match.group(1).strip()


def test_readme_progressive_table_is_the_one_the_json_gives() -> None:
    benchmark = load_benchmark("progressive_vs_fixed")
    results = json.loads((ROOT / "benchmarks" / "progressive_vs_fixed.json").read_text())
    assert benchmark.summarize(results["runs"]) == results["summary"]  # the summary is the runs'
    expected = benchmark.table(results["summary"])
    assert marked_block((ROOT / "README.md").read_text(), "progressive_vs_fixed") == expected
    assert (ROOT / "benchmarks" / "progressive_vs_fixed.md").read_text().strip().endswith(expected)


def test_progressive_results_hold_the_keys_the_issue_names() -> None:
    runs = json.loads((ROOT / "benchmarks" / "progressive_vs_fixed.json").read_text())["runs"]
    schedules = {run["schedule"] for run in runs}
    assert schedules == {"fixed", "progressive", "resize_only"}
    for schedule in schedules:
        assert len({run["seed"] for run in runs if run["schedule"] == schedule}) >= 2
    for run in runs:
        assert 0.0 < run["test_acc"] < 1.0 and run["train_seconds"] > 0
        assert len(run["curve"]) == len(run["epochs"])
        seconds = [point[0] for point in run["curve"]]
        assert seconds == sorted(seconds) and seconds[-1] == run["train_seconds"]
