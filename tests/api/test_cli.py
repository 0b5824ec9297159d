import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from api.cli import app

runner = CliRunner()


@pytest.fixture(scope="module")
def photo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("images") / "shapes.jpg"
    pixels = np.full((120, 160, 3), 230, np.uint8)
    pixels[20:60, 30:70] = (220, 30, 30)
    Image.fromarray(pixels).save(path, quality=90)
    return path


def test_caption_json_has_one_map_per_word(tiny_model_dirs, photo: Path) -> None:
    result = runner.invoke(
        app,
        [
            "caption",
            str(photo),
            str(photo),
            "--model",
            str(tiny_model_dirs[0]),
            "--json",
            "--beam-size",
            "2",
            "--max-length",
            "6",
            "--batch-size",
            "1",
        ],
    )
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(lines) == 2 and lines[0] == lines[1]
    record = lines[0]
    assert record["image"] == str(photo) and record["grid"] == [4, 4]
    assert record["caption"] == " ".join(t["word"] for t in record["tokens"])
    for token in record["tokens"]:
        maps = np.array(token["attention"])
        assert maps.shape == (4, 4) and abs(maps.sum() - 1) < 1e-2


def test_caption_plain_text(tiny_model_dirs, photo: Path) -> None:
    result = runner.invoke(app, ["caption", str(photo), "--model", str(tiny_model_dirs[0])])
    assert result.exit_code == 0 and result.stdout.startswith(f"{photo}: ")


def test_ask_json(tiny_model_dirs, photo: Path) -> None:
    result = runner.invoke(
        app,
        [
            "ask",
            str(photo),
            "what color is the square?",
            "--model",
            str(tiny_model_dirs[1]),
            "--json",
            "--top-k",
            "3",
        ],
    )
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout)
    assert record["answer"] == record["top_k"][0]["answer"]
    assert len(record["top_k"]) == 3
    scores = [t["score"] for t in record["top_k"]]
    assert scores == sorted(scores, reverse=True)
    maps = np.array(record["attention"])
    assert maps.shape == (2, 4, 4) and np.allclose(maps.sum(axis=(1, 2)), 1, atol=1e-2)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["caption", "{missing}", "--model", "{cap}"], "cannot read"),
        (["caption", "{text}", "--model", "{cap}"], "not a recognised image"),
        (["caption", "{photo}", "--model", "{missing}"], "does not exist"),
        (["caption", "{photo}", "--model", "{broken}"], "is not valid JSON"),
        (["ask", "{photo}", "  ", "--model", "{vqa}"], "question is empty"),
    ],
)
def test_errors_are_one_line_and_exit_2(
    tiny_model_dirs, photo: Path, tmp_path: Path, args: list[str], message: str
) -> None:
    text = tmp_path / "notes.png"
    text.write_text("not an image")
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text("{")
    paths = {
        "missing": tmp_path / "missing.png",
        "text": text,
        "broken": broken,
        "photo": photo,
        "cap": tiny_model_dirs[0],
        "vqa": tiny_model_dirs[1],
    }
    result = runner.invoke(app, [a.format(**paths) for a in args])
    assert result.exit_code == 2
    assert message in result.stderr and "Traceback" not in result.output
    assert len(result.stderr.strip().splitlines()) == 1
