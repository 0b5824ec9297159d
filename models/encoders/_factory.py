"""The one way to build an encoder: by its registered name."""

from pathlib import Path

from models.encoders._base import Encoder
from models.encoders._registry import encoder_entrypoint


def create_encoder(
    name: str, pretrained: bool = True, weights: str | Path | None = None, **options: object
) -> Encoder:
    """Build a registered encoder; `weights` is a state-dict file (.pth or .safetensors)."""
    factory = encoder_entrypoint(name)
    if weights is not None and not pretrained:
        raise ValueError("weights were given but pretrained=False; pass pretrained=True")
    return factory(pretrained=pretrained, weights=weights, **options)
