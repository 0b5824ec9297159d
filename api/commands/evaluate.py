"""`glimpse evaluate captions|vqa`: score a results file, or run a model and score it."""

import json
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer

from api.commands._errors import fail
from api.commands.predict import open_engine
from service.settings import Settings
from training.metrics.results import ANSWERS, CAPTIONS, ResultsFormat, load_results, write_results

app = typer.Typer(help="Score captions or answers on a data split.", no_args_is_help=True)

DataOption = Annotated[Path, typer.Option("--data", help="data root (shapes world or COCO)")]
SplitOption = Annotated[str, typer.Option("--split", help="split to score")]
ModelOption = Annotated[Path | None, typer.Option("--model", help="model directory")]
ResultsOption = Annotated[
    Path | None, typer.Option("--results", help="score this results file, run no model")
]
ResultsOutOption = Annotated[
    Path | None, typer.Option("--results-out", help="where to write the model's results")
]
JsonOption = Annotated[bool, typer.Option("--json", help="metrics as JSON on the last line")]
BatchOption = Annotated[int, typer.Option(min=1, max=512, help="images per forward pass")]


def _read(path: Path, form: ResultsFormat) -> dict[int, str]:
    """A results file, or a one-line error and exit code 2."""
    try:
        return load_results(path, form)
    except ValueError as exc:
        raise fail(str(exc)) from exc


def _write(path: Path | None, results: dict[int, str], form: ResultsFormat) -> None:
    if path is not None:
        write_results(path, results, form)


def _report(score: Callable[[], dict], as_json: bool) -> None:
    """Print what `score` measures; results that do not fit the split are a one-line error."""
    try:
        report = score()
    except ValueError as exc:
        raise fail(str(exc)) from exc
    if as_json:
        typer.echo(json.dumps(report))
        return
    for key, value in report.items():
        typer.echo(f"{key:>20}: {json.dumps(value) if isinstance(value, dict) else value}")


@app.command()
def captions(
    data: DataOption,
    split: SplitOption = "test",
    model: ModelOption = None,
    results: ResultsOption = None,
    results_out: ResultsOutOption = None,
    beam_size: Annotated[int, typer.Option(min=1, max=20)] = 3,
    batch_size: BatchOption = 32,
    as_json: JsonOption = False,
) -> None:
    """BLEU, METEOR, ROUGE-L, CIDEr (+ correctness and grounding on the shapes world)."""
    from training.data.coco import load_caption_split
    from training.evaluate import caption_report
    from training.predict_split import caption_split

    records = load_caption_split(data, split)
    attention = None
    if results is not None:
        generated = _read(results, CAPTIONS)
    else:
        engine = open_engine(model or Settings().caption_model, None)
        generated, attention = caption_split(engine, records, beam_size, batch_size)
        _write(results_out, generated, CAPTIONS)
    _report(lambda: caption_report(generated, records, data, split, attention), as_json)


@app.command()
def vqa(
    data: DataOption,
    split: SplitOption = "test",
    model: ModelOption = None,
    results: ResultsOption = None,
    results_out: ResultsOutOption = None,
    batch_size: BatchOption = 32,
    as_json: JsonOption = False,
) -> None:
    """Official VQA accuracy by answer and question type (+ grounding on the shapes world)."""
    from training.data.vqa import load_vqa_split
    from training.evaluate import vqa_report
    from training.predict_split import answer_split

    records = load_vqa_split(data, split)
    unscored = not any(r.answers for r in records)  # test-dev and test: for the server only
    if unscored and results is None and results_out is None:
        raise fail(f"split {split} has no human answers to score: give --results-out")
    attention = None
    if results is not None:
        answers = _read(results, ANSWERS)
    else:
        engine = open_engine(None, model or Settings().vqa_model)
        answers, attention = answer_split(engine, records, batch_size)
        _write(results_out, answers, ANSWERS)
    if unscored:
        written = "" if results_out is None else f"; the answers are in {results_out}"
        typer.echo(f"split {split} has no human answers: nothing to score here{written}")
        return
    _report(lambda: vqa_report(answers, records, data, split, attention), as_json)
