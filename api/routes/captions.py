"""POST /v1/captions (a map per word, as JSON) and /v1/captions/overlay (a PNG sheet)."""

import time

from fastapi import APIRouter, Request, Response
from PIL import Image
from starlette.concurrency import run_in_threadpool

from api.deps import (
    CaptionOptions,
    CaptionOptionsDep,
    ImageFile,
    Ready,
    ReadyDep,
    SettingsDep,
    decode_and_run,
)
from api.schemas import CaptionResponse, Timing, Token, error_responses
from drawing.overlays import contact_sheet, to_png_bytes
from service.batcher import CaptionJob, Completed
from service.engine import CaptionResult, as_lists
from service.errors import NotReady
from service.settings import Settings

router = APIRouter(prefix="/v1", tags=["captions"])
ERRORS = error_responses(400, 401, 413, 415, 422, 503)


async def _caption(
    request: Request, ready: Ready, settings: Settings, image: ImageFile, options: CaptionOptions
) -> tuple[Image.Image, Completed[CaptionResult], float]:
    """The decoded image, its caption, and the seconds spent decoding it."""
    if ready.engine.captioner is None:
        raise NotReady("no captioning model is loaded")
    return await decode_and_run(
        request,
        ready,
        settings,
        image,
        lambda decoded: CaptionJob(decoded, options.beam_size, options.max_length),
    )


@router.post("/captions", responses=ERRORS)
async def create_caption(
    request: Request,
    ready: ReadyDep,
    settings: SettingsDep,
    image: ImageFile,
    options: CaptionOptionsDep,
) -> CaptionResponse:
    """Caption an image; each word comes with the attention map the model used to write it."""
    started = time.perf_counter()
    _, done, decode_seconds = await _caption(request, ready, settings, image, options)
    result = done.result
    maps = as_lists(result.attention) if options.attention else [None] * len(result.words)
    return CaptionResponse(
        caption=result.caption,
        tokens=[Token(word=w, attention=m) for w, m in zip(result.words, maps, strict=True)],
        score=round(result.score, 4),
        grid=ready.engine.grids["captioner"],
        model=ready.models["captioner"].id,
        timing_ms=Timing.from_seconds(
            decode_seconds, done.queue_seconds, done.batch_seconds, time.perf_counter() - started
        ),
    )


@router.post(
    "/captions/overlay",
    response_class=Response,
    responses={200: {"content": {"image/png": {}}, "description": "the contact sheet"}, **ERRORS},
)
async def caption_overlay(
    request: Request,
    ready: ReadyDep,
    settings: SettingsDep,
    image: ImageFile,
    options: CaptionOptionsDep,
) -> Response:
    """The image and one attention overlay per word, as one PNG (`curl ... -o sheet.png`)."""
    decoded, done, _ = await _caption(request, ready, settings, image, options)
    result = done.result
    sheet = await run_in_threadpool(contact_sheet, decoded, result.words, list(result.attention))
    return Response(await run_in_threadpool(to_png_bytes, sheet), media_type="image/png")
