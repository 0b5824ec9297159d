"""`glimpse domain fit`: give model directories the check of whether an image lies in the
domain they were trained on (models/domain.py), fitted on their training images."""

from pathlib import Path
from typing import Annotated

import typer

from api.commands._errors import fail

app = typer.Typer(help="Domain checks of model directories.", no_args_is_help=True)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")


@app.callback()
def domain() -> None:
    """Domain checks of model directories."""  # a callback keeps `fit` a named sub-command


@app.command("fit")
def fit(
    models: Annotated[
        list[Path], typer.Option("--model", help="model directory (repeatable: one fit each)")
    ],
    data: Annotated[Path, typer.Option("--data", help="folder of training images (recursive)")],
    images: Annotated[int, typer.Option(min=10, help="training images to fit on")] = 3000,
    views: Annotated[int, typer.Option(min=0, max=7, help="augmented views per image")] = 2,
    false_alarm: Annotated[
        float, typer.Option(min=0.0001, max=0.5, help="held-out images allowed out of domain")
    ] = 0.005,
    margin: Annotated[float, typer.Option(min=1.0, max=10.0, help="threshold multiplier")] = 1.5,
    dataset: Annotated[str | None, typer.Option(help="also record trained_on: data set")] = None,
    description: Annotated[str | None, typer.Option(help="trained_on: one sentence")] = None,
) -> None:
    """Fit each model's domain check and write domain.safetensors + domain.json into it."""
    from models.checkpoint import (
        CheckpointError,
        TrainedOn,
        load_pretrained,
        record_trained_on,
        save_domain,
    )
    from models.domain import DomainModel
    from training.domain import DomainRecipe, fit_for

    if (dataset is None) != (description is None):
        raise fail("give --dataset and --description together")
    paths = sorted(p for p in data.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)[:images]
    if len(paths) < 10:
        raise fail(f"{data}: found {len(paths)} images, need at least 10")
    recipe = DomainRecipe(views=views, false_alarm=false_alarm, margin=margin)
    fitted: dict[str, DomainModel] = {}  # heads on the same encoder share one fit
    for path in models:
        try:
            checkpoint = load_pretrained(path)
        except CheckpointError as exc:
            raise fail(f"cannot load model: {exc}") from exc
        key = repr(checkpoint.encoder)
        if checkpoint.encoder_state is not None or key not in fitted:
            fitted[key] = fit_for(checkpoint, paths, recipe)
        save_domain(path, fitted[key])
        if dataset is not None and description is not None:
            record_trained_on(path, TrainedOn(dataset, description))
        typer.echo(f"{path}: domain threshold {fitted[key].threshold:g}")
