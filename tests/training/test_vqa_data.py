"""VQA v2 loaders, the answer vocabulary, soft targets and the VQA training dataset."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from models.text import PAD_ID, decode
from training.data.coco import DatasetFormatError
from training.data.vqa import (
    AnswerVocab,
    VQADataset,
    build_question_vocabulary,
    collate_vqa,
    load_vqa,
    load_vqa_split,
)
from training.features import FeatureCache


def _question(question_id: int, image_id: int, text: str) -> dict:
    return {"image_id": image_id, "question": text, "question_id": question_id}


def _annotation(question_id: int, image_id: int, answers: list[str], **extra) -> dict:
    mca = max(set(answers), key=answers.count)
    return {
        "question_id": question_id,
        "image_id": image_id,
        "question_type": extra.pop("question_type", "what color"),
        "answer_type": extra.pop("answer_type", "other"),
        "multiple_choice_answer": mca,
        "answers": [
            {"answer": a, "answer_confidence": "yes", "answer_id": n + 1}
            for n, a in enumerate(answers)
        ],
        **extra,
    }


def _write_json(path: Path, data: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))
    return path


def _write_image(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 8), (30, 60, 90)).save(path)


SHAPES_QUESTIONS = [
    (101, 1, "What color is the circle?", ["red"] * 9 + ["blue"], [5]),
    (102, 1, "How many shapes are there?", ["2"] * 6 + ["two"] * 3 + ["3"], [5, 6]),
    (103, 2, "Is there a green triangle?", ["yes"] * 10, [7]),
    (104, 2, "What shape is the red object?", ["circle"] * 2 + ["square"] * 8, []),
]


@pytest.fixture(scope="module")
def vqa_fixture_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A shapes-world split (train) and real VQA v2 files (val2014, test-dev2015)."""
    root = tmp_path_factory.mktemp("vqa")
    for image_id in (1, 2):
        _write_image(root / "images" / "train" / f"{image_id:012d}.png")
    questions = [_question(q, i, text) for q, i, text, _, _ in SHAPES_QUESTIONS]
    annotations = [
        _annotation(q, i, answers, target_ids=targets)
        for q, i, _, answers, targets in SHAPES_QUESTIONS
    ]
    _write_json(root / "annotations" / "questions_train.json", {"questions": questions})
    _write_json(root / "annotations" / "answers_train.json", {"annotations": annotations})

    _write_image(root / "val2014" / "COCO_val2014_000000000042.jpg")
    real_header = {"info": {}, "license": {}, "task_type": "Open-Ended", "data_type": "mscoco"}
    _write_json(
        root / "v2_OpenEnded_mscoco_val2014_questions.json",
        {**real_header, "data_subtype": "val2014", "questions": [_question(7, 42, "Is it sunny?")]},
    )
    _write_json(
        root / "v2_mscoco_val2014_annotations.json",
        {
            **real_header,
            "data_subtype": "val2014",
            "annotations": [_annotation(7, 42, ["yes"] * 7 + ["no"] * 3, question_type="is it")],
        },
    )
    _write_image(root / "test2015" / "COCO_test2015_000000000099.jpg")
    _write_json(
        root / "v2_OpenEnded_mscoco_test-dev2015_questions.json",
        {**real_header, "questions": [_question(9, 99, "What is on the table?")]},
    )
    return root


@pytest.fixture(scope="module")
def vqa_train_records(vqa_fixture_dir: Path):
    return load_vqa_split(vqa_fixture_dir, "train")


def test_shapes_layout_records(vqa_train_records, vqa_fixture_dir: Path) -> None:
    assert [r.question_id for r in vqa_train_records] == [101, 102, 103, 104]
    first = vqa_train_records[0]
    assert first.image_id == 1 and first.question == "What color is the circle?"
    assert first.path == vqa_fixture_dir / "images" / "train" / "000000000001.png"
    assert first.answers == ["red"] * 9 + ["blue"]
    assert first.multiple_choice_answer == "red"
    assert (first.answer_type, first.question_type) == ("other", "what color")
    assert [r.target_ids for r in vqa_train_records] == [[5], [5, 6], [7], []]


def test_real_vqa_v2_layout(vqa_fixture_dir: Path) -> None:
    (record,) = load_vqa_split(vqa_fixture_dir, "val")
    assert record.path.name == "COCO_val2014_000000000042.jpg"
    assert record.question_type == "is it" and record.answers.count("no") == 3
    assert record.target_ids == []


def test_test_dev_has_no_answers(vqa_fixture_dir: Path) -> None:
    (record,) = load_vqa_split(vqa_fixture_dir, "test-dev")
    assert record.image_id == 99 and record.path.parent.name == "test2015"
    assert record.answers == [] and record.multiple_choice_answer == ""


def test_missing_split_raises(vqa_fixture_dir: Path) -> None:
    with pytest.raises(FileNotFoundError, match="questions_minival"):
        load_vqa_split(vqa_fixture_dir, "minival")


def test_question_without_image_raises(vqa_fixture_dir: Path, tmp_path: Path) -> None:
    questions = _write_json(tmp_path / "q.json", {"questions": [_question(1, 77, "Why?")]})
    with pytest.raises(DatasetFormatError, match="image_id 77"):
        load_vqa(questions, None, vqa_fixture_dir / "images" / "train")


def test_question_without_annotation_raises(vqa_fixture_dir: Path, tmp_path: Path) -> None:
    questions = _write_json(tmp_path / "q.json", {"questions": [_question(1, 1, "Why?")]})
    answers = _write_json(tmp_path / "a.json", {"annotations": [_annotation(2, 1, ["yes"] * 10)]})
    with pytest.raises(DatasetFormatError, match="question_id 1"):
        load_vqa(questions, answers, vqa_fixture_dir / "images" / "train")


@pytest.mark.parametrize(
    ("questions", "message"),
    [
        ({"questions": {}}, "'questions' list"),
        ({"questions": [{"question_id": 1, "image_id": 1}]}, "'question'"),
        ({"questions": [{"question_id": "1", "image_id": 1, "question": "x"}]}, "'question_id'"),
        ({"questions": [_question(1, 1, "?!")]}, "no words"),
    ],
)
def test_bad_questions_file_raises(
    vqa_fixture_dir: Path, tmp_path: Path, questions: dict, message: str
) -> None:
    path = _write_json(tmp_path / "q.json", questions)
    with pytest.raises(DatasetFormatError, match=message):
        load_vqa(path, None, vqa_fixture_dir / "images" / "train")


def test_answer_vocab_counts_normalised_answers(vqa_train_records) -> None:
    # counts after normalisation: "2" 9 (6 + 3 "two"), "yes" 10, "red" 9, "square" 8,
    # "circle" 2, "blue" 1, "3" 1.
    vocab = AnswerVocab.from_records(vqa_train_records, size=4)
    assert vocab.to_json() == ["yes", "2", "red", "square"]  # 9-9 tie broken alphabetically
    assert vocab.index("Two") == 1 and vocab.index("circle") is None
    assert len(AnswerVocab.from_records(vqa_train_records)) == 7


def test_answer_vocab_json_round_trip(vqa_train_records, tmp_path: Path) -> None:
    vocab = AnswerVocab.from_records(vqa_train_records)
    path = tmp_path / "answers.json"
    path.write_text(json.dumps(vocab.to_json()))
    loaded = AnswerVocab.from_json(json.loads(path.read_text()))
    assert loaded.to_json() == vocab.to_json() and loaded[1] == vocab[1]
    for bad in ({"answers": []}, ["yes", 2], [], ["yes", "yes"]):
        with pytest.raises(ValueError, match="answer vocabulary"):
            AnswerVocab.from_json(bad)


def test_soft_target_is_min_one_count_over_three() -> None:
    vocab = AnswerVocab(["2", "3", "red", "yes"])
    target = vocab.soft_target(["2", "two", "Two.", "3", "red", "red", "blue", "4", "4", "4"])
    assert target.shape == (4,) and target.dtype == torch.float32
    assert target.tolist() == pytest.approx([1.0, 1 / 3, 2 / 3, 0.0])
    assert vocab.soft_target([]).tolist() == [0.0] * 4


@pytest.fixture(scope="module")
def vqa_feature_cache() -> FeatureCache:
    grids = np.stack([np.full((4, 2), value, dtype=np.float16) for value in (10.0, 20.0)])
    return FeatureCache(grids, [2, 1], grid=(2, 2), dim=2, fingerprint={})


def test_vqa_dataset_items(vqa_train_records, vqa_feature_cache: FeatureCache) -> None:
    tokenizer = build_question_vocabulary(vqa_train_records)
    vocab = AnswerVocab.from_records(vqa_train_records)
    dataset = VQADataset(vqa_train_records, tokenizer, vocab, features=vqa_feature_cache)
    grid, question, target, question_id = dataset[1]
    assert question_id == 102 and grid.shape == (4, 2)
    assert torch.all(grid == 20.0)  # image 1 is row 1 of the cache
    assert decode(tokenizer, question.tolist()) == ["how", "many", "shapes", "are", "there"]
    assert target[vocab.index("2")] == 1.0 and target[vocab.index("3")] == pytest.approx(1 / 3)
    assert target.sum() == pytest.approx(4 / 3)


def test_collate_vqa(vqa_train_records, vqa_feature_cache: FeatureCache) -> None:
    tokenizer = build_question_vocabulary(vqa_train_records)
    vocab = AnswerVocab.from_records(vqa_train_records)
    dataset = VQADataset(vqa_train_records, tokenizer, vocab, features=vqa_feature_cache)
    loader = DataLoader(dataset, batch_size=4, collate_fn=collate_vqa)
    batch = next(iter(loader))
    assert batch.lengths.tolist() == [5, 5, 5, 6]
    assert batch.questions.shape == (4, 6)
    assert torch.all(batch.questions[:3, 5] == PAD_ID) and torch.all(batch.questions[:, :5] > 3)
    assert batch.targets.shape == (4, len(vocab)) and batch.inputs.shape == (4, 4, 2)
    assert batch.question_ids.tolist() == [101, 102, 103, 104]


def test_gathered_batch_equals_collated_items(
    vqa_train_records, vqa_feature_cache: FeatureCache
) -> None:
    tokenizer = build_question_vocabulary(vqa_train_records)
    vocab = AnswerVocab.from_records(vqa_train_records)
    dataset = VQADataset(vqa_train_records, tokenizer, vocab, features=vqa_feature_cache)
    indices = [2, 0, 1]
    gathered = dataset.batch(indices)
    collated = collate_vqa([dataset[i] for i in indices])
    for got, expected in zip(gathered, collated, strict=True):
        assert torch.equal(got, expected)
