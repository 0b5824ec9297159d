"""Serving under load: a bounded async load generator (127.0.0.1 only) against `glimpse serve`
at 1, 8, 32 and 64 concurrent clients, compared with the same model's offline batched
throughput measured in this process just before.

    python -m benchmarks.server [--model DIR] [--clients 1 8 32 64] [--seconds 15]

Writes benchmarks/results/server.json: throughput, p50/p95/p99 latency, errors (503 busy
answers counted apart), the mean batch size from /metrics, the server's peak RSS.
"""

import argparse
import asyncio
import io
import statistics
import time
from pathlib import Path

import httpx

from benchmarks.common import (
    RESULTS,
    default_captioner,
    proc_kib,
    repo_path,
    shapes_images,
    table,
    timed,
    write_result,
)
from benchmarks.local_server import local_server
from service.engine import Engine


def peak_rss_mb(pid: int) -> float:
    kib = proc_kib("VmHWM", f"/proc/{pid}/status")
    return kib / 1024 if kib is not None else float("nan")


def batch_stats(url: str) -> tuple[float, float]:
    """Sum and count of the caption batch-size histogram, from /metrics."""
    text = httpx.get(f"{url}/metrics", timeout=5).text
    total = count = 0.0
    for line in text.splitlines():
        if line.startswith("glimpse_batch_size_sum") and 'task="caption"' in line:
            total = float(line.split()[-1])
        if line.startswith("glimpse_batch_size_count") and 'task="caption"' in line:
            count = float(line.split()[-1])
    return total, count


async def load(url: str, png: bytes, clients: int, seconds: float, limit: int) -> dict:
    """`clients` loops posting the same image until `seconds` pass or `limit` requests go."""
    latencies: list[float] = []
    codes: dict[int, int] = {}
    busy_latencies: list[float] = []
    sent = 0
    deadline = time.monotonic() + seconds

    async def client(http: httpx.AsyncClient) -> None:
        nonlocal sent
        while time.monotonic() < deadline and sent < limit:
            sent += 1
            started = time.perf_counter()
            try:
                response = await http.post(
                    "/v1/captions",
                    files={"image": ("shape.png", png, "image/png")},
                    data={"attention": "false"},
                )
                code = response.status_code
            except httpx.HTTPError:
                code = 0
            elapsed = time.perf_counter() - started
            codes[code] = codes.get(code, 0) + 1
            (latencies if code == 200 else busy_latencies).append(elapsed)

    limits = httpx.Limits(max_connections=clients)
    async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as http:
        started = time.perf_counter()
        await asyncio.gather(*(client(http) for _ in range(clients)))
        wall = time.perf_counter() - started
    ok = sorted(latencies)

    def pct(q: float) -> float:
        return ok[min(len(ok) - 1, int(q * len(ok)))] if ok else float("nan")

    return {
        "clients": clients,
        "ok": len(ok),
        "img_s": len(ok) / wall,
        "p50_s": pct(0.50),
        "p95_s": pct(0.95),
        "p99_s": pct(0.99),
        "busy_503": codes.get(503, 0),
        "errors": sum(n for c, n in codes.items() if c not in (200, 503)),
        "busy_p50_s": statistics.median(busy_latencies) if busy_latencies else None,
        "codes": {str(c): n for c, n in codes.items()},
        "wall_s": wall,
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=default_captioner(), help="captioner dir")
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 8, 32, 64])
    parser.add_argument("--seconds", type=float, default=15.0, help="load time per level")
    parser.add_argument("--limit", type=int, default=2000, help="most requests per level")
    parser.add_argument("--max-batch", type=int, default=8)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=RESULTS, help="where results are written")
    args = parser.parse_args(argv)

    image = shapes_images(1)[0]
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    engine = Engine.from_dirs(args.model, None, threads=args.threads)
    batch = [image] * args.max_batch
    offline = timed(lambda: engine.caption(batch), args.repeats)
    offline_img_s = args.max_batch / offline["median_s"]

    settings = {
        "caption_model": args.model,
        "vqa_model": "",  # the captioner alone is measured
        "max_batch_size": args.max_batch,
        "torch_threads": args.threads,
    }
    png = buffer.getvalue()
    rows = []
    with local_server(settings, capture_stderr=True) as server:
        for clients in args.clients:
            before = batch_stats(server.url)
            row = asyncio.run(load(server.url, png, clients, args.seconds, args.limit))
            after = batch_stats(server.url)
            batches = after[1] - before[1]
            row["mean_batch"] = (after[0] - before[0]) / batches if batches else 0.0
            row["x_offline"] = row["img_s"] / offline_img_s
            rows.append(row)
        rss = peak_rss_mb(server.pid)
    print(f"offline batched ({args.max_batch} images): {offline_img_s:.2f} img/s")
    print(
        table(
            rows,
            [
                "clients",
                "ok",
                "img_s",
                "x_offline",
                "p50_s",
                "p95_s",
                "p99_s",
                "busy_503",
                "errors",
                "busy_p50_s",
                "mean_batch",
            ],
        )
    )
    at_32 = next((r for r in rows if r["clients"] == 32), rows[-1])
    result = {
        "model": repo_path(args.model),
        "max_batch": args.max_batch,
        "threads": args.threads,
        "offline": {"img_s": offline_img_s, "timing": offline},
        "server_peak_rss_mb": rss,
        "rows": rows,
        "goal": {
            "figure": f"throughput at {at_32['clients']} clients / offline batched",
            "target": 0.8,
            "value": at_32["x_offline"],
            "met": at_32["x_offline"] >= 0.8 and at_32["errors"] == 0,
        },
    }
    write_result(args.out, "server", result)
    return result


if __name__ == "__main__":
    main()
