"""The bundled models do what the README says on shapes images they never saw: `glimpse
caption` and `glimpse ask` from a fresh clone, checked against the images' ground truth.

A small world from an unused seed (the full held-out figures are benchmarks/results/
quality.json); the bars here sit below the measured ones so that only a broken model fails.
"""

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from api.cli import app
from training.data.shapes_grammar import parse_caption
from training.data.shapes_scene import objects_from_coco
from training.metrics.shapes import caption_grounding, caption_is_complete

IMAGES = 24


@pytest.fixture(scope="module")
def unseen_world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from training.data.shapes import generate

    root = tmp_path_factory.mktemp("unseen")
    generate(root, {"train": 0, "val": 0, "test": IMAGES}, seed=7, workers=1, progress=False)
    return root


def test_bundled_captioner_describes_unseen_images_truly_and_looks_at_what_it_names(
    unseen_world: Path,
) -> None:
    annotations = json.loads((unseen_world / "annotations" / "instances_test.json").read_text())
    images = {int(i["id"]): unseen_world / "images" / "test" / i["file_name"] for i in
              annotations["images"]}  # fmt: skip
    result = CliRunner().invoke(app, ["caption", *map(str, images.values()), "--json"])
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.output.splitlines()]
    by_path = {Path(line["image"]).name: line for line in lines}
    objects = objects_from_coco(annotations)
    complete, attention = 0, {}
    for image_id, path in images.items():
        line = by_path[path.name]
        complete += caption_is_complete(parse_caption(line["caption"]), objects[image_id])
        attention[image_id] = [(t["word"], t["attention"]) for t in line["tokens"]]
        assert len(line["tokens"]) == len(line["caption"].split())
    assert complete >= 0.85 * IMAGES, [line["caption"] for line in lines]
    assert caption_grounding(attention, annotations)["hit_rate"] >= 0.8


def test_bundled_vqa_answers_unseen_questions(unseen_world: Path) -> None:
    questions = json.loads((unseen_world / "annotations" / "questions_test.json").read_text())
    answers = json.loads((unseen_world / "annotations" / "answers_test.json").read_text())
    truth = {a["question_id"]: a["multiple_choice_answer"] for a in answers["annotations"]}
    asked = questions["questions"][:12]  # each ask loads the model: keep it short
    right = 0
    for question in asked:
        path = unseen_world / "images" / "test" / f"{question['image_id']:012d}.png"
        result = CliRunner().invoke(app, ["ask", str(path), question["question"], "--json"])
        assert result.exit_code == 0, result.output
        right += json.loads(result.output)["answer"] == truth[question["question_id"]]
    assert right >= 0.75 * len(asked)
