"""POST /v1/captions (a map per word, as JSON) and /v1/captions/overlay (a PNG sheet)."""

import time

from fastapi import APIRouter, Request, Response
from starlette.concurrency import run_in_threadpool

from api.deps import InferenceDep
from api.disconnect import unless_disconnected
from api.forms import CaptionOptionsDep, ImageFile
from api.schemas.captions import Alternative, CaptionResponse, Token
from api.schemas.common import EncoderLabels, Timing, error_responses
from api.warnings import domain_json, out_of_domain
from drawing.overlays import contact_sheet, to_png_bytes
from service.engine import CaptionResult, as_lists
from service.errors import InvalidField

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
    return CaptionResponse(
        caption=result.caption,
        tokens=_tokens(result, options.attention),
        score=round(result.score, 4),
        alternatives=[
            Alternative(
                caption=a.caption, score=round(a.score, 4), tokens=_tokens(a, options.attention)
            )
            for a in result.alternatives
        ],
        grid=done.model.grid,
        model=done.model.id,
        timing_ms=Timing.of(done.timings, time.perf_counter() - started),
        domain=domain_json(result.domain),
        warnings=out_of_domain(result.domain, done.model.trained_on, "the caption"),
        labels=EncoderLabels.of(result.labels, inference.labels_model, options.attention),
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
    if options.num_captions > 1:
        raise InvalidField("num_captions", "the overlay draws one caption: num_captions must be 1")
    done = await unless_disconnected(request, inference.caption(image, options))
    result = done.result
    sheet = await run_in_threadpool(contact_sheet, done.image, result.words, list(result.attention))
    return Response(await run_in_threadpool(to_png_bytes, sheet), media_type="image/png")


def _tokens(result: CaptionResult, attention: bool) -> list[Token]:
    """Each word with its map (None without `attention`), its probability and, under hard
    attention, its cell."""
    maps = as_lists(result.attention) if attention else [None] * len(result.words)
    cells = result.cells.tolist() if result.cells is not None else [None] * len(result.words)
    return [
        Token(word=w, attention=m, p=float(f"{p:.4g}"), cell=c)
        for w, m, p, c in zip(result.words, maps, result.probs, cells, strict=True)
    ]
