"""Soak test: many clients against one `glimpse serve` process; does its memory keep growing?

A leak that costs a few kilobytes per request is invisible in unit tests and fatal after a
week. This runs a real server as a child process on 127.0.0.1, keeps `--clients` clients
posting captions for `--seconds` (or `--max-requests`), samples the server's resident memory
once a second, and compares the end of the run with the end of the warm-up (allocator
pools, thread stacks and lazily built kernels fill during warm-up and are not leaks).
The only acceptable failures are deliberate 503s (queue full); anything else is counted.

    python -m benchmarks.soak --seconds 300 --clients 32 --out benchmarks/results/soak.json
"""

import argparse
import io
import json
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import httpx
import numpy as np
from PIL import Image

from benchmarks.common import proc_kib, repo_path, write_json
from benchmarks.local_server import local_server
from service.settings import PRETRAINED_DIR

MAX_GROWTH = 0.10


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=300.0, help="length of the run")
    parser.add_argument("--clients", type=int, default=32, help="concurrent clients")
    parser.add_argument("--max-requests", type=int, default=1_000_000, help="stop after these")
    parser.add_argument("--warmup", type=float, default=0.2, help="fraction of the run")
    parser.add_argument("--caption-model", type=Path, default=PRETRAINED_DIR / "captioner")
    parser.add_argument("--vqa-model", type=Path, default=PRETRAINED_DIR / "vqa")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/soak.json"))
    return parser.parse_args(argv)


def rss_bytes(pid: int) -> int:
    """Resident memory of `pid`, from /proc (Linux)."""
    kib = proc_kib("VmRSS", f"/proc/{pid}/status")
    if kib is None:
        raise RuntimeError(f"no VmRSS for process {pid}")
    return kib * 1024


def test_images(count: int = 8) -> list[bytes]:
    """Different pictures, so that no cache can make later requests cheaper."""
    images = []
    for seed in range(count):
        pixels = np.random.default_rng(seed).integers(0, 255, (96, 128, 3), np.uint8)  # (H, W, 3)
        buffer = io.BytesIO()
        Image.fromarray(pixels).save(buffer, format="PNG")
        images.append(buffer.getvalue())
    return images


class Load:
    """The clients' shared tally; each client stops at the deadline or the request budget."""

    def __init__(self, url: str, deadline: float, max_requests: int) -> None:
        self.url, self.deadline, self.budget = url, deadline, max_requests
        self.statuses: Counter[str] = Counter()
        self.lock = threading.Lock()

    def take(self) -> bool:
        with self.lock:
            if time.monotonic() >= self.deadline or self.budget <= 0:
                return False
            self.budget -= 1
            return True

    def client(self, number: int, images: list[bytes]) -> None:
        with httpx.Client(base_url=self.url, timeout=60.0) as client:
            sent = 0
            while self.take():
                image = images[(number + sent) % len(images)]
                sent += 1
                try:
                    response = client.post(
                        "/v1/captions",
                        files={"image": ("soak.png", image, "image/png")},
                        data={"beam_size": "2", "max_length": "12"},
                    )
                    status = str(response.status_code)
                except httpx.TransportError as exc:
                    status = type(exc).__name__
                with self.lock:
                    self.statuses[status] += 1


def sample_memory(pid: int, stop: threading.Event, samples: list[tuple[float, int]]) -> None:
    started = time.monotonic()
    while not stop.is_set():
        samples.append((round(time.monotonic() - started, 2), rss_bytes(pid)))
        stop.wait(1.0)


def summarize(
    args: argparse.Namespace, statuses: Counter[str], samples: list[tuple[float, int]], wall: float
) -> dict:
    """Growth compares the median RSS of the last tenth of the run with the warm-up's end."""
    warm_end = args.seconds * args.warmup
    after_warmup = [rss for t, rss in samples if t >= warm_end] or [samples[-1][1]]
    warm_rss = after_warmup[0]
    tail = after_warmup[-max(1, len(after_warmup) // 10) :]
    final_rss = int(np.median(tail))
    growth = (final_rss - warm_rss) / warm_rss
    errors = {s: n for s, n in statuses.items() if s not in {"200", "503"}}
    requests = sum(statuses.values())
    return {
        "seconds": round(wall, 1),
        "clients": args.clients,
        "requests": requests,
        "requests_per_second": round(requests / wall, 2),
        "statuses": dict(sorted(statuses.items())),
        "errors": errors,
        "warmup_seconds": round(warm_end, 1),
        "rss_mb": {
            "start": round(samples[0][1] / 2**20, 1),
            "after_warmup": round(warm_rss / 2**20, 1),
            "final": round(final_rss / 2**20, 1),
            "max": round(max(rss for _, rss in samples) / 2**20, 1),
        },
        "rss_growth_after_warmup": round(growth, 4),
        "max_growth": MAX_GROWTH,
        "passed": growth < MAX_GROWTH and not errors,
        "rss_samples": [[t, round(rss / 2**20, 1)] for t, rss in samples],
    }


def main(argv: list[str] | None = None) -> dict:
    """Run the soak and write `--out`; returns the report (its `passed` says whether it held)."""
    args = parse_args(argv)
    settings = {"caption_model": args.caption_model, "vqa_model": args.vqa_model}
    with local_server(settings) as server:
        images = test_images()
        load = Load(server.url, time.monotonic() + args.seconds, args.max_requests)
        samples: list[tuple[float, int]] = []
        stop = threading.Event()
        sampler = threading.Thread(target=sample_memory, args=(server.pid, stop, samples))
        clients = [
            threading.Thread(target=load.client, args=(n, images)) for n in range(args.clients)
        ]
        started = time.monotonic()
        sampler.start()
        for thread in clients:
            thread.start()
        for thread in clients:
            thread.join()
        wall = time.monotonic() - started
        stop.set()
        sampler.join()
    models = [repo_path(args.caption_model), repo_path(args.vqa_model)]
    report = {"models": models, **summarize(args, load.statuses, samples, wall)}
    write_json(args.out, report)
    print(json.dumps({k: v for k, v in report.items() if k != "rss_samples"}, indent=2))
    return report


if __name__ == "__main__":
    sys.exit(0 if main()["passed"] else 1)
