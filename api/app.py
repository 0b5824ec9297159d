"""`create_app(settings)`: the HTTP API and the web page around one engine.

Models load in the background after start-up, so `/healthz` answers at once and `/readyz`
says 503 (with the reason, should loading fail) until requests can be served.
"""

import asyncio
import hashlib
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from functools import partial

from fastapi import Depends, FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.staticfiles import StaticFiles
from PIL import Image

from api.deps import AppState, require_api_key
from api.errors import install_error_handlers
from api.middleware import BodyLimit, RequestMetrics, StrictFormText
from api.routes import captions, health, models, vqa, web
from api.schemas import ModelCard
from service.batcher import AnswerJob, CaptionJob, MicroBatcher, run_jobs
from service.engine import Engine
from service.settings import Settings

log = logging.getLogger(__name__)

EngineLoader = Callable[[Settings], Engine]
_TASKS = {"captioner": "captioning", "vqa": "vqa"}


def load_engine(settings: Settings) -> Engine:
    """Load the configured models and run them once, so the first request is not the slow one."""
    engine = Engine.from_dirs(settings.caption_model, settings.vqa_model, settings.torch_threads)
    image = Image.new("RGB", (32, 32), (128, 128, 128))
    jobs = []
    if engine.captioner is not None:
        jobs.append(CaptionJob(image, beam_size=2, max_length=2))
    if engine.vqa is not None:
        jobs.append(AnswerJob(image, ("what is this?",), top_k=1))
    run_jobs(engine, jobs)
    return engine


def model_cards(engine: Engine) -> dict[str, ModelCard]:
    """A card per loaded head; its id changes whenever a file of its directory changes."""
    cards = {}
    for kind, checkpoint in (("captioner", engine.captioner), ("vqa", engine.vqa)):
        if checkpoint is None:
            continue
        digest = hashlib.sha256()
        if checkpoint.path is not None:
            for path in sorted(p for p in checkpoint.path.iterdir() if p.is_file()):
                digest.update(path.name.encode())
                digest.update(path.read_bytes())
        cards[kind] = ModelCard(
            id=f"{checkpoint.name}-{digest.hexdigest()[:12]}",
            task=_TASKS[kind],
            encoder=checkpoint.encoder.name,
            image_size=checkpoint.encoder.image_size,
            grid=engine.grids[kind],
            vocabulary_size=len(checkpoint.tokenizer),
            answers=len(checkpoint.answers) if checkpoint.answers is not None else None,
        )
    return cards


async def _load(state: AppState, loader: EngineLoader) -> None:
    """Load off the event loop; on failure keep serving health checks and say why."""
    settings = state.settings
    try:
        engine = await asyncio.to_thread(loader, settings)
        cards = await asyncio.to_thread(model_cards, engine)
    except Exception as exc:
        state.load_error = str(exc) or type(exc).__name__
        log.error("models failed to load: %s", state.load_error)
        return
    batcher = MicroBatcher(
        partial(run_jobs, engine, metrics=state.metrics),
        max_batch_size=settings.max_batch_size,
        max_wait_s=settings.max_wait_ms / 1000,
        max_queue_size=settings.max_queue_size,
        retry_after_s=settings.retry_after_s,
        metrics=state.metrics,
    )
    batcher.start()
    state.engine, state.models, state.batcher = engine, cards, batcher
    log.info("ready: %s", ", ".join(card.id for card in cards.values()))


def create_app(settings: Settings | None = None, loader: EngineLoader = load_engine) -> FastAPI:
    """The app for `settings` (default: from GLIMPSE_* variables); `loader` builds the engine."""
    settings = settings or Settings()
    state = AppState(settings)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        loading = asyncio.create_task(_load(state, loader))
        yield
        await loading  # a load in progress finishes (threads cannot be cancelled)
        if state.batcher is not None:
            await asyncio.to_thread(state.batcher.close)

    app = FastAPI(
        title="Glimpse",
        summary="Image captions and answers to questions, with where the model looked.",
        version="0.1.0",
        lifespan=lifespan,
        form_limits={"max_files": 1, "max_fields": settings.max_questions + 16},
        redoc_url=None,
    )
    app.state.glimpse = state
    install_error_handlers(app)
    app.add_middleware(StrictFormText)  # inside BodyLimit: sees only bodies within the limit
    app.add_middleware(
        BodyLimit,
        max_body_bytes=settings.max_body_bytes,
        max_image_bytes=settings.max_image_bytes,
    )
    app.add_middleware(RequestMetrics, metrics=state.metrics)  # outside BodyLimit: times its 413s
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST"],
            allow_headers=["Authorization"],
        )
    protected = [Depends(require_api_key)] if settings.api_keys else []
    for router in (captions.router, vqa.router, models.router):
        app.include_router(router, dependencies=protected)
    app.include_router(health.router)
    app.include_router(web.router)
    app.mount("/static", StaticFiles(directory=web.STATIC_DIR), name="static")
    return app
