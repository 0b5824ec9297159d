"""The service's façade: bytes in, the engine's own results and their timings out."""

import asyncio
import io
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import pytest
from PIL import Image

from service.engine import Engine
from service.errors import ImageTooLarge, ImageTooManyPixels, NotReady, UnsupportedImageType
from service.inference import AnswerOptions, CaptionOptions, Inference
from service.settings import Settings


@pytest.fixture(scope="module")
def engine(tiny_model_dirs) -> Engine:
    return Engine.from_dirs(*tiny_model_dirs)


@pytest.fixture(scope="module")
def png() -> bytes:
    pixels = np.random.default_rng(3).integers(0, 255, (48, 64, 3), np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


@contextmanager
def serving(engine: Engine, **limits) -> Iterator[Inference]:
    inference = Inference(engine, Settings(**limits))
    inference.start()
    try:
        yield inference
    finally:
        inference.close()


def test_a_caption_is_the_engines_with_its_image_model_and_timings(engine, png) -> None:
    with serving(engine) as inference:
        done = asyncio.run(inference.caption(png, CaptionOptions(beam_size=2, max_length=6)))
    expected = engine.caption([done.image], beam_size=2, max_length=6)[0]
    assert done.result.words == expected.words
    np.testing.assert_allclose(done.result.attention, expected.attention, atol=1e-5)
    assert done.image.size == (64, 48) and done.image.mode == "RGB"
    assert done.model == inference.models["captioner"] and done.model.task == "captioning"
    assert done.model.grid == (4, 4)
    timings = done.timings
    assert timings.decode > 0 and timings.queue >= 0 and timings.batch > 0


def test_answers_come_in_order_with_their_top_k(engine, png) -> None:
    questions = ("what color is the square?", "how many shapes?")
    with serving(engine) as inference:
        done = asyncio.run(inference.answer(png, AnswerOptions(questions, top_k=2)))
    expected = engine.answer([done.image], [list(questions)], top_k=2)[0]
    assert [a.question for a in done.result] == list(questions)
    for got, want in zip(done.result, expected, strict=True):
        assert got.answer == want.answer and len(got.top_k) == 2
        np.testing.assert_allclose(got.attention, want.attention, atol=1e-5)
    assert done.model.task == "vqa" and done.model.answers == 7


def test_a_missing_head_is_not_ready_before_any_decoding(tiny_model_dirs) -> None:
    captions_only = Engine.from_dirs(tiny_model_dirs[0], None)
    with serving(captions_only) as inference:
        assert set(inference.models) == {"captioner"}
        with pytest.raises(NotReady, match="no VQA model"):
            asyncio.run(inference.answer(b"not even an image", AnswerOptions(("why?",), 1)))


@pytest.mark.parametrize(
    ("limits", "error"),
    [
        ({}, UnsupportedImageType),
        ({"max_image_bytes": 100}, ImageTooLarge),
        ({"max_image_pixels": 40 * 40}, ImageTooManyPixels),
        ({"image_formats": ["JPEG"]}, UnsupportedImageType),
    ],
    ids=["not-an-image", "too-many-bytes", "too-many-pixels", "format-not-allowed"],
)
def test_bad_bytes_are_refused_within_the_limits(engine, png, limits, error) -> None:
    data = b"just some text" if not limits else png
    with serving(engine, **limits) as inference, pytest.raises(error):
        asyncio.run(inference.caption(data, CaptionOptions(beam_size=1, max_length=3)))


def test_a_closed_service_refuses_new_work(engine, png) -> None:
    with serving(engine) as inference:
        pass
    with pytest.raises(NotReady, match="shutting down"):
        asyncio.run(inference.caption(png, CaptionOptions(beam_size=1, max_length=3)))
