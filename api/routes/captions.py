"""POST /v1/captions (a map per word, as JSON) and /v1/captions/overlay (a PNG sheet)."""

import time

from fastapi import APIRouter, Request, Response
from starlette.concurrency import run_in_threadpool

from api.deps import InferenceDep
from api.disconnect import unless_disconnected
from api.forms import CaptionOptionsDep, ImageFile
from api.schemas import CaptionResponse, Timing, Token, error_responses
from drawing.overlays import contact_sheet, to_png_bytes
from service.engine import as_lists

router = APIRouter(prefix="/v1", tags=["captions"])
ERRORS = error_responses(400, 401, 413, 415, 422, 503)


@router.post("/captions", responses=ERRORS)
async def create_caption(
    request: Request, inference: InferenceDep, image: ImageFile, options: CaptionOptionsDep
) -> CaptionResponse:
    """Caption an image; each word comes with the attention map the model used to write it."""
    started = time.perf_counter()
    done = await unless_disconnected(request, inference.caption(image, options))
    result = done.result
    maps = as_lists(result.attention) if options.attention else [None] * len(result.words)
    return CaptionResponse(
        caption=result.caption,
        tokens=[Token(word=w, attention=m) for w, m in zip(result.words, maps, strict=True)],
        score=round(result.score, 4),
        grid=done.model.grid,
        model=done.model.id,
        timing_ms=Timing.of(done.timings, time.perf_counter() - started),
    )


@router.post(
    "/captions/overlay",
    response_class=Response,
    responses={200: {"content": {"image/png": {}}, "description": "the contact sheet"}, **ERRORS},
)
async def caption_overlay(
    request: Request, inference: InferenceDep, image: ImageFile, options: CaptionOptionsDep
) -> Response:
    """The image and one attention overlay per word, as one PNG (`curl ... -o sheet.png`)."""
    done = await unless_disconnected(request, inference.caption(image, options))
    result = done.result
    sheet = await run_in_threadpool(contact_sheet, done.image, result.words, list(result.attention))
    return Response(await run_in_threadpool(to_png_bytes, sheet), media_type="image/png")
