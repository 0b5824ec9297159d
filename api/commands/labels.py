"""`glimpse labels`: what the encoder under a model recognises, from the command line.

These are the encoder's own ImageNet-1k classes (its published classifier), not a caption;
each comes with the class-activation map of where the classifier sees it.
"""

import json
from pathlib import Path
from typing import Annotated

import typer

from api.commands._errors import fail
from api.commands.predict import JsonOption, _load_images, open_engine
from service.settings import Settings


def labels(
    images: Annotated[list[Path], typer.Argument(help="image files", show_default=False)],
    model: Annotated[
        Path | None,
        typer.Option(
            "--model",
            help="a model directory whose encoder gives the labels "
            "(default: the bundled captioner)",
        ),
    ] = None,
    top_k: Annotated[int, typer.Option("--top-k", min=1, max=1000, help="labels per image")] = 5,
    batch_size: Annotated[int, typer.Option(min=1, max=256, help="images per pass")] = 16,
    as_json: JsonOption = False,
) -> None:
    """The ImageNet classes the encoder recognises; with --json, each with its map."""
    from service.engine import as_lists

    decoded = _load_images(images)
    directory = model or Settings().caption_model
    engine = open_engine(directory, None)
    if engine.labeller is None:
        raise fail(f"the encoder of {directory} has no ImageNet classifier, so no labels")
    for start in range(0, len(decoded), batch_size):
        batch = decoded[start : start + batch_size]
        results = engine.labels(batch, top_k=top_k)
        for path, result in zip(images[start : start + batch_size], results, strict=True):
            if not as_json:
                found = ", ".join(f"{name} {score:.3f}" for name, score in result.labels)
                typer.echo(f"{path}: {found}")
                continue
            listed = [
                {"label": name, "score": round(score, 4), "attention": as_lists(attention)}
                for (name, score), attention in zip(result.labels, result.attention, strict=True)
            ]
            record = {
                "image": str(path),
                "labels": listed,
                "grid": list(result.grid),
                "model": engine.labeller.model_id,
            }
            typer.echo(json.dumps(record))
