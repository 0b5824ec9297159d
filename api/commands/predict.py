"""`glimpse caption` and `glimpse ask`: the engine's path, from the command line."""

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from api.commands._errors import fail
from service.settings import Settings

if TYPE_CHECKING:
    from PIL import Image

    from service.engine import Engine

ModelOption = Annotated[
    Path | None, typer.Option("--model", help="model directory (default: the bundled model)")
]
JsonOption = Annotated[bool, typer.Option("--json", help="one JSON object per line")]


def _load_images(paths: list[Path]) -> "list[Image.Image]":
    from service.errors import GlimpseError
    from service.images import decode_image

    images = []
    for path in paths:
        try:
            images.append(decode_image(path.read_bytes()))
        except OSError as exc:
            raise fail(f"{path}: cannot read: {exc.strerror or exc}") from exc
        except GlimpseError as exc:
            raise fail(f"{path}: {exc.message}") from exc
    return images


def open_engine(caption_dir: Path | None, vqa_dir: Path | None) -> "Engine":
    """The server's loader on these directories, without its warm-up (one run is all a
    command needs); a model that does not load is a one-line error and exit code 2."""
    from models.checkpoint import CheckpointError
    from service.loading import load_engine

    try:
        return load_engine(Settings(caption_model=caption_dir, vqa_model=vqa_dir), warm_up=False)
    except CheckpointError as exc:
        raise fail(f"cannot load model: {exc}") from exc


def caption(
    images: Annotated[list[Path], typer.Argument(help="image files", show_default=False)],
    model: ModelOption = None,
    beam_size: Annotated[int, typer.Option(min=1, max=20, help="1 = greedy")] = 3,
    max_length: Annotated[int, typer.Option(min=1, max=100, help="most words")] = 30,
    batch_size: Annotated[int, typer.Option(min=1, max=256, help="images per pass")] = 16,
    as_json: JsonOption = False,
) -> None:
    """Caption images; with --json, each word comes with its attention map."""
    from service.engine import as_lists

    decoded = _load_images(images)
    engine = open_engine(model or Settings().caption_model, None)
    grid = list(engine.grids["captioner"])
    for start in range(0, len(decoded), batch_size):
        batch = decoded[start : start + batch_size]
        results = engine.caption(batch, beam_size=beam_size, max_length=max_length)
        for path, result in zip(images[start : start + batch_size], results, strict=True):
            if not as_json:
                typer.echo(f"{path}: {result.caption}")
                continue
            tokens = [
                {"word": word, "attention": as_lists(attention)}
                for word, attention in zip(result.words, result.attention, strict=True)
            ]
            record = {"image": str(path), "caption": result.caption, "tokens": tokens, "grid": grid}
            typer.echo(json.dumps(record))


def ask(
    image: Annotated[Path, typer.Argument(help="image file", show_default=False)],
    question: Annotated[str, typer.Argument(help="a question about the image")],
    model: ModelOption = None,
    top_k: Annotated[int, typer.Option(min=1, max=100, help="answers to list")] = 5,
    as_json: JsonOption = False,
) -> None:
    """Answer a question about an image, and show where the model looked."""
    if not question.strip():
        raise fail("the question is empty")
    from service.engine import as_lists

    decoded = _load_images([image])
    engine = open_engine(None, model or Settings().vqa_model)
    result = engine.answer(decoded, [[question]], top_k=top_k)[0][0]
    if not as_json:
        typer.echo(result.answer)
        return
    record = {
        "answer": result.answer,
        "top_k": [{"answer": a, "score": round(p, 4)} for a, p in result.top_k],
        "attention": [] if result.attention is None else as_lists(result.attention),
        "grid": list(engine.grids["vqa"]),
    }
    typer.echo(json.dumps(record))
