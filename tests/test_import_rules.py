"""Imports point down the layers: base modules <- models, data <- inference <- training.

Base modules are the modules directly in `src/effnetv2/` (errors, cli, config, checkpoint, ...): they
import none of the packages. `models` and `data` import only base modules, `inference` imports no
`training`, and `training` may use everything. Every import statement counts, also one inside a
function: a lazy import is still a dependency, and cycles through them break at run time.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parents[1] / "src" / "effnetv2"

# package -> the packages it must not import (base modules may import no package at all)
FORBIDDEN = {
    "models": {"data", "training", "inference"},
    "data": {"models", "training", "inference"},
    "inference": {"training"},
    "training": set(),
}


def imported_modules(path: Path, module: str) -> list[tuple[int, str]]:
    """(line, absolute module name) of every import in the file, relative imports resolved."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # `from . import x` / `from ..data import y`
                is_package = path.name == "__init__.py"
                parts = module.split(".")[: len(module.split(".")) - node.level + is_package]
                base = ".".join(parts + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            found.append((node.lineno, base))
            found += [(node.lineno, f"{base}.{alias.name}") for alias in node.names]
    return found


def package_of(module: str, package_dir: Path) -> str | None:
    """The effnetv2 package (`models`, `data`, ...) a module belongs to; None for base modules and
    modules outside effnetv2."""
    parts = module.split(".")
    if parts[0] != "effnetv2" or len(parts) < 2:
        return None
    return parts[1] if (package_dir / parts[1]).is_dir() else None


def import_rule_violations(package_dir: Path) -> list[str]:
    """One line per import that points up the layers: `file:line: what imports what, and the rule`."""
    violations = []
    for path in sorted(package_dir.rglob("*.py")):
        relative = path.relative_to(package_dir.parent)
        module = ".".join(relative.with_suffix("").parts).removesuffix(".__init__")
        own = package_of(module, package_dir)
        forbidden = FORBIDDEN.get(own, set()) if own else set(FORBIDDEN)
        seen = set()
        for line, name in imported_modules(path, module):
            target = package_of(name, package_dir)
            if target in forbidden and (line, target) not in seen:
                seen.add((line, target))
                layer = f"the {own} package" if own else "a base module"
                violations.append(
                    f"{relative}:{line}: imports {name}, but {layer} must not import effnetv2.{target}"
                )
    return violations


def test_imports_point_down_the_layers() -> None:
    violations = import_rule_violations(PACKAGE_DIR)
    assert not violations, "imports that point up the layers:\n" + "\n".join(violations)


def test_the_rules_see_imports_inside_functions_and_relative_ones(tmp_path: Path) -> None:
    package = tmp_path / "effnetv2"
    for folder in ("data", "models", "training", "inference"):
        (package / folder).mkdir(parents=True)
        (package / folder / "__init__.py").write_text("")
    (package / "errors.py").write_text("")
    (package / "config.py").write_text("def f():\n    from effnetv2.training import module\n")
    (package / "data" / "loader.py").write_text("from ..training.faults import handler\n")
    (package / "models" / "net.py").write_text("from effnetv2 import errors\nfrom effnetv2 import data\n")
    (package / "inference" / "load.py").write_text("import effnetv2.training.module\n")
    (package / "training" / "fit.py").write_text("from effnetv2.inference import load\nfrom . import fit\n")

    violations = import_rule_violations(package)

    assert [violation.split(", but ")[0] for violation in violations] == [
        "effnetv2/config.py:2: imports effnetv2.training",
        "effnetv2/data/loader.py:1: imports effnetv2.training.faults",
        "effnetv2/inference/load.py:1: imports effnetv2.training.module",
        "effnetv2/models/net.py:2: imports effnetv2.data",
    ]
    assert violations[0].endswith("but a base module must not import effnetv2.training")
    assert violations[3].endswith("but the models package must not import effnetv2.data")
