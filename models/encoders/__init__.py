"""Image encoders behind a timm-style registry: `create_encoder(name, pretrained, **options)`.

One module per backbone family registers its factories with `register_encoder`; importing
this package imports every family, so each name is known before a config.json asks for it.
"""

from models.encoders import efficientnet_lite, resnet, tiny  # noqa: F401  (registers them)
from models.encoders._base import Encoder
from models.encoders._chunking import CPU_CHUNK, encode_in_chunks
from models.encoders._factory import create_encoder
from models.encoders._registry import list_encoders, register_encoder
from models.encoders.cam import TopClasses, top_classes

__all__ = [
    "CPU_CHUNK",
    "Encoder",
    "TopClasses",
    "create_encoder",
    "encode_in_chunks",
    "list_encoders",
    "register_encoder",
    "top_classes",
]
