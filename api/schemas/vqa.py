"""POST /v1/vqa: answers with their top-k and glimpse maps."""

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
    unknown_words: list[str] = Field(description="words outside the vocabulary, read as <unk>")


class VQAResponse(BaseModel):
    """One entry in `answers` per `question` field, in the order they were sent."""

    answers: list[Answer]
    grid: Grid = Field(description="attention grid as [height, width]")
    model: str = Field(description="id of the VQA model, see GET /v1/models")
    timing_ms: Timing
    domain: Domain | None = DOMAIN_FIELD
    warnings: list[ResponseWarning]
    labels: EncoderLabels | None = LABELS_FIELD

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
                            "attention": [MAP, MAP_B],
                            "unknown_words": [],
                        }
                    ],
                    "grid": [2, 2],
                    "model": "vqa-7c1e24a9b0f3",
                    "timing_ms": TIMING,
                    "domain": {"in_domain": True, "score": 14.2, "threshold": 33.5},
                    "warnings": [],
                }
            ]
        }
    )
