"""What the model worker runs: a batch of caption and question jobs on one engine.

The micro-batcher is generic; these are the jobs the service queues on it and the function
that turns one batch of them into results with a single encoder pass.
"""

import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, replace

from PIL import Image

from service.engine import AnswerResult, CaptionResult, Engine
from service.metrics import Metrics


@dataclass(frozen=True)
class CaptionJob:
    image: Image.Image
    beam_size: int
    max_length: int


@dataclass(frozen=True)
class AnswerJob:
    image: Image.Image
    questions: tuple[str, ...]
    top_k: int


EngineJob = CaptionJob | AnswerJob
EngineResult = CaptionResult | list[AnswerResult]


def run_jobs(
    engine: Engine, jobs: list[EngineJob], metrics: Metrics | None = None
) -> list[EngineResult]:
    """One encoder pass for every image of the batch, then each head on its share of it.

    Captions are decoded together per (beam size, max length), since one beam search runs
    with one setting; all questions go through the VQA head at once with the largest top-k.
    """
    images = [job.image for job in jobs]
    features = _timed(metrics, "encode", len(jobs), engine.encode, images)
    results: dict[int, EngineResult] = {}  # by job index

    caption_groups: dict[tuple[int, int], list[int]] = defaultdict(list)
    for i, job in enumerate(jobs):
        if isinstance(job, CaptionJob):
            caption_groups[(job.beam_size, job.max_length)].append(i)
    for (beam_size, max_length), rows in caption_groups.items():
        picked, grids = [images[i] for i in rows], _rows(features, rows)
        captions = _timed(
            metrics, "caption", len(rows), engine.caption, picked, beam_size, max_length, grids
        )
        for i, caption in zip(rows, captions, strict=True):
            results[i] = caption

    rows = [i for i, job in enumerate(jobs) if isinstance(job, AnswerJob)]
    if rows:
        asked = [job for job in jobs if isinstance(job, AnswerJob)]
        questions = [list(job.questions) for job in asked]
        top_k = max(job.top_k for job in asked)
        picked, grids = [job.image for job in asked], _rows(features, rows)
        answers = _timed(metrics, "vqa", len(rows), engine.answer, picked, questions, top_k, grids)
        for i, job, per_image in zip(rows, asked, answers, strict=True):
            results[i] = [replace(a, top_k=a.top_k[: job.top_k]) for a in per_image]
    return [results[i] for i in range(len(jobs))]


def _rows(features: dict, rows: list[int]) -> dict:
    """The encoder grids of some images of the batch: {key: (len(rows), L, D)}."""
    return {key: grid[rows] for key, grid in features.items()}


def _timed(metrics: Metrics | None, task: str, size: int, work: Callable, *args):
    """Run `work(*args)`, recording its duration and batch size under `task`."""
    started = time.perf_counter()
    result = work(*args)
    if metrics is not None:
        metrics.inference_duration.labels(task).observe(time.perf_counter() - started)
        metrics.batch_size.labels(task).observe(size)
    return result
