"""README and docs tables are generated from the JSON results the benchmark scripts commit
(tools/readme_tables.py, `make tables`): a table edited by hand, or a JSON re-measured without
regenerating its tables, fails here."""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

import pytest

from helpers.paths import ROOT


def load(path: Path):
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


TABLES = load(ROOT / "tools" / "readme_tables.py")
GENERATED = [
    (document, name) for document in TABLES.DOCUMENTS for name in TABLES.blocks(document.read_text())
]


def results(name: str) -> dict:
    return json.loads((ROOT / "benchmarks" / f"{name}.json").read_text())


def test_the_readme_shows_every_benchmark_table() -> None:
    readme = [name for document, name in GENERATED if document.name == "README.md"]
    assert {
        "progressive_vs_fixed",
        "model_throughput",
        "finetune_vs_scratch",
        "loader_scaling",
        "default_run",
    } <= set(readme)
    assert {name for _, name in GENERATED} <= set(TABLES.TABLES)


@pytest.mark.parametrize(("document", "name"), GENERATED, ids=lambda v: getattr(v, "name", v))
def test_a_generated_table_is_the_one_its_json_gives(document: Path, name: str) -> None:
    match = re.search(rf"<!-- {name} -->\n(.*?)<!-- /{name} -->", document.read_text(), flags=re.S)
    assert match.group(1).strip() == TABLES.render(name).strip()


def test_benchmark_markdown_files_hold_their_tables() -> None:
    for name in ("progressive_vs_fixed", "model_throughput", "finetune_vs_scratch"):
        markdown = (ROOT / "benchmarks" / f"{name}.md").read_text()
        assert TABLES.render(name).strip() in markdown, name


def test_progressive_results_hold_the_keys_the_issue_names() -> None:
    benchmark = TABLES.load_benchmark("progressive_vs_fixed")
    data = results("progressive_vs_fixed")
    assert benchmark.summarize(data["runs"]) == data["summary"]  # the summary is the runs'
    schedules = {run["schedule"] for run in data["runs"]}
    assert schedules == {"fixed", "progressive", "resize_only"}
    for schedule in schedules:
        assert len({run["seed"] for run in data["runs"] if run["schedule"] == schedule}) >= 2
    for run in data["runs"]:
        assert 0.0 < run["test_acc"] < 1.0 and run["train_seconds"] > 0
        assert len(run["curve"]) == len(run["epochs"])
        seconds = [point[0] for point in run["curve"]]
        assert seconds == sorted(seconds) and seconds[-1] == run["train_seconds"]


def test_model_speed_results_hold_every_round_of_every_cell() -> None:
    data = results("model_throughput")
    rounds = data["settings"]["rounds"]
    assert {cell["model"] for cell in data["cells"]} == {"v2_s", "v2_b0"}
    for cell in data["cells"]:
        assert "ours" in cell["rounds"] and len(cell["rounds"]) >= 2
        assert all(len(values) == rounds and min(values) > 0 for values in cell["rounds"].values())
    recipe = data["recipe"]
    assert (recipe["size"], recipe["batch"], recipe["in_chans"]) == (32, 256, 1)
    assert all(len(values) == rounds for values in recipe["rounds"].values())


def test_fine_tuning_recipes_are_chosen_on_validation_alone() -> None:
    benchmark = TABLES.load_benchmark("finetune_vs_scratch")
    data = results("finetune_vs_scratch")
    assert benchmark.choose(data["results"]) == data["chosen"]
    # the choice stands whatever the test figures say: shuffling them changes nothing
    scrambled = [{**r, "test_acc": 1.0 - r["test_acc"]} for r in data["results"]]
    assert benchmark.choose(scrambled) == data["chosen"]
    assert {r["start"] for r in data["results"]} == {"scratch", "fine-tuned"}
    assert len({r["seed"] for r in data["results"]}) >= 2


def test_progressive_tuning_is_chosen_on_validation_alone() -> None:
    """The tuning runs skip the test split, and the summary is the runs' own."""
    benchmark = TABLES.load_benchmark("progressive_vs_fixed")
    data = results("progressive_tuning")
    assert benchmark.tuning_summary(data["runs"]) == data["summary"]
    assert all(run["test_acc"] is None for run in data["runs"])
    assert "fixed" in data["summary"]["recipes"] and set(data["summary"]["recipes"]) - {"fixed"} <= set(
        benchmark.CANDIDATES
    )
