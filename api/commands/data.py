"""`glimpse data ...`: build the data sets the models train on."""

from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(help="Build training data sets.", no_args_is_help=True)

SPLITS = ("train", "val", "test")


@app.callback()
def data() -> None:
    """Build training data sets."""  # a callback keeps `shapes` a named sub-command


@app.command("shapes")
def shapes(
    out: Annotated[Path, typer.Option("--out", help="Folder to write images/ and annotations/.")],
    seed: Annotated[int, typer.Option(min=0, help="Random seed; same seed, same bytes.")] = 0,
    sizes: Annotated[
        str, typer.Option(help="Images per split as TRAIN,VAL,TEST (0 skips a split).")
    ] = "8000,1000,1000",
    workers: Annotated[
        int | None, typer.Option(min=1, help="Worker processes (default: up to 2).")
    ] = None,
) -> None:
    """Generate the shapes world: PNG images, COCO instances and captions, VQA v2 questions."""
    from training.data.shapes import generate  # heavy imports only when the command runs

    try:
        generate(out, _parse_sizes(sizes), seed=seed, workers=workers)
    except ValueError as error:
        raise typer.BadParameter(str(error)) from error
    typer.echo(f"shapes world written to {out}")


def _parse_sizes(text: str) -> dict[str, int]:
    parts = [p.strip() for p in text.split(",")]
    if len(parts) != len(SPLITS) or not all(p.isdigit() for p in parts):
        raise typer.BadParameter(
            f"expected three non-negative integers TRAIN,VAL,TEST, got {text!r}",
            param_hint="--sizes",
        )
    return {split: int(p) for split, p in zip(SPLITS, parts, strict=True) if int(p) > 0}
