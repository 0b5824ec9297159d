"""A model's captions or answers for a whole split, with the attention they were given with,
ready for `training.evaluate`'s reports.

The models run through an engine-like object that is passed in (the service's `Engine` is
one): evaluation then measures exactly what the service answers, and training needs no
import of the service to do it.
"""

from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import numpy as np
from PIL import Image

from training.data.coco import CaptionRecord
from training.data.vqa import VQARecord
from training.evaluate import WordMaps


class CaptionOutput(Protocol):
    caption: str
    words: list[str]
    attention: np.ndarray  # (len(words), h, w): the map each word was written with


class AnswerOutput(Protocol):
    answer: str
    attention: np.ndarray | None  # (glimpses, h, w); None without attention maps


class Captioning(Protocol):
    def caption(
        self, images: Sequence[Image.Image], beam_size: int = ...
    ) -> Sequence[CaptionOutput]:
        """One caption per image, searched with `beam_size` beams."""


class Answering(Protocol):
    def answer(
        self, images: Sequence[Image.Image], questions: Sequence[Sequence[str]]
    ) -> Sequence[Sequence[AnswerOutput]]:
        """The answers to questions[i] about images[i], in order."""


def caption_split(
    engine: Captioning, records: Sequence[CaptionRecord], beam_size: int, batch_size: int
) -> tuple[dict[int, str], dict[int, WordMaps]]:
    """Captions and per-word maps of every record's image, by image id."""
    generated, attention = {}, {}
    for start in range(0, len(records), batch_size):
        chunk = records[start : start + batch_size]
        out = engine.caption(_images([r.path for r in chunk]), beam_size=beam_size)
        for record, result in zip(chunk, out, strict=True):
            generated[record.image_id] = result.caption
            attention[record.image_id] = list(zip(result.words, result.attention, strict=True))
    return generated, attention


def answer_split(
    engine: Answering, records: Sequence[VQARecord], batch_size: int
) -> tuple[dict[int, str], dict[int, np.ndarray]]:
    """Answers and glimpse maps by question id; each image's questions share one pass."""
    by_image: dict[int, list[VQARecord]] = {}
    for record in records:
        by_image.setdefault(record.image_id, []).append(record)
    groups = list(by_image.values())
    answers, attention = {}, {}
    for start in range(0, len(groups), batch_size):
        chunk = groups[start : start + batch_size]
        out = engine.answer(
            _images([g[0].path for g in chunk]), [[r.question for r in g] for g in chunk]
        )
        for group, results_of_image in zip(chunk, out, strict=True):
            for record, result in zip(group, results_of_image, strict=True):
                answers[record.question_id] = result.answer
                if result.attention is not None:
                    attention[record.question_id] = result.attention
    return answers, attention


def _images(paths: Sequence[Path]) -> list[Image.Image]:
    images = []
    for path in paths:
        with Image.open(path) as image:
            images.append(image.convert("RGB"))
    return images
