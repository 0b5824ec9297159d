"""VQA v2 questions and answers, the answer vocabulary, soft targets and a training dataset.

Two layouts of a data root are understood (`load_vqa_split` picks one):
- the shapes world: `annotations/questions_<split>.json`, `annotations/answers_<split>.json`,
  images in `images/<split>/`;
- real VQA v2: `v2_OpenEnded_mscoco_<name>_questions.json` and
  `v2_mscoco_<name>_annotations.json` at the root, COCO images in `<image folder>/`, for the
  splits train (train2014), val (val2014), test-dev (test-dev2015, images test2015) and
  test (test2015); the test splits have no annotations.
Questions name images by id only, so the image folder is scanned once and every file whose
name ends in the id (`COCO_val2014_000000000042.jpg`, `000000000042.png`) is matched to it.
"""

import json
import re
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import torch
from PIL import Image
from torch import Tensor
from torch.utils.data import Dataset
from transformers import PreTrainedTokenizerFast

from models.text import build_tokenizer, encode, pad_questions, words
from training.data.coco import DatasetFormatError, FeatureStore, ImageSource
from training.metrics.vqa import normalize_answer

# split -> (name in the VQA v2 file names, COCO image folder)
REAL_VQA_SPLITS = {
    "train": ("train2014", "train2014"),
    "val": ("val2014", "val2014"),
    "test-dev": ("test-dev2015", "test2015"),
    "test": ("test2015", "test2015"),
}
_IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png"}
_TRAILING_ID = re.compile(r"(\d+)$")


@dataclass
class VQARecord:
    """One question about one image, with its human answers when the split has them."""

    question_id: int
    image_id: int
    path: Path
    question: str
    answers: list[str] = field(default_factory=list)  # the 10 human answers, raw
    multiple_choice_answer: str = ""
    answer_type: str = ""
    question_type: str = ""
    target_ids: list[int] = field(default_factory=list)  # shapes world: objects asked about


def _read_list(path: Path, key: str, fields: dict[str, type]) -> list[dict]:
    """The `key` list of a VQA v2 JSON file, each entry checked for `fields`."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise DatasetFormatError(f"{path}: not valid JSON ({error})") from error
    entries = data.get(key) if isinstance(data, dict) else None
    if not isinstance(entries, list):
        raise DatasetFormatError(f"{path}: expected an object with a {key!r} list")
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict):
            raise DatasetFormatError(f"{path}: {key}[{i}] is not an object")
        for name, kind in fields.items():
            if not isinstance(entry.get(name), kind) or isinstance(entry.get(name), bool):
                raise DatasetFormatError(f"{path}: {key}[{i}] needs a {kind.__name__} {name!r}")
    return entries


def index_images(image_dir: Path) -> dict[int, Path]:
    """Image id -> file, from the digits that end each image file's name."""
    image_dir = Path(image_dir)
    if not image_dir.is_dir():
        raise FileNotFoundError(f"image folder {image_dir} does not exist")
    paths = {}
    for path in image_dir.iterdir():
        match = _TRAILING_ID.search(path.stem)
        if match and path.suffix.lower() in _IMAGE_SUFFIXES:
            paths[int(match.group(1))] = path
    return paths


def _answers(path: Path, i: int, annotation: dict) -> list[str]:
    answers = annotation["answers"]
    if not all(isinstance(a, dict) and isinstance(a.get("answer"), str) for a in answers):
        raise DatasetFormatError(f"{path}: annotations[{i}] has an answer without an 'answer'")
    return [a["answer"] for a in answers]


def load_vqa(
    questions_json: Path, annotations_json: Path | None, image_dir: Path
) -> list[VQARecord]:
    """Questions of a VQA v2 questions file, joined with their annotations when given."""
    questions = _read_list(
        questions_json, "questions", {"question_id": int, "image_id": int, "question": str}
    )
    annotations: dict[int, dict] = {}
    if annotations_json is not None:
        fields = {
            "question_id": int,
            "answers": list,
            "multiple_choice_answer": str,
            "answer_type": str,
            "question_type": str,
        }
        for i, a in enumerate(_read_list(annotations_json, "annotations", fields)):
            annotations[a["question_id"]] = {**a, "answers": _answers(annotations_json, i, a)}
    images = index_images(image_dir)
    records = []
    for q in questions:
        if not words(q["question"]):
            raise DatasetFormatError(f"{questions_json}: question {q['question_id']} has no words")
        if q["image_id"] not in images:
            raise DatasetFormatError(f"no image for image_id {q['image_id']} in {image_dir}")
        if annotations_json is not None and q["question_id"] not in annotations:
            raise DatasetFormatError(
                f"{annotations_json}: no annotation for question_id {q['question_id']}"
            )
        a = annotations.get(q["question_id"], {})
        target_ids = a.get("target_ids", [])
        if not isinstance(target_ids, list) or not all(isinstance(t, int) for t in target_ids):
            raise DatasetFormatError(f"target_ids of question {q['question_id']} must be ints")
        records.append(
            VQARecord(
                question_id=q["question_id"],
                image_id=q["image_id"],
                path=images[q["image_id"]],
                question=q["question"],
                answers=a.get("answers", []),
                multiple_choice_answer=a.get("multiple_choice_answer", ""),
                answer_type=a.get("answer_type", ""),
                question_type=a.get("question_type", ""),
                target_ids=target_ids,
            )
        )
    return records


def load_vqa_split(root: Path, split: str) -> list[VQARecord]:
    """One split of a VQA data root, shapes-world or real VQA v2 layout."""
    root = Path(root)
    questions = root / "annotations" / f"questions_{split}.json"
    if questions.is_file():
        answers = root / "annotations" / f"answers_{split}.json"
        return load_vqa(questions, answers if answers.is_file() else None, root / "images" / split)
    if split in REAL_VQA_SPLITS:
        name, image_folder = REAL_VQA_SPLITS[split]
        questions = root / f"v2_OpenEnded_mscoco_{name}_questions.json"
        answers = root / f"v2_mscoco_{name}_annotations.json"
        if questions.is_file():
            return load_vqa(questions, answers if answers.is_file() else None, root / image_folder)
    raise FileNotFoundError(
        f"no questions for split {split!r} under {root}: expected "
        f"annotations/questions_{split}.json or v2_OpenEnded_mscoco_<name>_questions.json"
    )


def build_question_vocabulary(
    records: Iterable[VQARecord], min_count: int = 1
) -> PreTrainedTokenizerFast:
    """Word tokenizer of the training questions: words seen at least `min_count` times."""
    return build_tokenizer((r.question for r in records), min_count=min_count)


class AnswerVocab:
    """The classes of the VQA classifier: the most frequent normalised training answers."""

    def __init__(self, answers: Sequence[str]) -> None:
        if not answers or len(set(answers)) != len(answers):
            raise ValueError("an answer vocabulary needs one or more distinct answers")
        self.answers = list(answers)
        self._index = {answer: i for i, answer in enumerate(self.answers)}

    @classmethod
    def from_records(cls, records: Iterable[VQARecord], size: int = 3000) -> "AnswerVocab":
        """Top `size` answers by count over all 10 human answers of every question (as in
        Show, Ask, Attend and Answer); ties broken alphabetically so the order is stable."""
        counts = Counter(normalize_answer(a) for r in records for a in r.answers)
        counts.pop("", None)
        ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
        return cls([answer for answer, _ in ranked[:size]])

    def to_json(self) -> list[str]:
        """The answers in class order, as `answers.json` holds them."""
        return list(self.answers)

    @classmethod
    def from_json(cls, data: object) -> "AnswerVocab":
        if not isinstance(data, list) or not all(isinstance(a, str) for a in data):
            raise ValueError("an answer vocabulary is a JSON list of strings")
        return cls(data)

    def __len__(self) -> int:
        return len(self.answers)

    def __getitem__(self, index: int) -> str:
        return self.answers[index]

    def index(self, answer: str) -> int | None:
        """Class of an answer after normalisation, None when it is not a class."""
        return self._index.get(normalize_answer(answer))

    def soft_target(self, answers: Sequence[str]) -> Tensor:
        """Training target (N,): min(1, #humans who gave the answer / 3) per class.

        This is the usual VQA v2 training score. The official metric instead averages that
        quantity over the 10 leave-one-out subsets of 9 answers (training.metrics.vqa); the two
        differ only when 1 to 3 humans agree (e.g. 3 agreeing: 1.0 here, 0.9 there).
        """
        target = torch.zeros(len(self.answers))  # (N,)
        for answer, count in Counter(map(normalize_answer, answers)).items():
            if answer in self._index:
                target[self._index[answer]] = min(1.0, count / 3)
        return target


class VQADataset(Dataset):
    """(image side, question ids, soft target (N,), question id), one per question.

    Questions are encoded without <bos>/<eos>: the question encoder reads them up to their
    length (`load_vqa` ensures every question has a word). Questions none of whose answers
    are classes keep an all-zero target.
    """

    def __init__(
        self,
        records: Sequence[VQARecord],
        tokenizer: PreTrainedTokenizerFast,
        answers: AnswerVocab,
        *,
        features: FeatureStore | None = None,
        transform: Callable[[Image.Image], Tensor] | None = None,
    ) -> None:
        self.records, self.tokenizer, self.answers = list(records), tokenizer, answers
        self.source = ImageSource(features, transform)
        self.question_tokens = [  # tokenised once, not every epoch
            torch.tensor(encode(tokenizer, r.question, add_special=False), dtype=torch.long)
            for r in self.records
        ]

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor, Tensor, int]:
        record = self.records[index]
        image = self.source(record.image_id, record.path)
        target = self.answers.soft_target(record.answers)  # (N,)
        return image, self.question_tokens[index], target, record.question_id

    def batch(self, indices: Sequence[int]) -> "VQABatch":
        """`collate_vqa` of these examples, reading their cached grids in one gather."""
        records = [self.records[i] for i in indices]
        questions, lengths = pad_questions([self.question_tokens[i] for i in indices])
        return VQABatch(
            inputs=self.source.many([r.image_id for r in records], [r.path for r in records]),
            questions=questions,
            lengths=lengths,
            targets=torch.stack([self.answers.soft_target(r.answers) for r in records]),
            question_ids=torch.tensor([r.question_id for r in records], dtype=torch.long),
        )


class VQABatch(NamedTuple):
    inputs: Tensor  # (B, L, D) grids or (B, 3, H, W) images
    questions: Tensor  # (B, T) ids, padded with <pad>
    lengths: Tensor  # (B,) question lengths
    targets: Tensor  # (B, N) soft scores
    question_ids: Tensor  # (B,)


def collate_vqa(batch: Sequence[tuple[Tensor, Tensor, Tensor, int]]) -> VQABatch:
    """Pad questions to the longest in the batch and stack the rest."""
    inputs, questions, targets, question_ids = zip(*batch, strict=True)
    padded, lengths = pad_questions(questions)
    return VQABatch(
        inputs=torch.stack(inputs),
        questions=padded,
        lengths=lengths,
        targets=torch.stack(targets),
        question_ids=torch.tensor(question_ids, dtype=torch.long),
    )
