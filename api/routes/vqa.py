"""POST /v1/vqa: answers to one or more questions about one image, with where it looked."""

import time

from fastapi import APIRouter, Request

from api.deps import (
    ImageFile,
    ReadyDep,
    SettingsDep,
    VQAOptionsDep,
    decode_and_run,
)
from api.schemas import Answer, ScoredAnswer, Timing, VQAResponse, error_responses
from service.batcher import AnswerJob
from service.engine import as_lists
from service.errors import NotReady

router = APIRouter(prefix="/v1", tags=["vqa"])


@router.post("/vqa", responses=error_responses(400, 401, 413, 415, 422, 503))
async def answer_questions(
    request: Request,
    ready: ReadyDep,
    settings: SettingsDep,
    image: ImageFile,
    options: VQAOptionsDep,
) -> VQAResponse:
    """Answer every `question` field about the image, all in one encoder pass."""
    if ready.engine.vqa is None:
        raise NotReady("no VQA model is loaded")
    started = time.perf_counter()
    _, done, decode_seconds = await decode_and_run(
        request,
        ready,
        settings,
        image,
        lambda decoded: AnswerJob(decoded, options.questions, options.top_k),
    )
    answers = [
        Answer(
            question=a.question,
            answer=a.answer,
            top_k=[ScoredAnswer(answer=name, score=round(p, 4)) for name, p in a.top_k],
            attention=as_lists(a.attention)
            if options.attention and a.attention is not None
            else None,
        )
        for a in done.result
    ]
    return VQAResponse(
        answers=answers,
        grid=ready.engine.grids["vqa"],
        model=ready.models["vqa"].id,
        timing_ms=Timing.from_seconds(
            decode_seconds, done.queue_seconds, done.batch_seconds, time.perf_counter() - started
        ),
    )
