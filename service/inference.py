"""The service's one entry point per request: image bytes in, results and their timings out.

`Inference` reads the upload within the byte limit, decodes it (off the event loop) within
the pixel and format limits, checks that the head it needs is loaded, and queues the work on
the micro-batcher, so that callers (the HTTP routes) only parse requests and shape answers.
"""

import asyncio
import time
from dataclasses import dataclass
from functools import partial
from typing import Generic, TypeVar

from PIL import Image

from models.decoding import REPEAT_PENALTY
from models.sampling import Sampling
from service.admission import DecodeBudget
from service.batcher import Completed, MicroBatcher
from service.cards import ModelCard, model_cards
from service.engine import AnswerResult, CaptionResult, Engine
from service.errors import LabelsUnavailable, NotReady, OutOfDomain
from service.images import ImageSource, finish_decode, open_image, read_limited
from service.jobs import (
    AnswerJob,
    CaptionJob,
    EngineJob,
    EngineResult,
    LabelJob,
    Refused,
    run_jobs,
)
from service.labels import LabelsResult
from service.memory import return_freed_memory
from service.metrics import Metrics
from service.settings import Settings

R = TypeVar("R")


@dataclass(frozen=True)
class CaptionOptions:
    """How to caption. The maps are always computed (an overlay draws them); `attention`
    says whether the caller's answer includes them. With `sampling` the caption is drawn (from
    `seed`, or unseeded), else searched; `num_captions` come back, ranked with
    `length_penalty` and `repeat_penalty` (see `models.decoding.DecodeOptions`)."""

    beam_size: int
    max_length: int
    attention: bool = True
    length_penalty: float = 0.0
    num_captions: int = 1
    sampling: Sampling | None = None
    seed: int | None = None
    repeat_penalty: float = REPEAT_PENALTY


@dataclass(frozen=True)
class AnswerOptions:
    """The questions about one image; `attention` as in `CaptionOptions`."""

    questions: tuple[str, ...]
    top_k: int
    attention: bool = True


@dataclass(frozen=True)
class LabelOptions:
    """How many ImageNet labels; `attention` as in `CaptionOptions`."""

    top_k: int
    attention: bool = True


@dataclass(frozen=True)
class Timings:
    """Seconds spent reading and decoding the upload, waiting for the model worker, and in
    the forward pass this request shared with its batch."""

    decode: float
    queue: float
    batch: float


@dataclass(frozen=True)
class Outcome(Generic[R]):
    """A request's result, the decoded image it was computed on, and the model that did it."""

    result: R
    image: Image.Image
    model: ModelCard
    timings: Timings


class Inference:
    """Loaded models behind a bounded micro-batching queue.

    Building one reads every model file (for the model cards): do it off the event loop.
    Then `start()` the model worker, and `close()` it when done.
    """

    def __init__(self, engine: Engine, settings: Settings, metrics: Metrics | None = None) -> None:
        self.models: dict[str, ModelCard] = model_cards(engine)  # by head: captioner, vqa
        self._settings = settings
        # Labels come from a head's encoder: its card, and the id of the classifier itself.
        self.labels_model = engine.labeller.model_id if engine.labeller is not None else None
        self._labels_card = _labels_card(engine, self.models)
        # Decoded no larger than 4x the side the encoders see: the short side of images up
        # to 4:1 keeps every pixel the model's resize uses, and the overlay needs far less.
        self._side = 4 * max((card.image_size for card in self.models.values()), default=256)
        self._budget = DecodeBudget(
            settings.decode_memory_mb * 2**20,
            settings.decode_wait_ms / 1000,
            settings.retry_after_s,
            on_drained=return_freed_memory,
        )
        self._batcher: MicroBatcher[EngineJob, EngineResult] = MicroBatcher(
            partial(run_jobs, engine, metrics=metrics),
            max_batch_size=settings.max_batch_size,
            max_wait_s=settings.max_wait_ms / 1000,
            max_queue_size=settings.max_queue_size,
            retry_after_s=settings.retry_after_s,
            metrics=metrics,
        )

    def start(self) -> None:
        self._batcher.start()

    def close(self) -> None:
        """Finish the batch in progress and fail the waiting requests with NotReady."""
        self._batcher.close()

    async def caption(self, image: ImageSource, options: CaptionOptions) -> Outcome[CaptionResult]:
        """Caption one image; raises NotReady without a captioner, a limit error for bad bytes,
        and Busy when the queue is full."""
        model = self._head("captioner", "no captioning model is loaded")
        decoded, decode_seconds = await self._decode(image)
        o = options
        job = CaptionJob(
            decoded,
            o.beam_size,
            o.max_length,
            o.length_penalty,
            o.num_captions,
            o.sampling,
            o.seed,
            o.repeat_penalty,
        )
        done = await self._batcher.submit(job)
        return _outcome(done, decoded, model, decode_seconds)

    async def answer(
        self, image: ImageSource, options: AnswerOptions
    ) -> Outcome[list[AnswerResult]]:
        """Answer every question about one image, in order, in one pass; raises like caption."""
        model = self._head("vqa", "no VQA model is loaded")
        decoded, decode_seconds = await self._decode(image)
        done = await self._batcher.submit(AnswerJob(decoded, options.questions, options.top_k))
        return _outcome(done, decoded, model, decode_seconds)

    async def labels(self, image: ImageSource, options: LabelOptions) -> Outcome[LabelsResult]:
        """The ImageNet classes the encoder recognises, with where; raises LabelsUnavailable
        when no loaded encoder has an ImageNet head, else like caption."""
        if self._labels_card is None:
            raise LabelsUnavailable(
                "no loaded model's encoder has an ImageNet classifier, so there are no labels"
            )
        decoded, decode_seconds = await self._decode(image)
        done = await self._batcher.submit(LabelJob(decoded, options.top_k))
        return _outcome(done, decoded, self._labels_card, decode_seconds)

    def check_room(self) -> None:
        """Raise Busy if the model queue is full now, so that the API can refuse a request
        before reading its body: under overload a refusal then costs almost nothing."""
        self._batcher.check_room()

    def _head(self, kind: str, missing: str) -> ModelCard:
        if kind not in self.models:
            raise NotReady(missing)
        return self.models[kind]

    async def _decode(self, image: ImageSource) -> tuple[Image.Image, float]:
        """The decoded image and the seconds spent reading and decoding it."""
        started = time.perf_counter()
        settings = self._settings
        data = await read_limited(image, settings.max_image_bytes)
        formats = frozenset(settings.image_formats)
        opened = await asyncio.to_thread(
            open_image, data, settings.max_image_pixels, formats, self._side
        )
        decoded = await self._budget.run(opened.cost, partial(finish_decode, opened))
        return decoded, time.perf_counter() - started


def _labels_card(engine: Engine, models: dict[str, ModelCard]) -> ModelCard | None:
    """The card of the head whose encoder gives the labels; None without a labeller."""
    if engine.labeller is None:
        return None
    key = engine.labeller.key
    return next(card for kind, card in models.items() if engine.encoder_key(kind) == key)


def _outcome(
    done: Completed, image: Image.Image, model: ModelCard, decode_seconds: float
) -> Outcome:
    if isinstance(done.result, Refused):  # the `refuse` policy: nothing was decoded
        knows = model.trained_on.description if model.trained_on else None
        verdict = done.result.domain
        raise OutOfDomain(model.id, knows, verdict.score, verdict.threshold)
    timings = Timings(decode_seconds, done.queue_seconds, done.batch_seconds)
    return Outcome(done.result, image, model, timings)
