"""Tiny models for tests, built in one place so that every test file means the same "tiny".

The configs keep every layer (attention, gating, glimpses) at a few dozen units, so a model
trains or decodes in milliseconds; a test that needs another size says which field it changes.
"""

from pathlib import Path
from typing import Any

import torch

from models.captioner import Captioner, CaptionerConfig
from models.checkpoint import Checkpoint, EncoderSpec, save_pretrained
from models.encoders import create_encoder
from models.text import build_tokenizer
from models.vqa import VQAConfig, VQAModel

WORDS = "a an large small red green blue yellow circle square triangle star left right of"
ANSWERS = ["yes", "no", "red", "blue", "circle", "square", "2"]
TINY_IMAGE_SIZE = 64
TINY_CAPTIONER = {"d_model": 16, "embed_dim": 8, "hidden_dim": 16, "attn_dim": 8, "dropout": 0.0}
TINY_VQA = {
    "d_model": 16,
    "embed_dim": 8,
    "question_dim": 12,
    "attn_dim": 8,
    "classifier_dim": 16,
    "dropout": 0.0,
}


def tiny_captioner_config(
    vocab_size: int, feature_dim: int, grid: tuple[int, int], **overrides: Any
) -> CaptionerConfig:
    """A captioner config over a `grid` of `feature_dim` channels; `overrides` set any field."""
    fields = TINY_CAPTIONER | overrides
    return CaptionerConfig(vocab_size=vocab_size, feat_dim=feature_dim, grid=grid, **fields)


def tiny_vqa_config(
    vocab_size: int, num_answers: int, feature_dim: int, grid: tuple[int, int], **overrides: Any
) -> VQAConfig:
    """A VQA config (attention fusion, 2 glimpses unless overridden) choosing among
    `num_answers` answers."""
    fields = TINY_VQA | overrides
    return VQAConfig(
        vocab_size=vocab_size, num_answers=num_answers, feat_dim=feature_dim, grid=grid, **fields
    )


def tiny_encoder_spec() -> EncoderSpec:
    return EncoderSpec(name="tiny", image_size=TINY_IMAGE_SIZE)


def write_tiny_models(root: Path, seed: int = 0) -> tuple[Path, Path]:
    """An untrained captioner and VQA model on the tiny encoder, saved as model directories.

    At twice the tiny width: the sizes the API, CLI and benchmark tests have always run on.
    """
    torch.manual_seed(seed)
    spec = tiny_encoder_spec()
    encoder = create_encoder(spec.name, pretrained=False)
    grid = encoder.grid_size(spec.image_size)
    tokenizer = build_tokenizer([WORDS, "what color shape is the there how many"])
    wider = {"d_model": 32, "embed_dim": 16, "attn_dim": 16}
    captioner = Captioner(
        tiny_captioner_config(len(tokenizer), encoder.out_dim, grid, hidden_dim=32, **wider)
    )
    vqa = VQAModel(
        tiny_vqa_config(
            len(tokenizer),
            len(ANSWERS),
            encoder.out_dim,
            grid,
            question_dim=32,
            classifier_dim=32,
            **wider,
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
