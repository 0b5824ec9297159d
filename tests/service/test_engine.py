import numpy as np
import pytest
from PIL import Image

from service.engine import Engine


@pytest.fixture(scope="module")
def engine(tiny_model_dirs) -> Engine:
    return Engine.from_dirs(*tiny_model_dirs)


@pytest.fixture(scope="module")
def images() -> list[Image.Image]:
    rng = np.random.default_rng(0)
    return [Image.fromarray(rng.integers(0, 255, (64 + 8 * i, 64, 3), np.uint8)) for i in range(3)]


def test_heads_with_the_same_encoder_share_one_pass(engine: Engine, images) -> None:
    assert len(engine.encode(images)) == 1


def test_batched_captions_equal_single_image_captions(engine: Engine, images) -> None:
    batched = engine.caption(images, beam_size=3, max_length=6)
    for image, result in zip(images, batched, strict=True):
        alone = engine.caption([image], beam_size=3, max_length=6)[0]
        assert result.words == alone.words
        np.testing.assert_allclose(result.attention, alone.attention, atol=1e-5)
        assert result.attention.shape == (len(result.words), 4, 4)


def test_questions_answered_together_equal_alone(engine: Engine, images) -> None:
    questions = [["what color is the circle?", "is there a star?"], [], ["how many shapes?"]]
    together = engine.answer(images, questions, top_k=3)
    assert [len(r) for r in together] == [2, 0, 1]
    for image, qs, results in zip(images, questions, together, strict=True):
        for q, result in zip(qs, results, strict=True):
            alone = engine.answer([image], [[q]], top_k=3)[0][0]
            assert result.question == q and result.answer == alone.answer
            np.testing.assert_allclose(result.attention, alone.attention, atol=1e-5)
            assert result.top_k[0][0] == result.answer
            assert abs(result.attention.sum() - result.attention.shape[0]) < 1e-4


def test_a_question_of_unknown_words_still_gets_an_answer(engine: Engine, images) -> None:
    assert engine.answer(images[:1], [["???"]])[0][0].answer in engine.vqa.answers


def test_engine_needs_a_model() -> None:
    with pytest.raises(ValueError):
        Engine()
