"""Real uvicorn servers on free ports of 127.0.0.1, each app built by `create_app(settings)`."""

import asyncio
import io
import socket
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TypeVar

import httpx
import numpy as np
import pytest
import uvicorn
from fastapi import FastAPI
from PIL import Image
from prometheus_client.parser import text_string_to_metric_families

from api.app import create_app
from service.settings import Settings

READY_TIMEOUT_S = 60.0
# The tiny untrained models never stop early: a caption this long keeps the worker busy a while.
LONG_CAPTION = {"beam_size": "10", "max_length": "200"}
T = TypeVar("T")


@dataclass
class RunningServer:
    app: FastAPI
    url: str
    server: uvicorn.Server
    thread: threading.Thread

    def client(self, **kwargs) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=30.0, **kwargs)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)


def start_server(app: FastAPI) -> RunningServer:
    """Serve `app` from a background thread; returns once the socket accepts connections."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))  # the kernel picks a free port; no race with other tests
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, log_config=None, log_level="warning", access_log=False)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + READY_TIMEOUT_S
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.01)
    return RunningServer(app, f"http://127.0.0.1:{port}", server, thread)


def wait_until_ready(server: RunningServer) -> None:
    with server.client() as client:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while client.get("/readyz").status_code != 200:
            if time.monotonic() > deadline:
                raise RuntimeError(f"not ready: {client.get('/readyz').text}")
            time.sleep(0.02)


@pytest.fixture(scope="session")
def serve_app() -> Iterator[Callable[..., RunningServer]]:
    """Start servers (busy, locked, broken...), by default once ready; stop them at the end."""
    servers: list[RunningServer] = []

    def serve(app: FastAPI, ready: bool = True) -> RunningServer:
        servers.append(start_server(app))
        if ready:
            wait_until_ready(servers[-1])
        return servers[-1]

    yield serve
    for server in servers:
        server.stop()


@pytest.fixture(scope="session")
def settings_for(tiny_model_dirs: tuple[Path, Path]) -> Callable[..., Settings]:
    """Settings for the tiny untrained models, with some fields overridden."""
    caption_dir, vqa_dir = tiny_model_dirs

    def make(**overrides) -> Settings:
        return Settings(**{"caption_model": caption_dir, "vqa_model": vqa_dir, **overrides})

    return make


@pytest.fixture(scope="session")
def server(settings_for, serve_app) -> RunningServer:
    """The app most tests share: tiny models, and captions long enough to keep the worker busy
    (`while_worker_busy`)."""
    return serve_app(create_app(settings_for(max_caption_length=200)))


@pytest.fixture(scope="session")
def bundled_server(serve_app) -> RunningServer:
    """The bundled models with default settings, as `make serve` runs them; started once."""
    return serve_app(create_app(Settings()))


@pytest.fixture(scope="session")
def hard_model_dir(tiny_model_dirs, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny captioner as a hard-attention model (the same weights), a model directory."""
    from models.captioner import Captioner
    from models.checkpoint import load_pretrained, save_pretrained

    soft = load_pretrained(tiny_model_dirs[0])
    assert isinstance(soft.model, Captioner)
    hard = Captioner(replace(soft.model.config, attention="hard"))
    hard.load_state_dict(soft.model.state_dict())
    return save_pretrained(tmp_path_factory.mktemp("hard") / "captioner", replace(soft, model=hard))


@pytest.fixture(scope="session")
def hard_server(settings_for, serve_app, hard_model_dir: Path) -> RunningServer:
    """The tiny models with the hard-attention captioner."""
    return serve_app(create_app(settings_for(caption_model=hard_model_dir)))


@pytest.fixture
def client(server: RunningServer) -> Iterator[httpx.Client]:
    with server.client() as client:
        yield client


def make_png(height: int = 48, width: int = 64, seed: int = 0) -> bytes:
    """A small noisy RGB picture with a red square, as PNG."""
    pixels = np.random.default_rng(seed).integers(0, 255, (height, width, 3), np.uint8)
    pixels[height // 4 : height // 2, width // 4 : width // 2] = (220, 30, 30)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture(scope="session")
def png() -> Callable[..., bytes]:
    return make_png


async def while_worker_busy(
    url: str, send: Callable[[httpx.AsyncClient], Awaitable[T]], image: bytes | None = None
) -> T:
    """`send(client)` once the model worker has started a long caption, so that the requests it
    sends wait for the worker together and share a pass: a request that finds the worker idle
    starts at once, alone. The server must allow `LONG_CAPTION`'s max_length."""
    files = {"image": ("long.png", image or make_png(seed=99), "image/png")}
    async with httpx.AsyncClient(base_url=url, timeout=60) as client:

        async def passes_started() -> float:
            text = (await client.get("/metrics")).text
            return Metrics(text).value("glimpse_queue_duration_seconds_count")

        before = await passes_started()
        long = asyncio.ensure_future(client.post("/v1/captions", files=files, data=LONG_CAPTION))
        while await passes_started() == before:
            await asyncio.sleep(0.005)
        try:
            return await send(client)
        finally:
            assert (await long).status_code == 200


@pytest.fixture(scope="session")
def while_busy() -> Callable[..., Awaitable]:
    """`while_worker_busy`, for the tests that need requests to share a pass."""
    return while_worker_busy


class Metrics:
    """The samples of GET /metrics, looked up by sample name and labels."""

    def __init__(self, text: str) -> None:
        self.samples = [s for f in text_string_to_metric_families(text) for s in f.samples]

    def value(self, name: str, **labels: str) -> float:
        found = [s.value for s in self.samples if s.name == name and s.labels == labels]
        return found[0] if found else 0.0


@pytest.fixture(scope="session")
def read_metrics() -> Callable[[httpx.Client], Metrics]:
    def read(client: httpx.Client) -> Metrics:
        response = client.get("/metrics")
        assert response.status_code == 200
        return Metrics(response.text)

    return read
