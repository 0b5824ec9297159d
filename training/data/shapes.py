"""Generator of the shapes world (docs/shapes-world.md): PNG images plus COCO instances,
COCO captions and VQA v2 question/answer files for each split.

Each image is made from its own random stream, derived from (seed, split, index), so the
output is byte-identical whatever the number of worker processes.
"""

import json
import multiprocessing
import os
import zlib
from collections.abc import Mapping
from contextlib import ExitStack
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from training.data.shapes_captions import make_captions
from training.data.shapes_questions import Question, make_questions, noisy_answers
from training.data.shapes_render import render_scene
from training.data.shapes_scene import (
    CANVAS_SIZE,
    WorldObject,
    coco_categories,
    coco_category_id,
    sample_objects,
)

DEFAULT_SIZES = {"train": 8000, "val": 1000, "test": 1000}
# Image ids are SPLIT_CODES[split] * ID_STRIDE + index: unique across splits, and an image's
# id does not depend on the sizes of the other splits.
SPLIT_CODES = {"train": 1, "val": 2, "test": 3}
ID_STRIDE = 10_000_000
ITEMS_PER_IMAGE = 10  # object, caption and question ids are image_id * 10 + k
# Noisy pixels defeat LZ77 matching: Huffman coding alone is faster and ~15% smaller.
PNG_OPTIONS = {"compress_level": 1, "compress_type": zlib.Z_HUFFMAN_ONLY}


def image_id(split: str, index: int) -> int:
    return SPLIT_CODES[split] * ID_STRIDE + index


def generate(
    out_dir: Path,
    sizes: Mapping[str, int] = DEFAULT_SIZES,
    seed: int = 0,
    workers: int | None = None,
    progress: bool = True,
) -> None:
    """Write images and annotation files of every split in `sizes` under `out_dir`.

    `workers=None` uses up to 2 processes (the default machine has 2 cores); 1 runs in-process.
    Workers are spawned, so a script that calls this needs the `if __name__ == "__main__":`
    guard.
    """
    _check_arguments(sizes, seed, workers)
    workers = workers or min(2, os.cpu_count() or 1)
    out_dir = Path(out_dir)
    (out_dir / "annotations").mkdir(parents=True, exist_ok=True)
    tasks = [
        (str(out_dir / "images" / split), seed, split, index)
        for split, size in sizes.items()
        for index in range(size)
    ]
    for split in sizes:
        (out_dir / "images" / split).mkdir(parents=True, exist_ok=True)
    records: dict[str, list[dict[str, Any]]] = {split: [] for split in sizes}
    with ExitStack() as stack:
        if workers == 1:
            results = map(_make_image, tasks)
        else:
            pool = stack.enter_context(multiprocessing.get_context("spawn").Pool(workers))
            results = pool.imap(_make_image, tasks, chunksize=16)
        bar = tqdm(results, total=len(tasks), desc="shapes world", unit="img", disable=not progress)
        for record in bar:
            records[record["split"]].append(record)
    for split, split_records in records.items():
        _write_split(out_dir / "annotations", split, seed, split_records)


def _check_arguments(sizes: Mapping[str, int], seed: int, workers: int | None) -> None:
    for split, size in sizes.items():
        if split not in SPLIT_CODES:
            raise ValueError(f"unknown split {split!r}: use {sorted(SPLIT_CODES)}")
        if not isinstance(size, int) or not 0 <= size < ID_STRIDE:
            raise ValueError(f"size of {split!r} must be an int in [0, {ID_STRIDE}), got {size!r}")
    if not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    if workers is not None and (not isinstance(workers, int) or workers < 1):
        raise ValueError(f"workers must be a positive int, got {workers!r}")


def _make_image(task: tuple[str, int, str, int]) -> dict[str, Any]:
    """Draw, save and describe one image (runs in a worker process)."""
    image_dir, seed, split, index = task
    streams = np.random.SeedSequence([seed, SPLIT_CODES[split], index]).spawn(4)
    scene_rng, render_rng, caption_rng, question_rng = (np.random.default_rng(s) for s in streams)
    img_id = image_id(split, index)
    objects = [
        replace(obj, id=img_id * ITEMS_PER_IMAGE + k)
        for k, obj in enumerate(sample_objects(scene_rng))
    ]
    file_name = f"{img_id:012d}.png"
    render_scene(objects, render_rng).save(Path(image_dir) / file_name, "PNG", **PNG_OPTIONS)
    return {
        "split": split,
        "image": {
            "id": img_id,
            "file_name": file_name,
            "width": CANVAS_SIZE,
            "height": CANVAS_SIZE,
        },
        "objects": [_instance(obj, img_id) for obj in objects],
        "captions": make_captions(objects, caption_rng),
        "questions": [
            _vqa_entries(question, img_id, img_id * ITEMS_PER_IMAGE + k, question_rng)
            for k, question in enumerate(make_questions(objects, question_rng))
        ],
    }


def _instance(obj: WorldObject, img_id: int) -> dict[str, Any]:
    return {
        "id": obj.id,
        "image_id": img_id,
        "category_id": coco_category_id(obj.shape),
        "bbox": list(obj.box),
        "area": obj.box[2] * obj.box[3],
        "iscrowd": 0,
        "color": obj.color,
        "size": obj.size,
    }


def _vqa_entries(
    question: Question, img_id: int, question_id: int, rng: np.random.Generator
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The question record and its annotation record, in the VQA v2 layout."""
    answers = noisy_answers(question, rng)
    annotation = {
        "question_id": question_id,
        "image_id": img_id,
        "question_type": question.question_type,
        "answer_type": question.answer_type,
        "multiple_choice_answer": question.answer,
        "answers": [
            {"answer": answer, "answer_confidence": "yes", "answer_id": k + 1}
            for k, answer in enumerate(answers)
        ],
        "target_ids": [obj.id for obj in question.targets],
    }
    return {"image_id": img_id, "question": question.text, "question_id": question_id}, annotation


def _write_split(folder: Path, split: str, seed: int, records: list[dict[str, Any]]) -> None:
    info = {"description": "Glimpse shapes world", "version": "1.0", "split": split, "seed": seed}
    images = [r["image"] for r in records]
    instances = {
        "info": info,
        "licenses": [],
        "images": images,
        "annotations": [obj for r in records for obj in r["objects"]],
        "categories": coco_categories(),
    }
    captions = {
        "info": info,
        "licenses": [],
        "images": images,
        "annotations": [
            {
                "id": r["image"]["id"] * ITEMS_PER_IMAGE + k,
                "image_id": r["image"]["id"],
                "caption": c,
            }
            for r in records
            for k, c in enumerate(r["captions"])
        ],
    }
    vqa_header = {"info": info, "license": {}, "data_type": "shapes", "data_subtype": split}
    questions = {
        **vqa_header,
        "task_type": "Open-Ended",
        "questions": [q for r in records for q, _ in r["questions"]],
    }
    answers = {**vqa_header, "annotations": [a for r in records for _, a in r["questions"]]}
    for name, content in [
        ("instances", instances),
        ("captions", captions),
        ("questions", questions),
        ("answers", answers),
    ]:
        with open(folder / f"{name}_{split}.json", "w", encoding="utf-8") as file:
            json.dump(content, file)
