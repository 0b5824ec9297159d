"""From the encoder's raw grid to the annotation vectors a head attends over.

The frozen encoder's channels have very different scales, so they are standardised
(LayerNorm) and projected. A learned 2D position embedding tells the heads where a cell is
(relations such as "left of" need it), and optional residual convolution blocks let each
cell mix with its neighbours, so that colour and shape can be bound locally before
attention. The blocks are depthwise 3x3 then pointwise 1x1 (as in MobileNet and ConvNeXt):
a full 3x3 convolution at this width cost 4x more than the whole LSTM decoder on a CPU.
"""

import torch
from torch import Tensor, nn


class GridAdapter(nn.Module):
    def __init__(
        self, in_dim: int, out_dim: int, grid: tuple[int, int], conv_layers: int = 0
    ) -> None:
        super().__init__()
        self.grid = grid
        self.norm = nn.LayerNorm(in_dim)
        self.proj = nn.Linear(in_dim, out_dim)
        self.pos = nn.Parameter(0.02 * torch.randn(1, grid[0] * grid[1], out_dim))  # (1, L, C)
        self.convs = nn.ModuleList(
            nn.Sequential(
                nn.Conv2d(out_dim, out_dim, 3, padding=1, groups=out_dim),
                nn.GELU(),
                nn.Conv2d(out_dim, out_dim, 1),
            )
            for _ in range(conv_layers)
        )

    def forward(self, features: Tensor) -> Tensor:
        """(B, L, in_dim) -> (B, L, out_dim). Grids may come in float16 (the training cache's):
        they are converted here, on the device the model runs on."""
        x = self.proj(self.norm(features.to(self.norm.weight.dtype))) + self.pos  # (B, L, C)
        if self.convs:
            b, n, c = x.shape
            h, w = self.grid
            x = x.transpose(1, 2).reshape(b, c, h, w)  # (B, C, h, w)
            for conv in self.convs:
                x = x + conv(x)
            x = x.flatten(2).transpose(1, 2)  # (B, L, C)
        return x
