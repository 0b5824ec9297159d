import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from api.cli import app

runner = CliRunner()


def last_json(output: str) -> dict:
    return json.loads(output.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def caption_run(tiny_world: Path, tiny_model_dirs, tmp_path_factory) -> tuple[dict, Path]:
    results = tmp_path_factory.mktemp("eval") / "captions.json"
    out = runner.invoke(
        app,
        [
            "evaluate",
            "captions",
            "--data",
            str(tiny_world),
            "--split",
            "test",
            "--model",
            str(tiny_model_dirs[0]),
            "--results-out",
            str(results),
            "--beam-size",
            "1",
            "--json",
        ],
    )
    assert out.exit_code == 0, out.output
    return last_json(out.stdout), results


def test_model_run_reports_every_metric(caption_run) -> None:
    report, _ = caption_run
    assert report["num_images"] == 6
    for key in ("Bleu_1", "Bleu_4", "METEOR", "ROUGE_L", "CIDEr"):
        assert 0.0 <= report[key] <= 10.0
    assert report["correctness"]["total"] == 6
    assert report["grounding"]["total"] >= 0


def test_scoring_the_written_results_gives_the_same_scores(caption_run, tiny_world) -> None:
    report, results = caption_run
    rows = json.loads(results.read_text())
    assert len(rows) == 6 and set(rows[0]) == {"image_id", "caption"}
    rescored = runner.invoke(
        app,
        [
            "evaluate",
            "captions",
            "--data",
            str(tiny_world),
            "--split",
            "test",
            "--results",
            str(results),
            "--json",
        ],
    )
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
    scored = runner.invoke(
        app,
        [
            "evaluate",
            "vqa",
            "--data",
            str(tiny_world),
            "--split",
            "test",
            "--results",
            str(tmp_path / "perfect.json"),
            "--json",
        ],
    )
    assert scored.exit_code == 0, scored.output
    assert last_json(scored.stdout)["overall"] > 0.9

    run = runner.invoke(
        app,
        [
            "evaluate",
            "vqa",
            "--data",
            str(tiny_world),
            "--split",
            "test",
            "--model",
            str(tiny_model_dirs[1]),
            "--json",
        ],
    )
    assert run.exit_code == 0, run.output
    report = last_json(run.stdout)
    assert report["num_questions"] == len(perfect)
    assert 0.0 <= report["grounding"]["hit_rate"] <= 1.0


def test_a_bad_results_file_is_a_clear_error(tiny_world: Path, tmp_path: Path) -> None:
    (tmp_path / "bad.json").write_text('{"not": "a list"}')
    out = runner.invoke(
        app,
        [
            "evaluate",
            "captions",
            "--data",
            str(tiny_world),
            "--split",
            "test",
            "--results",
            str(tmp_path / "bad.json"),
        ],
    )
    assert out.exit_code == 2 and "error:" in out.stderr
