"""What routes depend on: the app's state, readiness, the API key, and checked form fields.

Routes declare these with the `Annotated[..., Depends(...)]` aliases below, so each route
reads as "parse, call the service, shape the response".
"""

import asyncio
import hmac
import time
import unicodedata
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Annotated, Any, TypeVar

from fastapi import Depends, File, Form, Request, UploadFile
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from PIL import Image
from starlette.concurrency import run_in_threadpool

from api.errors import ClientDisconnected
from api.schemas import ModelCard
from service.batcher import Completed, EngineJob, EngineResult, MicroBatcher
from service.engine import Engine
from service.errors import InvalidField, NotReady, Unauthorized
from service.images import decode_image, read_limited
from service.metrics import Metrics
from service.settings import Settings

T = TypeVar("T")


@dataclass
class AppState:
    """One app's settings, metrics and, once loaded, its engine and batcher."""

    settings: Settings
    metrics: Metrics = field(default_factory=Metrics)
    engine: Engine | None = None
    batcher: MicroBatcher[EngineJob, EngineResult] | None = None
    models: dict[str, ModelCard] = field(default_factory=dict)  # by head: captioner, vqa
    load_error: str | None = None

    @property
    def ready(self) -> bool:
        return self.batcher is not None

    def not_ready(self) -> NotReady:
        if self.load_error is not None:
            return NotReady(f"models failed to load: {self.load_error}")
        return NotReady()


@dataclass
class Ready:
    """A loaded engine and the batcher in front of it."""

    engine: Engine
    batcher: MicroBatcher[EngineJob, EngineResult]
    models: dict[str, ModelCard]


def get_state(request: Request) -> AppState:
    return request.app.state.glimpse


StateDep = Annotated[AppState, Depends(get_state)]


def get_settings(state: StateDep) -> Settings:
    return state.settings


SettingsDep = Annotated[Settings, Depends(get_settings)]


def get_ready(state: StateDep) -> Ready:
    if state.engine is None or state.batcher is None:
        raise state.not_ready()
    return Ready(state.engine, state.batcher, state.models)


ReadyDep = Annotated[Ready, Depends(get_ready)]

_bearer = HTTPBearer(auto_error=False, description="one of the keys in GLIMPSE_API_KEYS")


def require_api_key(
    settings: SettingsDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> None:
    """Accept a request whose Bearer key is one of the configured keys.

    Every key is compared, in constant time, so the response time tells nothing about how
    much of a key was right or which key was close.
    """
    if not settings.api_keys:
        return
    if credentials is None:
        raise Unauthorized()
    given = credentials.credentials.encode()
    matched = False
    for key in settings.api_keys:
        matched |= hmac.compare_digest(given, key.get_secret_value().encode())
    if not matched:
        raise Unauthorized()


ImageFile = Annotated[UploadFile, File(description="JPEG, PNG, WebP, GIF, BMP or TIFF image")]


def _bounded(name: str, value: int | None, default: int, maximum: int) -> int:
    if value is None:
        return default
    if not 1 <= value <= maximum:
        raise InvalidField(name, f"{name} must be between 1 and {maximum}, got {value}")
    return value


@dataclass(frozen=True)
class CaptionOptions:
    beam_size: int
    max_length: int
    attention: bool


async def _only_known_fields(request: Request, known: frozenset[str]) -> None:
    """Refuse a field the route does not read: a typo (`beam`) would otherwise pass silently."""
    unknown = sorted(set((await request.form()).keys()) - known)  # parsed once, cached
    if unknown:
        raise InvalidField(
            unknown[0], f"unknown field {unknown[0]!r}; the fields are {', '.join(sorted(known))}"
        )


_CAPTION_FIELDS = frozenset({"image", "beam_size", "max_length", "attention"})
_VQA_FIELDS = frozenset({"image", "question", "top_k", "attention"})


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
) -> CaptionOptions:
    await _only_known_fields(request, _CAPTION_FIELDS)
    return CaptionOptions(
        _bounded("beam_size", beam_size, settings.beam_size, settings.max_beam_size),
        _bounded("max_length", max_length, settings.caption_length, settings.max_caption_length),
        attention,
    )


CaptionOptionsDep = Annotated[CaptionOptions, Depends(caption_options)]


@dataclass(frozen=True)
class VQAOptions:
    questions: tuple[str, ...]
    top_k: int
    attention: bool


async def vqa_options(
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
) -> VQAOptions:
    await _only_known_fields(request, _VQA_FIELDS)
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
    top_k = _bounded("top_k", top_k, settings.top_k, settings.max_top_k)
    return VQAOptions(questions, top_k, attention)


VQAOptionsDep = Annotated[VQAOptions, Depends(vqa_options)]


async def decode_upload(upload: UploadFile, settings: Settings) -> Image.Image:
    """Read within the byte limit, then decode off the event loop (decoding is CPU work)."""
    data = await read_limited(upload, settings.max_image_bytes)
    formats = frozenset(settings.image_formats)
    return await run_in_threadpool(decode_image, data, settings.max_image_pixels, formats)


async def decode_and_run(
    request: Request,
    ready: Ready,
    settings: Settings,
    upload: UploadFile,
    make_job: Callable[[Image.Image], EngineJob],
) -> tuple[Image.Image, Completed[Any], float]:
    """Decode the upload, queue the job made from it and wait for the batcher's answer.

    Returns the decoded image, the completed job and the seconds spent decoding.
    """
    started = time.perf_counter()
    decoded = await decode_upload(upload, settings)
    decode_seconds = time.perf_counter() - started
    done = await unless_disconnected(request, ready.batcher.submit(make_job(decoded)))
    return decoded, done, decode_seconds


async def unless_disconnected(request: Request, work: Awaitable[T]) -> T:
    """Await `work`, but give up (and cancel it) as soon as the client goes away.

    Cancelling a queued model request frees its queue slot, so clients that gave up do not
    keep others out. The request body has been read, so the next ASGI message is the
    disconnect.
    """
    task = asyncio.ensure_future(work)
    gone = asyncio.ensure_future(_disconnected(request))
    try:
        done, _ = await asyncio.wait({task, gone}, return_when=asyncio.FIRST_COMPLETED)
    except asyncio.CancelledError:
        task.cancel()
        raise
    finally:
        gone.cancel()
    if task in done:
        return task.result()
    task.cancel()
    raise ClientDisconnected()


async def _disconnected(request: Request) -> None:
    while (await request.receive())["type"] != "http.disconnect":
        pass
