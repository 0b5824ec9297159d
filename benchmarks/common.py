"""Shared by the speed benchmarks: machine facts, /proc memory figures, repeated timing,
tables and result files.

This machine is shared (2 cores, other jobs running), so one timing means little: every
figure is the median of several repeats with its spread, and comparisons are ratios of
runs made side by side in the same process.
"""

import argparse
import datetime
import json
import os
import platform
import resource
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:  # the service is imported where used: the GPU benchmarks run without it
    from service.engine import Engine


RESULTS = Path(__file__).resolve().parent / "results"


def machine() -> dict:
    """What the figures were measured on, including how busy the machine was."""
    return {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "shared": True,
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    }


def timed(run: Callable[[], object], repeats: int, warmup: int = 1) -> dict:
    """Seconds per call of `run`: median, min, max and relative spread over `repeats`."""
    for _ in range(warmup):
        run()
    seconds = []
    for _ in range(repeats):
        started = time.perf_counter()
        run()
        seconds.append(time.perf_counter() - started)
    median = statistics.median(seconds)
    return {
        "median_s": median,
        "min_s": min(seconds),
        "max_s": max(seconds),
        "spread": (max(seconds) - min(seconds)) / median if median else 0.0,
        "repeats": repeats,
    }


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def table(rows: list[dict], columns: list[str]) -> str:
    """A plain fixed-width table; floats get 3 significant digits, whole ones from 1,000 up."""

    def cell(value: object) -> str:
        if not isinstance(value, float):
            return str(value)
        return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.3g}"

    cells = [[cell(row.get(c, "")) for c in columns] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)) for r in cells]
    return "\n".join(lines)


def repo_path(path: Path) -> str:
    """How a result file names a model or data path: relative to the repository, never a
    machine's absolute path; a path outside it by its last part only."""
    root, full = RESULTS.parent.parent, path.resolve()
    return str(full.relative_to(root)) if full.is_relative_to(root) else path.name


def write_json(path: Path, document: dict) -> Path:
    """`document` as indented JSON at `path`, its folder made if needed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=2) + "\n")
    return path


def write_result(out: Path, name: str, result: dict) -> Path:
    """benchmarks/results/NAME.json (or `out`/NAME.json), with the machine facts added."""
    return write_json(out / f"{name}.json", {"machine": machine(), **result})


def shapes_images(count: int, seed: int = 7) -> list:
    """`count` shapes-world pictures, made in a temporary folder and loaded into memory, so
    that every benchmark sees the same kind of input the models were built for."""
    import tempfile

    from PIL import Image

    from training.data.shapes import generate

    with tempfile.TemporaryDirectory() as tmp:
        generate(Path(tmp), {"test": count}, seed=seed, workers=1, progress=False)
        paths = sorted(Path(tmp).rglob("*.png")) + sorted(Path(tmp).rglob("*.jpg"))
        images = []
        for path in paths[:count]:
            with Image.open(path) as image:
                images.append(image.convert("RGB"))
    if len(images) != count:
        raise RuntimeError(f"asked for {count} shapes images, made {len(images)}")
    return images


def default_captioner() -> Path:
    """The bundled captioner: trained, so its captions have realistic lengths."""
    from service.settings import Settings

    return Settings().caption_model


def captioner_parser(doc: str, batches: list[int], repeats: int) -> argparse.ArgumentParser:
    """The options of a benchmark timing one captioner over batch sizes: --model, --batches,
    --repeats and --out; the benchmark adds its own."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--model", type=Path, default=default_captioner(), help="captioner dir")
    parser.add_argument("--batches", type=int, nargs="+", default=batches)
    parser.add_argument("--repeats", type=int, default=repeats)
    parser.add_argument("--out", type=Path, default=RESULTS, help="where results are written")
    return parser


def captioner_engine(model: Path) -> "Engine":
    """An engine of the captioner at `model` alone, torch's seed set first so runs repeat."""
    from service.engine import Engine

    torch.manual_seed(0)
    return Engine.from_dirs(model, None)


def proc_field(name: str, file: str = "/proc/self/status") -> str | None:
    """The value of the `name:` line of a /proc file (Linux), or None where there is none."""
    try:
        lines = Path(file).read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        key, _, value = line.partition(":")
        if key.strip() == name:
            return value.strip()
    return None


def proc_kib(name: str, file: str = "/proc/self/status") -> int | None:
    """A /proc memory figure (`VmRSS`, `VmHWM`, `MemTotal`...) in KiB, or None."""
    value = proc_field(name, file)
    return int(value.split()[0]) if value else None


def reset_peak_rss() -> bool:
    """Restart the kernel's peak-RSS counter (VmHWM), so each model's or step's peak is its
    own; False where it cannot (before Linux 4.0: the peak is then the process's so far)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def current_peak_rss_mb() -> float:
    """VmHWM of this process since the last `reset_peak_rss`."""
    kib = proc_kib("VmHWM")
    return kib / 1024 if kib is not None else peak_rss_mb()
