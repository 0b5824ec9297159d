"""The JSON the API answers with, as pydantic models: they are the OpenAPI schema at /docs.

Attention maps are nested lists of floats rounded to 4 decimals, one value per grid cell,
row by row: a caption word has one (height, width) map, an answer one map per glimpse.
"""

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.config import JsonDict, JsonValue

from service.inference import Timings

Grid = tuple[int, int]
Map2D = list[list[float]]

# A 2 x 2 grid keeps the examples readable; real grids are e.g. 16 x 16.
# Typed as JSON, the type of `json_schema_extra`: a list[list[float]] is not a list[JsonValue].
_MAP: JsonValue = [[0.6121, 0.2034], [0.1302, 0.0543]]
_MAP_B: JsonValue = [[0.0714, 0.1122], [0.2538, 0.5626]]
_TIMING: JsonDict = {"decode": 1.9, "queue": 4.2, "inference": 38.5, "total": 45.3}


class ErrorDetail(BaseModel):
    """`code` is stable, for programs; `message` is for people. Some errors add fields."""

    model_config = ConfigDict(extra="allow")

    code: str = Field(examples=["invalid_field"])
    message: str = Field(examples=["question 1 is empty"])


class ErrorResponse(BaseModel):
    error: ErrorDetail

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "error": {
                        "code": "invalid_field",
                        "message": "question 1 is empty",
                        "field": "question",
                    }
                },
                {
                    "error": {
                        "code": "busy",
                        "message": "server is busy, retry later",
                        "retry_after": 1,
                    }
                },
            ]
        }
    )


class Timing(BaseModel):
    """Milliseconds spent on this request: decoding the upload, waiting for the model worker,
    the forward pass this request shared with its batch, and in all."""

    decode: float
    queue: float
    inference: float
    total: float

    @classmethod
    def of(cls, timings: Timings, total_seconds: float) -> "Timing":
        return cls(
            decode=round(timings.decode * 1e3, 1),
            queue=round(timings.queue * 1e3, 1),
            inference=round(timings.batch * 1e3, 1),
            total=round(total_seconds * 1e3, 1),
        )


class Token(BaseModel):
    word: str
    attention: Map2D | None = Field(
        description="where the model looked for this word: (height, width), sums to 1; "
        "null when the request set attention=false"
    )


class CaptionResponse(BaseModel):
    caption: str
    tokens: list[Token]
    score: float = Field(description="log-probability of the caption")
    grid: Grid = Field(description="attention grid as [height, width]")
    model: str = Field(description="id of the captioner, see GET /v1/models")
    timing_ms: Timing

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "caption": "a red circle",
                    "tokens": [
                        {"word": "a", "attention": _MAP_B},
                        {"word": "red", "attention": _MAP},
                        {"word": "circle", "attention": _MAP},
                    ],
                    "score": -0.8731,
                    "grid": [2, 2],
                    "model": "captioner-1f3a9c0b2d4e",
                    "timing_ms": _TIMING,
                }
            ]
        }
    )


class ScoredAnswer(BaseModel):
    answer: str
    score: float = Field(description="probability of this answer")


class Answer(BaseModel):
    question: str
    answer: str = Field(description="the most likely answer, top_k[0]")
    top_k: list[ScoredAnswer] = Field(description="best first")
    attention: list[Map2D] | None = Field(
        description="one (height, width) map per glimpse; null for a model without attention "
        "or when the request set attention=false"
    )


class VQAResponse(BaseModel):
    """One entry in `answers` per `question` field, in the order they were sent."""

    answers: list[Answer]
    grid: Grid = Field(description="attention grid as [height, width]")
    model: str = Field(description="id of the VQA model, see GET /v1/models")
    timing_ms: Timing

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "answers": [
                        {
                            "question": "what color is the circle?",
                            "answer": "red",
                            "top_k": [
                                {"answer": "red", "score": 0.9312},
                                {"answer": "blue", "score": 0.0403},
                            ],
                            "attention": [_MAP, _MAP_B],
                        }
                    ],
                    "grid": [2, 2],
                    "model": "vqa-7c1e24a9b0f3",
                    "timing_ms": _TIMING,
                }
            ]
        }
    )


class ModelCard(BaseModel):
    """`service.cards.ModelCard` as JSON: `ModelCard.model_validate(card)`."""

    model_config = ConfigDict(from_attributes=True)

    id: str = Field(description="directory name and a digest of its files")
    task: Literal["captioning", "vqa"]
    encoder: str
    image_size: int = Field(description="side in pixels the encoder sees")
    grid: Grid
    vocabulary_size: int
    answers: int | None = Field(description="answer classes (VQA only)")


class ModelsResponse(BaseModel):
    models: list[ModelCard]

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "models": [
                        {
                            "id": "captioner-1f3a9c0b2d4e",
                            "task": "captioning",
                            "encoder": "efficientnet_lite0",
                            "image_size": 256,
                            "grid": [16, 16],
                            "vocabulary_size": 42,
                            "answers": None,
                        }
                    ]
                }
            ]
        }
    )


class Health(BaseModel):
    status: Literal["alive"] = "alive"


class Readiness(BaseModel):
    status: Literal["ready"] = "ready"
    models: list[str]


_ERROR_DESCRIPTIONS = {
    400: "invalid_image: the bytes look like an image but do not decode; invalid_request: "
    "the multipart body does not parse",
    401: "unauthorized: missing or wrong `Authorization: Bearer` key",
    413: "image_too_large (bytes) or image_too_many_pixels",
    415: "unsupported_image_type: not one of the accepted formats",
    422: "invalid_field: a field is missing, mistyped or out of bounds (`field` names it)",
    503: "busy (queue full, see Retry-After) or not_ready (models loading or failed)",
}


def error_responses(*statuses: int) -> dict[int | str, dict]:
    """OpenAPI entries for the errors a route can answer with."""
    return {s: {"model": ErrorResponse, "description": _ERROR_DESCRIPTIONS[s]} for s in statuses}
