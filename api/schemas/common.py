"""Shared by every response: errors, timings, the domain verdict, warnings and ImageNet labels.

Attention maps are nested lists of floats rounded to 4 decimals, one value per grid cell,
row by row: a caption word has one (height, width) map, an answer one map per glimpse.
"""

from typing import Literal, Self

from pydantic import BaseModel, ConfigDict, Field
from pydantic.config import JsonDict, JsonValue

from service.engine import as_lists
from service.inference import Timings
from service.labels import LabelsResult

Grid = tuple[int, int]
Map2D = list[list[float]]

# A 2 x 2 grid keeps the examples readable; real grids are e.g. 16 x 16.
# Typed as JSON, the type of `json_schema_extra`: a list[list[float]] is not a list[JsonValue].
MAP: JsonValue = [[0.6121, 0.2034], [0.1302, 0.0543]]
MAP_B: JsonValue = [[0.0714, 0.1122], [0.2538, 0.5626]]
TIMING: JsonDict = {"decode": 1.9, "queue": 4.2, "inference": 38.5, "total": 45.3}


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


class Domain(BaseModel):
    """Whether the image lies in the domain the model was trained on (see GET /v1/models)."""

    in_domain: bool
    score: float = Field(description="distance of the image's grid from the training images'")
    threshold: float = Field(description="beyond this score the image is outside the domain")


class ResponseWarning(BaseModel):
    """Something the client should know about an answer; `code` is stable."""

    code: Literal["out_of_domain", "unknown_words"]
    message: str
    words: list[str] | None = Field(None, description="unknown_words: the words, in order")


DOMAIN_FIELD = Field(
    description="null when the model has no domain check or GLIMPSE_OUT_OF_DOMAIN=answer"
)


class Label(BaseModel):
    label: str = Field(description="an ImageNet-1k category name")
    score: float = Field(description="the encoder's ImageNet classifier's probability")
    attention: Map2D | None = Field(
        description="where the classifier sees this class (its class-activation map): "
        "(height, width), sums to 1; null when the request set attention=false"
    )


class EncoderLabels(BaseModel):
    """What the encoder under the models recognises: ImageNet classes, not a caption."""

    labels: list[Label] = Field(description="best first")
    grid: Grid = Field(description="the maps' grid as [height, width]")
    model: str = Field(description="the ImageNet classifier: the encoder's own head")

    @classmethod
    def of(cls, result: LabelsResult | None, model: str | None, attention: bool) -> Self | None:
        if result is None or model is None:
            return None
        maps = as_lists(result.attention) if attention else [None] * len(result.labels)
        labels = [
            Label(label=name, score=round(score, 4), attention=m)
            for (name, score), m in zip(result.labels, maps, strict=True)
        ]
        return cls(labels=labels, grid=result.grid, model=model)


LABELS_FIELD = Field(
    None,
    description="for an image outside the model's domain: the ImageNet classes its encoder "
    "recognises (GLIMPSE_LABELS_TOP_K of them), as POST /v1/labels gives them; else null",
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
    404: "labels_unavailable: no loaded model's encoder has an ImageNet classifier",
    413: "image_too_large (bytes) or image_too_many_pixels",
    415: "unsupported_image_type: not one of the accepted formats",
    422: "invalid_field: a field is missing, mistyped or out of bounds (`field` names it); "
    "out_of_domain: the image is outside the model's domain and GLIMPSE_OUT_OF_DOMAIN=refuse",
    503: "busy (queue full, see Retry-After) or not_ready (models loading or failed)",
}


def error_responses(*statuses: int) -> dict[int | str, dict]:
    """OpenAPI entries for the errors a route can answer with."""
    return {s: {"model": ErrorResponse, "description": _ERROR_DESCRIPTIONS[s]} for s in statuses}
