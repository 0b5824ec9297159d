"""The image side of training: a frozen encoder read through the feature cache, or a
trainable one run on images at every step (fine-tuning)."""

from collections.abc import Sequence
from pathlib import Path

import torch
from torch import Tensor, nn

from models.checkpoint import EncoderSpec
from models.encoder import Encoder, create_encoder
from models.preprocess import image_to_tensor
from training.config import TrainConfig
from training.features import FeatureCache, load_or_build


def encoder_spec(cfg: TrainConfig) -> EncoderSpec:
    return EncoderSpec(cfg.encoder, cfg.image_size, dict(cfg.encoder_options), cfg.fine_tune)


def build_encoder(cfg: TrainConfig) -> Encoder:
    encoder = create_encoder(cfg.encoder, pretrained=True, **cfg.encoder_options)
    return encoder if cfg.fine_tune else encoder.freeze()


def feature_cache(
    encoder: Encoder, cfg: TrainConfig, root: Path, split: str, images: dict[int, Path]
) -> FeatureCache:
    """Grids of a split's images, computed once per encoder setting and reused by every run."""
    options = "-".join(f"{k}{v}" for k, v in sorted(cfg.encoder_options.items()))
    cache_dir = root / "features" / f"{cfg.encoder}-{options}-{cfg.image_size}".replace(" ", "")
    ids = sorted(images)
    return load_or_build(
        encoder, [images[i] for i in ids], ids, cache_dir, split=split, image_size=cfg.image_size
    )


def image_source(cfg: TrainConfig) -> dict:
    """Keyword arguments for the data sets' image side when the encoder is fine-tuned."""
    return {"transform": lambda image: image_to_tensor(image, cfg.image_size)}


class EncodedHead(nn.Module):
    """Encoder + head as one module, so that fine-tuning trains both through one optimiser."""

    def __init__(self, encoder: Encoder, head: nn.Module) -> None:
        super().__init__()
        self.encoder, self.head = encoder, head

    def forward(self, images: Tensor, *args: object, **kwargs: object) -> Sequence[Tensor]:
        return self.head(self.encoder(images)[0], *args, **kwargs)  # grid (B, L, D) to head

    @torch.inference_mode()
    def grid(self, images: Tensor) -> Tensor:
        return self.encoder(images)[0]
