"""How far an image lies from a model's training images, scored on the encoder grid.

A head trained on one world (the shapes world, COCO) answers anything with confidence, so a
model directory carries a small density model of its training grids: a Gaussian over a
per-image summary of the grid, scored as a Mahalanobis distance, with a threshold chosen at
fitting time. Two summaries are implemented so that they can be compared
(`benchmarks.domain`): `pooled` (each channel's mean and standard deviation over the cells)
and `cells` (every cell's vector, scored by the mean distance of the farthest cells).

A model directory stores it as `domain.safetensors` + `domain.json` (`models.checkpoint`).
Scoring costs a (B, F) x (F, F) product on the grid the service already computed.
"""

import math
from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import Tensor

Kind = Literal["pooled", "cells"]
KINDS: tuple[Kind, ...] = ("pooled", "cells")
FARTHEST_CELLS = 0.1  # `cells`: an image scores the mean distance of its farthest 10% cells
SHRINKAGE = 0.05  # covariance pulled this far towards its diagonal: stable with few images


@dataclass
class DomainModel:
    """A Gaussian over grid summaries and the distance beyond which an image is foreign."""

    kind: Kind
    mean: Tensor  # (F,)
    precision: Tensor  # (F, F), inverse of the shrunk covariance
    threshold: float
    info: dict = field(default_factory=dict)  # how it was fitted: images, views, rates

    def score(self, grid: Tensor) -> Tensor:
        """Distance (B,) of each grid (B, L, D) from the training grids; larger = farther."""
        x = summarize(grid.float(), self.kind) - self.mean  # (B, F) or (B, L, F)
        d2 = ((x @ self.precision) * x).sum(-1).clamp_min(0)  # (B,) or (B, L)
        if self.kind == "cells":
            k = max(1, math.ceil(FARTHEST_CELLS * d2.size(1)))
            d2 = d2.topk(k, dim=1).values.mean(dim=1)  # (B,)
        return d2.sqrt()


def summarize(grid: Tensor, kind: Kind) -> Tensor:
    """The vectors the Gaussian models: (B, 2D) per image for `pooled`, (B, L, D) for `cells`."""
    if kind == "cells":
        return grid
    return torch.cat([grid.mean(dim=1), grid.std(dim=1)], dim=1)  # (B, 2D)


def summary_size(kind: Kind, channels: int) -> int:
    """F, the length of the vectors `summarize` makes from a grid of `channels` channels."""
    return 2 * channels if kind == "pooled" else channels


class GaussianFit:
    """Running moments of grid summaries, so that fitting never holds every grid at once."""

    def __init__(self, kind: Kind) -> None:
        self.kind = kind
        self.count = 0
        self.total: Tensor | None = None  # (F,)
        self.outer: Tensor | None = None  # (F, F)

    def add(self, grids: Tensor) -> None:
        """Take in a batch of grids (B, L, D)."""
        x = summarize(grids.float(), self.kind).double()
        x = x.reshape(-1, x.size(-1))  # (N, F)
        total, outer = x.sum(dim=0), x.T @ x  # (F,), (F, F)
        self.total = total if self.total is None else self.total + total
        self.outer = outer if self.outer is None else self.outer + outer
        self.count += len(x)

    def domain(self, threshold: float = math.inf) -> DomainModel:
        """The fitted model: mean and precision of the shrunk covariance."""
        if self.total is None or self.outer is None or self.count < 2:
            raise ValueError("fit a domain model on at least two grids")
        mean = self.total / self.count  # (F,)
        cov = (self.outer - self.count * torch.outer(mean, mean)) / (self.count - 1)  # (F, F)
        cov = (1 - SHRINKAGE) * cov + SHRINKAGE * torch.diag(cov.diagonal())
        cov += 1e-6 * cov.diagonal().mean() * torch.eye(len(cov), dtype=cov.dtype)
        precision = torch.linalg.inv(cov)
        return DomainModel(self.kind, mean.float(), precision.float(), threshold)
