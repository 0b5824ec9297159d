"""The names of the 1000 ImageNet-1k classes, in the index order of every head here.

torchvision ships them with its weight metadata, so they are read offline: nothing is
downloaded (only the metadata is touched, never the weights it describes).
"""

from functools import cache


@cache
def imagenet_categories() -> tuple[str, ...]:
    """Class names by index: 285 is "Egyptian cat", 967 "espresso"."""
    from torchvision.models import ResNet50_Weights

    return tuple(ResNet50_Weights.IMAGENET1K_V1.meta["categories"])
