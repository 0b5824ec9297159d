"""Memory and connections under hostile load, against a real `glimpse serve` (default settings).

Bursts of concurrent worst-case valid images (the most pixels allowed in the fewest bytes: half
flat PNGs, half flat progressive JPEGs), then trickling uploads (a 5 MB body declared, sent at
~640 B/s). Meanwhile one client keeps posting an ordinary picture and times it. For each: the
server's peak RSS, its RSS `--settle` seconds later against its warm idle level, served and
refused counts, and the ordinary requests' latency.

    python -m benchmarks.memory [--bursts 8 32 128] [--trickles 200]

Writes benchmarks/results/memory.json. Goals: peak RSS under 2 GB, no 5xx but 503 busy,
settled RSS within 10% of warm idle, ordinary p99 under 1 s, every trickle closed with 408.
"""

import argparse
import asyncio
import io
import math
import sys
import threading
import time
from collections import Counter
from functools import partial
from pathlib import Path

import httpx
import numpy as np
from PIL import Image

from benchmarks.common import RESULTS, proc_kib, shapes_images, table, write_result
from benchmarks.local_server import HOST, local_server
from service.settings import PRETRAINED_DIR, Settings

GOALS = {"peak_rss_mb": 2048, "settled_over_idle": 0.10, "normal_p99_s": 1.0}
TRICKLE_DECLARED = 5_000_000
TRICKLE_CHUNK, TRICKLE_EVERY_S = 64, 0.1  # 640 B/s
TRICKLE_GIVE_UP_S = 120.0
TRICKLE_HEAD = (
    "POST /v1/captions HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=b\r\n"
    f"Content-Length: {TRICKLE_DECLARED}\r\n\r\n--b\r\n"
    'Content-Disposition: form-data; name="image"; filename="a.png"\r\n\r\n'
).encode()


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--bursts", type=int, nargs="+", default=[8, 32, 128])
    parser.add_argument("--trickles", type=int, default=200)
    parser.add_argument("--settle", type=float, default=10.0, help="seconds before settled RSS")
    parser.add_argument("--side", type=int, default=0, help="worst-case side (0: the limit's)")
    parser.add_argument("--body-timeout", type=float, default=0, help="server's (0: default)")
    parser.add_argument("--caption-model", type=Path, default=PRETRAINED_DIR / "captioner")
    parser.add_argument("--vqa-model", type=Path, default=PRETRAINED_DIR / "vqa")
    parser.add_argument("--out", type=Path, default=RESULTS)
    return parser.parse_args(argv)


def worst_cases(side: int) -> list[bytes]:
    """A flat PNG and a flat progressive JPEG of side x side: KBs sent, side^2 x 4 B decoded."""
    flat = Image.new("RGB", (side, side), (40, 160, 90))
    encoded = []
    for fmt, options in (("PNG", {}), ("JPEG", {"progressive": True, "quality": 90})):
        buffer = io.BytesIO()
        flat.save(buffer, fmt, **options)
        encoded.append(buffer.getvalue())
    return encoded


def rss_mb(pid: int) -> float:
    return (proc_kib("VmRSS", f"/proc/{pid}/status") or 0) / 1024


class Sampler:
    """The server's RSS every 50 ms while running (the peak between samples is VmHWM's)."""

    def __init__(self, pid: int) -> None:
        self.pid, self.peak = pid, 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run)

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            self.peak = max(self.peak, rss_mb(self.pid))

    def __enter__(self) -> "Sampler":
        Path(f"/proc/{self.pid}/clear_refs").write_text("5")  # restart VmHWM
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, (proc_kib("VmHWM", f"/proc/{self.pid}/status") or 0) / 1024)


class Normal:
    """One client posting an ordinary picture back to back, timing each answer."""

    def __init__(self, url: str, png: bytes) -> None:
        self.url, self.png = url, png
        self.seconds: list[float] = []
        self.statuses: Counter[int] = Counter()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run)

    def _run(self) -> None:
        with httpx.Client(base_url=self.url, timeout=60) as client:
            while not self._stop.is_set():
                started = time.perf_counter()
                response = client.post("/v1/captions", files={"image": ("n.png", self.png)})
                self.seconds.append(time.perf_counter() - started)
                self.statuses[response.status_code] += 1
                self._stop.wait(0.1)

    def __enter__(self) -> "Normal":
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()

    def report(self) -> dict:
        seconds = self.seconds or [math.nan]
        return {
            "requests": len(self.seconds),
            "statuses": {str(s): n for s, n in sorted(self.statuses.items())},
            "p50_s": round(float(np.percentile(seconds, 50)), 3),
            "p99_s": round(float(np.percentile(seconds, 99)), 3),
        }


async def burst(url: str, images: list[bytes]) -> list[int]:
    """Every image posted at once, each on its own connection, from one thread (client threads
    would take the 2 cores' time from the server)."""
    limits = httpx.Limits(max_connections=len(images), max_keepalive_connections=0)
    async with httpx.AsyncClient(base_url=url, timeout=120, limits=limits) as client:

        async def post(data: bytes) -> int:
            try:
                response = await client.post("/v1/captions", files={"image": ("w", data)})
            except httpx.TransportError:
                return 0  # counted as a failure: the server dropped it
            return response.status_code

        return await asyncio.gather(*(post(data) for data in images))


async def trickle(port: int) -> tuple[int, float]:
    """One slow upload of an image part; returns the status the server answered (0: none)
    and when it closed the connection."""
    started = time.monotonic()
    reader, writer = await asyncio.open_connection(HOST, port)
    writer.write(TRICKLE_HEAD)
    answer = b""
    reading = asyncio.ensure_future(reader.read(65536))
    while time.monotonic() - started < TRICKLE_GIVE_UP_S:
        if reading.done():
            chunk = b"" if reading.exception() else reading.result()
            if not chunk:
                break  # closed (or reset) by the server
            answer += chunk
            reading = asyncio.ensure_future(reader.read(65536))
            continue
        try:
            writer.write(b"x" * TRICKLE_CHUNK)
            await writer.drain()
        except ConnectionError:
            break
        await asyncio.wait([reading], timeout=TRICKLE_EVERY_S)
    reading.cancel()
    writer.close()
    status = int(answer.split()[1]) if answer.startswith(b"HTTP/1.1 ") else 0
    return status, time.monotonic() - started


async def trickles(port: int, count: int) -> list[tuple[int, float]]:
    return await asyncio.gather(*(trickle(port) for _ in range(count)))


def phase(server, normal_png: bytes, settle: float, idle: float, load) -> dict:
    """Run `load()` (its statuses) with the normal client and the sampler on, then settle."""
    with Sampler(server.pid) as sampler, Normal(server.url, normal_png) as normal:
        started = time.monotonic()
        statuses = Counter(load())
        wall = time.monotonic() - started
    time.sleep(settle)
    settled = rss_mb(server.pid)
    return {
        "statuses": {str(s): n for s, n in sorted(statuses.items())},
        "failures": sum(n for s, n in statuses.items() if s not in (200, 408, 413, 503)),
        "seconds": round(wall, 1),
        "peak_rss_mb": round(sampler.peak, 1),
        "settled_rss_mb": round(settled, 1),
        "settled_over_idle": round(settled / idle - 1, 4),
        "normal": normal.report(),
    }


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    side = args.side or math.isqrt(Settings().max_image_pixels)
    worst = worst_cases(side)
    normal_png = io.BytesIO()
    shapes_images(1)[0].save(normal_png, "PNG")
    settings: dict[str, object] = {"caption_model": args.caption_model, "vqa_model": args.vqa_model}
    if args.body_timeout:
        settings["body_timeout_s"] = args.body_timeout
    rows = []
    with local_server(settings) as server:
        asyncio.run(burst(server.url, [normal_png.getvalue()] * 8))  # warm up
        time.sleep(2.0)
        idle = rss_mb(server.pid)
        for size in args.bursts:
            images = [worst[i % len(worst)] for i in range(size)]
            load = partial(asyncio.run, burst(server.url, images))
            result = phase(server, normal_png.getvalue(), args.settle, idle, load)
            rows.append({"load": f"burst of {size}", **result})
        port = int(server.url.rsplit(":", 1)[1])
        closed: list[float] = []

        def slow() -> list[int]:
            done = asyncio.run(trickles(port, args.trickles))
            closed.extend(seconds for _, seconds in done)
            return [status for status, _ in done]

        result = phase(server, normal_png.getvalue(), args.settle, idle, slow)
        result["closed_after_s"] = [round(min(closed), 1), round(max(closed), 1)]
        rows.append({"load": f"{args.trickles} trickling uploads", **result})
    report = {
        "worst_case": {"side": side, "bytes": {"png": len(worst[0]), "jpeg": len(worst[1])}},
        "warm_idle_rss_mb": round(idle, 1),
        "goals": GOALS,
        "phases": rows,
        "passed": all(passed(row) for row in rows),
    }
    print(table(rows, ["load", "statuses", "peak_rss_mb", "settled_over_idle", "seconds"]))
    print(f"results: {write_result(args.out, 'memory', report)}")
    return report


def passed(row: dict) -> bool:
    return (
        row["failures"] == 0
        and row["peak_rss_mb"] < GOALS["peak_rss_mb"]
        and row["settled_over_idle"] <= GOALS["settled_over_idle"]
        and row["normal"]["p99_s"] < GOALS["normal_p99_s"]
        and set(row["normal"]["statuses"]) == {"200"}
        and ("trickling" not in row["load"] or set(row["statuses"]) == {"408"})
    )


if __name__ == "__main__":
    sys.exit(0 if main()["passed"] else 1)
