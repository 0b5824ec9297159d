"""The bundled models say when an image is outside the shapes world, through the API and the
CLI: photographs and other pictures are flagged, shapes images (even re-encoded or shown in a
screenshot) are not, and under GLIMPSE_OUT_OF_DOMAIN=refuse nothing is decoded."""

import io
import json
from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError
from typer.testing import CliRunner

from api.app import create_app
from api.cli import app as cli
from service.settings import Settings
from training.domain import jpeg, resized
from training.domain_probes import made_pictures, screenshot, skimage_photographs

runner = CliRunner()


def png_bytes(image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def jpeg_bytes(image, quality: int = 80) -> bytes:
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def shapes(tmp_path_factory: pytest.TempPathFactory) -> list:
    """Three images of a shapes world the models never saw (seed 31)."""
    from PIL import Image

    from training.data.shapes import generate

    root = tmp_path_factory.mktemp("unseen-world")
    generate(root, {"test": 3}, seed=31, workers=1, progress=False)
    return [Image.open(p).convert("RGB") for p in sorted(root.rglob("*.png"))]


@pytest.fixture(scope="module")
def in_domain(shapes) -> dict[str, bytes]:
    rng = np.random.default_rng(0)
    return {
        "png": png_bytes(shapes[0]),
        "jpeg_q70": jpeg_bytes(shapes[1], 70),
        "resized_jpeg": jpeg_bytes(resized(shapes[2], 0.7), 85),
        "screenshot": png_bytes(screenshot(jpeg(shapes[0], 90), rng)),
    }


@pytest.fixture(scope="module")
def foreign() -> dict[str, bytes]:
    photos = skimage_photographs()
    made = made_pictures()
    pictures = {n: photos[n] for n in ("coffee", "cat")}
    return {n: jpeg_bytes(p, 90) for n, p in pictures.items()} | {
        n: png_bytes(made[n]) for n in ("text", "desktop_screenshot", "uniform_noise")
    }


@pytest.fixture(scope="module")
def refusing(serve_app):
    return serve_app(create_app(Settings(out_of_domain="refuse")))


def caption(server, data: bytes):
    with server.client() as client:
        return client.post("/v1/captions", files={"image": ("x", data)}, data={"beam_size": "1"})


def ask(server, data: bytes, *questions: str):
    with server.client() as client:
        form = {"question": list(questions)}
        return client.post("/v1/vqa", files={"image": ("x", data)}, data=form)


def test_shapes_images_are_in_the_domain(bundled_server, in_domain) -> None:
    for name, data in in_domain.items():
        body = caption(bundled_server, data).json()
        assert body["domain"]["in_domain"] is True, (name, body["domain"])
        assert body["domain"]["score"] <= body["domain"]["threshold"]
        assert body["warnings"] == []
        body = ask(bundled_server, data, "what color is the circle?").json()
        assert body["domain"]["in_domain"] is True and body["warnings"] == [], name


def test_photographs_and_other_pictures_are_flagged(bundled_server, foreign) -> None:
    for name, data in foreign.items():
        body = caption(bundled_server, data).json()
        assert body["domain"]["in_domain"] is False, (name, body["domain"])
        assert body["domain"]["score"] > body["domain"]["threshold"]
        [warning] = body["warnings"]
        assert warning["code"] == "out_of_domain" and "shapes world" in warning["message"]
        assert body["caption"]  # the default policy still answers
        body = ask(bundled_server, data, "what color is the circle?").json()
        assert [w["code"] for w in body["warnings"]] == ["out_of_domain"], name


def test_unknown_question_words_are_listed(bundled_server, in_domain) -> None:
    body = ask(
        bundled_server, in_domain["png"], "what is in the cup?", "how many shapes are there?"
    ).json()
    unknown = body["answers"][0]["unknown_words"]
    assert unknown == ["in", "cup"]  # the "?" is punctuation, not an unknown word
    assert body["answers"][1]["unknown_words"] == []
    [warning] = body["warnings"]
    assert warning["code"] == "unknown_words" and warning["words"] == unknown
    assert "question 1" in warning["message"] and "'cup'" in warning["message"]


def test_refuse_answers_422_before_decoding(refusing, read_metrics, foreign, in_domain) -> None:
    with refusing.client() as client:
        before = read_metrics(client)
    response = caption(refusing, foreign["coffee"])
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "out_of_domain" and error["score"] > error["threshold"] > 0
    assert ask(refusing, foreign["coffee"], "what is this?").json()["error"]["code"] == (
        "out_of_domain"
    )
    with refusing.client() as client:
        after = read_metrics(client)
    for task in ("caption", "vqa"):  # the heads never ran: no decoding was timed
        name = "glimpse_inference_duration_seconds_count"
        assert after.value(name, task=task) == before.value(name, task=task)
    assert after.value(name, task="encode") > before.value(name, task="encode")
    assert caption(refusing, in_domain["png"]).status_code == 200


def test_answer_policy_skips_the_check(serve_app, foreign) -> None:
    server = serve_app(create_app(Settings(out_of_domain="answer")))
    body = caption(server, foreign["coffee"]).json()
    assert body["domain"] is None and body["warnings"] == []


@pytest.mark.parametrize("bad", ["", "ignore", "WARN ME", "1"])
def test_a_bad_policy_is_refused(monkeypatch, bad: str) -> None:
    monkeypatch.setenv("GLIMPSE_OUT_OF_DOMAIN", bad)
    with pytest.raises(ValidationError, match="out_of_domain"):
        Settings()


def test_model_cards_say_what_the_models_know(bundled_server) -> None:
    with bundled_server.client() as client:
        cards = {c["task"]: c for c in client.get("/v1/models").json()["models"]}
    for card in cards.values():
        assert card["trained_on"]["dataset"] == "shapes" and card["domain_check"] is True
        assert card["vocabulary_size"] > 10
    assert cards["captioning"]["answer_list"] is None
    answers = cards["vqa"]["answer_list"]
    assert len(answers) == cards["vqa"]["answers"] and "red" in answers


def test_cli_flags_a_photo_and_not_a_shapes_image(tmp_path: Path, foreign, in_domain) -> None:
    photo, scene = tmp_path / "coffee.jpg", tmp_path / "scene.png"
    photo.write_bytes(foreign["coffee"])
    scene.write_bytes(in_domain["png"])
    result = runner.invoke(cli, ["caption", str(photo), str(scene), "--json", "--beam-size", "1"])
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["domain"]["in_domain"] for r in records] == [False, True]
    assert [[w["code"] for w in r["warnings"]] for r in records] == [["out_of_domain"], []]

    result = runner.invoke(cli, ["caption", str(photo), str(scene), "--beam-size", "1"])
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and str(photo) in warnings[0] and "guess" in warnings[0]
    assert len(result.stdout.splitlines()) == 2

    result = runner.invoke(cli, ["ask", str(photo), "what is in the cup?", "--json"])
    record = json.loads(result.stdout)
    assert record["domain"]["in_domain"] is False and "cup" in record["unknown_words"]
    assert [w["code"] for w in record["warnings"]] == ["out_of_domain", "unknown_words"]
    result = runner.invoke(cli, ["ask", str(scene), "what color is the circle?"])
    assert result.exit_code == 0 and "warning" not in result.stderr


def test_a_model_without_a_check_answers_null_and_its_card_says_so(client, png) -> None:
    body = client.post("/v1/captions", files={"image": ("x.png", png())}).json()
    assert body["domain"] is None and body["warnings"] == []
    body = client.post("/v1/vqa", files={"image": ("x.png", png())}, data={"question": "what?"})
    assert body.json()["domain"] is None
    cards = client.get("/v1/models").json()["models"]
    assert [c["domain_check"] for c in cards] == [False, False]
    assert [c["trained_on"] for c in cards] == [None, None]
