"""Encoder names -> factories, so that a model's config.json can name its backbone as a string."""

from collections.abc import Callable

from models.encoders._base import Encoder

EncoderFactory = Callable[..., Encoder]
_REGISTRY: dict[str, EncoderFactory] = {}


def register_encoder(name: str) -> Callable[[EncoderFactory], EncoderFactory]:
    """Decorator that makes a factory `fn(pretrained, weights, **options)` creatable by name."""

    def add(factory: EncoderFactory) -> EncoderFactory:
        if name in _REGISTRY:
            raise ValueError(f"encoder {name!r} is already registered")
        _REGISTRY[name] = factory
        return factory

    return add


def list_encoders() -> list[str]:
    """Names accepted by `create_encoder`."""
    return sorted(_REGISTRY)


def encoder_entrypoint(name: str) -> EncoderFactory:
    """The factory registered under `name`; the error lists the known names."""
    if name not in _REGISTRY:
        raise ValueError(f"unknown encoder {name!r}; known: {', '.join(list_encoders())}")
    return _REGISTRY[name]
