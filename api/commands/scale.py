"""`glimpse scale ...`: data sets of the real size, for testing the pipeline at scale."""

from pathlib import Path
from typing import Annotated

import typer

from api.commands._errors import fail

app = typer.Typer(help="Data sets of COCO's size for scale tests.", no_args_is_help=True)


@app.callback()
def scale() -> None:
    """Data sets of COCO's size for scale tests."""  # a callback keeps sub-commands named


@app.command("coco-synthetic")
def coco_synthetic(
    out: Annotated[Path, typer.Option("--out", help="Folder for dataset_coco.json and images.")],
    train: Annotated[
        int, typer.Option(min=1, help="Training images (train + restval in COCO's ratio).")
    ] = 113_287,
    val: Annotated[int, typer.Option(min=0, help="Validation images.")] = 5_000,
    test: Annotated[int, typer.Option(min=0, help="Test images.")] = 5_000,
    image_size: Annotated[
        int, typer.Option("--image-size", min=8, max=1024, help="Side of the tiny JPEGs.")
    ] = 32,
    images: Annotated[
        bool, typer.Option("--images/--no-images", help="Write a JPEG per image.")
    ] = True,
    seed: Annotated[int, typer.Option(min=0, help="Random seed; same seed, same bytes.")] = 0,
) -> None:
    """Write a synthetic COCO in Karpathy's format (made-up words with COCO's statistics)."""
    from training.data.synthetic_coco import generate_synthetic_coco  # heavy imports here

    try:
        made = generate_synthetic_coco(
            out, train, val, test, image_size=image_size, images=images, seed=seed
        )
    except ValueError as error:
        raise typer.BadParameter(str(error)) from error
    except OSError as error:  # an unwritable --out, a full disk
        raise fail(f"cannot write {out}: {error}") from error
    counts = ", ".join(f"{split} {n:,}" for split, n in made.split_images.items())
    typer.echo(f"{out}/dataset_coco.json: {counts} images, {made.sentences:,} captions")
