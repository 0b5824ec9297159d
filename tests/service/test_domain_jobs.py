"""The domain verdict in a batch: each image judged on its own grid; under `refuse` a foreign
image's job is not decoded while the rest of its batch is."""

import numpy as np
import pytest
import torch
from PIL import Image

from models.domain import DomainModel, summarize
from service.engine import AnswerResult, CaptionResult, Engine
from service.jobs import AnswerJob, CaptionJob, Refused, run_jobs


@pytest.fixture
def engine(tiny_model_dirs) -> Engine:
    """Tiny models whose domain is exactly the grey picture: anything else lies outside."""
    engine = Engine.from_dirs(*tiny_model_dirs)
    for kind, checkpoint in (("captioner", engine.captioner), ("vqa", engine.vqa)):
        grid = engine.encode([grey()])[engine.encoder_key(kind)]  # (1, L, D)
        mean = summarize(grid, "pooled")[0]  # (2D,)
        checkpoint.domain = DomainModel("pooled", mean, torch.eye(len(mean)), threshold=1e-3)
    return engine


def grey() -> Image.Image:
    return Image.new("RGB", (40, 40), (128, 128, 128))


def noise() -> Image.Image:
    return Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 40, 3), np.uint8))


def jobs() -> list:
    return [
        CaptionJob(grey(), beam_size=1, max_length=4),
        CaptionJob(noise(), beam_size=1, max_length=4),
        AnswerJob(noise(), ("what color?",), top_k=2),
        AnswerJob(grey(), ("what is in the cup?",), top_k=2),
    ]


def test_warn_answers_everything_and_judges_each_image(engine: Engine) -> None:
    results = run_jobs(engine, jobs())
    assert isinstance(results[0], CaptionResult) and isinstance(results[1], CaptionResult)
    assert results[0].domain is not None and results[0].domain.in_domain
    assert results[1].domain is not None and not results[1].domain.in_domain
    far, near = results[2], results[3]
    assert isinstance(far, list) and isinstance(near, list)
    assert not far[0].domain.in_domain and near[0].domain.in_domain
    assert near[0].unknown_words == ["in", "cup"] and far[0].unknown_words == []


def test_refuse_skips_only_the_foreign_jobs(engine: Engine) -> None:
    engine.domain_policy = "refuse"
    results = run_jobs(engine, jobs())
    assert isinstance(results[1], Refused) and isinstance(results[2], Refused)
    assert results[1].domain.score > results[1].domain.threshold
    assert isinstance(results[0], CaptionResult)
    answers = results[3]
    assert isinstance(answers, list) and isinstance(answers[0], AnswerResult)


def test_answer_policy_judges_nothing(engine: Engine) -> None:
    engine.domain_policy = "answer"
    results = run_jobs(engine, jobs())
    assert all(not isinstance(r, Refused) for r in results)
    assert results[1].domain is None and results[2][0].domain is None
