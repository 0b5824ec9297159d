"""VQA accuracy by the official rules (hand-computed cases) and the COCO caption metrics."""

import json
import shutil
from pathlib import Path

import pytest

from training.data.vqa import VQARecord
from training.metrics.captions import score_captions
from training.metrics.results import ANSWERS, CAPTIONS, load_results, write_results
from training.metrics.vqa import normalize_answer, question_accuracy, score_vqa


@pytest.mark.parametrize(
    ("raw", "normalised"),
    [
        ("two", "2"),
        ("Two dogs.", "2 dogs"),
        ("none", "0"),
        ("a dog", "dog"),
        ("The Dog", "dog"),
        ("dont", "don't"),
        ("couldnt've", "couldn't've"),
        ("its", "its"),  # a word, not a contraction to fix
        ("yes.", "yes"),
        ("3.5", "3.5"),
        ("1,000", "1000"),  # a comma between digits removes every listed mark
        ("red,blue", "red blue"),  # elsewhere a mark between words splits them
        ("red, blue", "red blue"),
        ("hot-dog", "hot dog"),
        ("what?", "what"),
        (" yes\n", "yes"),
    ],
)
def test_normalize_answer(raw: str, normalised: str) -> None:
    assert normalize_answer(raw) == normalised


@pytest.mark.parametrize(
    ("agreeing", "accuracy"),
    [
        # k of 10 humans gave the answer. Leaving out one of the k leaves k - 1 of 9,
        # leaving out one of the others leaves k: acc = (k min(1,(k-1)/3) + (10-k) min(1,k/3))/10
        (0, 0.0),
        (1, (1 * 0 + 9 * (1 / 3)) / 10),  # 0.3
        (2, (2 * (1 / 3) + 8 * (2 / 3)) / 10),  # 0.6
        (3, (3 * (2 / 3) + 7 * 1) / 10),  # 0.9
        (4, 1.0),
        (10, 1.0),
    ],
)
def test_question_accuracy_leave_one_out(agreeing: int, accuracy: float) -> None:
    humans = ["cat"] * agreeing + ["dog"] * (10 - agreeing)
    assert question_accuracy("cat", humans) == pytest.approx(accuracy)


@pytest.mark.parametrize(
    ("prediction", "humans"),
    [("2", ["two"]), ("dog", ["a dog"]), ("dont", ["don't"]), ("yes.", ["yes"])],
)
def test_accuracy_compares_normalised_answers(prediction: str, humans: list[str]) -> None:
    assert question_accuracy(prediction, humans * 10) == 1.0
    assert question_accuracy(prediction, ["other"] * 10) == 0.0


def test_accuracy_needs_two_answers() -> None:
    with pytest.raises(ValueError, match="at least 2"):
        question_accuracy("yes", ["yes"])


def _record(question_id: int, answers: list[str], answer_type: str, question_type: str):
    return VQARecord(
        question_id=question_id,
        image_id=1,
        path=Path("1.png"),
        question="q?",
        answers=answers,
        multiple_choice_answer=answers[0],
        answer_type=answer_type,
        question_type=question_type,
    )


def test_score_vqa_overall_and_per_type() -> None:
    records = [
        _record(1, ["yes"] * 10, "yes/no", "is there"),  # "yes" -> 1.0
        _record(2, ["no"] * 10, "yes/no", "is there"),  # "yes" -> 0.0
        _record(3, ["3"] * 3 + ["4"] * 7, "number", "how many"),  # "three" -> 0.9
        _record(4, ["red"] * 2 + ["blue"] * 8, "other", "what color"),  # "red" -> 0.6
    ]
    results = {1: "yes", 2: "yes", 3: "three", 4: "red", 99: "ignored"}
    scores = score_vqa(results, records)
    assert scores["overall"] == pytest.approx((1.0 + 0.0 + 0.9 + 0.6) / 4)
    assert scores["per_answer_type"] == pytest.approx({"yes/no": 0.5, "number": 0.9, "other": 0.6})
    assert scores["per_question_type"] == pytest.approx(
        {"is there": 0.5, "how many": 0.9, "what color": 0.6}
    )
    assert scores["num_questions"] == 4
    with pytest.raises(ValueError, match="1 questions have no result"):
        score_vqa({1: "yes", 2: "no", 3: "3"}, records)


def test_score_vqa_refuses_questions_without_answers() -> None:
    record = _record(1, ["yes"] * 10, "yes/no", "is there")
    record.answers = []
    with pytest.raises(ValueError, match="no human answers"):
        score_vqa({1: "yes"}, [record])


def test_load_results_of_answers(tmp_path: Path) -> None:
    path = tmp_path / "results.json"
    path.write_text(
        json.dumps([{"question_id": 5, "answer": "yes"}, {"question_id": 6, "answer": "2"}])
    )
    assert load_results(path, ANSWERS) == {5: "yes", 6: "2"}
    for bad, message in [
        ({"question_id": 5}, "JSON list"),
        ([{"question_id": "5", "answer": "yes"}], "integer question_id"),
        ([{"question_id": 5, "answer": 2}], "string answer"),
        ([{"question_id": 5, "answer": "a"}, {"question_id": 5, "answer": "b"}], "twice"),
    ]:
        path.write_text(json.dumps(bad))
        with pytest.raises(ValueError, match=message):
            load_results(path, ANSWERS)


REFERENCES = {
    1: ["a large red circle", "a red circle on a plain background", "there is a red circle"],
    2: ["a blue square left of a green star", "two shapes: a blue square and a green star"],
    3: ["a small yellow triangle", "one yellow triangle on a plain background"],
}
RIGHT = {
    1: "a large red circle",
    2: "a blue square left of a green star",
    3: "a small yellow triangle",
}
# Near misses: right shapes, wrong colours, so some rare n-grams still match.
WRONG = {1: "a large blue circle", 2: "a red square left of a star", 3: "a small green triangle"}


@pytest.fixture(scope="module")
def java_caption_scores() -> dict[str, float]:
    """One Java scoring run (PTB tokenizer + METEOR, ~20 s) shared by the module."""
    if shutil.which("java") is None:
        pytest.skip("Java is not installed")
    return score_captions(RIGHT, REFERENCES, use_java=True)


def test_identical_captions_score_top(java_caption_scores: dict[str, float]) -> None:
    assert set(java_caption_scores) == {
        "Bleu_1", "Bleu_2", "Bleu_3", "Bleu_4", "METEOR", "ROUGE_L", "CIDEr"
    }  # fmt: skip
    assert java_caption_scores["Bleu_4"] == pytest.approx(1.0, abs=1e-6)
    assert java_caption_scores["ROUGE_L"] == pytest.approx(1.0)
    assert java_caption_scores["METEOR"] > 0.9
    assert java_caption_scores["CIDEr"] > 1.0


def test_wrong_captions_score_lower_without_java() -> None:
    right = score_captions(RIGHT, REFERENCES, use_java=False)
    wrong = score_captions(WRONG, REFERENCES, use_java=False)
    assert "METEOR" not in right
    assert right["Bleu_4"] == pytest.approx(1.0, abs=1e-6)
    assert right["CIDEr"] > wrong["CIDEr"] > 0.0
    assert right["Bleu_1"] > wrong["Bleu_1"] and right["ROUGE_L"] > wrong["ROUGE_L"]


def test_missing_java_skips_meteor_with_warning(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # a PATH with no java on it
    with pytest.warns(UserWarning, match="METEOR skipped"):
        scores = score_captions(RIGHT, REFERENCES)
    assert "METEOR" not in scores and scores["Bleu_4"] == pytest.approx(1.0, abs=1e-6)


def test_score_captions_checks_inputs() -> None:
    with pytest.raises(ValueError, match="no captions"):
        score_captions({}, REFERENCES, use_java=False)
    with pytest.raises(ValueError, match="image_id 7"):
        score_captions({7: "a cat"}, REFERENCES, use_java=False)


def test_load_results_of_captions(tmp_path: Path) -> None:
    path = tmp_path / "captions_results.json"
    path.write_text(json.dumps([{"image_id": 1, "caption": "a red circle"}]))
    assert load_results(path, CAPTIONS) == {1: "a red circle"}
    for content, message in [
        ("{oops", "not valid JSON"),
        (json.dumps({"image_id": 1}), "JSON list"),
        (json.dumps(["a red circle"]), "not an object"),
        (json.dumps([{"image_id": 1.5, "caption": "x"}]), "integer image_id"),
        (json.dumps([{"image_id": 1}]), "string caption"),
        (json.dumps([{"image_id": 1, "caption": "x"}, {"image_id": 1, "caption": "y"}]), "twice"),
    ]:
        path.write_text(content)
        with pytest.raises(ValueError, match=message):
            load_results(path, CAPTIONS)


def test_written_results_are_the_servers_format_and_read_back(tmp_path: Path) -> None:
    path = tmp_path / "answers.json"
    write_results(path, {9: "yes", 3: "2"}, ANSWERS)
    assert json.loads(path.read_text()) == [
        {"question_id": 9, "answer": "yes"},
        {"question_id": 3, "answer": "2"},
    ]
    assert load_results(path, ANSWERS) == {9: "yes", 3: "2"}
    with pytest.raises(ValueError, match="integer image_id"):  # answers are not captions
        load_results(path, CAPTIONS)
