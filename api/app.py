"""`create_app(settings)`: the HTTP API and the web page around the inference service.

Models load in the background after start-up, so `/healthz` answers at once and `/readyz`
says 503 (with the reason, should loading fail) until requests can be served.
"""

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.staticfiles import StaticFiles

from api.deps import AppState, require_api_key
from api.errors import install_error_handlers
from api.middleware import (
    BodyDeadline,
    BodyLimit,
    RefuseWhenBusy,
    RequestMetrics,
    SecurityHeaders,
    StrictFormText,
)
from api.routes import captions, health, labels, models, vqa, web
from api.runtime import TrimWhenIdle
from service.engine import Engine
from service.inference import Inference
from service.loading import load_engine
from service.settings import Settings

log = logging.getLogger(__name__)

EngineLoader = Callable[[Settings], Engine]


async def _load(state: AppState, loader: EngineLoader) -> None:
    """Load off the event loop; on failure keep serving health checks and say why."""
    try:
        engine = await asyncio.to_thread(loader, state.settings)
        inference = await asyncio.to_thread(Inference, engine, state.settings, state.metrics)
    except Exception as exc:
        state.load_error = str(exc) or type(exc).__name__
        log.error("models failed to load: %s", state.load_error)
        return
    inference.start()
    state.inference = inference
    log.info("ready: %s", ", ".join(card.id for card in inference.models.values()))


def create_app(settings: Settings | None = None, loader: EngineLoader = load_engine) -> FastAPI:
    """The app for `settings` (default: from GLIMPSE_* variables); `loader` builds the engine."""
    settings = settings or Settings()
    state = AppState(settings)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        loading = asyncio.create_task(_load(state, loader))
        yield
        await loading  # a load in progress finishes (threads cannot be cancelled)
        if state.inference is not None:
            await asyncio.to_thread(state.inference.close)

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
    app.add_middleware(RefuseWhenBusy, state=state)  # inside BodyDeadline: drops the body
    app.add_middleware(
        BodyLimit,
        max_body_bytes=settings.max_body_bytes,
        max_image_bytes=settings.max_image_bytes,
    )
    app.add_middleware(
        BodyDeadline,
        seconds=settings.body_timeout_s,
        drain_bytes=max(settings.max_body_bytes, settings.max_drain_bytes),
    )
    app.add_middleware(RequestMetrics, metrics=state.metrics)  # outside BodyLimit: times its 413s
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST"],
            allow_headers=["Authorization"],
        )
    app.add_middleware(SecurityHeaders)  # outermost: every answer, errors included
    app.add_middleware(TrimWhenIdle)  # freed memory goes back once no request is in flight
    protected = [Depends(require_api_key)] if settings.api_keys else []
    for router in (captions.router, vqa.router, labels.router, models.router):
        app.include_router(router, dependencies=protected)
    app.include_router(health.router)
    app.include_router(web.router)
    app.mount("/static", StaticFiles(directory=web.STATIC_DIR), name="static")
    return app
