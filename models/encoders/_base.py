"""What every encoder is: a CNN turned into a grid of annotation vectors a_1..a_L (B, L, D).

Every encoder takes RGB images in [0, 1] and normalises them itself, so the callers never
need to know a backbone's statistics.
"""

import math
from collections.abc import Sequence
from typing import Self

import torch
from torch import nn

from models.encoders._layers import ConvBNAct


class Encoder(nn.Module):
    """Base class: normalise, compute a (B, D, h, w) map, flatten it row-major to (B, L, D)."""

    # Buffers registered in __init__, (1, 3, 1, 1) each.
    mean: torch.Tensor
    std: torch.Tensor

    def __init__(
        self,
        name: str,
        out_dim: int,
        stride: int,
        mean: Sequence[float],
        std: Sequence[float],
        layers: tuple[int, ...] = (),
    ) -> None:
        super().__init__()
        self.name = name
        self.out_dim = out_dim
        self.stride = stride
        # Which backbone stages form the grid (backbone-specific indices; part of the
        # feature-cache fingerprint).
        self.layers = layers
        self.frozen = False
        # Not persistent: weight files of the original backbones load strictly.
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)

    def feature_map(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) normalised images -> (B, out_dim, h, w)."""
        raise NotImplementedError

    def imagenet_classifier(self) -> nn.Linear | None:
        """The published ImageNet classifier over `top_from_grid`'s map, when the
        weights that were loaded include it (set by the family's factory); else None."""
        return None

    def top_from_grid(self, grid: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        """The map the ImageNet classifier pools (B, C, h', w'), computed on from `forward`'s
        grid (B, L, D) of size (h, w): labels reuse the pass the heads already made. Families
        with a head override it."""
        raise NotImplementedError(f"encoder {self.name!r} has no ImageNet head")

    def normalise(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) in [0, 1] -> the backbone's input statistics."""
        if images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"expected images of shape (B, 3, H, W), got {tuple(images.shape)}")
        return (images - self.mean) / self.std  # (B, 3, H, W)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
        """(B, 3, H, W) in [0, 1] -> grid (B, h*w, out_dim) and (h, w)."""
        fmap = self.feature_map(self.normalise(images))  # (B, D, h, w)
        h, w = fmap.shape[-2:]
        return fmap.flatten(2).transpose(1, 2), (h, w)  # (B, L, D)

    def grid_size(self, image_size: int) -> tuple[int, int]:
        """Grid of a square image: every backbone here rounds each downsampling up."""
        side = math.ceil(image_size / self.stride)
        return side, side

    def freeze(self) -> Self:
        """Fix the weights and keep BatchNorm statistics fixed even under `.train()`."""
        self.frozen = True
        self.requires_grad_(False)
        return self.eval()

    def train(self, mode: bool = True) -> Self:
        return super().train(mode and not self.frozen)

    def fold_batchnorm(self) -> Self:
        """Freeze, then fold each BatchNorm into the convolution before it: for inference,
        one pass over the activations less per layer (+18% images/s for EfficientNet-Lite0
        on CPU, benchmarks.encoder). Layers other than `ConvBNAct` are left as they are."""
        for module in self.modules():
            if isinstance(module, ConvBNAct):
                module.fold_batchnorm()
        return self.freeze()
