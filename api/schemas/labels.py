"""POST /v1/labels: what the encoder recognises, ImageNet classes with their maps."""

from pydantic import ConfigDict

from api.schemas.common import MAP, MAP_B, TIMING, EncoderLabels, Timing


class LabelsResponse(EncoderLabels):
    timing_ms: Timing

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "labels": [
                        {"label": "espresso", "score": 0.7571, "attention": MAP},
                        {"label": "cup", "score": 0.0472, "attention": MAP_B},
                    ],
                    "grid": [2, 2],
                    "model": "efficientnet_lite0-imagenet1k",
                    "timing_ms": TIMING,
                }
            ]
        }
    )
