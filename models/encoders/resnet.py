"""torchvision ResNet-50/101 as stride-16 encoders; they load a torchvision state dict you
provide (nothing is downloaded). With its `fc` classifier, the state dict also gives labels."""

from collections.abc import Callable
from pathlib import Path

import torch
import torchvision
from torch import nn

from models.encoders._base import Encoder
from models.encoders._registry import register_encoder
from models.encoders._weights import load_state_dict_file

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class ResNetEncoder(Encoder):
    """Stride-16 grid: layer3 (1024 ch), or layer4 dilated (2048 ch) when `dilated`."""

    def __init__(
        self, name: str, net: torchvision.models.ResNet, dilated: bool, imagenet_weights: bool
    ) -> None:
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
        # What the classifier pools: layer4 after the grid, or the grid itself when dilated.
        self.top = nn.Identity() if dilated else net.layer4
        self.classifier = net.fc
        self.has_imagenet_weights = imagenet_weights
        # Never trained: fine-tuning reads only the grid, and DDP refuses unused parameters.
        self.top.requires_grad_(False)
        self.classifier.requires_grad_(False)

    def feature_map(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)  # (B, out_dim, H/16, W/16)

    def top_from_grid(self, grid: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        fmap = grid.transpose(1, 2).unflatten(2, size)  # (B, out_dim, H/16, W/16)
        return self.top(fmap)  # (B, 2048, H/32, W/32), or H/16 when dilated

    def imagenet_classifier(self) -> nn.Linear | None:
        return self.classifier if self.has_imagenet_weights else None


def _resnet(
    name: str,
    build: Callable[..., torchvision.models.ResNet],
    pretrained: bool,
    weights: str | Path | None,
    dilated: bool,
) -> ResNetEncoder:
    state = None
    if pretrained:
        if weights is None:
            raise ValueError(
                f"{name}: pretrained=True needs weights=<path to a torchvision {name} "
                "state_dict> (nothing is downloaded); or pass pretrained=False"
            )
        state = load_state_dict_file(weights)
    net = build(weights=None, replace_stride_with_dilation=[False, False, dilated])
    with_head = state is not None and "fc.weight" in state
    if state is not None:
        # A backbone-only file loads too (strictly otherwise); its encoder gives no labels.
        head = {f"fc.{key}": value for key, value in net.fc.state_dict().items()}
        net.load_state_dict(state if with_head else {**state, **head}, strict=True)
    return ResNetEncoder(name, net, dilated, with_head)


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
