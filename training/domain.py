"""Fitting a model directory's domain check from the images it was trained on.

The Gaussian sees each training image and re-encoded, resized, blurred and noisier views of
it, since a JPEG or a screenshot of the same world is still the model's domain. The threshold
is then set on held-out images and their views: the (1 - false_alarm) quantile of their
distances, times a margin.
"""

import io
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageFilter
from torch import Tensor

from models.checkpoint import Checkpoint
from models.domain import DomainModel, GaussianFit, Kind
from models.encoders import Encoder, encode_in_chunks
from models.preprocess import images_to_batch

View = Callable[[Image.Image, np.random.Generator], Image.Image]
MIN_IMAGES = 10  # fewer training images than this: no domain check


def jpeg(image: Image.Image, quality: int) -> Image.Image:
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, "JPEG", quality=quality)
    return Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")


def resized(image: Image.Image, factor: float) -> Image.Image:
    w, h = image.size
    return image.resize(
        (max(8, round(w * factor)), max(8, round(h * factor))), Image.Resampling.BILINEAR
    )


def noisier(image: Image.Image, sigma: float, rng: np.random.Generator) -> Image.Image:
    pixels = np.asarray(image.convert("RGB"), dtype=np.float32)  # (H, W, 3)
    pixels += rng.normal(0.0, sigma, pixels.shape).astype(np.float32)
    return Image.fromarray(np.clip(np.rint(pixels), 0, 255).astype(np.uint8), "RGB")


def framed(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    """The image on a light margin under a plain bar, as a screenshot or a page shows it."""
    pad, bar = int(rng.integers(2, 24)), int(rng.integers(0, 32))
    margin = tuple(int(c) for c in rng.integers(200, 256, size=3))
    out = Image.new("RGB", (image.width + 2 * pad, image.height + 2 * pad + bar), margin)
    out.paste(tuple(int(c) for c in rng.integers(150, 240, size=3)), (0, 0, out.width, bar))
    out.paste(image, (pad, pad + bar))
    return out


def blocky(image: Image.Image, factor: float) -> Image.Image:
    """Aliased edges: shrunk and enlarged with nearest-neighbour sampling."""
    small = image.resize(
        (round(image.width * factor), round(image.height * factor)), Image.Resampling.NEAREST
    )
    return small.resize(image.size, Image.Resampling.NEAREST)


FIT_VIEWS: tuple[View, ...] = (
    lambda im, rng: jpeg(im, int(rng.integers(60, 96))),
    lambda im, rng: resized(im, float(rng.uniform(0.45, 0.9))),
    lambda im, rng: jpeg(resized(im, float(rng.uniform(0.5, 1.6))), int(rng.integers(65, 96))),
    lambda im, rng: im.filter(ImageFilter.GaussianBlur(float(rng.uniform(0.4, 1.2)))),
    lambda im, rng: noisier(im, float(rng.uniform(3.0, 10.0)), rng),
    lambda im, rng: framed(resized(im, float(rng.uniform(0.6, 1.3))), rng),
    lambda im, rng: blocky(im, float(rng.uniform(0.35, 0.8))),
)


def with_views(paths: Sequence[Path], views: int, seed: int) -> Iterator[Image.Image]:
    """Each image, then `views` random views of it (a different pick for every image)."""
    rng = np.random.default_rng(seed)
    for path in paths:
        with Image.open(path) as opened:
            image = opened.convert("RGB")
        yield image
        for k in rng.choice(len(FIT_VIEWS), size=min(views, len(FIT_VIEWS)), replace=False):
            yield FIT_VIEWS[int(k)](image, rng)


def encode_all(
    encoder: Encoder, images: Iterator[Image.Image], size: int, batch: int = 16
) -> Iterator[Tensor]:
    """The grids (b, L, D) of `images`, a batch at a time."""
    chunk: list[Image.Image] = []
    for image in images:
        chunk.append(image)
        if len(chunk) == batch:
            yield _encode(encoder, chunk, size)
            chunk = []
    if chunk:
        yield _encode(encoder, chunk, size)


def _encode(encoder: Encoder, images: list[Image.Image], size: int) -> Tensor:
    device = next(encoder.parameters()).device
    return encode_in_chunks(encoder, images_to_batch(images, size).to(device))[0].float().cpu()


@dataclass(frozen=True)
class DomainRecipe:
    """How to fit: views per image, held-out share, false-alarm rate and margin."""

    views: int = 2
    held_out: float = 0.2
    false_alarm: float = 0.005
    margin: float = 1.5
    seed: int = 0


def fit_domains(
    encoder: Encoder,
    size: int,
    paths: Sequence[Path],
    recipe: DomainRecipe,
    kinds: Sequence[Kind] = ("pooled",),
) -> dict[Kind, DomainModel]:
    """A domain model per kind of the grids `encoder` makes of `paths` (and their views),
    all from one encoding pass."""
    if len(paths) < MIN_IMAGES:
        raise ValueError(f"fit a domain check on at least {MIN_IMAGES} images, got {len(paths)}")
    order = np.random.default_rng(recipe.seed).permutation(len(paths))
    cut = round(len(paths) * (1 - recipe.held_out))
    fitted = [paths[i] for i in order[:cut]]
    held = [paths[i] for i in order[cut:]]
    gaussians = [GaussianFit(kind) for kind in kinds]
    with torch.inference_mode():
        for grids in encode_all(encoder, with_views(fitted, recipe.views, recipe.seed), size):
            for gaussian in gaussians:
                gaussian.add(grids)
        held_grids = list(
            encode_all(encoder, with_views(held, recipe.views, recipe.seed + 1), size)
        )
        domains = {}
        for gaussian in gaussians:
            domain = gaussian.domain()
            scores = torch.cat([domain.score(grids) for grids in held_grids])  # (N,)
            quantile = float(scores.quantile(1 - recipe.false_alarm))
            domain.threshold = round(quantile * recipe.margin, 3)
            domain.info = {
                "fitted_images": len(fitted),
                "held_out_images": len(held),
                "views_per_image": recipe.views,
                "false_alarm_rate": recipe.false_alarm,
                "held_out_quantile": round(quantile, 3),
                "margin": recipe.margin,
            }
            domains[gaussian.kind] = domain
    return domains


@dataclass(frozen=True)
class TrainingImages:
    """What a run trains on, for its export: the data set's name, a sentence, some images."""

    dataset: str
    description: str
    paths: tuple[Path, ...]

    @classmethod
    def of(cls, data: Path, records: Sequence, most: int = 1000) -> "TrainingImages":
        """The training split of the data folder `data` (records with a `path`)."""
        paths = tuple(sorted({Path(r.path) for r in records}))
        description = f"the training images of {data.name} ({len(paths)} images)"
        return cls(data.name, description, paths[:most])


def fit_for(
    checkpoint: Checkpoint, paths: Sequence[Path], recipe: DomainRecipe, kind: Kind = "pooled"
) -> DomainModel:
    """A domain model for a loaded head, on the grid of its own encoder."""
    encoder = checkpoint.build_encoder().fold_batchnorm().eval()
    return fit_domains(encoder, checkpoint.encoder.image_size, paths, recipe, (kind,))[kind]


_FROZEN: dict[tuple, DomainModel] = {}  # a frozen encoder's fit serves every export of a run


def fit_at_export(
    encoder: Callable[[], Encoder], size: int, images: TrainingImages, frozen_key: tuple | None
) -> DomainModel:
    """The domain check an exported model carries; fitted once per run for a frozen encoder
    (`frozen_key` names it), at every export for a fine-tuned one."""
    key = None if frozen_key is None else (*frozen_key, images.paths)
    if key is not None and key in _FROZEN:
        return _FROZEN[key]
    model = encoder()
    training = model.training
    model.eval()  # a fine-tuned encoder is the one being trained: its mode is given back
    try:
        domain = fit_domains(model, size, images.paths, DomainRecipe())["pooled"]
    finally:
        model.train(training)
    if key is not None:
        _FROZEN[key] = domain
    return domain
