"""`glimpse caption`'s decoding flags: sampling with a seed, several captions, word
probabilities, and the API's checks as one-line errors."""

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from api.cli import app

runner = CliRunner()


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    folder = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    paths = []
    for i in range(2):
        paths.append(folder / f"noise{i}.png")
        Image.fromarray(rng.integers(0, 255, (60, 80, 3), np.uint8)).save(paths[-1])
    return paths


def glimpse_caption(model: Path, photos: list[Path], *flags: str):
    return runner.invoke(app, ["caption", *map(str, photos), "--model", str(model), *flags])


def records(result) -> list[dict]:
    assert result.exit_code == 0, result.output
    return [json.loads(line) for line in result.stdout.splitlines()]


def test_n_best_with_word_probabilities(tiny_model_dirs, photos) -> None:
    flags = ("--json", "--beam-size", "3", "--num-captions", "3", "--max-length", "6")
    flags += ("--repeat-penalty", "0")  # ranked by the score alone
    record = records(glimpse_caption(tiny_model_dirs[0], photos[:1], *flags))[0]
    captions = [record, *record["alternatives"]]
    assert len({c["caption"] for c in captions}) == 3
    assert [c["score"] for c in captions] == sorted((c["score"] for c in captions), reverse=True)
    for c in captions:
        assert c["caption"] == " ".join(t["word"] for t in c["tokens"])
        assert all(0 < t["p"] <= 1 and len(t["attention"]) == 4 for t in c["tokens"])
    plain_flags = ("--beam-size", "3", "--max-length", "6", "--repeat-penalty", "0")
    plain = glimpse_caption(tiny_model_dirs[0], photos[:1], *plain_flags)
    assert plain.stdout == f"{photos[0]}: {record['caption']}\n"
    text = glimpse_caption(tiny_model_dirs[0], photos[:1], *flags[1:]).stdout.splitlines()
    assert text == [f"{photos[0]}: {record['caption']}"] + [
        f"{photos[0]} ({rank}): {c['caption']}" for rank, c in enumerate(captions[1:], start=2)
    ]


def test_a_seed_gives_each_image_the_same_samples_whatever_the_batch(
    tiny_model_dirs, photos
) -> None:
    flags = ("--json", "--sample", "--seed", "5", "--temperature", "1.5", "--num-captions", "2")

    def texts(*more: str, images=photos) -> list[list[str]]:
        found = records(glimpse_caption(tiny_model_dirs[0], images, *flags, *more))
        return [[r["caption"]] + [a["caption"] for a in r["alternatives"]] for r in found]

    together = texts()
    assert texts("--batch-size", "1") == together
    assert texts(images=photos[1:]) == together[1:]
    assert texts("--seed", "6") != together  # the seed matters


@pytest.mark.parametrize(
    ("flags", "words"),
    [
        (["--top-p", "0.5"], "--top-p: top_p applies only when sample=true"),
        (["--sample", "--beam-size", "2"], "--beam-size: beam_size does not apply"),
        (["--num-captions", "4"], "--num-captions: num_captions must not exceed beam_size (3)"),
        (["--sample", "--temperature", "0"], "--temperature: temperature must be above 0"),
        (["--beam-size", "1", "--repeat-penalty", "2"], "--repeat-penalty: repeat_penalty ranks"),
        (["--repeat-penalty", "51"], "--repeat-penalty: repeat_penalty must be between 0 and 50"),
    ],
)
def test_bad_flags_are_one_line_errors(tiny_model_dirs, photos, flags, words) -> None:
    result = glimpse_caption(tiny_model_dirs[0], photos[:1], *flags)
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {words}"), result.stderr
    assert result.stdout == ""
