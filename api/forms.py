"""The form fields of the POST routes, checked against the configured bounds.

Each dependency refuses a field its route does not read, fills in the configured defaults,
and turns the fields into the service's options; a bad field is 422 `invalid_field` naming it.
"""

import unicodedata
from dataclasses import fields
from typing import Annotated

from fastapi import Depends, File, Form, Request, UploadFile

from api.deps import SettingsDep
from models.decoding import REPEAT_PENALTY
from service.decoding_fields import DecodingFields, check_decoding
from service.errors import InvalidField
from service.inference import AnswerOptions, CaptionOptions, LabelOptions
from service.settings import Settings

ImageFile = Annotated[UploadFile, File(description="JPEG, PNG, WebP, GIF, BMP or TIFF image")]

_DECODING_FIELDS = {field.name for field in fields(DecodingFields)}
_CAPTION_FIELDS = frozenset({"image", "beam_size", "max_length", "attention", *_DECODING_FIELDS})
_VQA_FIELDS = frozenset({"image", "question", "top_k", "attention"})
_LABEL_FIELDS = frozenset({"image", "top_k", "attention"})


async def caption_options(
    request: Request,
    settings: SettingsDep,
    beam_size: Annotated[
        int | None,
        Form(
            description="beams of the search, 1 = greedy (default: GLIMPSE_BEAM_SIZE)", examples=[3]
        ),
    ] = None,
    max_length: Annotated[
        int | None,
        Form(description="most words (default: GLIMPSE_CAPTION_LENGTH)", examples=[20]),
    ] = None,
    attention: Annotated[bool, Form(description="include one attention map per word")] = True,
    sample: Annotated[
        bool, Form(description="draw the words instead of searching (then no beam_size)")
    ] = False,
    temperature: Annotated[
        float | None,
        Form(description="sample only: > 0, at most GLIMPSE_MAX_TEMPERATURE (default 1)"),
    ] = None,
    top_k: Annotated[
        int | None,
        Form(description="sample only: draw among the k likeliest words (default: all)"),
    ] = None,
    top_p: Annotated[
        float | None,
        Form(description="sample only: draw among the likeliest words holding this mass, (0, 1]"),
    ] = None,
    seed: Annotated[
        int | None, Form(description="sample only: the same seed gives the same caption")
    ] = None,
    num_captions: Annotated[
        int | None,
        Form(
            description="captions to return, the best first: the n best beams (n <= beam_size) "
            "or n samples; the others are `alternatives` (default 1)"
        ),
    ] = None,
    length_penalty: Annotated[
        float | None,
        Form(description="rank candidates by log p / (words + 1)^length_penalty (default 0)"),
    ] = None,
    repeat_penalty: Annotated[
        float | None,
        Form(
            description="take this much from a candidate's rank for each word it says again "
            f"where it looked before: one object named twice (default {REPEAT_PENALTY:g})"
        ),
    ] = None,
) -> CaptionOptions:
    await _only_known_fields(request, _CAPTION_FIELDS)
    beams = _bounded("beam_size", beam_size, settings.beam_size, settings.max_beam_size)
    sent = DecodingFields(
        sample, temperature, top_k, top_p, seed, num_captions, length_penalty, repeat_penalty
    )
    decoding = check_decoding(sent, beams, beam_size is not None, settings)
    return CaptionOptions(
        beams,
        _bounded("max_length", max_length, settings.caption_length, settings.max_caption_length),
        attention,
        decoding.length_penalty,
        decoding.num_captions,
        decoding.sampling,
        decoding.seed,
        decoding.repeat_penalty,
    )


CaptionOptionsDep = Annotated[CaptionOptions, Depends(caption_options)]


async def answer_options(
    request: Request,
    settings: SettingsDep,
    question: Annotated[
        list[str],
        Form(
            description="a question about the image; repeat the field to ask more",
            examples=[["what color is the circle?", "how many shapes are there?"]],
        ),
    ],
    top_k: Annotated[
        int | None, Form(description="answers to list (default: GLIMPSE_TOP_K)", examples=[5])
    ] = None,
    attention: Annotated[bool, Form(description="include the glimpse maps")] = True,
) -> AnswerOptions:
    await _only_known_fields(request, _VQA_FIELDS)
    questions = _checked_questions(question, settings)
    return AnswerOptions(
        questions, _bounded("top_k", top_k, settings.top_k, settings.max_top_k), attention
    )


AnswerOptionsDep = Annotated[AnswerOptions, Depends(answer_options)]


async def label_options(
    request: Request,
    settings: SettingsDep,
    top_k: Annotated[
        int | None, Form(description="labels to list (default: GLIMPSE_TOP_K)", examples=[5])
    ] = None,
    attention: Annotated[bool, Form(description="include each label's map")] = True,
) -> LabelOptions:
    await _only_known_fields(request, _LABEL_FIELDS)
    return LabelOptions(_bounded("top_k", top_k, settings.top_k, settings.max_top_k), attention)


LabelOptionsDep = Annotated[LabelOptions, Depends(label_options)]


async def _only_known_fields(request: Request, known: frozenset[str]) -> None:
    """Refuse a field the route does not read: a typo (`beam`) would otherwise pass silently."""
    unknown = sorted(set((await request.form()).keys()) - known)  # parsed once, cached
    if unknown:
        raise InvalidField(
            unknown[0], f"unknown field {unknown[0]!r}; the fields are {', '.join(sorted(known))}"
        )


def _bounded(name: str, value: int | None, default: int, maximum: int) -> int:
    if value is None:
        return default
    if not 1 <= value <= maximum:
        raise InvalidField(name, f"{name} must be between 1 and {maximum}, got {value}")
    return value


def _checked_questions(question: list[str], settings: Settings) -> tuple[str, ...]:
    """The questions, stripped: not too many, none empty, too long or with control characters."""
    if len(question) > settings.max_questions:
        raise InvalidField(
            "question", f"at most {settings.max_questions} questions per image, got {len(question)}"
        )
    questions = tuple(q.strip() for q in question)
    for number, text in enumerate(questions, start=1):
        if not text:
            raise InvalidField("question", f"question {number} is empty")
        if any(unicodedata.category(char) == "Cc" for char in text):
            raise InvalidField("question", f"question {number} contains a control character")
        if len(text) > settings.max_question_chars:
            raise InvalidField(
                "question",
                f"question {number} is longer than {settings.max_question_chars} characters",
            )
    return questions
