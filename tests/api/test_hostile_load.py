"""Hostile load: small uploads that decode huge, uploads that trickle in, and the headers a
browser-facing service sends. Real servers, real sockets, real decoding."""

import io
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from functools import cache
from urllib.parse import urlsplit

import httpx
import pytest
from PIL import Image

from api.app import create_app
from benchmarks.common import proc_kib
from benchmarks.local_server import local_server
from benchmarks.memory import TRICKLE_HEAD, rss_mb
from raw_answers import read_answer


@cache
def flat_png(side: int) -> bytes:
    """The worst case for memory: a few KB on the wire, side x side x 4 bytes decoded."""
    buffer = io.BytesIO()
    Image.new("RGB", (side, side), (40, 160, 90)).save(buffer, "PNG")
    return buffer.getvalue()


def post_image(url: str, data: bytes) -> httpx.Response:
    with httpx.Client(base_url=url, timeout=60) as client:
        files = {"image": ("flat.png", data, "image/png")}
        return client.post("/v1/captions", files=files, data={"max_length": "2"})


def test_images_over_the_decode_budget_get_503_busy_before_decoding(
    settings_for, serve_app
) -> None:
    settings = settings_for(decode_memory_mb=64, decode_wait_ms=0, retry_after_s=3)
    server = serve_app(create_app(settings))
    data = flat_png(4000)  # 64 MB decoded: the whole budget, so one at a time
    assert len(data) < 100_000
    with ThreadPoolExecutor(8) as pool:
        responses = list(pool.map(lambda _: post_image(server.url, data), range(8)))
    statuses = sorted(r.status_code for r in responses)
    assert set(statuses) == {200, 503}, statuses
    for refused in (r for r in responses if r.status_code == 503):
        assert refused.json()["error"]["code"] == "busy"
        assert refused.headers["retry-after"] == "3"
    assert post_image(server.url, flat_png(64)).status_code == 200  # the budget is free again


def trickle(url: str, seconds: float, head: bytes = TRICKLE_HEAD) -> tuple[bytes, float]:
    """Send headers and a few body bytes a second until the server answers; returns what it
    sent back before closing the connection, and when it answered."""
    parts = urlsplit(url)
    started = time.monotonic()
    with socket.create_connection((parts.hostname, parts.port)) as sock:
        sock.sendall(head)
        sock.settimeout(0.25)
        answer = b""
        while time.monotonic() - started < seconds:
            try:
                sock.sendall(b"x" * 16)
                chunk = sock.recv(65536)
            except TimeoutError:
                continue
            except (BrokenPipeError, ConnectionResetError):
                break
            if not chunk:  # closed by the server
                break
            answer += chunk
        return answer, time.monotonic() - started


def test_a_body_that_trickles_in_is_answered_408_and_its_connection_closed(
    settings_for, serve_app
) -> None:
    server = serve_app(create_app(settings_for(body_timeout_s=1.0)))
    answer, seconds = trickle(server.url, seconds=10)
    assert answer.startswith(b"HTTP/1.1 408 "), answer[:200]
    assert b'"code":"request_timeout"' in answer and b"connection: close" in answer.lower()
    assert 0.9 < seconds < 5  # answered at the deadline, then closed (not at the 10 s cut)
    assert post_image(server.url, flat_png(64)).status_code == 200


def test_an_answer_before_a_body_past_the_drain_limit_closes_the_connection(client, server) -> None:
    """Or uvicorn would keep reading the rest of the body, however slowly, with no deadline."""
    head = TRICKLE_HEAD.replace(b"Content-Length: 5000000", b"Content-Length: 500000000")
    answer, seconds = trickle(server.url, seconds=10, head=head)
    assert answer.startswith(b"HTTP/1.1 413 "), answer[:200]
    assert b"connection: close" in answer.lower() and seconds < 2
    assert "connection" not in {k.lower() for k in client.get("/healthz").headers}  # kept alive


UPLOAD_HEAD = b"POST /v1/captions HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\n"


def answer_then_health(url: str, length: int, pause_s: float = 0.0) -> tuple[bytes, bytes]:
    """On one connection: an upload head declaring `length` bytes, the body `pause_s` later,
    then GET /healthz; the two answers."""
    parts = urlsplit(url)
    with socket.create_connection((parts.hostname, parts.port), timeout=10) as sock:
        sock.sendall(UPLOAD_HEAD + b"Content-Length: %d\r\n\r\n" % length)
        time.sleep(pause_s)
        sock.sendall(bytes(length))
        first = read_answer(sock)
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        return first, read_answer(sock)


def assert_kept_after(first: bytes, second: bytes, status: int) -> None:
    assert first.startswith(b"HTTP/1.1 %d " % status), first[:200]
    assert b"connection: close" not in first.lower()
    assert second.startswith(b"HTTP/1.1 200 "), second[:200]


def test_an_early_answer_receives_a_small_body_and_keeps_the_connection(server) -> None:
    """Answered before its body arrived (422: not a form), a request whose body is within the
    limit has the rest received and dropped, and the connection serves the next request:
    closed with those bytes unread, it would be reset, and the client could lose the answer."""
    # The answer is ready long before the body comes.
    assert_kept_after(*answer_then_health(server.url, 1000, pause_s=0.3), status=422)


def test_a_body_over_the_limit_is_answered_413_and_the_connection_kept(
    settings_for, serve_app
) -> None:
    """Refused unread (413), a body within the drain limit is still received and dropped, so
    the client reads its answer and the connection serves the next request."""
    server = serve_app(create_app(settings_for(max_image_bytes=10_000)))
    assert_kept_after(*answer_then_health(server.url, 2_000_000), status=413)


def test_a_slow_but_timely_body_is_served(settings_for, serve_app, png) -> None:
    server = serve_app(create_app(settings_for(body_timeout_s=5.0)))

    def slowly():
        data = png()
        for start in range(0, len(data), len(data) // 4):
            time.sleep(0.2)
            yield data[start : start + len(data) // 4]

    body = b"".join(slowly())
    assert post_image(server.url, body).status_code == 200


@pytest.mark.parametrize("path", ["/", "/static/app.js", "/v1/models", "/healthz", "/nowhere"])
def test_every_answer_carries_the_security_headers(client, path) -> None:
    headers = client.get(path).headers
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["referrer-policy"] == "no-referrer"
    directives = [part.split() for part in headers["content-security-policy"].split(";")]
    policy = {name: values for name, *values in directives}
    assert policy["default-src"] == ["'self'"]  # scripts and styles: the page's own only
    assert "script-src" not in policy and "style-src" not in policy
    assert policy["img-src"] == ["'self'", "blob:", "data:"]  # the upload drawn on a canvas
    assert policy["frame-ancestors"] == ["'none'"]


def test_refused_requests_carry_the_security_headers_too(client) -> None:
    response = client.post("/v1/captions", files={"image": ("a.png", b"not an image")})
    assert response.status_code == 415
    assert response.headers["x-content-type-options"] == "nosniff"
    assert "frame-ancestors 'none'" in response.headers["content-security-policy"]


def test_memory_taken_by_a_burst_of_large_images_is_returned(tiny_model_dirs) -> None:
    """A real `glimpse serve` (with the CLI's allocator tuning) settles back to its warm level."""
    caption_dir, vqa_dir = tiny_model_dirs
    with local_server({"caption_model": caption_dir, "vqa_model": vqa_dir}) as server:
        for _ in range(4):
            assert post_image(server.url, flat_png(64)).status_code == 200
        time.sleep(0.5)
        warm = rss_mb(server.pid)
        with ThreadPoolExecutor(6) as pool:
            burst = pool.map(lambda _: post_image(server.url, flat_png(5000)), range(6))
            statuses = {response.status_code for response in burst}
        assert statuses <= {200, 503} and 200 in statuses
        peak = proc_kib("VmHWM", f"/proc/{server.pid}/status") / 1024
        assert peak > warm + 150  # the burst did take memory: 100 MB a decode
        deadline = time.monotonic() + 10
        while rss_mb(server.pid) > warm * 1.1:
            assert time.monotonic() < deadline, f"RSS {rss_mb(server.pid):.0f} MB, warm {warm:.0f}"
            time.sleep(0.2)


def test_connections_beyond_the_limit_are_answered_503_at_once(tiny_model_dirs) -> None:
    caption_dir, vqa_dir = tiny_model_dirs
    settings = {"caption_model": caption_dir, "vqa_model": vqa_dir, "max_connections": 3}
    with local_server(settings) as server:
        parts = urlsplit(server.url)
        held = [socket.create_connection((parts.hostname, parts.port)) for _ in range(3)]
        try:
            time.sleep(0.2)
            response = httpx.get(f"{server.url}/healthz", timeout=5)
            assert response.status_code == 503  # uvicorn's own plain-text answer
        finally:
            for sock in held:
                sock.close()
        time.sleep(0.2)
        assert httpx.get(f"{server.url}/healthz", timeout=5).status_code == 200
