"""Turn decoded PIL images into the [0, 1] tensors every encoder takes.

Normalisation is deliberately absent: each encoder normalises its own input, so callers
never need to know a backbone's statistics.
"""

from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image


def image_to_tensor(image: Image.Image, size: int) -> torch.Tensor:
    """Resize to a `size` x `size` square (bilinear, antialiased) and scale to [0, 1]."""
    if not isinstance(image, Image.Image):
        raise TypeError(f"expected a PIL.Image.Image, got {type(image).__name__}")
    if isinstance(size, bool) or not isinstance(size, int) or size <= 0:
        raise ValueError(f"size must be a positive int, got {size!r}")
    rgb = image.convert("RGB")
    if rgb.size != (size, size):
        # Pillow's bilinear filter widens its support when shrinking, i.e. it antialiases.
        rgb = rgb.resize((size, size), Image.Resampling.BILINEAR)
    pixels = torch.from_numpy(np.array(rgb, dtype=np.uint8))  # (size, size, 3)
    return pixels.permute(2, 0, 1).float().div_(255.0)  # (3, size, size)


def images_to_batch(images: Sequence[Image.Image], size: int) -> torch.Tensor:
    """Stack several images into one (B, 3, size, size) batch."""
    if len(images) == 0:
        raise ValueError("images must not be empty")
    return torch.stack([image_to_tensor(image, size) for image in images])  # (B, 3, S, S)
