"""One batch of mixed engine jobs: a single encoder pass, each head on its share."""

import numpy as np
import pytest
from PIL import Image

from models.sampling import Sampling
from service.engine import Engine
from service.jobs import AnswerJob, CaptionJob, run_jobs
from service.metrics import Metrics


def test_mixed_engine_jobs_share_one_encoder_pass_and_match_single_calls(tiny_model_dirs):
    engine = Engine.from_dirs(*tiny_model_dirs)
    rng = np.random.default_rng(0)
    images = [
        Image.fromarray(rng.integers(0, 255, (64, 48 + 8 * i, 3), np.uint8)) for i in range(4)
    ]
    jobs = [
        CaptionJob(images[0], beam_size=3, max_length=6),
        AnswerJob(images[1], ("what color?", "how many?"), top_k=2),
        CaptionJob(images[2], beam_size=1, max_length=4),
        AnswerJob(images[3], ("is there a star?",), top_k=4),
    ]
    metrics = Metrics()
    results = run_jobs(engine, jobs, metrics)

    for job, result in zip(jobs, results, strict=True):
        if isinstance(job, CaptionJob):
            alone = engine.caption([job.image], job.beam_size, job.max_length)[0]
            assert result.words == alone.words
            np.testing.assert_allclose(result.attention, alone.attention, atol=1e-5)
        else:
            alone = engine.answer([job.image], [list(job.questions)], top_k=job.top_k)[0]
            assert [a.question for a in result] == list(job.questions)
            for got, want in zip(result, alone, strict=True):
                assert [name for name, _ in got.top_k] == [name for name, _ in want.top_k]
                assert [p for _, p in got.top_k] == pytest.approx([p for _, p in want.top_k])
                assert len(got.top_k) == job.top_k
                np.testing.assert_allclose(got.attention, want.attention, atol=1e-5)
    registry = metrics.registry
    assert registry.get_sample_value("glimpse_batch_size_count", {"task": "encode"}) == 1
    assert registry.get_sample_value("glimpse_batch_size_sum", {"task": "encode"}) == 4
    assert registry.get_sample_value("glimpse_batch_size_count", {"task": "caption"}) == 2
    assert registry.get_sample_value("glimpse_batch_size_sum", {"task": "vqa"}) == 2


def test_seeded_samples_are_the_same_whatever_the_batch(tiny_model_dirs):
    """Sampled jobs of other seeds, other options and beam searches around a seeded one
    leave its captions as they are alone: each draws from its own generator."""
    engine = Engine.from_dirs(*tiny_model_dirs)
    rng = np.random.default_rng(1)
    images = [Image.fromarray(rng.integers(0, 255, (48, 64, 3), np.uint8)) for _ in range(4)]
    hot = Sampling(temperature=1.5)

    def job(image: Image.Image, seed: int | None, sampling: Sampling | None = hot) -> CaptionJob:
        return CaptionJob(image, 3, 8, num_captions=3, sampling=sampling, seed=seed)

    def texts(result) -> list[str]:
        return [c.caption for c in [result, *result.alternatives]]

    alone = texts(run_jobs(engine, [job(images[0], 11)])[0])
    assert texts(run_jobs(engine, [job(images[0], 11)])[0]) == alone
    company = [
        job(images[1], 3),
        job(images[0], 11),
        job(images[2], None),
        job(images[3], 11, Sampling(temperature=0.5)),
        job(images[2], None, sampling=None),
        AnswerJob(images[1], ("what color?",), top_k=2),
    ]
    results = run_jobs(engine, company)
    assert texts(results[1]) == alone
    assert len(results[0].alternatives) == 2
    beams = results[4]
    searched = engine.caption([images[2]], beam_size=3, max_length=8)[0]
    assert beams.caption == searched.caption and len(beams.alternatives) == 2
    other_seed = texts(run_jobs(engine, [job(images[0], 12)])[0])
    assert other_seed != alone  # the seed matters, so the equalities above could fail
