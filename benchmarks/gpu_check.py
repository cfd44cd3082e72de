"""GPU check: what a GPU user gets from this template, measured in one run of at most 5 minutes.

On one CUDA GPU (written for an H200 with 16 CPU cores) it measures, each part within its own time budget:

- `synthetic_train`: V2-S training images/s (forward + backward + AdamW step, bf16 autocast, channels_last,
  synthetic images, warm-up steps then timed steps between CUDA synchronisations) at 128/192/256/300 px,
  beside timm's `efficientnetv2_s` (random init, no download) in the same run, as a ratio;
- `synthetic_eval`: eval images/s at 384 px, both implementations;
- `end_to_end_torch` / `end_to_end_ffcv`: images/s of `src/train.py` (V2-S, 128 px, RandAugment magnitude
  10, data=image_folder, schedule=fixed, 2 epochs, the second one timed) on a generated folder of 20,000
  JPEGs, as a fraction of the synthetic rate at the same size and batch; FFCV only where it imports;
- `progressive`: a short 3-stage progressive run of `src/train.py`, the image size of each epoch observed
  in its training batches and in its CSV metrics.

A part that fails or runs out of time is recorded as such and the others still run. Results go to
<out>/gpu_check.json and <out>/gpu_check.md; generated images and run folders to --work.

    benchmarks/gpu_check.sh                        # on the GPU machine: installs carried wheels, then runs
    python benchmarks/gpu_check.py                 # where hydra-core and albumentations are installed
    python benchmarks/gpu_check.py --smoke --out /tmp/gpu_check   # the same code, tiny, on the CPU

--smoke runs every part with V2-B0 (timm's `tf_efficientnetv2_b0` as the peer), tiny images, a few
images and steps on the CPU: a plumbing check, its figures mean nothing.
"""

from __future__ import annotations

import argparse
import csv
import importlib.util
import json
import os
import platform
import signal
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from importlib.metadata import PackageNotFoundError, version
from multiprocessing import Pool
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))  # run from a copy of the repository, effnetv2 not installed
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import lightning as L  # noqa: E402
import torch  # noqa: E402

# timm's defaults are no classifier dropout and no stochastic depth; ours (and the paper's) are 0.2 each.
TIMM_REGULARISATION = {"drop_rate": 0.2, "drop_path_rate": 0.2}
OVERALL_SECONDS = 270  # the whole check: within 5 minutes on the GPU machine with gpu_check.sh's install


@dataclass(frozen=True)
class Settings:
    """What one check measures, and how long each part may take (seconds)."""

    device: str
    model: str
    peer: str  # timm model name
    peer_kwargs: dict
    train_sizes: tuple[int, ...]
    batch: int  # training batch, synthetic and end-to-end alike
    eval_size: int
    eval_batch: int
    warmup_steps: int
    timed_steps: int
    images: int  # JPEGs generated for the end-to-end parts
    jpeg_size: int
    classes: int
    e2e_size: int
    workers: int
    progressive_images: int
    torch_threads: int | None
    ffcv: bool  # run the FFCV end-to-end part where ffcv imports
    budgets: dict = field(default_factory=dict)


GPU = Settings(
    device="cuda",
    model="v2_s",
    peer="efficientnetv2_s",
    peer_kwargs={},
    train_sizes=(128, 192, 256, 300),
    batch=128,
    eval_size=384,
    eval_batch=256,
    warmup_steps=5,
    timed_steps=15,
    images=20_000,
    jpeg_size=256,
    classes=100,
    e2e_size=128,
    workers=min(16, os.cpu_count() or 1),
    progressive_images=6_000,
    torch_threads=None,
    ffcv=True,
    budgets={
        "synthetic_train": 70,
        "synthetic_eval": 20,
        "jpeg_folder": 30,
        "end_to_end_torch": 80,
        "progressive": 60,
        "end_to_end_ffcv": 60,
    },
)
SMOKE = replace(
    GPU,
    device="cpu",
    model="v2_b0",
    peer="tf_efficientnetv2_b0",
    peer_kwargs={"pad_type": ""},  # timm's B0 exists only as a TF port; ours pads symmetrically
    train_sizes=(32, 64),
    batch=8,
    eval_size=64,
    eval_batch=8,
    warmup_steps=1,
    timed_steps=1,
    images=48,
    jpeg_size=64,
    classes=4,
    e2e_size=64,  # the progressive run's 3 stages: 32, 48 and 64 px
    workers=0,
    progressive_images=24,
    torch_threads=1,
    ffcv=False,  # compiling FFCV's pipeline alone takes a minute of CPU; tests/test_ffcv.py covers it
    budgets={name: 120 for name in GPU.budgets},
)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class EpochTimer(L.Callback):
    """Added to `src/train.py` runs through a Hydra override. Per train epoch: the seconds from its start
    to the end of its last batch (loading included, validation not), the device synchronised at both ends,
    the images and the image size of its batches; written to a JSON file after every epoch."""

    def __init__(self, path: str) -> None:
        self.path = Path(path)
        self.epochs: list[dict] = []
        self._start: float | None = None
        self._images, self._sizes = 0, set()

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        synchronize(pl_module.device)
        self._start, self._images, self._sizes = time.perf_counter(), 0, set()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self._images += batch[0].shape[0]
        self._sizes.add(int(batch[0].shape[-1]))

    def _stop(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._start is None:
            return
        synchronize(pl_module.device)
        seconds, self._start = time.perf_counter() - self._start, None
        self.epochs.append(
            {
                "epoch": trainer.current_epoch,
                "image_sizes": sorted(self._sizes),
                "images": self._images,
                "seconds": round(seconds, 3),
                "images_per_sec": round(self._images / seconds, 1),
            }
        )
        self.path.write_text(json.dumps(self.epochs, indent=1))

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.training:
            self._stop(trainer, pl_module)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._stop(trainer, pl_module)  # epochs without validation


# Synthetic data ------------------------------------------------------------------------------------------


def build_models(settings: Settings) -> dict[str, Callable[[], torch.nn.Module]]:
    import timm

    from effnetv2.models import create_model

    return {
        "ours": lambda: create_model(settings.model),
        "timm": lambda: timm.create_model(
            settings.peer, pretrained=False, **TIMM_REGULARISATION, **settings.peer_kwargs
        ),
    }


def train_rate(model: torch.nn.Module, settings: Settings, size: int, device: torch.device) -> float:
    """Images/s of full training steps on one synthetic batch, after warm-up steps."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    images = torch.randn(settings.batch, 3, size, size, device=device)
    images = images.contiguous(memory_format=torch.channels_last)
    targets = torch.randint(0, 1000, (settings.batch,), device=device)
    model.train()

    def step() -> None:
        with torch.autocast(device.type, dtype=torch.bfloat16):
            loss = torch.nn.functional.cross_entropy(model(images), targets)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    for _ in range(settings.warmup_steps):
        step()
    synchronize(device)
    start = time.perf_counter()
    for _ in range(settings.timed_steps):
        step()
    synchronize(device)
    return settings.batch * settings.timed_steps / (time.perf_counter() - start)


@torch.inference_mode()
def eval_rate(model: torch.nn.Module, settings: Settings, device: torch.device) -> float:
    """Images/s of eval forward passes at the eval size, after warm-up passes."""
    size = settings.eval_size
    images = torch.randn(settings.eval_batch, 3, size, size, device=device)
    images = images.contiguous(memory_format=torch.channels_last)
    model.eval()
    for step in range(settings.warmup_steps + settings.timed_steps):
        if step == settings.warmup_steps:
            synchronize(device)
            start = time.perf_counter()
        with torch.autocast(device.type, dtype=torch.bfloat16):
            model(images)
    synchronize(device)
    return settings.eval_batch * settings.timed_steps / (time.perf_counter() - start)


def synthetic_rows(
    settings: Settings, deadline: float, measure: Callable[[torch.nn.Module, int], float], sizes: tuple
) -> dict:
    """One row per size: ours and timm measured one after the other on the same machine, and their ratio.
    Sizes left when the part's time is up are recorded as skipped."""
    device = torch.device(settings.device)
    models = {
        name: build().to(device, memory_format=torch.channels_last)
        for name, build in build_models(settings).items()
    }
    rows = []
    for size in sizes:
        if time.monotonic() > deadline:
            rows.append({"size": size, "status": "skipped", "reason": "the part's time budget was spent"})
            continue
        row = {"size": size, "status": "ok"}
        for name, model in models.items():
            row[name] = round(measure(model, size), 1)
        row["ratio"] = round(row["ours"] / row["timm"], 3)
        rows.append(row)
    status = "ok" if all(r["status"] == "ok" for r in rows) else "partial"
    return {"status": status, "rows": rows}


def synthetic_train(settings: Settings, deadline: float, work: Path) -> dict:
    device = torch.device(settings.device)
    part = synthetic_rows(
        settings,
        deadline,
        lambda model, size: train_rate(model, settings, size, device),
        settings.train_sizes,
    )
    return {"batch": settings.batch, "precision": "bf16 autocast", "memory_format": "channels_last", **part}


def synthetic_eval(settings: Settings, deadline: float, work: Path) -> dict:
    device = torch.device(settings.device)
    part = synthetic_rows(
        settings, deadline, lambda model, size: eval_rate(model, settings, device), (settings.eval_size,)
    )
    return {
        "batch": settings.eval_batch,
        "precision": "bf16 autocast",
        "memory_format": "channels_last",
        **part,
    }


# A generated JPEG folder ---------------------------------------------------------------------------------


def write_images(task: tuple[Path, int, int, int]) -> int:
    """Writes one class's JPEGs: smooth random colour fields with noise, so that they compress (and
    decode) like photographs rather than like flat colour or pure noise."""
    import cv2
    import numpy as np

    folder, first, count, size = task
    rng = np.random.default_rng(first)
    folder.mkdir(parents=True, exist_ok=True)
    for index in range(first, first + count):
        coarse = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
        image = cv2.resize(coarse, (size, size), interpolation=cv2.INTER_CUBIC)
        image = np.clip(image + rng.normal(0, 12, image.shape), 0, 255).astype(np.uint8)
        cv2.imwrite(str(folder / f"{index:06d}.jpg"), image, [cv2.IMWRITE_JPEG_QUALITY, 90])
    return count


def jpeg_folder_path(settings: Settings, work: Path) -> Path:
    return work / f"jpeg_{settings.images}x{settings.jpeg_size}px_{settings.classes}classes"


def jpeg_folder(settings: Settings, deadline: float, work: Path) -> dict:
    """root/train/<class>/NNNNNN.jpg, written once (workers in parallel) and reused by later checks."""
    root = jpeg_folder_path(settings, work)
    done = root / "complete"
    if not done.is_file():
        per_class = settings.images // settings.classes
        tasks = [
            (root / "train" / f"class_{c:03d}", c * per_class, per_class, settings.jpeg_size)
            for c in range(settings.classes)
        ]
        with Pool(max(1, settings.workers)) as pool:
            pool.map(write_images, tasks)
        done.write_text("")
    files = list((root / "train").glob("*/*.jpg"))
    return {
        "status": "ok",
        "path": str(root),
        "images": len(files),
        "image_size": settings.jpeg_size,
        "classes": settings.classes,
        "megabytes": round(sum(f.stat().st_size for f in files) / 2**20, 1),
    }


# src/train.py runs ---------------------------------------------------------------------------------------


def train_overrides(settings: Settings, work: Path, run_dir: Path) -> list[str]:
    """What every `src/train.py` run of the check shares: the generated folder, V2-S (B0 in --smoke),
    RandAugment at magnitude 10, the CSV logger and the default callbacks plus the epoch timer."""
    overrides = [
        f"model={settings.model}",
        "data=image_folder",
        f"data.root={jpeg_folder_path(settings, work)}",
        f"data.image_size={settings.e2e_size}",
        f"data.eval_size={settings.e2e_size}",
        f"data.batch_size={settings.batch}",
        f"data.num_workers={settings.workers}",
        "data.randaug_magnitude=10",
        f"data.beton_dir={work / 'betons'}",
        "trainer.limit_val_batches=2",
        "test=false",
        "logger=csv",
        f"hydra.run.dir={run_dir}",
        "+callbacks.gpu_check_timer._target_=gpu_check.EpochTimer",
        f"+callbacks.gpu_check_timer.path={run_dir / 'epoch_times.json'}",
    ]
    if settings.device == "cuda":
        overrides += ["trainer=gpu", "trainer.precision=bf16-mixed"]
    else:
        overrides += ["trainer=cpu"]
    if settings.torch_threads is not None:
        overrides.append(f"torch_threads={settings.torch_threads}")
    return overrides


def run_train(extra: list[str], settings: Settings, work: Path, name: str, deadline: float) -> dict:
    """One `src/train.py` run in its own process group (a timeout ends its loader workers too). Returns
    the epoch timer's records, what the run logged per epoch, and how the run ended."""
    run_dir = work / "runs" / name
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "epoch_times.json").unlink(missing_ok=True)
    command = [sys.executable, "src/train.py", *train_overrides(settings, work, run_dir), *extra]
    env = {
        **os.environ,
        "NO_ALBUMENTATIONS_UPDATE": "1",
        "WANDB_MODE": "disabled",
        "PYTHONPATH": os.pathsep.join(
            [str(ROOT / "src"), str(ROOT / "benchmarks"), os.environ.get("PYTHONPATH", "")]
        ),
    }
    log = run_dir / "stdout.log"
    start = time.perf_counter()
    with log.open("w") as out:
        process = subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            code = process.wait(timeout=max(1.0, deadline - time.monotonic()))
            status = "ok" if code == 0 else "failed"
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            status, code = "timed out", None
    timer = run_dir / "epoch_times.json"
    result = {
        "status": status,
        "exit_code": code,
        "wall_seconds": round(time.perf_counter() - start, 1),
        "command": "python src/train.py " + " ".join(command[2:]),
        "log": str(log),
        "epochs": json.loads(timer.read_text()) if timer.is_file() else [],
        "logged_image_sizes": logged_image_sizes(run_dir / "csv" / "metrics.csv"),
    }
    if status != "ok":
        result["log_tail"] = log.read_text(errors="replace")[-2000:]
    return result


def logged_image_sizes(metrics: Path) -> dict[int, int]:
    """`train/image_size` per epoch from the run's CSV metrics."""
    sizes: dict[int, int] = {}
    if metrics.is_file():
        with metrics.open() as file:
            for row in csv.DictReader(file):
                if row.get("train/image_size"):
                    sizes[int(row["epoch"])] = int(float(row["train/image_size"]))
    return sizes


def end_to_end_overrides(loader: str, settings: Settings) -> list[str]:
    overrides = [f"data.loader={loader}", "schedule=fixed", "trainer.max_epochs=2"]
    if settings.device == "cpu":
        overrides.append("trainer.limit_train_batches=2")
    return overrides


def progressive_overrides(settings: Settings) -> list[str]:
    return [
        "data.loader=torch",
        "schedule=progressive",
        "schedule.num_stages=3",
        "trainer.max_epochs=3",
        f"data.subset={settings.progressive_images}",
    ]


def end_to_end(loader: str, settings: Settings, deadline: float, work: Path, synthetic: dict) -> dict:
    """train.py at the end-to-end size for 2 epochs: the second epoch's images/s (loader warmed up, kernels
    chosen) over the synthetic training rate of the same model, size and batch."""
    if loader == "ffcv" and not settings.ffcv:
        return {
            "status": "skipped",
            "reason": "not in --smoke (FFCV's pipeline compiles for a minute on a CPU)",
        }
    if loader == "ffcv" and importlib.util.find_spec("ffcv") is None:
        return {"status": "skipped", "reason": "ffcv is not installed on this machine"}
    result = run_train(
        end_to_end_overrides(loader, settings), settings, work, f"end_to_end_{loader}", deadline
    )
    timed = [e for e in result["epochs"] if e["epoch"] >= 1]
    if result["status"] == "ok" and not timed:
        result["status"], result["reason"] = "failed", "no second epoch was timed"
    if timed:
        result["images_per_sec"] = timed[-1]["images_per_sec"]
        rows = {r["size"]: r for r in synthetic.get("rows", []) if r.get("status") == "ok"}
        if settings.e2e_size in rows:
            result["synthetic_images_per_sec"] = rows[settings.e2e_size]["ours"]
            result["fraction_of_synthetic"] = round(
                result["images_per_sec"] / rows[settings.e2e_size]["ours"], 3
            )
    return {"loader": loader, "image_size": settings.e2e_size, "batch": settings.batch, **result}


def progressive(settings: Settings, deadline: float, work: Path) -> dict:
    """A 3-stage progressive run, one epoch per stage: the sizes its batches had, epoch by epoch."""
    result = run_train(progressive_overrides(settings), settings, work, "progressive", deadline)
    sizes = [e["image_sizes"] for e in result["epochs"]]
    result["sizes_per_epoch"] = sizes
    if result["status"] == "ok" and len({tuple(s) for s in sizes}) != 3:
        result["status"], result["reason"] = "failed", f"expected 3 distinct sizes, saw {sizes}"
    return result


# The check -----------------------------------------------------------------------------------------------


def run_part(name: str, function: Callable[[float], dict], settings: Settings, overall: float) -> dict:
    """A part within its budget (and what is left of the whole check's): a failure is recorded, not raised."""
    start = time.monotonic()
    deadline = min(start + settings.budgets[name], overall)
    if start >= overall:
        return {"status": "skipped", "reason": "the check's overall time budget was spent"}
    print(f"[gpu_check] {name} (budget {deadline - start:.0f} s)", flush=True)
    try:
        result = function(deadline)
    except Exception as error:  # noqa: BLE001 - one part's failure must not end the others
        result = {
            "status": "failed",
            "error": f"{type(error).__name__}: {error}",
            "traceback": traceback.format_exc()[-2000:],
        }
    result["seconds"] = round(time.monotonic() - start, 1)
    print(f"[gpu_check] {name}: {result['status']} in {result['seconds']} s", flush=True)
    return result


def machine(settings: Settings) -> dict:
    info = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "timm": installed_version("timm"),
        "lightning": L.__version__,
        "cpu_count": os.cpu_count(),
        "device": settings.device,
    }
    if settings.device == "cuda":
        info["gpu"] = torch.cuda.get_device_name(0)
        info["compute_capability"] = ".".join(map(str, torch.cuda.get_device_capability(0)))
        info["cuda"] = torch.version.cuda
    return info


def installed_version(distribution: str) -> str:
    try:
        return version(distribution)
    except PackageNotFoundError:
        return "not installed"


def run_check(settings: Settings, work: Path) -> dict:
    """Every part in order, each within its budget and all within OVERALL_SECONDS."""
    start = time.monotonic()
    overall = start + OVERALL_SECONDS
    if settings.device == "cuda":
        torch.backends.cudnn.benchmark = True  # as trainer=gpu
    if settings.torch_threads is not None:
        torch.set_num_threads(settings.torch_threads)
    work.mkdir(parents=True, exist_ok=True)
    parts: dict[str, dict] = {}
    # The images first: their writer processes fork before this process has started CUDA.
    parts["jpeg_folder"] = run_part(
        "jpeg_folder", lambda d: jpeg_folder(settings, d, work), settings, overall
    )
    parts["synthetic_train"] = run_part(
        "synthetic_train", lambda d: synthetic_train(settings, d, work), settings, overall
    )
    parts["synthetic_eval"] = run_part(
        "synthetic_eval", lambda d: synthetic_eval(settings, d, work), settings, overall
    )
    if settings.device == "cuda":
        torch.cuda.empty_cache()  # the train.py runs share the GPU with this process
    runs = {
        "end_to_end_torch": lambda d: end_to_end("torch", settings, d, work, parts["synthetic_train"]),
        "progressive": lambda d: progressive(settings, d, work),
        "end_to_end_ffcv": lambda d: end_to_end("ffcv", settings, d, work, parts["synthetic_train"]),
    }
    for name, function in runs.items():
        if parts["jpeg_folder"]["status"] != "ok":
            parts[name] = {"status": "skipped", "reason": "no JPEG folder (see jpeg_folder)"}
        else:
            parts[name] = run_part(name, function, settings, overall)
    return {
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "smoke": settings.device == "cpu",
        "machine": machine(settings),
        "settings": asdict(settings),
        "parts": parts,
        "total_seconds": round(time.monotonic() - start, 1),
    }


# The table -----------------------------------------------------------------------------------------------


def status_note(part: dict) -> str:
    reason = part.get("reason") or part.get("error") or ""
    return f"{part['status']}" + (f": {reason}" if reason else "")


def table(result: dict) -> str:
    """The markdown the docs quote: every figure from the JSON of the same run."""
    parts, settings, info = result["parts"], result["settings"], result["machine"]
    lines = [
        f"GPU check on {info.get('gpu', 'CPU (smoke run: plumbing only, figures meaningless)')}, "
        f"{info['cpu_count']} CPU cores, torch {info['torch']}, timm {info['timm']}; "
        f"{result['total_seconds']:.0f} s in all ({result['created']}).",
        "",
    ]
    for name in ("synthetic_train", "synthetic_eval"):
        part = parts[name]
        mode = "training" if name == "synthetic_train" else "eval"
        lines.append(
            f"**Synthetic {mode}** ({settings['model']} vs timm `{settings['peer']}`, "
            f"batch {part.get('batch')}, bf16 autocast, channels_last): {status_note(part)}"
        )
        lines += ["", "| size | ours img/s | timm img/s | ours / timm |", "|---|---|---|---|"]
        for row in part.get("rows", []):
            if row["status"] == "ok":
                lines.append(
                    f"| {row['size']} px | {row['ours']:.0f} | {row['timm']:.0f} | {row['ratio']:.2f} |"
                )
            else:
                lines.append(f"| {row['size']} px | {row['status']} | | |")
        lines.append("")
    folder = parts["jpeg_folder"]
    lines.append(
        f"**End to end** (`src/train.py`, data=image_folder: {folder.get('images', '?')} generated "
        f"{folder.get('image_size', '?')} px JPEGs, {settings['e2e_size']} px, RandAugment magnitude 10, "
        f"batch {settings['batch']}, {settings['workers']} loader workers; the second epoch timed):"
    )
    lines += ["", "| loader | img/s | synthetic img/s | fraction | status |", "|---|---|---|---|---|"]
    for loader in ("torch", "ffcv"):
        part = parts[f"end_to_end_{loader}"]
        cells = [
            f"{part['images_per_sec']:.0f}" if "images_per_sec" in part else "-",
            f"{part['synthetic_images_per_sec']:.0f}" if "synthetic_images_per_sec" in part else "-",
            f"{part['fraction_of_synthetic']:.2f}" if "fraction_of_synthetic" in part else "-",
        ]
        lines.append(f"| {loader} | " + " | ".join(cells) + f" | {status_note(part)} |")
    part = parts["progressive"]
    lines += ["", f"**Progressive run** (3 stages, one epoch each): {status_note(part)}", ""]
    lines += ["| epoch | batch sizes (px) | logged train/image_size | img/s |", "|---|---|---|---|"]
    logged = {int(k): v for k, v in part.get("logged_image_sizes", {}).items()}
    for epoch in part.get("epochs", []):
        sizes = ", ".join(map(str, epoch["image_sizes"]))
        rate = f"{epoch['images_per_sec']:.0f}"
        lines.append(f"| {epoch['epoch']} | {sizes} | {logged.get(epoch['epoch'], '-')} | {rate} |")
    return "\n".join(lines) + "\n"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--smoke", action="store_true", help="the same code, tiny, on the CPU")
    parser.add_argument(
        "--out", type=Path, default=ROOT / "benchmarks", help="folder of gpu_check.json and .md"
    )
    parser.add_argument("--work", type=Path, default=None, help="generated images and run folders")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    if not args.smoke and not torch.cuda.is_available():
        sys.exit("gpu_check: no CUDA device here; `--smoke` runs the same code tiny on the CPU")
    settings = SMOKE if args.smoke else GPU
    work = args.work or ROOT / "outputs" / ("gpu_check_smoke" if args.smoke else "gpu_check")
    result = run_check(settings, work)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "gpu_check.json").write_text(json.dumps(result, indent=1) + "\n")
    (args.out / "gpu_check.md").write_text(table(result))
    print(table(result))


if __name__ == "__main__":
    main()
