"""Faults around the server: broken model files, clients that vanish, SIGTERM, SIGKILL."""

import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlsplit

import httpx
from safetensors.torch import load_file

from api.app import create_app

SLOW = {"beam_size": "1", "max_length": "200"}  # the tiny untrained model never stops early


def wait_for(condition, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


def test_a_corrupt_model_file_keeps_readyz_503_naming_the_file(
    settings_for, serve_app, tiny_model_dirs, tmp_path
) -> None:
    broken = tmp_path / "captioner"
    shutil.copytree(tiny_model_dirs[0], broken)
    (broken / "model.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json")
    with serve_app(create_app(settings_for(caption_model=broken)), ready=False).client() as client:
        wait_for(lambda: "failed" in client.get("/readyz").text)
        response = client.get("/readyz")
        assert response.status_code == 503
        error = response.json()["error"]
        assert error["code"] == "not_ready" and "model.safetensors" in error["message"]
        assert client.get("/healthz").status_code == 200


def _partial_upload(url: str, declared: int, sent: bytes) -> socket.socket:
    parts = urlsplit(url)
    sock = socket.create_connection((parts.hostname, parts.port))
    head = (
        "POST /v1/captions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        "Content-Type: multipart/form-data; boundary=b\r\n"
        f"Content-Length: {declared}\r\n\r\n"
    )
    sock.sendall(head.encode() + sent)
    return sock


def test_clients_that_vanish_mid_upload_free_their_slots(
    settings_for, serve_app, read_metrics, png
) -> None:
    """More abandoned uploads than queue slots: the next real request is still served."""
    server = serve_app(create_app(settings_for(max_queue_size=2, max_batch_size=1)))
    start = b'--b\r\nContent-Disposition: form-data; name="image"; filename="a.png"\r\n\r\n'
    abandoned = [_partial_upload(server.url, 100_000, start + png()[:500]) for _ in range(6)]
    time.sleep(0.2)  # the server is now reading each of them
    for sock in abandoned:
        sock.close()
    with server.client() as client:
        files = {"image": ("a.png", png(), "image/png")}
        for _ in range(3):
            assert client.post("/v1/captions", files=files).status_code == 200
        wait_for(lambda: read_metrics(client).value("glimpse_queue_size") == 0)


def test_clients_that_vanish_mid_inference_leave_an_empty_queue(
    settings_for, serve_app, read_metrics, png
) -> None:
    settings = settings_for(max_queue_size=8, max_batch_size=1, max_caption_length=200)
    server = serve_app(create_app(settings))

    def leave_early(_: int) -> bool:
        """True when the client gave up before its answer came."""
        with httpx.Client(base_url=server.url, timeout=0.1) as client:
            try:
                client.post("/v1/captions", files={"image": ("a.png", png())}, data=SLOW)
            except httpx.ReadTimeout:
                return True
        return False

    with ThreadPoolExecutor(8) as pool:
        assert any(pool.map(leave_early, range(8)))
    with server.client() as client:
        wait_for(lambda: read_metrics(client).value("glimpse_queue_size") == 0)
        assert client.post("/v1/captions", files={"image": ("a.png", png())}).status_code == 200


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_sigterm_drains_in_flight_requests(tiny_model_dirs, read_metrics, png) -> None:
    """Requests already accepted get their answers; then the process exits cleanly."""
    port = _free_port()
    env = {
        **os.environ,
        "GLIMPSE_PORT": str(port),
        "GLIMPSE_CAPTION_MODEL": str(tiny_model_dirs[0]),
        "GLIMPSE_VQA_MODEL": str(tiny_model_dirs[1]),
        "GLIMPSE_MAX_BATCH_SIZE": "1",
        "GLIMPSE_MAX_CAPTION_LENGTH": "200",
        "GLIMPSE_LOG_LEVEL": "warning",
    }
    command = [sys.executable, "-c", "from api.cli import app; app()", "serve"]
    server = subprocess.Popen(command, env=env, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        with httpx.Client(base_url=url, timeout=60) as probe:

            def ready() -> bool:
                try:
                    return probe.get("/readyz").status_code == 200
                except httpx.TransportError:
                    assert server.poll() is None, server.stderr.read()
                    return False

            wait_for(ready, timeout=90)

            def caption() -> int | None:
                with httpx.Client(base_url=url, timeout=60) as client:
                    files = {"image": ("a.png", png())}
                    try:
                        return client.post("/v1/captions", files=files, data=SLOW).status_code
                    except httpx.ConnectError:
                        return None  # refused: it came after the server stopped listening

            with ThreadPoolExecutor(8) as pool:
                in_flight = [pool.submit(caption) for _ in range(8)]
                wait_for(lambda: read_metrics(probe).value("glimpse_queue_size") >= 2)
                server.send_signal(signal.SIGTERM)
                answered = [r for r in (f.result() for f in in_flight) if r is not None]
            # One in the worker and at least two queued were accepted; every accepted one is
            # answered (a reset or a 503 would fail here), on a slow machine some came too late.
            assert answered.count(200) == len(answered) >= 3
        # uvicorn re-raises the signal once drained: the exit status says "ended by SIGTERM".
        assert server.wait(timeout=60) in (0, -signal.SIGTERM)
        assert "Traceback" not in server.stderr.read()
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()


WRITER = """
import sys, torch
from pathlib import Path
from safetensors.torch import save_file
from models.checkpoint import write_atomic
path = Path(sys.argv[1])
for step in range(1_000_000):
    tensors = {"weights": torch.full((1 << 21,), float(step))}  # 8 MB: the write takes a while
    write_atomic(path, lambda tmp: save_file(tensors, tmp, metadata={"step": str(step)}))
    print(step, flush=True)
"""


def test_sigkill_during_checkpoint_writes_never_leaves_a_torn_file(tmp_path: Path) -> None:
    """Kill a process that does nothing but write checkpoints: the file is always whole."""
    path = tmp_path / "train_state.safetensors"
    rng = random.Random(0)
    for _ in range(2):
        writer = subprocess.Popen(
            [sys.executable, "-c", WRITER, str(path)], stdout=subprocess.PIPE, text=True
        )
        assert writer.stdout.readline()  # one write has finished
        time.sleep(rng.uniform(0.0, 0.3))  # most likely in the middle of the next write
        writer.kill()
        writer.wait()
        tensors = load_file(path)
        weights = tensors["weights"]
        assert weights.numel() == 1 << 21 and bool((weights == weights[0]).all())
    # A killed write leaves its hidden temp file behind, never a torn file under the real name.
    assert all(p.name.startswith(".") for p in tmp_path.iterdir() if p != path)
