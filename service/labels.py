"""What the encoder itself recognises: the ImageNet classes of its own head, with where.

The bundled heads only know the shapes world, but their encoder is an ImageNet classifier
whose head is shipped with its weights. Its labels are ImageNet categories (not a caption),
computed on from the grid the heads already read, each with its class-activation map.
"""

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from models.encoders import Encoder, top_classes
from models.imagenet import imagenet_categories


@dataclass
class LabelsResult:
    labels: list[tuple[str, float]]  # (ImageNet class, probability), best first
    attention: np.ndarray  # (len(labels), h, w), one class-activation map per label
    grid: tuple[int, int]  # (h, w) of the maps

    def first(self, k: int) -> "LabelsResult":
        return LabelsResult(self.labels[:k], self.attention[:k], self.grid)


class Labeller:
    """The ImageNet head of one of the engine's encoders, run on that encoder's grids."""

    def __init__(self, encoder: Encoder, key: tuple, image_size: int) -> None:
        classifier = encoder.imagenet_classifier()
        if classifier is None:
            raise ValueError(f"encoder {encoder.name!r} has no ImageNet head")
        self.encoder, self.classifier, self.key = encoder, classifier, key
        self.grid_size = encoder.grid_size(image_size)
        self.model_id = f"{encoder.name}-imagenet1k"

    @torch.inference_mode()
    def labels(self, grid: Tensor, top_k: int) -> list[LabelsResult]:
        """The top_k classes of each grid (B, L, D) of this encoder, with their maps."""
        top = self.encoder.top_from_grid(grid, self.grid_size)  # (B, C, h', w')
        found = top_classes(top, self.classifier, top_k)
        names = imagenet_categories()
        maps = found.maps.float().numpy()  # (B, k, h', w')
        grid_hw = (maps.shape[2], maps.shape[3])
        return [
            LabelsResult(
                [(names[i], float(p)) for i, p in zip(indices, scores, strict=True)], m, grid_hw
            )
            for indices, scores, m in zip(
                found.indices.tolist(), found.scores.tolist(), maps, strict=True
            )
        ]


def find_labeller(
    encoders: Mapping[tuple, tuple[Encoder, int]], keys: list[tuple]
) -> Labeller | None:
    """The first of the heads' encoders (in `keys` order) with a published ImageNet head;
    None when none has one (a tiny or randomly initialised encoder, a fine-tuned one whose
    classifier no longer matches its features, a ResNet file without `fc`)."""
    for key in keys:
        encoder, image_size = encoders[key]
        if encoder.imagenet_classifier() is not None:
            return Labeller(encoder, key, image_size)
    return None
