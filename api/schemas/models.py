"""GET /v1/models: a card per loaded head."""

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from api.schemas.common import Grid


class TrainedOn(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    dataset: str = Field(examples=["shapes"])
    description: str


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
    answer_list: list[str] | None = Field(description="the answers it can give (VQA only)")
    trained_on: TrainedOn | None = Field(description="null: the model directory does not say")
    domain_check: bool = Field(description="whether answers say if an image is in the domain")
    labels: bool = Field(
        description="whether its encoder has an ImageNet head: labels for out-of-domain "
        "images and POST /v1/labels"
    )
    quantization: Literal["none", "int8"] = Field(
        description="how its weights are served: none (as trained) or int8 (GLIMPSE_QUANTIZE)"
    )
    attention: str | None = Field(
        default=None,
        exclude_if=lambda attention: attention is None,
        description="hard-attention captioners only: how they choose where to look; absent "
        "for soft attention",
        examples=["hard attention: deterministic at inference, the most likely location per word"],
    )


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
                            "answer_list": None,
                            "trained_on": {
                                "dataset": "shapes",
                                "description": "synthetic scenes of 1-4 flat coloured shapes",
                            },
                            "domain_check": True,
                            "labels": True,
                            "quantization": "none",
                        }
                    ]
                }
            ]
        }
    )
