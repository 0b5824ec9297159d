"""POST /v1/labels: the ImageNet classes the encoder itself recognises, with where it sees
each (its class-activation map). These are ImageNet categories, not a caption."""

import time

from fastapi import APIRouter, Request

from api.deps import InferenceDep
from api.disconnect import unless_disconnected
from api.forms import ImageFile, LabelOptionsDep
from api.schemas.common import EncoderLabels, Timing, error_responses
from api.schemas.labels import LabelsResponse

router = APIRouter(prefix="/v1", tags=["labels"])


@router.post("/labels", responses=error_responses(400, 401, 404, 413, 415, 422, 503))
async def create_labels(
    request: Request, inference: InferenceDep, image: ImageFile, options: LabelOptionsDep
) -> LabelsResponse:
    """The encoder's own ImageNet classifier on the image: its top_k classes, best first, each
    with the map of where it sees that class; 404 `labels_unavailable` for an encoder without
    an ImageNet head."""
    started = time.perf_counter()
    done = await unless_disconnected(request, inference.labels(image, options))
    labels = EncoderLabels.of(done.result, inference.labels_model, options.attention)
    assert labels is not None  # inference.labels raised if there was no labeller
    return LabelsResponse(
        labels=labels.labels,
        grid=labels.grid,
        model=labels.model,
        timing_ms=Timing.of(done.timings, time.perf_counter() - started),
    )
