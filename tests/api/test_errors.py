"""Every error code, in the one JSON shape, from real servers built with small limits."""

import asyncio
import io
import socket
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit

import httpx
import pytest
from PIL import Image

from api.app import create_app
from raw_answers import read_answer
from service.loading import load_engine

API_KEY = "s3cret-key"
SLOW = {"beam_size": "1", "max_length": "200"}  # the tiny untrained model never stops early


def assert_error(response: httpx.Response, status: int, code: str) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert list(body) == ["error"]
    error = body["error"]
    assert error["code"] == code
    assert isinstance(error["message"], str) and error["message"]
    return error


def upload(data: bytes) -> dict:
    return {"image": ("picture.png", data, "application/octet-stream")}


def solid(size: tuple[int, int], fmt: str) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, (200, 40, 40)).save(buffer, format=fmt)
    return buffer.getvalue()


def wait_for(condition: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.005)


@pytest.fixture(scope="module")
def strict(settings_for, serve_app):
    """Small limits on everything a client controls."""
    settings = settings_for(
        max_image_bytes=20_000,
        max_image_pixels=100 * 100,
        image_formats=["PNG", "JPEG"],
        max_questions=2,
        max_question_chars=30,
        beam_size=2,
        max_beam_size=4,
        caption_length=5,
        max_caption_length=10,
        top_k=2,
        max_top_k=3,
    )
    with serve_app(create_app(settings)).client() as client:
        yield client


@pytest.fixture(scope="module")
def busy(settings_for, serve_app):
    """One image per pass and room for two waiting requests: easy to fill."""
    settings = settings_for(
        max_batch_size=1, max_queue_size=2, retry_after_s=7, max_caption_length=200
    )
    return serve_app(create_app(settings))


@pytest.mark.parametrize(
    ("make", "status", "code"),
    [
        (lambda png: b"", 400, "invalid_image"),
        (lambda png: png()[:60], 400, "invalid_image"),
        (lambda png: b"just some text, not a picture", 415, "unsupported_image_type"),
        (lambda png: solid((20, 20), "BMP"), 415, "unsupported_image_type"),
        (lambda png: solid((101, 100), "PNG"), 413, "image_too_many_pixels"),
        (lambda png: png(height=100, width=100), 413, "image_too_large"),
    ],
    ids=["empty", "truncated", "text", "format-not-allowed", "too-many-pixels", "too-many-bytes"],
)
def test_bad_images(strict, png, make, status, code) -> None:
    data = make(png)
    for path, form in (("/v1/captions", {}), ("/v1/vqa", {"question": "what?"})):
        error = assert_error(strict.post(path, files=upload(data), data=form), status, code)
    if code == "unsupported_image_type":
        assert error["allowed"] == ["JPEG", "PNG"]
    if code == "image_too_large":
        assert error["max_bytes"] == 20_000


@pytest.mark.parametrize(
    ("path", "form", "with_image", "field", "words"),
    [
        ("/v1/captions", {}, False, "image", "required"),
        ("/v1/captions", {"image": "not a file"}, False, "image", "file"),
        ("/v1/vqa", {}, True, "question", "required"),
        ("/v1/vqa", {"question": "   "}, True, "question", "empty"),
        ("/v1/vqa", {"question": "x" * 31}, True, "question", "longer than 30"),
        ("/v1/vqa", {"question": ["a?", "b?", "c?"]}, True, "question", "at most 2"),
        ("/v1/vqa", {"question": "a?", "top_k": "4"}, True, "top_k", "between 1 and 3"),
        ("/v1/captions", {"beam_size": "5"}, True, "beam_size", "between 1 and 4"),
        ("/v1/captions", {"beam_size": "0"}, True, "beam_size", "between 1 and 4"),
        ("/v1/captions", {"beam_size": "two"}, True, "beam_size", "integer"),
        ("/v1/captions", {"max_length": "11"}, True, "max_length", "between 1 and 10"),
        ("/v1/captions", {"attention": "maybe"}, True, "attention", "boolean"),
    ],
)
def test_bad_fields_are_422_naming_the_field(strict, png, path, form, with_image, field, words):
    files = upload(png()) if with_image else None
    error = assert_error(strict.post(path, files=files, data=form), 422, "invalid_field")
    assert error["field"] == field
    assert words in error["message"].lower()


def test_bodies_over_the_limit_are_refused_before_being_buffered(strict) -> None:
    too_big = b"\x89PNG" + bytes(200_000)
    declared = strict.post("/v1/captions", files=upload(too_big))
    assert assert_error(declared, 413, "image_too_large")["max_bytes"] == 20_000

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted as it arrives
        yield b'--b\r\nContent-Disposition: form-data; name="image"; filename="a.png"\r\n\r\n'
        yield from (bytes(16_384) for _ in range(20))
        yield b"\r\n--b--\r\n"

    streamed = strict.post(
        "/v1/captions",
        content=chunks(),
        headers={"content-type": "multipart/form-data; boundary=b"},
    )
    assert_error(streamed, 413, "image_too_large")


def test_unknown_routes_and_methods(strict) -> None:
    assert_error(strict.get("/v1/nothing"), 404, "not_found")
    wrong_method = strict.get("/v1/captions")
    assert_error(wrong_method, 405, "method_not_allowed")
    assert wrong_method.headers["allow"] == "POST"
    assert_error(
        strict.post("/v1/captions", content=b"{}", headers={"content-type": "application/json"}),
        422,
        "invalid_field",
    )


def test_a_full_queue_answers_busy_at_once(busy, png) -> None:
    data = png()

    async def burst() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=busy.url, timeout=60) as client:
            sent = [client.post("/v1/captions", files=upload(data), data=SLOW) for _ in range(12)]
            return await asyncio.gather(*sent)

    responses = asyncio.run(burst())
    refused = [r for r in responses if r.status_code == 503]
    served = [r for r in responses if r.status_code == 200]
    assert refused and served and len(refused) + len(served) == len(responses)
    for response in refused:
        assert assert_error(response, 503, "busy")["retry_after"] == 7
        assert response.headers["retry-after"] == "7"
    # Refused at once, not after waiting behind the others.
    assert max(r.elapsed for r in refused) < max(r.elapsed for r in served)


def test_a_full_queue_refuses_before_parsing_the_body(busy, png) -> None:
    """While the queue is full, a model request is refused from its headers: its body is
    received and dropped, never parsed (a body that is no form at all gets 503, not 400), and
    the connection stays usable."""
    data = png()
    stop = threading.Event()

    def keep_the_queue_full() -> None:
        with busy.client() as client:
            while not stop.is_set():
                client.post("/v1/captions", files=upload(data), data=SLOW)

    with ThreadPoolExecutor(4) as pool:
        for _ in range(4):
            pool.submit(keep_the_queue_full)
        try:
            answers = answers_to_a_body_that_is_no_form(busy.url)
        finally:
            stop.set()
    assert answers[-1].startswith(b"HTTP/1.1 503 "), answers[-1][:200]
    assert b'"code":"busy"' in answers[-1] and b"retry-after: 7" in answers[-1].lower()
    assert b"connection: close" not in answers[-1].lower()
    # Admitted, the same bytes are parsed and refused as a bad request.
    assert all(a.startswith(b"HTTP/1.1 400 ") for a in answers[:-1]), answers[:-1]


def answers_to_a_body_that_is_no_form(url: str, tries: int = 50) -> list[bytes]:
    """Post a multipart caption request whose body is not multipart until the answer is not a
    400 (a 400 means it was admitted and parsed); every answer, on one connection."""
    head = (
        b"POST /v1/captions HTTP/1.1\r\nHost: x\r\n"
        b"Content-Type: multipart/form-data; boundary=b\r\nContent-Length: 4096\r\n\r\n"
    )
    parts = urlsplit(url)
    answers = []
    with socket.create_connection((parts.hostname, parts.port), timeout=30) as sock:
        for _ in range(tries):
            sock.sendall(head + b"x" * 4096)
            answers.append(read_answer(sock))
            if not answers[-1].startswith(b"HTTP/1.1 400 "):
                break
    return answers


def _send_raw(url: str, data: bytes) -> socket.socket:
    """Send a whole caption request on a bare socket, without reading the answer."""
    request = httpx.Request("POST", f"{url}/v1/captions", files=upload(data), data=SLOW)
    body = request.read()
    head = (
        f"POST /v1/captions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Content-Type: {request.headers['content-type']}\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    parts = urlsplit(url)
    sock = socket.create_connection((parts.hostname, parts.port))
    sock.sendall(head.encode() + body)
    return sock


def test_a_client_that_goes_away_is_never_computed(settings_for, serve_app, read_metrics, png):
    """Its request leaves the queue (499) instead of costing a forward pass nobody reads."""
    settings = settings_for(max_batch_size=1, max_queue_size=16, max_caption_length=200)
    patient = serve_app(create_app(settings))
    data = png()

    def caption() -> int:
        with patient.client() as client:
            return client.post("/v1/captions", files=upload(data), data=SLOW).status_code

    gone = {"route": "/v1/captions", "status": "499"}
    with patient.client() as probe, ThreadPoolExecutor(10) as pool:
        ahead = [pool.submit(caption) for _ in range(10)]  # about a second of work
        wait_for(lambda: read_metrics(probe).value("glimpse_queue_size") >= 6)
        leaving = _send_raw(patient.url, data)
        time.sleep(0.1)  # the server reads, decodes and queues it behind the others
        leaving.close()
        wait_for(
            lambda: read_metrics(probe).value("glimpse_request_duration_seconds_count", **gone) == 1
        )
        assert [f.result() for f in ahead] == [200] * 10
        passes = read_metrics(probe).value("glimpse_batch_size_count", task="encode")
    assert passes == 10  # one per served request, none for the one that left


def test_failed_models_keep_health_and_say_why(settings_for, serve_app, tmp_path) -> None:
    broken = settings_for(caption_model=tmp_path / "missing")
    with serve_app(create_app(broken), ready=False).client() as client:
        wait_for(lambda: "failed" in client.get("/readyz").text)
        error = assert_error(client.get("/readyz"), 503, "not_ready")
        assert "does not exist" in error["message"]
        assert client.get("/healthz").status_code == 200
        assert_error(client.get("/v1/models"), 503, "not_ready")
        assert_error(client.post("/v1/captions", files=upload(b"x")), 503, "not_ready")


def test_not_ready_until_the_models_are_loaded(settings_for, serve_app, png) -> None:
    gate = threading.Event()

    def load_when_allowed(settings):
        gate.wait(timeout=30)
        return load_engine(settings)

    try:
        app = create_app(settings_for(), loader=load_when_allowed)
        with serve_app(app, ready=False).client() as client:
            error = assert_error(client.get("/readyz"), 503, "not_ready")
            assert "loading" in error["message"]
            assert client.get("/healthz").json() == {"status": "alive"}
            question = {"question": "what color?"}
            assert_error(
                client.post("/v1/vqa", files=upload(png()), data=question), 503, "not_ready"
            )
            gate.set()
            wait_for(lambda: client.get("/readyz").status_code == 200)
            assert client.post("/v1/vqa", files=upload(png()), data=question).status_code == 200
    finally:
        gate.set()  # never leave the loader thread blocking shutdown


def test_api_keys(settings_for, serve_app, png) -> None:
    app = create_app(settings_for(api_keys=["another-key", API_KEY]))
    with serve_app(app).client() as client:
        for headers in (
            {},
            {"Authorization": "Bearer wrong"},
            {"Authorization": f"Basic {API_KEY}"},
        ):
            refused = client.post("/v1/captions", files=upload(png()), headers=headers)
            assert_error(refused, 401, "unauthorized")
            assert refused.headers["www-authenticate"] == "Bearer"
        assert_error(client.get("/v1/models"), 401, "unauthorized")
        allowed = {"Authorization": f"Bearer {API_KEY}"}
        assert client.post("/v1/captions", files=upload(png()), headers=allowed).status_code == 200
        assert client.get("/v1/models", headers=allowed).status_code == 200
        for open_path in ("/healthz", "/readyz", "/metrics", "/"):
            assert client.get(open_path).status_code == 200
