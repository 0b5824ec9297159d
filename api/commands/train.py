"""`glimpse train captions|vqa`: a recipe, overrides, and a resumable run."""

import json
from pathlib import Path
from typing import Annotated

import typer

from api.commands._errors import fail

app = typer.Typer(help="Train a captioner or a VQA model.", no_args_is_help=True)

DataOption = Annotated[Path, typer.Option("--data", help="data root (shapes world or COCO)")]
OutOption = Annotated[Path, typer.Option("--out", help="run directory: state, logs, model/")]
ResumeOption = Annotated[bool, typer.Option("--resume", help="continue from --out's state")]
Overrides = Annotated[
    list[str] | None, typer.Argument(help="config overrides, key=value (e.g. epochs=3)")
]


def _run(task_name: str, data: Path, recipe: str, out: Path, resume: bool, overrides) -> None:
    import torch

    from models.checkpoint import CheckpointError
    from training.config import load_config
    from training.loop import fit
    from training.state import TrainingStateError
    from training.tasks import build_task

    try:
        cfg = load_config(recipe, overrides)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc
    if cfg.task != task_name:
        raise typer.BadParameter(f"recipe {recipe!r} is for {cfg.task}, not {task_name}")
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(json.dumps(cfg.to_dict(), indent=2) + "\n")
    torch.manual_seed(cfg.seed)  # the head's initial weights
    try:
        task = build_task(cfg, data)  # the recipe's regime: VQA, teacher forcing, self-critical
    except (ValueError, CheckpointError) as exc:  # settings that do not fit the data or model
        raise fail(exc) from exc
    try:
        result = fit(task, cfg, out, resume=resume)
    except TrainingStateError as exc:
        raise fail(exc) from exc
    (out / "metrics.json").write_text(json.dumps(result.best_metrics, indent=2) + "\n")
    typer.echo(json.dumps({"model": str(out / "model"), **result.best_metrics}))


@app.command()
def captions(
    data: DataOption,
    config: Annotated[str, typer.Option(help="recipe name or JSON file")] = "shapes-cpu",
    out: OutOption = Path("runs/captions"),
    resume: ResumeOption = False,
    overrides: Overrides = None,
) -> None:
    """Train the Show-Attend-Tell captioner; the best model is exported to OUT/model."""
    _run("captions", data, config, out, resume, overrides)


@app.command()
def vqa(
    data: DataOption,
    config: Annotated[str, typer.Option(help="recipe name or JSON file")] = "vqa-shapes",
    out: OutOption = Path("runs/vqa"),
    resume: ResumeOption = False,
    overrides: Overrides = None,
) -> None:
    """Train the VQA model; the best model is exported to OUT/model."""
    _run("vqa", data, config, out, resume, overrides)
