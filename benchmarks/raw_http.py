"""A load generator light enough to share the cores with the server it measures.

One HTTP request is built once (`caption_request`) and written as bytes over asyncio
keep-alive sockets; an answer is read by its Content-Length, never parsed further. A client
that gets 503 with `Retry-After` waits that long before its next request, as a well-behaved
client does, and a connection the server closes is opened again for the next request.
"""

import asyncio
import statistics
import time
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import httpx

Connection = tuple[asyncio.StreamReader, asyncio.StreamWriter]


def caption_request(png: bytes, maps: bool, host: str = "127.0.0.1") -> bytes:
    """POST /v1/captions of `png` as raw HTTP/1.1 bytes; `maps` asks for the attention maps."""
    form = {"attention": "true" if maps else "false"}
    request = httpx.Request(
        "POST", f"http://{host}/v1/captions", files={"image": ("shape.png", png)}, data=form
    )
    body = request.read()
    head = (
        f"POST /v1/captions HTTP/1.1\r\nHost: {host}\r\n"
        f"Content-Type: {request.headers['content-type']}\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


@dataclass(frozen=True)
class Answer:
    status: int
    retry_after: float | None  # seconds, from the header
    close: bool  # the server closes the connection after it


async def exchange(connection: Connection, request: bytes) -> Answer:
    """Send `request`, read one whole answer."""
    reader, writer = connection
    writer.write(request)
    await writer.drain()
    head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
    headers = {}
    for line in head[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    await reader.readexactly(int(headers.get("content-length", "0")))
    retry_after = float(headers["retry-after"]) if "retry-after" in headers else None
    return Answer(int(head[0].split()[1]), retry_after, headers.get("connection") == "close")


async def send(
    url: str, request: bytes, connection: Connection | None
) -> tuple[Answer, Connection]:
    """One answer to `request`, on `connection` if it is still open, else (or if the server
    closed it while idle) on a new one."""
    if connection is not None:
        try:
            return await exchange(connection, request), connection
        except (OSError, asyncio.IncompleteReadError):
            connection[1].close()
    parts = urlsplit(url)
    connection = await asyncio.open_connection(parts.hostname, parts.port)
    return await exchange(connection, request), connection


async def alternate(url: str, requests: list[bytes], seconds: float) -> list[list[float]]:
    """One client sending `requests` in turn for `seconds`: the seconds to each 200, by request.
    Alternating, each request meets the same conditions (the machine's load drifts)."""
    served: list[list[float]] = [[] for _ in requests]
    deadline, turn = time.monotonic() + seconds, 0
    connection: Connection | None = None
    while time.monotonic() < deadline:
        started = time.perf_counter()
        answer, connection = await send(url, requests[turn % len(requests)], connection)
        if answer.status == 200:
            served[turn % len(requests)].append(time.perf_counter() - started)
        turn += 1
    if connection is not None:
        connection[1].close()
    return served


@dataclass
class Load:
    """`clients` loops sending `request` until `seconds` pass or `limit` requests are sent."""

    url: str
    request: bytes
    clients: int
    seconds: float
    limit: int
    served: list[float] = field(default_factory=list)  # seconds to a 200
    busy: list[float] = field(default_factory=list)  # seconds to a 503
    codes: dict[int, int] = field(default_factory=dict)  # 0: the connection failed
    sent: int = 0

    async def run(self) -> dict:
        deadline = time.monotonic() + self.seconds
        started = time.perf_counter()
        await asyncio.gather(*(self._client(deadline) for _ in range(self.clients)))
        return self._summary(time.perf_counter() - started)

    async def _client(self, deadline: float) -> None:
        connection: Connection | None = None
        while time.monotonic() < deadline and self.sent < self.limit:
            self.sent += 1
            started = time.perf_counter()
            try:
                answer, connection = await send(self.url, self.request, connection)
            except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError):
                self.codes[0] = self.codes.get(0, 0) + 1
                connection = None
                continue
            elapsed = time.perf_counter() - started
            self.codes[answer.status] = self.codes.get(answer.status, 0) + 1
            if answer.status == 200:
                self.served.append(elapsed)
            elif answer.status == 503:
                self.busy.append(elapsed)
            if answer.close:
                connection[1].close()
                connection = None
            if answer.status == 503 and answer.retry_after:
                await asyncio.sleep(max(0.0, min(answer.retry_after, deadline - time.monotonic())))
        if connection is not None:
            connection[1].close()

    def _summary(self, wall: float) -> dict:
        ok = sorted(self.served)

        def pct(q: float) -> float:
            return ok[min(len(ok) - 1, int(q * len(ok)))] if ok else float("nan")

        return {
            "clients": self.clients,
            "ok": len(ok),
            "img_s": len(ok) / wall,
            "p50_s": pct(0.50),
            "p95_s": pct(0.95),
            "p99_s": pct(0.99),
            "busy_503": self.codes.get(503, 0),
            "busy_p50_s": statistics.median(self.busy) if self.busy else None,
            "errors": sum(n for c, n in self.codes.items() if c not in (200, 503)),
            "codes": {str(c): n for c, n in sorted(self.codes.items())},
            "wall_s": wall,
        }
