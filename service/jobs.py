"""What the model worker runs: a batch of caption, question and label jobs on one engine.

The micro-batcher is generic; these are the jobs the service queues on it and the function
that turns one batch of them into results with a single encoder pass.
"""

import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import partial

import torch
from PIL import Image

from models.decoding import REPEAT_PENALTY, DecodeOptions
from models.sampling import Sampling
from service.domain import DomainVerdict
from service.engine import AnswerResult, CaptionResult, Engine
from service.labels import LabelsResult
from service.metrics import Metrics


@dataclass(frozen=True)
class CaptionJob:
    """A caption to decode: beam search, or sampling with `sampling` (with the request's
    `seed`; None draws an unseeded one), `num_captions` ranked with `length_penalty` and
    `repeat_penalty`."""

    image: Image.Image
    beam_size: int
    max_length: int
    length_penalty: float = 0.0
    num_captions: int = 1
    sampling: Sampling | None = None
    seed: int | None = None
    repeat_penalty: float = REPEAT_PENALTY

    @property
    def decoding(self) -> DecodeOptions:
        return DecodeOptions(
            self.beam_size,
            self.max_length,
            self.length_penalty,
            self.num_captions,
            self.sampling,
            self.repeat_penalty,
        )


@dataclass(frozen=True)
class AnswerJob:
    image: Image.Image
    questions: tuple[str, ...]
    top_k: int


@dataclass(frozen=True)
class LabelJob:
    """The ImageNet classes the encoder recognises in an image (`service.labels`)."""

    image: Image.Image
    top_k: int


@dataclass(frozen=True)
class Refused:
    """A job not run: its image lies outside the head's domain and the policy is `refuse`."""

    domain: DomainVerdict


EngineJob = CaptionJob | AnswerJob | LabelJob
EngineResult = CaptionResult | list[AnswerResult] | Refused | LabelsResult


def run_jobs(
    engine: Engine, jobs: list[EngineJob], metrics: Metrics | None = None
) -> list[EngineResult]:
    """One encoder pass for every image of the batch, then each head on its share of it.

    Captions are decoded together per decoding setting, since one beam search runs with one
    setting; sampled ones each with their own generator, so that a seed gives the same caption
    whatever the batch. All questions go through the VQA head at once with the largest top-k.
    """
    images = [job.image for job in jobs]
    features = _timed(metrics, "encode", len(jobs), engine.encode, images)
    results: dict[int, EngineResult] = _refused(engine, jobs, features)  # by job index

    caption_groups: dict[DecodeOptions, dict[int, CaptionJob]] = defaultdict(dict)
    for i, job in enumerate(jobs):
        if isinstance(job, CaptionJob) and i not in results:
            caption_groups[job.decoding][i] = job
    for options, group in caption_groups.items():
        rows = list(group)
        picked, grids = [job.image for job in group.values()], _rows(features, rows)
        gens = [_generator(job.seed) for job in group.values()] if options.sampling else None
        decode = partial(engine.caption, features=grids, decoding=options, generators=gens)
        captions = _timed(metrics, "caption", len(rows), decode, picked)
        for i, caption in zip(rows, captions, strict=True):
            results[i] = caption

    rows = [i for i, job in enumerate(jobs) if isinstance(job, AnswerJob) and i not in results]
    if rows:
        asked = [job for i, job in enumerate(jobs) if i in rows and isinstance(job, AnswerJob)]
        questions = [list(job.questions) for job in asked]
        top_k = max(job.top_k for job in asked)
        picked, grids = [job.image for job in asked], _rows(features, rows)
        answers = _timed(metrics, "vqa", len(rows), engine.answer, picked, questions, top_k, grids)
        for i, job, per_image in zip(rows, asked, answers, strict=True):
            results[i] = [replace(a, top_k=a.top_k[: job.top_k]) for a in per_image]
    results |= _labels(engine, jobs, features, metrics)
    results |= _with_labels(engine, images, results, features, metrics)
    return [results[i] for i in range(len(jobs))]


def _labels(
    engine: Engine, jobs: list[EngineJob], features: dict, metrics: Metrics | None
) -> dict[int, EngineResult]:
    """The label jobs of the batch, all through the ImageNet head at once with the largest k."""
    rows = [i for i, job in enumerate(jobs) if isinstance(job, LabelJob)]
    if not rows:
        return {}
    wanted = [job.top_k for job in jobs if isinstance(job, LabelJob)]
    picked, grids = [jobs[i].image for i in rows], _rows(features, rows)
    found = _timed(metrics, "labels", len(rows), engine.labels, picked, max(wanted), grids)
    return {i: r.first(k) for i, k, r in zip(rows, wanted, found, strict=True)}


def _refused(engine: Engine, jobs: list[EngineJob], features: dict) -> dict[int, EngineResult]:
    """Under the `refuse` policy, the jobs whose image lies outside their head's domain."""
    if engine.domain_policy != "refuse":
        return {}
    refused: dict[int, EngineResult] = {}
    for kind, job_type in (("captioner", CaptionJob), ("vqa", AnswerJob)):
        rows = [i for i, job in enumerate(jobs) if isinstance(job, job_type)]
        if not rows:
            continue
        grid = features[engine.encoder_key(kind)][rows]  # (len(rows), L, D)
        for i, verdict in zip(rows, engine.judge(kind, grid), strict=True):
            if verdict is not None and not verdict.in_domain:
                refused[i] = Refused(verdict)
    return refused


def _generator(seed: int | None) -> torch.Generator:
    """A request's own generator: seeded as asked, else from the operating system's entropy."""
    generator = torch.Generator()
    if seed is None:
        generator.seed()
    else:
        generator.manual_seed(seed)
    return generator


def _with_labels(
    engine: Engine,
    images: list[Image.Image],
    results: dict[int, EngineResult],
    features: dict,
    metrics: Metrics | None,
) -> dict[int, EngineResult]:
    """The captions and answers of out-of-domain images, each with what the encoder
    recognises in its image."""
    foreign = [i for i, result in results.items() if _out_of_domain(result)]
    labelled: dict[int, EngineResult] = {}
    for i, labels in labels_outside_domain(engine, images, foreign, features, metrics).items():
        result = results[i]
        if isinstance(result, CaptionResult):
            labelled[i] = replace(result, labels=labels)
        elif isinstance(result, list):
            labelled[i] = [replace(answer, labels=labels) for answer in result]
    return labelled


def labels_outside_domain(
    engine: Engine,
    images: list[Image.Image],
    foreign: list[int],
    features: dict,
    metrics: Metrics | None = None,
) -> dict[int, LabelsResult]:
    """What the encoder recognises in the images `foreign` (those judged outside the head's
    domain): `engine.labels_top_k` labels, from the grids already computed; none without a
    labeller. The service and the CLI both answer such an image with them."""
    if not foreign or not engine.labels_top_k or engine.labeller is None:
        return {}
    picked, grids, k = [images[i] for i in foreign], _rows(features, foreign), engine.labels_top_k
    found = _timed(metrics, "labels", len(foreign), engine.labels, picked, k, grids)
    return dict(zip(foreign, found, strict=True))


def _out_of_domain(result: EngineResult) -> bool:
    """A caption or the answers about an image judged outside the head's domain."""
    first = result[0] if isinstance(result, list) and result else result
    if not isinstance(first, CaptionResult | AnswerResult):
        return False
    return first.domain is not None and not first.domain.in_domain


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
