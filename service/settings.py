"""Every knob of the service in one place, read from `GLIMPSE_*` environment variables.

Lists (`GLIMPSE_API_KEYS`, `GLIMPSE_CORS_ORIGINS`, `GLIMPSE_IMAGE_FORMATS`) are written
comma-separated (`a,b`) or as a JSON array. The limits bound what one client can make the
server decode, queue and search, so that it stays within what it was sized for.
"""

import json
from pathlib import Path
from typing import Annotated, Literal, Self

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from service.images import DEFAULT_FORMATS, MAX_IMAGE_BYTES, MAX_IMAGE_PIXELS

PRETRAINED_DIR = Path(__file__).resolve().parent.parent / "models" / "pretrained"

CommaList = Annotated[list[str], NoDecode]
# warn: answer and say so; answer: no check at all; refuse: no answer for a foreign image.
DomainPolicy = Literal["warn", "answer", "refuse"]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="GLIMPSE_", env_file=None)

    # Models
    caption_model: Path | None = Field(
        PRETRAINED_DIR / "captioner", description="captioner model directory ('' to disable)"
    )
    vqa_model: Path | None = Field(
        PRETRAINED_DIR / "vqa", description="VQA model directory ('' to disable)"
    )
    torch_threads: int | None = Field(None, ge=1, description="torch intra-op threads")
    quantize: Literal["none", "int8"] = Field(
        "none",
        description="the captioner's linear and recurrent layers in int8 (faster decoding, "
        "quality measured in benchmarks/results/quality.json), or none: fp32 as trained",
    )

    # HTTP server
    host: str = Field("127.0.0.1", description="address `glimpse serve` binds")
    port: int = Field(8000, ge=1, le=65535, description="port `glimpse serve` binds")
    log_level: Literal["critical", "error", "warning", "info", "debug"] = Field(
        "info", description="uvicorn log level"
    )
    access_log: bool = Field(True, description="log one line per request")

    # Uploads
    max_image_bytes: int = Field(MAX_IMAGE_BYTES, ge=1, description="largest upload in bytes")
    max_image_pixels: int = Field(
        MAX_IMAGE_PIXELS, ge=1, description="largest image in pixels (decompression bombs)"
    )
    image_formats: CommaList = Field(
        sorted(DEFAULT_FORMATS), description="accepted image formats (Pillow names)"
    )
    decode_memory_mb: int = Field(
        256, ge=1, description="memory for images being decoded at once, all requests (MiB)"
    )
    decode_wait_ms: float = Field(
        2000, ge=0, description="how long an image waits for decode memory; beyond: 503 busy"
    )

    # Connections
    body_timeout_s: float = Field(
        30, gt=0, description="seconds a request body may take to arrive; beyond: 408"
    )
    max_drain_bytes: int = Field(
        64 * 1024 * 1024,
        ge=0,
        description="a refused body up to this size is still read (and dropped) within the "
        "body timeout, so that the client reads its error instead of a reset connection",
    )
    max_connections: int = Field(
        512, ge=1, description="open connections; beyond, uvicorn answers 503 at once"
    )

    # Batching and load shedding
    max_batch_size: int = Field(8, ge=1, le=256, description="most images in one forward pass")
    max_wait_ms: float = Field(
        5.0,
        ge=0,
        le=1000,
        description="after a pass shared by k requests, how long the next waits for k more "
        "(a request after a pass of one starts at once)",
    )
    max_queue_size: int = Field(
        32, ge=1, description="requests waiting for the model; beyond it: 503 busy"
    )
    retry_after_s: int = Field(1, ge=1, description="Retry-After of a 503 busy answer")

    # Request options and their bounds
    beam_size: int = Field(3, ge=1, description="default beam size (1 = greedy)")
    max_beam_size: int = Field(10, ge=1, le=50, description="largest beam size a client may ask")
    caption_length: int = Field(30, ge=1, description="default most words of a caption")
    max_caption_length: int = Field(
        50, ge=1, le=200, description="largest `max_length` a client may ask"
    )
    max_num_captions: int = Field(
        5, ge=1, le=50, description="most captions per image a client may ask (`num_captions`)"
    )
    max_temperature: float = Field(
        2.0, gt=0, le=100, description="largest sampling `temperature` a client may ask"
    )
    max_sample_top_k: int = Field(
        100, ge=1, description="largest sampling `top_k` a client may ask (captions)"
    )
    max_length_penalty: float = Field(
        2.0, ge=0, le=10, description="largest `length_penalty` a client may ask"
    )
    max_repeat_penalty: float = Field(
        50.0, ge=0, le=1000, description="largest `repeat_penalty` a client may ask"
    )
    top_k: int = Field(5, ge=1, description="default answers listed per question")
    max_top_k: int = Field(20, ge=1, description="largest `top_k` a client may ask")
    labels_top_k: int = Field(
        3, ge=0, description="ImageNet labels in an answer for an out-of-domain image (0: none)"
    )
    max_questions: int = Field(8, ge=1, le=64, description="most questions per image")
    max_question_chars: int = Field(200, ge=1, description="longest question in characters")
    out_of_domain: DomainPolicy = Field(
        "warn", description="an image outside the model's domain: warn, answer (no check), refuse"
    )

    # Access
    api_keys: Annotated[list[SecretStr], NoDecode] = Field(
        default_factory=list, description="accepted Bearer keys; empty = no authentication"
    )
    cors_origins: CommaList = Field(
        default_factory=list, description="origins allowed by CORS; empty = CORS off"
    )

    @field_validator("caption_model", "vqa_model", mode="before")
    @classmethod
    def _empty_disables(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("api_keys", "cors_origins", "image_formats", mode="before")
    @classmethod
    def _split_list(cls, value: object) -> object:
        """Accept `a,b` as well as `["a", "b"]` from the environment."""
        if not isinstance(value, str):
            return value
        text = value.strip()
        if text.startswith("["):
            return json.loads(text)
        return [item.strip() for item in text.split(",") if item.strip()]

    @field_validator("image_formats")
    @classmethod
    def _known_formats(cls, value: list[str]) -> list[str]:
        formats = sorted({name.upper() for name in value})
        unknown = set(formats) - DEFAULT_FORMATS
        if not formats or unknown:
            raise ValueError(f"image formats must be among {sorted(DEFAULT_FORMATS)}")
        return formats

    @field_validator("api_keys")
    @classmethod
    def _no_blank_keys(cls, value: list[SecretStr]) -> list[SecretStr]:
        if any(not key.get_secret_value().strip() for key in value):
            raise ValueError("API keys must not be blank")
        return value

    @model_validator(mode="after")
    def _defaults_within_bounds(self) -> Self:
        pairs = [
            ("beam_size", "max_beam_size"),
            ("caption_length", "max_caption_length"),
            ("top_k", "max_top_k"),
            ("labels_top_k", "max_top_k"),
        ]
        for default, bound in pairs:
            if getattr(self, default) > getattr(self, bound):
                raise ValueError(f"{default} must not exceed {bound}")
        return self

    @property
    def max_body_bytes(self) -> int:
        """The whole multipart body: the image plus room for the form fields around it."""
        form_room = 64 * 1024 + self.max_questions * self.max_question_chars * 4  # UTF-8
        return self.max_image_bytes + form_room
