"""A tiny CNN for tests: the grid shape of the real encoders in milliseconds."""

from itertools import pairwise
from pathlib import Path

import torch
from torch import nn

from models.encoders._base import Encoder
from models.encoders._registry import register_encoder
from models.encoders._weights import load_state_dict_file

TINY_CHANNELS = (3, 16, 32, 48, 64)


class TinyEncoder(Encoder):
    """Four stride-2 3x3 convs: a stride-16, 64-channel grid that runs in milliseconds."""

    def __init__(self) -> None:
        super().__init__("tiny", TINY_CHANNELS[-1], 16, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
        convs = []
        for cin, cout in pairwise(TINY_CHANNELS):
            convs += [nn.Conv2d(cin, cout, 3, stride=2, padding=1), nn.ReLU(inplace=True)]
        self.body = nn.Sequential(*convs)

    def feature_map(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)  # (B, 64, H/16, W/16)


@register_encoder("tiny")
def tiny(pretrained: bool = True, weights: str | Path | None = None) -> TinyEncoder:
    """Random init whatever `pretrained` says; `weights` loads a saved TinyEncoder state."""
    encoder = TinyEncoder()
    if weights is not None:
        encoder.load_state_dict(load_state_dict_file(weights), strict=True)
    return encoder
