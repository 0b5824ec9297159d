"""Shared by the speed benchmarks: machine facts, repeated timing, tables and result files.

This machine is shared (2 cores, other jobs running), so one timing means little: every
figure is the median of several repeats with its spread, and comparisons are ratios of
runs made side by side in the same process.
"""

import datetime
import json
import os
import platform
import resource
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch

from service.settings import Settings

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
    """A plain fixed-width table; floats get 3 significant decimals."""

    def cell(value: object) -> str:
        return f"{value:.3g}" if isinstance(value, float) else str(value)

    cells = [[cell(row.get(c, "")) for c in columns] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)) for r in cells]
    return "\n".join(lines)


def write_result(out: Path, name: str, result: dict) -> Path:
    """benchmarks/results/NAME.json (or `out`/NAME.json), with the machine facts added."""
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{name}.json"
    path.write_text(json.dumps({"machine": machine(), **result}, indent=2) + "\n")
    return path


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
    return Settings().caption_model


def reset_peak_rss() -> None:
    """Restart the kernel's peak-RSS counter (VmHWM), so each model's peak is its own."""
    Path("/proc/self/clear_refs").write_text("5")


def current_peak_rss_mb() -> float:
    """VmHWM of this process since the last `reset_peak_rss`."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return peak_rss_mb()
