"""POST /v1/labels and `glimpse labels`: the ImageNet classes the bundled models' encoder
recognises in real photographs, from real servers and the real command."""

import io
import json
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image
from skimage import data
from typer.testing import CliRunner

from api.app import create_app
from api.cli import app
from service.settings import Settings

CATS = {"tabby", "tiger cat", "Persian cat", "Siamese cat", "Egyptian cat"}


def encoded(pixels: np.ndarray, fmt: str = "JPEG") -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format=fmt)
    return buffer.getvalue()


def jpeg(pixels: np.ndarray) -> bytes:
    return encoded(pixels)


def solid(size: tuple[int, int], fmt: str) -> bytes:
    return encoded(np.full((size[1], size[0], 3), 120, np.uint8), fmt)


def upload(picture: bytes) -> dict:
    return {"image": ("picture", picture, "application/octet-stream")}


def assert_error(response: httpx.Response, status: int, code: str) -> dict:
    """The API's one error shape, with this status and code."""
    assert response.status_code == status, response.text
    assert list(response.json()) == ["error"] and response.json()["error"]["code"] == code
    return response.json()["error"]


@pytest.fixture(scope="module")
def bundled(serve_app) -> httpx.Client:
    """The bundled models, whose encoder is the ImageNet EfficientNet-Lite0; small limits."""
    settings = Settings(
        max_image_bytes=200_000,
        image_formats=["JPEG", "PNG"],
        top_k=3,
        max_top_k=4,
        labels_top_k=2,
    )
    with serve_app(create_app(settings)).client() as client:
        yield client


def labels_of(client: httpx.Client, picture: bytes, **form: str) -> dict:
    response = client.post("/v1/labels", files=upload(picture), data=form)
    assert response.status_code == 200, response.text
    return response.json()


def test_photographs_get_imagenet_labels_each_with_a_map(bundled, read_metrics) -> None:
    before = read_metrics(bundled).value("glimpse_batch_size_count", task="labels")
    coffee = labels_of(bundled, jpeg(data.coffee()))
    cat = labels_of(bundled, jpeg(data.chelsea()))
    assert {"espresso", "cup"} & {x["label"] for x in coffee["labels"]}, coffee["labels"]
    assert CATS & {x["label"] for x in cat["labels"]}, cat["labels"]
    for body in (coffee, cat):
        assert len(body["labels"]) == 3  # GLIMPSE_TOP_K
        assert body["grid"] == [8, 8]
        assert body["model"] == "efficientnet_lite0-imagenet1k"
        assert set(body["timing_ms"]) == {"decode", "queue", "inference", "total"}
        scores = [x["score"] for x in body["labels"]]
        assert scores == sorted(scores, reverse=True) and 0 < sum(scores) <= 1
        for label in body["labels"]:
            attention = np.array(label["attention"])
            assert attention.shape == (8, 8) and (attention >= 0).all()
            assert attention.sum() == pytest.approx(1.0, abs=1e-3)
    after = read_metrics(bundled).value("glimpse_batch_size_count", task="labels")
    assert after == before + 2


def test_top_k_and_attention_fields(bundled) -> None:
    body = labels_of(bundled, jpeg(data.coffee()), top_k="4", attention="false")
    assert len(body["labels"]) == 4
    assert all(label["attention"] is None for label in body["labels"])
    one = labels_of(bundled, jpeg(data.coffee()), top_k="1")
    assert one["labels"][0]["label"] == body["labels"][0]["label"]


def test_captions_and_answers_for_a_photograph_carry_its_labels(bundled) -> None:
    """Outside the shapes world, one request gives the honest answer too."""
    caption = bundled.post("/v1/captions", files=upload(jpeg(data.coffee())))
    answer = bundled.post(
        "/v1/vqa", files=upload(jpeg(data.chelsea())), data={"question": "what is it?"}
    )
    for response, names in ((caption, {"espresso", "cup"}), (answer, CATS)):
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["domain"]["in_domain"] is False
        labels = body["labels"]
        assert labels["grid"] == [8, 8] and labels["model"] == "efficientnet_lite0-imagenet1k"
        assert len(labels["labels"]) == 2  # GLIMPSE_LABELS_TOP_K
        assert names & {x["label"] for x in labels["labels"]}, labels
        for label in labels["labels"]:
            assert np.array(label["attention"]).sum() == pytest.approx(1.0, abs=1e-3)


def test_a_shapes_picture_carries_no_labels(bundled) -> None:
    scene = (Path(__file__).parent / "golden" / "scene.png").read_bytes()
    body = bundled.post("/v1/captions", files=upload(scene)).json()
    assert body["domain"]["in_domain"] is True
    assert body["labels"] is None


@pytest.mark.parametrize(
    ("make", "status", "code"),
    [
        (lambda: b"", 400, "invalid_image"),
        (lambda: jpeg(data.coffee())[:200], 400, "invalid_image"),
        (lambda: b"just some text, not a picture", 415, "unsupported_image_type"),
        (lambda: solid((20, 20), "BMP"), 415, "unsupported_image_type"),
        # over the 200 kB image limit, within the whole-body limit: refused as it is read
        (lambda: solid((2000, 2000), "BMP")[:230_000], 413, "image_too_large"),
    ],
    ids=["empty", "truncated", "text", "format-not-allowed", "too-many-bytes"],
)
def test_bad_images(bundled, make, status, code) -> None:
    assert_error(bundled.post("/v1/labels", files=upload(make())), status, code)


@pytest.mark.parametrize(
    ("form", "with_image", "field", "words"),
    [
        ({}, False, "image", "required"),
        ({"top_k": "5"}, True, "top_k", "between 1 and 4"),
        ({"top_k": "0"}, True, "top_k", "between 1 and 4"),
        ({"top_k": "many"}, True, "top_k", "integer"),
        ({"attention": "maybe"}, True, "attention", "boolean"),
        ({"question": "what is it?"}, True, "question", "unknown field"),
    ],
)
def test_bad_fields_are_422_naming_the_field(bundled, form, with_image, field, words) -> None:
    files = upload(solid((32, 32), "PNG")) if with_image else None
    error = assert_error(bundled.post("/v1/labels", files=files, data=form), 422, "invalid_field")
    assert error["field"] == field
    assert words in error["message"].lower()


def test_an_encoder_without_an_imagenet_head_says_so(client, png) -> None:
    """The shared server's tiny models have a random encoder: 404, never a 500."""
    error = assert_error(client.post("/v1/labels", files=upload(png())), 404, "labels_unavailable")
    assert "imagenet" in error["message"].lower()


def test_model_cards_say_which_encoder_gives_labels(bundled, client) -> None:
    """The bundled models' EfficientNet-Lite0 has its ImageNet head; the tiny ones have none."""
    assert [card["labels"] for card in bundled.get("/v1/models").json()["models"]] == [True, True]
    assert [card["labels"] for card in client.get("/v1/models").json()["models"]] == [False] * 2


def test_labels_need_the_api_key_like_the_other_routes(settings_for, serve_app, png) -> None:
    with serve_app(create_app(settings_for(api_keys=["k3y"]))).client() as client:
        refused = client.post("/v1/labels", files=upload(png()))
        assert_error(refused, 401, "unauthorized")
        allowed = client.post(
            "/v1/labels", files=upload(png()), headers={"Authorization": "Bearer k3y"}
        )
        assert_error(allowed, 404, "labels_unavailable")  # past the key: the tiny models


runner = CliRunner()


def test_the_command_prints_labels_and_their_maps(tmp_path) -> None:
    coffee, cat = tmp_path / "coffee.jpg", tmp_path / "cat.png"
    Image.fromarray(data.coffee()).save(coffee)
    Image.fromarray(data.chelsea()).save(cat)
    result = runner.invoke(app, ["labels", str(coffee), str(cat), "--top-k", "3"])
    assert result.exit_code == 0, result.output
    lines = result.output.strip().splitlines()
    assert lines[0].startswith(f"{coffee}: ") and "espresso" in lines[0]
    assert lines[1].startswith(f"{cat}: ") and "cat" in lines[1]
    result = runner.invoke(app, ["labels", str(cat), "--json", "--top-k", "2"])
    assert result.exit_code == 0, result.output
    record = json.loads(result.output)
    assert record["image"] == str(cat) and record["grid"] == [8, 8]
    assert len(record["labels"]) == 2 and CATS & {x["label"] for x in record["labels"]}
    for label in record["labels"]:
        assert np.array(label["attention"]).sum() == pytest.approx(1.0, abs=1e-3)


def test_the_command_fails_clearly_without_a_head(tiny_model_dirs, tmp_path) -> None:
    picture = tmp_path / "cat.png"
    Image.fromarray(data.chelsea()).save(picture)
    result = runner.invoke(app, ["labels", str(picture), "--model", str(tiny_model_dirs[0])])
    assert result.exit_code == 2
    assert "no ImageNet classifier" in result.output


def test_caption_and_ask_json_carry_the_labels_the_api_gives(bundled, tmp_path) -> None:
    """A photograph's `labels` as in the API's answers (the bundled server gives 2, the
    command GLIMPSE_LABELS_TOP_K); null for a shapes picture."""
    coffee, scene = tmp_path / "coffee.jpg", Path(__file__).parent / "golden" / "scene.png"
    coffee.write_bytes(jpeg(data.coffee()))
    served = bundled.post("/v1/captions", files=upload(coffee.read_bytes())).json()["labels"]
    result = runner.invoke(app, ["caption", str(coffee), str(scene), "--json", "--beam-size", "1"])
    assert result.exit_code == 0, result.output
    photo, shapes = [json.loads(line) for line in result.stdout.splitlines()]
    assert shapes["domain"]["in_domain"] is True and shapes["labels"] is None
    result = runner.invoke(app, ["ask", str(coffee), "what is in the cup?", "--json"])
    assert result.exit_code == 0, result.output
    for labels in (photo["labels"], json.loads(result.stdout)["labels"]):
        assert set(labels) == set(served) and labels["grid"] == served["grid"] == [8, 8]
        assert labels["model"] == served["model"] == "efficientnet_lite0-imagenet1k"
        assert len(labels["labels"]) == Settings().labels_top_k
        names = [x["label"] for x in labels["labels"]]
        assert names[:2] == [x["label"] for x in served["labels"]]
        for label in labels["labels"]:
            assert np.array(label["attention"]).sum() == pytest.approx(1.0, abs=1e-3)
