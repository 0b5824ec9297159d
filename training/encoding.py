"""The image side of training: a frozen encoder read through the feature cache, or a
trainable one run on images at every step (fine-tuning)."""

from collections.abc import Sequence
from pathlib import Path

import torch
from torch import Tensor, nn
from transformers import PreTrainedTokenizerFast

from models.checkpoint import Checkpoint, EncoderSpec, TrainedOn, save_pretrained
from models.domain import DomainModel
from models.encoders import Encoder, create_encoder
from models.preprocess import image_to_tensor
from training.config import TrainConfig
from training.domain import MIN_IMAGES, TrainingImages, fit_at_export
from training.features import CLEAN, FeatureCache, View, ViewedFeatures, load_or_build


def encoder_spec(cfg: TrainConfig) -> EncoderSpec:
    return EncoderSpec(cfg.encoder, cfg.image_size, dict(cfg.encoder_options), cfg.fine_tune)


def build_encoder(cfg: TrainConfig) -> Encoder:
    encoder = create_encoder(cfg.encoder, pretrained=True, **cfg.encoder_options)
    return encoder if cfg.fine_tune else encoder.fold_batchnorm()


def feature_cache(
    encoder: Encoder,
    cfg: TrainConfig,
    root: Path,
    split: str,
    images: dict[int, Path],
    view: View = CLEAN,
) -> FeatureCache:
    """Grids of a split's images (or of a view of them), computed once per encoder setting
    and reused by every run."""
    options = "-".join(f"{k}{v}" for k, v in sorted(cfg.encoder_options.items()))
    cache_dir = root / "features" / f"{cfg.encoder}-{options}-{cfg.image_size}".replace(" ", "")
    ids = sorted(images)
    name = f"{split}-view{view.number}" if view.number else split
    paths = [images[i] for i in ids]
    return load_or_build(
        encoder, paths, ids, cache_dir, split=name, image_size=cfg.image_size, view=view
    )


def training_features(
    encoder: Encoder, cfg: TrainConfig, root: Path, images: dict[int, Path]
) -> FeatureCache | ViewedFeatures:
    """The training split's grids, with `cfg.augmented_views` augmented views beside them."""
    clean = feature_cache(encoder, cfg, root, "train", images)
    if not cfg.augmented_views:
        return clean
    views = [
        feature_cache(encoder, cfg, root, "train", images, View(k, cfg.seed))
        for k in range(1, cfg.augmented_views + 1)
    ]
    return ViewedFeatures([clean, *views], cfg.seed)


def attach_images(
    cfg: TrainConfig, encoder: Encoder, head: nn.Module, root: Path, splits: dict
) -> tuple[nn.Module, dict[str, dict]]:
    """The module to train, and per split the data sets' image side (their keyword args):
    the head over cached grids, or encoder + head over images when fine-tuning.

    `splits` maps a split name to its records (anything with `image_id` and `path`)."""
    if cfg.fine_tune:
        source = {"transform": lambda image: image_to_tensor(image, cfg.image_size)}
        return EncodedHead(encoder, head), {split: source for split in splits}
    sources = {}
    for split, records in splits.items():
        images = {r.image_id: r.path for r in records}
        features = (
            training_features(encoder, cfg, root, images)
            if split == "train"
            else feature_cache(encoder, cfg, root, split, images)
        )
        sources[split] = {"features": features}
    return head, sources


def head_of(model: nn.Module) -> nn.Module:
    return model.head if isinstance(model, EncodedHead) else model


def export_model(
    cfg: TrainConfig,
    model: nn.Module,
    kind: str,
    tokenizer: PreTrainedTokenizerFast,
    path: Path,
    answers: list[str] | None = None,
    trained_on: TrainingImages | None = None,
) -> None:
    """Save the trained head as a model directory (with the encoder when fine-tuned), and
    with `trained_on` what it was trained on and its domain check fitted on those images."""
    encoder_state = None
    if isinstance(model, EncodedHead):
        encoder_state = {k: v.cpu() for k, v in model.encoder.state_dict().items()}
    spec = encoder_spec(cfg)
    checkpoint = Checkpoint(kind, head_of(model), spec, tokenizer, answers, encoder_state)
    if trained_on is not None:
        checkpoint.trained_on = TrainedOn(trained_on.dataset, trained_on.description)
        checkpoint.domain = _domain_check(cfg, model, trained_on)
    save_pretrained(path, checkpoint, getattr(torch, cfg.export_dtype))


def _domain_check(cfg: TrainConfig, model: nn.Module, images: TrainingImages) -> DomainModel | None:
    """The check of the encoder grids the exported model reads (training.domain)."""
    if len(images.paths) < MIN_IMAGES:
        return None
    if isinstance(model, EncodedHead):  # fine-tuned: its grids change with every export
        encoder = model.encoder
        return fit_at_export(lambda: encoder, cfg.image_size, images, None)
    frozen = (cfg.encoder, cfg.image_size, repr(sorted(cfg.encoder_options.items())))
    device = next(model.parameters()).device  # on the run's GPU, if it has one
    return fit_at_export(lambda: build_encoder(cfg).to(device), cfg.image_size, images, frozen)


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
