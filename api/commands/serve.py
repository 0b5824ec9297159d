"""`glimpse serve`: the HTTP API and the web page, with settings from GLIMPSE_* variables."""

from pathlib import Path
from typing import Annotated, Any

import typer

from api.commands._errors import fail


def serve(
    host: Annotated[
        str | None, typer.Option(help="address to bind (default: GLIMPSE_HOST or 127.0.0.1)")
    ] = None,
    port: Annotated[
        int | None, typer.Option(min=1, max=65535, help="port (default: GLIMPSE_PORT or 8000)")
    ] = None,
    caption_model: Annotated[
        Path | None, typer.Option(help="captioner directory (default: the bundled model)")
    ] = None,
    vqa_model: Annotated[
        Path | None, typer.Option(help="VQA model directory (default: the bundled model)")
    ] = None,
    quantize: Annotated[
        str | None,
        typer.Option(help="none or int8: the captioner's weights (default: GLIMPSE_QUANTIZE)"),
    ] = None,
) -> None:
    """Serve the API and the web page; every other knob is a GLIMPSE_* variable (README)."""
    import logging

    import uvicorn
    from pydantic import ValidationError

    from api.app import create_app
    from api.runtime import one_malloc_arena
    from service.settings import Settings

    # Only the options given override GLIMPSE_* variables; pydantic validates the values.
    overrides: dict[str, Any] = {
        "host": host,
        "port": port,
        "caption_model": caption_model,
        "vqa_model": vqa_model,
        "quantize": quantize,
    }
    try:
        settings = Settings(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as exc:
        raise fail(f"invalid settings:\n{exc}") from exc
    one_malloc_arena()  # so that freed memory can be handed back (api/runtime.py)
    # uvicorn configures only its own loggers; this shows the app's (model loading, errors).
    logging.basicConfig(level=settings.log_level.upper(), format="%(levelname)s:  %(message)s")
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        access_log=settings.access_log,
        # Beyond this many open connections uvicorn answers 503 at once (plain text).
        limit_concurrency=settings.max_connections,
    )
