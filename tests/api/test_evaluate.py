import json
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from api.cli import app
from factories import ANSWERS
from training.data.shapes_scene import SHAPES

runner = CliRunner()


def last_json(output: str) -> dict:
    return json.loads(output.strip().splitlines()[-1])


def evaluate(kind: str, root: Path, split: str, *options: str) -> Result:
    """`glimpse evaluate KIND --data ROOT --split SPLIT OPTIONS...`."""
    return runner.invoke(app, ["evaluate", kind, "--data", str(root), "--split", split, *options])


@pytest.fixture(scope="module")
def caption_run(tiny_world: Path, tiny_model_dirs, tmp_path_factory) -> tuple[dict, Path]:
    results = tmp_path_factory.mktemp("eval") / "captions.json"
    out = evaluate(
        "captions",
        tiny_world,
        "test",
        *("--model", str(tiny_model_dirs[0]), "--results-out", str(results)),
        *("--beam-size", "1", "--json"),
    )
    assert out.exit_code == 0, out.output
    return last_json(out.stdout), results


def test_model_run_reports_every_metric(caption_run) -> None:
    report, _ = caption_run
    assert report["num_images"] == 6
    for key in ("Bleu_1", "Bleu_4", "METEOR", "ROUGE_L", "CIDEr"):
        assert 0.0 <= report[key] <= 10.0
    assert report["correctness"]["total"] == 6


def test_grounding_scores_every_shape_word_of_the_captions(caption_run) -> None:
    report, results = caption_run
    words = [w for row in json.loads(results.read_text()) for w in row["caption"].split()]
    shape_words = sum(word in SHAPES for word in words)
    assert shape_words > 0  # the fixture's captions do name shapes
    grounding = report["grounding"]
    assert grounding["total"] == shape_words
    assert grounding["hit_rate"] == pytest.approx(grounding["hits"] / shape_words)


def test_scoring_the_written_results_gives_the_same_scores(caption_run, tiny_world) -> None:
    report, results = caption_run
    rows = json.loads(results.read_text())
    assert len(rows) == 6 and set(rows[0]) == {"image_id", "caption"}
    rescored = evaluate("captions", tiny_world, "test", "--results", str(results), "--json")
    assert rescored.exit_code == 0, rescored.output
    again = last_json(rescored.stdout)
    for key in ("Bleu_4", "CIDEr", "ROUGE_L"):
        assert again[key] == pytest.approx(report[key])
    assert again["correctness"] == report["correctness"]


def test_perfect_answers_score_high_and_grounding_is_reported(
    tiny_world: Path, tiny_model_dirs, tmp_path: Path
) -> None:
    truth = json.loads((tiny_world / "annotations" / "answers_test.json").read_text())
    perfect = [
        {"question_id": a["question_id"], "answer": a["multiple_choice_answer"]}
        for a in truth["annotations"]
    ]
    (tmp_path / "perfect.json").write_text(json.dumps(perfect))
    scored = evaluate(
        "vqa", tiny_world, "test", "--results", str(tmp_path / "perfect.json"), "--json"
    )
    assert scored.exit_code == 0, scored.output
    assert last_json(scored.stdout)["overall"] > 0.9

    run = evaluate("vqa", tiny_world, "test", "--model", str(tiny_model_dirs[1]), "--json")
    assert run.exit_code == 0, run.output
    report = last_json(run.stdout)
    assert report["num_questions"] == len(perfect)
    assert 0.0 <= report["grounding"]["hit_rate"] <= 1.0


def test_a_bad_results_file_is_a_clear_error(tiny_world: Path, tmp_path: Path) -> None:
    (tmp_path / "bad.json").write_text('{"not": "a list"}')
    out = evaluate("captions", tiny_world, "test", "--results", str(tmp_path / "bad.json"))
    assert out.exit_code == 2 and "error:" in out.stderr


@pytest.fixture
def test_dev(tmp_path: Path) -> Path:
    """VQA v2's test-dev as downloaded: questions and images, no human answers."""
    from PIL import Image

    (tmp_path / "test2015").mkdir()
    for image_id in (99, 100):
        Image.new("RGB", (64, 64), (200, 40, 40)).save(
            tmp_path / "test2015" / f"COCO_test2015_{image_id:012d}.jpg"
        )
    questions = [
        {"image_id": 99, "question": "What color is the square?", "question_id": 990},
        {"image_id": 99, "question": "Is there a circle?", "question_id": 991},
        {"image_id": 100, "question": "How many shapes are there?", "question_id": 1000},
    ]
    header = {"info": {}, "license": {}, "task_type": "Open-Ended", "data_type": "mscoco"}
    (tmp_path / "v2_OpenEnded_mscoco_test-dev2015_questions.json").write_text(
        json.dumps({**header, "data_subtype": "test-dev2015", "questions": questions})
    )
    return tmp_path


def evaluate_test_dev(root: Path, *options: str) -> Result:
    return evaluate("vqa", root, "test-dev", *options)


def test_a_split_without_answers_writes_the_results_and_scores_nothing(
    test_dev: Path, tiny_model_dirs
) -> None:
    results = test_dev / "answers.json"
    out = evaluate_test_dev(
        test_dev, "--model", str(tiny_model_dirs[1]), "--results-out", str(results)
    )
    assert out.exit_code == 0, out.output
    assert "nothing to score" in out.stdout and str(results) in out.stdout
    rows = json.loads(results.read_text())  # the VQA server's format
    assert [row["question_id"] for row in rows] == [990, 991, 1000]
    assert all(set(row) == {"question_id", "answer"} and row["answer"] in ANSWERS for row in rows)

    rescored = evaluate_test_dev(test_dev, "--results", str(results), "--json")
    assert rescored.exit_code == 0, rescored.output
    assert "nothing to score" in rescored.stdout


def test_a_split_without_answers_needs_somewhere_to_write_them(
    test_dev: Path, tiny_model_dirs
) -> None:
    out = evaluate_test_dev(test_dev, "--model", str(tiny_model_dirs[1]))
    assert out.exit_code == 2 and "--results-out" in out.stderr
