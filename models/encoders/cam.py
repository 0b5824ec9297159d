"""Class-activation maps (Zhou et al., 2016): where an ImageNet head sees each class.

The heads here are a global average pool and one linear layer, so a class's logit is the mean
over cells of that class's weights applied to each cell's features (plus the bias): the map
of those per-cell scores is exact, not an approximation, and costs one small product.
"""

from dataclasses import dataclass

import torch
from torch import nn


@dataclass
class TopClasses:
    """The k most likely ImageNet classes of each image, best first."""

    indices: torch.Tensor  # (B, k) class indices
    scores: torch.Tensor  # (B, k) softmax probabilities
    maps: torch.Tensor  # (B, k, h, w), each a distribution over the cells


def top_classes(top: torch.Tensor, classifier: nn.Linear, k: int) -> TopClasses:
    """The k best classes of the head over `top` (B, C, h, w), with their maps."""
    logits = classifier(top.mean(dim=(2, 3)))  # (B, 1000)
    scores, indices = logits.softmax(dim=-1).topk(min(k, logits.shape[-1]), dim=-1)  # (B, k)
    weights = classifier.weight[indices]  # (B, k, C)
    cams = torch.einsum("bkc,bchw->bkhw", weights.to(top.dtype), top)  # (B, k, h, w)
    return TopClasses(indices, scores, as_distributions(cams))


def as_distributions(cams: torch.Tensor) -> torch.Tensor:
    """(B, k, h, w) scores -> each map's positive part divided by its sum: where the evidence
    for the class is (the usual CAM display keeps the positive part too); uniform when a map
    has no positive cell."""
    positive = cams.clamp(min=0).flatten(2)  # (B, k, h*w)
    total = positive.sum(dim=-1, keepdim=True)  # (B, k, 1)
    uniform = torch.full_like(positive, 1.0 / positive.shape[-1])
    spread = torch.where(total > 0, positive / total.clamp(min=1e-12), uniform)
    return spread.view_as(cams)  # (B, k, h, w)
