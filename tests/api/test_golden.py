"""The API answers byte for byte as it did when `golden/bundled.json` was written.

A refactor of the service or the API must not change what a client receives for the same
image and the same bundled models: the caption, every attention value, the answers, the model
cards and the overlay PNG. Timings are the only fields left out. When a change of output is
intended, rewrite the file on purpose with `.venv/bin/python tests/api/test_golden.py` and say
why in the commit.
"""

import hashlib
import json
import time
from pathlib import Path

import httpx
import pytest

from api.app import create_app
from service.settings import Settings

GOLDEN = Path(__file__).parent / "golden"
QUESTIONS = ["what color is the circle?", "how many shapes are there?"]


@pytest.fixture(scope="module")
def expected() -> dict:
    return json.loads((GOLDEN / "bundled.json").read_text())


def _files() -> dict:
    return {"image": ("scene.png", (GOLDEN / "scene.png").read_bytes(), "image/png")}


def _without_timing(response: httpx.Response) -> dict:
    assert response.status_code == 200, response.text
    body = response.json()
    body.pop("timing_ms")
    return body


def test_caption_json_is_unchanged(bundled_server, expected: dict) -> None:
    with bundled_server.client() as client:
        body = _without_timing(client.post("/v1/captions", files=_files()))
    assert json.dumps(body, sort_keys=True) == json.dumps(expected["captions"], sort_keys=True)


def test_vqa_json_is_unchanged(bundled_server, expected: dict) -> None:
    with bundled_server.client() as client:
        response = client.post("/v1/vqa", files=_files(), data={"question": QUESTIONS})
    body = _without_timing(response)
    assert json.dumps(body, sort_keys=True) == json.dumps(expected["vqa"], sort_keys=True)


def test_models_and_overlay_are_unchanged(bundled_server, expected: dict) -> None:
    with bundled_server.client() as client:
        assert client.get("/v1/models").json() == expected["models"]
        overlay = client.post("/v1/captions/overlay", files=_files())
    assert overlay.status_code == 200
    assert hashlib.sha256(overlay.content).hexdigest() == expected["overlay_sha256"]


def write_golden() -> None:
    """Record what the API answers now, through an in-process client."""
    from fastapi.testclient import TestClient

    with TestClient(create_app(Settings())) as client:
        while client.get("/readyz").status_code != 200:
            time.sleep(0.1)
        captions = _without_timing(client.post("/v1/captions", files=_files()))
        vqa = client.post("/v1/vqa", files=_files(), data={"question": QUESTIONS})
        overlay = client.post("/v1/captions/overlay", files=_files())
        golden = {
            "captions": captions,
            "vqa": _without_timing(vqa),
            "models": client.get("/v1/models").json(),
            "overlay_sha256": hashlib.sha256(overlay.content).hexdigest(),
        }
    (GOLDEN / "bundled.json").write_text(json.dumps(golden, indent=1, sort_keys=True))


if __name__ == "__main__":
    write_golden()
