"""A hard-attention model directory served through the real API (and the CLI): every word keeps
its map and gains the one cell it was written from; soft models' answers have no `cell`."""

import io
import json
from pathlib import Path

import numpy as np
from typer.testing import CliRunner

from api.cli import app
from service.cards import HARD_ATTENTION


def _caption(server, png, **data: str) -> dict:
    files = {"image": ("scene.png", png(seed=4), "image/png")}
    with server.client() as client:
        response = client.post("/v1/captions", files=files, data=data)
    assert response.status_code == 200, response.text
    return response.json()


def test_each_word_of_a_hard_model_carries_its_map_and_the_peak_cell(hard_server, png) -> None:
    body = _caption(hard_server, png, beam_size="3", num_captions="2", max_length="6")
    rows, cols = body["grid"]
    captions = [body, *body["alternatives"]]
    assert len(captions) == 2
    for caption in captions:
        assert caption["tokens"]
        for token in caption["tokens"]:
            attention = np.array(token["attention"])
            assert attention.shape == (rows, cols)
            row, col = token["cell"]
            assert 0 <= row < rows and 0 <= col < cols
            assert attention[row, col] == attention.max()  # the most likely location


def test_the_cell_comes_without_the_maps_too(hard_server, png) -> None:
    with_maps = _caption(hard_server, png, beam_size="1", max_length="5")
    without = _caption(hard_server, png, beam_size="1", max_length="5", attention="false")
    assert [t["attention"] for t in without["tokens"]] == [None] * len(without["tokens"])
    assert [t["cell"] for t in without["tokens"]] == [t["cell"] for t in with_maps["tokens"]]


def test_the_model_card_says_how_a_hard_model_looks_and_soft_cards_say_nothing(
    hard_server, server, png
) -> None:
    with hard_server.client() as client:
        cards = {card["task"]: card for card in client.get("/v1/models").json()["models"]}
    assert cards["captioning"]["attention"] == HARD_ATTENTION
    assert "deterministic at inference" in HARD_ATTENTION
    assert "attention" not in cards["vqa"]
    with server.client() as client:
        soft_cards = client.get("/v1/models").json()["models"]
    assert all("attention" not in card for card in soft_cards)
    soft = _caption(server, png, beam_size="1", max_length="5")
    assert all("cell" not in token for token in soft["tokens"])


def test_the_cli_gives_each_word_its_cell_as_the_api_does(
    hard_model_dir: Path, png, tmp_path
) -> None:
    image = tmp_path / "scene.png"
    image.write_bytes(png(seed=4))
    args = ["caption", str(image), "--model", str(hard_model_dir), "--json", "--max-length", "5"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    [record] = [json.loads(line) for line in io.StringIO(result.stdout)]
    assert record["tokens"]
    for token in record["tokens"]:
        attention = np.array(token["attention"])
        assert attention[tuple(token["cell"])] == attention.max()
