"""Fixtures shared across the suite: tiny untrained models written as real model directories."""

from pathlib import Path

import pytest
import torch

from models.captioner import Captioner, CaptionerConfig
from models.checkpoint import Checkpoint, EncoderSpec, save_pretrained
from models.encoder import create_encoder
from models.text import build_tokenizer
from models.vqa import VQAConfig, VQAModel

WORDS = "a an large small red green blue yellow circle square triangle star left right of"
ANSWERS = ["yes", "no", "red", "blue", "circle", "square", "2"]
TINY_IMAGE_SIZE = 64


def tiny_encoder_spec() -> EncoderSpec:
    return EncoderSpec(name="tiny", image_size=TINY_IMAGE_SIZE)


def write_tiny_models(root: Path, seed: int = 0) -> tuple[Path, Path]:
    """An untrained captioner and VQA model on the tiny encoder, saved as model directories."""
    torch.manual_seed(seed)
    spec = tiny_encoder_spec()
    encoder = create_encoder(spec.name, pretrained=False)
    grid = encoder.grid_size(spec.image_size)
    tokenizer = build_tokenizer([WORDS, "what color shape is the there how many"])
    captioner = Captioner(
        CaptionerConfig(len(tokenizer), encoder.out_dim, grid, 32, 16, 32, 16, dropout=0.0)
    )
    vqa = VQAModel(
        VQAConfig(
            len(tokenizer),
            len(ANSWERS),
            encoder.out_dim,
            grid,
            d_model=32,
            embed_dim=16,
            question_dim=32,
            attn_dim=16,
            classifier_dim=32,
            dropout=0.0,
        )
    )
    encoder_state = encoder.state_dict()  # random weights: they must travel with the heads
    caption_dir = save_pretrained(
        root / "captioner", Checkpoint("captioner", captioner, spec, tokenizer, None, encoder_state)
    )
    vqa_dir = save_pretrained(
        root / "vqa", Checkpoint("vqa", vqa, spec, tokenizer, ANSWERS, encoder_state)
    )
    return caption_dir, vqa_dir


@pytest.fixture(scope="session")
def tiny_world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small shapes world (24 train, 8 val, 6 test images) for training and evaluation."""
    from training.data.shapes import generate

    root = tmp_path_factory.mktemp("world")
    generate(root, {"train": 24, "val": 8, "test": 6}, seed=5, workers=1)
    return root


@pytest.fixture(scope="session")
def tiny_model_dirs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return write_tiny_models(tmp_path_factory.mktemp("tiny-models"))
