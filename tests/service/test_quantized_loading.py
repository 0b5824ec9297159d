"""GLIMPSE_QUANTIZE: the loader quantises the captioner, and the model card says so."""

from dataclasses import replace
from pathlib import Path

import pytest
from PIL import Image
from pydantic import ValidationError

from models.captioner import Captioner
from models.checkpoint import load_pretrained, save_pretrained
from models.quantize import quantization_of
from service.cards import model_cards
from service.loading import load_engine
from service.settings import Settings


@pytest.fixture(scope="module")
def wide_captioner(tmp_path_factory: pytest.TempPathFactory, tiny_model_dirs) -> Path:
    """The tiny captioner with a recurrent cell wide enough to be quantised (4 x 128 x 176
    weights, over MIN_WEIGHTS); every other layer stays below it, in fp32."""
    checkpoint = load_pretrained(tiny_model_dirs[0])
    checkpoint.model = Captioner(replace(checkpoint.model.config, hidden_dim=128))
    return save_pretrained(tmp_path_factory.mktemp("wide") / "captioner", checkpoint)


def test_int8_is_an_option_of_the_loaded_captioner(wide_captioner: Path, tiny_model_dirs) -> None:
    caption_dir, vqa_dir = wide_captioner, tiny_model_dirs[1]
    plain = load_engine(Settings(caption_model=caption_dir, vqa_model=vqa_dir), warm_up=False)
    int8 = load_engine(
        Settings(caption_model=caption_dir, vqa_model=vqa_dir, quantize="int8"), warm_up=True
    )
    assert quantization_of(int8.captioner.model) == "int8"
    assert quantization_of(int8.vqa.model) == "none"  # read once per question: left in fp32
    before, after = model_cards(plain), model_cards(int8)
    assert before["captioner"].quantization == "none"
    assert after["captioner"].quantization == "int8"
    assert after["captioner"].id == f"{before['captioner'].id}-int8"  # answers say which
    assert after["vqa"] == before["vqa"]
    image = Image.new("RGB", (64, 64), (200, 30, 30))
    caption = int8.caption([image], beam_size=2, max_length=4)[0]
    assert len(caption.words) == len(caption.attention) <= 4


def test_an_unknown_quantization_is_refused() -> None:
    with pytest.raises(ValidationError, match="quantize"):
        Settings(quantize="int4")
