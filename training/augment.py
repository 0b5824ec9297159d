"""Augmented views of the training images for the frozen encoder's feature cache.

People send JPEGs, screenshots and resized copies, not the renderer's lossless pixels: a
captioner trained on the latter alone wrote 97.7% correct captions for a held-out world's
PNGs and 62% for the same images saved as JPEG quality 70. With a frozen encoder the grids are
cached, so augmentation means caching a few views of each image beside the clean one, and
drawing one of them per example each epoch (`training.features.ViewedFeatures`).

Every view keeps the scene where it is (no crops, flips or frames): the captions, the
questions' relations and the attention targets stay true of it.
"""

import numpy as np
from PIL import Image, ImageFilter

from training.domain import jpeg, noisier, resized

# What a view may do, in this order, each with its probability; the ranges cover the
# held-out conditions (JPEG quality 70 and 90, resized to 192 and 512 px of 256) and more.
RESIZE_PROBABILITY, RESIZE_FACTORS = 0.5, (0.5, 2.0)
BLUR_PROBABILITY, BLUR_RADII = 0.2, (0.3, 1.0)
NOISE_PROBABILITY, NOISE_SIGMAS = 0.2, (2.0, 8.0)
JPEG_PROBABILITY, JPEG_QUALITIES = 0.8, (40, 96)
AUGMENTATION = "resize 0.5, [0.5, 2]; blur 0.2, [0.3, 1]; noise 0.2, [2, 8]; jpeg 0.8, [40, 96)"


def augmented(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    """One random view of `image`: resized, blurred, noisier and JPEG re-encoded, each maybe;
    re-encoded at least, so that no view repeats the clean image."""
    view, changed = image.convert("RGB"), False
    if rng.random() < RESIZE_PROBABILITY:
        view, changed = resized(view, float(rng.uniform(*RESIZE_FACTORS))), True
    if rng.random() < BLUR_PROBABILITY:
        radius = float(rng.uniform(*BLUR_RADII))
        view, changed = view.filter(ImageFilter.GaussianBlur(radius)), True
    if rng.random() < NOISE_PROBABILITY:
        view, changed = noisier(view, float(rng.uniform(*NOISE_SIGMAS)), rng), True
    if rng.random() < JPEG_PROBABILITY or not changed:
        view = jpeg(view, int(rng.integers(*JPEG_QUALITIES)))
    return view


def view_of(seed: int, view: int, index: int) -> np.random.Generator:
    """The generator of one image's view: the same cache whenever it is rebuilt."""
    return np.random.default_rng((seed, view, index))
