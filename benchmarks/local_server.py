"""A real `glimpse serve` child process on 127.0.0.1 for the load benchmarks (server, soak):
measured over HTTP as clients see it, on a free port, and stopped however the run ends."""

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass

import httpx

HOST = "127.0.0.1"
READY_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class LocalServer:
    url: str
    pid: int  # for reading its memory from /proc


@contextmanager
def local_server(
    settings: Mapping[str, object], capture_stderr: bool = False
) -> Iterator[LocalServer]:
    """Serve with `settings` as GLIMPSE_* variables (access log off, warnings only) until the
    block ends. `capture_stderr` keeps the server's output off the console and quotes its end
    if it dies before it is ready."""
    port = free_port()
    env = {"host": HOST, "port": port, "access_log": "false", "log_level": "warning", **settings}
    process = subprocess.Popen(
        [sys.executable, "-m", "api.cli", "serve"],
        env={**os.environ, **{f"GLIMPSE_{k.upper()}": str(v) for k, v in env.items()}},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE if capture_stderr else None,
    )
    url = f"http://{HOST}:{port}"
    try:
        wait_ready(process, url)
        yield LocalServer(url, process.pid)
    finally:
        process.terminate()
        process.wait(timeout=STOP_TIMEOUT_S)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def wait_ready(process: subprocess.Popen, url: str, timeout: float = READY_TIMEOUT_S) -> None:
    """Poll /readyz: model loading takes seconds, and a request sent before it would fail."""
    deadline = time.monotonic() + timeout
    with httpx.Client(base_url=url, timeout=5.0) as client:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                said = f": {process.stderr.read().decode()[-2000:]}" if process.stderr else ""
                raise RuntimeError(f"the server exited with {process.returncode}{said}")
            try:
                if client.get("/readyz").status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.2)
    raise TimeoutError(f"the server was not ready after {timeout} s")
