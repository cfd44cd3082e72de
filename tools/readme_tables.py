"""Rewrite the generated tables in README.md and docs/ from the benchmarks' committed JSON results.

Each table sits between `<!-- name -->` and `<!-- /name -->`; `name` is a benchmark script in
benchmarks/ whose JSON holds the measurements. tests/test_result_tables.py fails when a table and its
JSON disagree, so run this after a benchmark (`make tables`) rather than editing a table by hand.
"""

from __future__ import annotations

import importlib.util
import json
import re
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[1]
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def load_benchmark(name: str) -> ModuleType:
    if str(ROOT / "benchmarks") not in sys.path:
        sys.path.insert(0, str(ROOT / "benchmarks"))  # benchmarks import their siblings, as when run
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def progressive_vs_fixed(benchmark: ModuleType, results: dict) -> str:
    return benchmark.table(results["summary"])


def progressive_tuning(benchmark: ModuleType, results: dict) -> str:
    return benchmark.tuning_table(results["summary"])


def model_throughput(benchmark: ModuleType, results: dict) -> str:
    return benchmark.readme_table(results)


def model_throughput_full(benchmark: ModuleType, results: dict) -> str:
    return benchmark.full_table(results)


def finetune_vs_scratch(benchmark: ModuleType, results: dict) -> str:
    return benchmark.table(results["results"], results["chosen"])


def loader_scaling(benchmark: ModuleType, results: dict) -> str:
    return benchmark.markdown(results)


def default_run(benchmark: ModuleType, results: dict) -> str:
    return benchmark.table(results)


def fashion_mnist_loader(benchmark: ModuleType, results: dict) -> str:
    return benchmark.markdown(results)


# block name -> (benchmark whose JSON it shows, the function that renders it)
TABLES: dict[str, tuple[str, Callable[[ModuleType, dict], str]]] = {
    "progressive_vs_fixed": ("progressive_vs_fixed", progressive_vs_fixed),
    "progressive_tuning": ("progressive_vs_fixed", progressive_tuning),
    "model_throughput": ("model_throughput", model_throughput),
    "model_throughput_full": ("model_throughput", model_throughput_full),
    "finetune_vs_scratch": ("finetune_vs_scratch", finetune_vs_scratch),
    "loader_scaling": ("loader_scaling", loader_scaling),
    "default_run": ("default_run", default_run),
    "fashion_mnist_loader": ("fashion_mnist_loader", fashion_mnist_loader),
}
# block name -> its JSON in benchmarks/ where that is not its script's own (one script, two experiments)
RESULT_FILES = {"progressive_tuning": "progressive_tuning"}


def render(name: str) -> str:
    """The table block `name` as its benchmark's JSON gives it."""
    script, function = TABLES[name]
    results = json.loads((ROOT / "benchmarks" / f"{RESULT_FILES.get(name, script)}.json").read_text())
    return function(load_benchmark(script), results)


def blocks(text: str) -> list[str]:
    """Names of the generated blocks in a document."""
    return re.findall(r"<!-- ([a-z_]+) -->\n", text)


def rewrite(text: str) -> str:
    for name in blocks(text):
        if name not in TABLES:
            sys.exit(f"unknown table block <!-- {name} -->; known: {', '.join(TABLES)}")
        table = render(name)
        text = re.sub(
            rf"(<!-- {name} -->\n).*?(<!-- /{name} -->)",
            lambda match, table=table: f"{match.group(1)}{table}\n{match.group(2)}",
            text,
            flags=re.S,
        )
    return text


def main() -> None:
    for document in DOCUMENTS:
        text = document.read_text()
        updated = rewrite(text)
        if updated != text:
            document.write_text(updated)
            print(f"updated {document.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
