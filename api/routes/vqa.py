"""POST /v1/vqa: answers to one or more questions about one image, with where it looked."""

import time

from fastapi import APIRouter, Request

from api.deps import InferenceDep
from api.disconnect import unless_disconnected
from api.forms import AnswerOptionsDep, ImageFile
from api.schemas.common import EncoderLabels, Timing, error_responses
from api.schemas.vqa import Answer, ScoredAnswer, VQAResponse
from api.warnings import domain_json, out_of_domain, unknown_words
from service.engine import as_lists

router = APIRouter(prefix="/v1", tags=["vqa"])


@router.post("/vqa", responses=error_responses(400, 401, 413, 415, 422, 503))
async def answer_questions(
    request: Request, inference: InferenceDep, image: ImageFile, options: AnswerOptionsDep
) -> VQAResponse:
    """Answer every `question` field about the image, all in one encoder pass."""
    started = time.perf_counter()
    done = await unless_disconnected(request, inference.answer(image, options))
    answers = [
        Answer(
            question=a.question,
            answer=a.answer,
            top_k=[ScoredAnswer(answer=name, score=round(p, 4)) for name, p in a.top_k],
            attention=as_lists(a.attention)
            if options.attention and a.attention is not None
            else None,
            unknown_words=a.unknown_words,
        )
        for a in done.result
    ]
    verdict = done.result[0].domain if done.result else None
    warnings = out_of_domain(verdict, done.model.trained_on, "every answer")
    for number, a in enumerate(done.result, start=1):
        warnings += unknown_words(number, a.unknown_words)
    return VQAResponse(
        answers=answers,
        grid=done.model.grid,
        model=done.model.id,
        timing_ms=Timing.of(done.timings, time.perf_counter() - started),
        domain=domain_json(verdict),
        warnings=warnings,
        labels=EncoderLabels.of(
            done.result[0].labels if done.result else None,
            inference.labels_model,
            options.attention,
        ),
    )
