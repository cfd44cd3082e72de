"""The package declares what it imports: `pip install -e .` without extras must be enough to import
every module of `effnetv2` (a module-level `torchvision` import once lived only in the `dev` extra)."""

from __future__ import annotations

import ast
import re
import sys
from importlib.metadata import packages_distributions
from pathlib import Path

import tomllib

from helpers.paths import ROOT

PACKAGE = ROOT / "src" / "effnetv2"


def runtime_distributions() -> set[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    names = (re.match(r"[A-Za-z0-9_.-]+", spec).group(0) for spec in project["dependencies"])
    return {name.lower().replace("_", "-") for name in names}


def module_level_imports(path: Path) -> set[str]:
    """Top-level names imported in the module body. Imports inside functions (lazy) or `try` blocks
    (optional, with a fallback such as FFCV's clear error) are not required at import time."""
    names = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def test_every_module_level_import_is_a_runtime_dependency():
    declared = runtime_distributions()
    providers = packages_distributions()
    undeclared = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        for name in module_level_imports(path):
            if name in sys.stdlib_module_names or name in {"effnetv2", "__future__"}:
                continue
            distributions = {d.lower().replace("_", "-") for d in providers.get(name, [name])}
            if not distributions & declared:
                undeclared.setdefault(name, []).append(str(path.relative_to(ROOT)))
    assert not undeclared, f"imported but not in [project].dependencies of pyproject.toml: {undeclared}"
