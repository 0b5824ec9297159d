"""Every endpoint of the real app, over HTTP, against the engine's own answers."""

import asyncio
import io

import httpx
import numpy as np
import pytest
from PIL import Image

from service.engine import Engine


@pytest.fixture(scope="module")
def engine(tiny_model_dirs) -> Engine:
    """The reference: the same models called directly, without HTTP or batching."""
    return Engine.from_dirs(*tiny_model_dirs)


def upload(data: bytes) -> dict:
    return {"image": ("picture.png", data, "image/png")}


def test_caption_has_one_rounded_map_per_word_equal_to_the_engine(client, engine, png) -> None:
    data = png()
    response = client.post("/v1/captions", files=upload(data), data={"beam_size": "2"})
    assert response.status_code == 200, response.text
    body = response.json()
    expected = engine.caption([Image.open(io.BytesIO(data))], beam_size=2, max_length=20)[0]
    assert body["caption"] == expected.caption == " ".join(t["word"] for t in body["tokens"])
    assert len(body["tokens"]) == len(expected.words) > 0
    assert body["grid"] == [4, 4]
    maps = np.array([token["attention"] for token in body["tokens"]])  # (T, h, w)
    np.testing.assert_allclose(maps, expected.attention, atol=1e-4)
    assert np.allclose(maps.sum(axis=(1, 2)), 1.0, atol=1e-2)
    assert np.array_equal(maps, maps.round(4))
    assert body["score"] == pytest.approx(expected.score, abs=1e-3)
    models = client.get("/v1/models").json()["models"]
    assert body["model"] == next(m["id"] for m in models if m["task"] == "captioning")
    timing = body["timing_ms"]
    assert all(timing[k] >= 0 for k in ("decode", "queue", "inference"))
    assert timing["total"] >= timing["inference"]


def test_caption_options_reach_the_decoder(client, png) -> None:
    response = client.post(
        "/v1/captions",
        files=upload(png()),
        data={"beam_size": "1", "max_length": "3", "attention": "false"},
    )
    assert response.status_code == 200, response.text
    tokens = response.json()["tokens"]
    assert 0 < len(tokens) <= 3
    assert all(token["attention"] is None for token in tokens)


def test_several_questions_are_answered_in_order_like_the_engine(client, engine, png) -> None:
    data = png(seed=1)
    questions = ["what color is the square?", "is there a circle?", "how many shapes?"]
    response = client.post(
        "/v1/vqa", files=upload(data), data={"question": questions, "top_k": "3"}
    )
    assert response.status_code == 200, response.text
    body = response.json()
    expected = engine.answer([Image.open(io.BytesIO(data))], [questions], top_k=3)[0]
    assert [a["question"] for a in body["answers"]] == questions
    for got, want in zip(body["answers"], expected, strict=True):
        assert got["answer"] == want.answer == got["top_k"][0]["answer"]
        assert [t["answer"] for t in got["top_k"]] == [name for name, _ in want.top_k]
        scores = [t["score"] for t in got["top_k"]]
        assert scores == sorted(scores, reverse=True)
        assert scores == pytest.approx([p for _, p in want.top_k], abs=1e-4)
        maps = np.array(got["attention"])  # (G, h, w)
        np.testing.assert_allclose(maps, want.attention, atol=1e-4)
    assert body["grid"] == [4, 4] and body["model"].startswith("vqa-")


def test_vqa_without_attention(client, png) -> None:
    response = client.post(
        "/v1/vqa", files=upload(png()), data={"question": "what shape?", "attention": "false"}
    )
    assert response.status_code == 200
    [answer] = response.json()["answers"]
    assert answer["attention"] is None and len(answer["top_k"]) == 5


def test_overlay_is_a_contact_sheet_png(client, png) -> None:
    response = client.post("/v1/captions/overlay", files=upload(png()), data={"max_length": "4"})
    assert response.status_code == 200
    assert response.headers["content-type"] == "image/png"
    sheet = Image.open(io.BytesIO(response.content))
    assert sheet.format == "PNG" and sheet.mode == "RGB"
    assert sheet.width > 2 * 224  # the picture and at least one word, side by side


def test_models_health_readiness(client) -> None:
    models = client.get("/v1/models").json()["models"]
    assert {m["task"] for m in models} == {"captioning", "vqa"}
    vqa = next(m for m in models if m["task"] == "vqa")
    assert vqa["answers"] == 7 and vqa["grid"] == [4, 4] and vqa["encoder"] == "tiny"
    assert client.get("/healthz").json() == {"status": "alive"}
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["models"] == [m["id"] for m in models]


def test_concurrent_requests_share_forward_passes(server, read_metrics, png, while_busy) -> None:
    data = png(seed=2)

    async def burst(client: httpx.AsyncClient) -> list[httpx.Response]:
        captions = [client.post("/v1/captions", files=upload(data)) for _ in range(10)]
        questions = [
            client.post("/v1/vqa", files=upload(data), data={"question": "what color?"})
            for _ in range(6)
        ]
        return await asyncio.gather(*captions, *questions)

    with server.client() as client:
        before = read_metrics(client)
        responses = asyncio.run(while_busy(server.url, burst))
        after = read_metrics(client)
    assert [r.status_code for r in responses] == [200] * 16
    assert len({r.json()["caption"] for r in responses[:10]}) == 1  # batched == alone
    assert len({r.json()["answers"][0]["answer"] for r in responses[10:]}) == 1

    def batches(metrics, **labels) -> tuple[float, float]:
        """(forward passes, passes that held exactly one image)"""
        count = metrics.value("glimpse_batch_size_count", task="encode")
        single = metrics.value("glimpse_batch_size_bucket", task="encode", le="1.0")
        return count, single

    passes = batches(after)[0] - batches(before)[0]
    shared = passes - (batches(after)[1] - batches(before)[1])
    assert 0 < passes < 16 and shared > 0


def test_metrics_label_requests_by_route_and_status(client, read_metrics, png) -> None:
    client.post("/v1/captions", files=upload(b"not an image"))
    metrics = read_metrics(client)
    failed = metrics.value(
        "glimpse_request_duration_seconds_count", route="/v1/captions", status="415"
    )
    assert failed >= 1
    assert metrics.value("glimpse_request_failures_total", code="unsupported_image_type") >= 1
    assert metrics.value("glimpse_queue_size") == 0


def test_web_page_docs_and_openapi(client) -> None:
    page = client.get("/")
    assert page.status_code == 200 and "/static/app.js" in page.text
    for asset in ("/static/app.js", "/static/heatmap.js", "/static/style.css"):
        assert client.get(asset).status_code == 200
    assert client.get("/docs").status_code == 200
    spec = client.get("/openapi.json").json()
    assert {"/v1/captions", "/v1/vqa", "/v1/captions/overlay", "/v1/models"} <= set(spec["paths"])
    caption_schema = spec["components"]["schemas"]["CaptionResponse"]
    assert caption_schema["examples"][0]["tokens"]
    assert "422" in spec["paths"]["/v1/vqa"]["post"]["responses"]
