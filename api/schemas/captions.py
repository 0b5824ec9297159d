"""POST /v1/captions: a caption, a map and a probability per word, and the runners-up."""

from pydantic import BaseModel, ConfigDict, Field

from api.schemas.common import (
    DOMAIN_FIELD,
    LABELS_FIELD,
    MAP,
    MAP_B,
    TIMING,
    Domain,
    EncoderLabels,
    Grid,
    Map2D,
    ResponseWarning,
    Timing,
)


class Token(BaseModel):
    word: str
    attention: Map2D | None = Field(
        description="where the model looked for this word: (height, width), sums to 1; "
        "null when the request set attention=false"
    )
    p: float = Field(
        description="the model's probability of this word where it was written (its softmax, "
        "without temperature), 4 significant digits"
    )
    cell: tuple[int, int] | None = Field(
        default=None,
        exclude_if=lambda cell: cell is None,
        description="hard-attention models only: the one grid cell the word was written from, "
        "[row, col], the peak of its map; absent for soft attention, which reads every cell",
    )


class Alternative(BaseModel):
    """Another caption `num_captions` asked for: a runner-up beam, or another sample."""

    caption: str
    score: float = Field(description="log-probability of the caption")
    tokens: list[Token]


class CaptionResponse(BaseModel):
    caption: str
    tokens: list[Token]
    score: float = Field(description="log-probability of the caption")
    alternatives: list[Alternative] = Field(
        description="the other num_captions - 1 captions, best first (by log p / (words + "
        "1)^length_penalty - repeat_penalty x R); empty unless num_captions > 1"
    )
    grid: Grid = Field(description="attention grid as [height, width]")
    model: str = Field(description="id of the captioner, see GET /v1/models")
    timing_ms: Timing
    domain: Domain | None = DOMAIN_FIELD
    warnings: list[ResponseWarning]
    labels: EncoderLabels | None = LABELS_FIELD

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "caption": "a red circle",
                    "tokens": [
                        {"word": "a", "attention": MAP_B, "p": 0.9702},
                        {"word": "red", "attention": MAP, "p": 0.5311},
                        {"word": "circle", "attention": MAP, "p": 0.8125},
                    ],
                    "score": -0.8731,
                    "alternatives": [],
                    "grid": [2, 2],
                    "model": "captioner-1f3a9c0b2d4e",
                    "timing_ms": TIMING,
                    "domain": {"in_domain": True, "score": 14.2, "threshold": 33.5},
                    "warnings": [],
                }
            ]
        }
    )
