"""`glimpse evaluate captions|vqa`: score a results file, or run a model and score it."""

import json
from pathlib import Path
from typing import Annotated

import typer

from api.commands.predict import fail, load_engine
from service.settings import Settings

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


def _images(paths: list[Path]) -> list:
    from PIL import Image

    images = []
    for path in paths:
        with Image.open(path) as image:
            images.append(image.convert("RGB"))
    return images


def caption_split(engine, records: list, beam_size: int, batch_size: int) -> tuple[dict, dict]:
    """Captions and per-word maps of every record's image, by image id."""
    generated, attention = {}, {}
    for start in range(0, len(records), batch_size):
        chunk = records[start : start + batch_size]
        out = engine.caption(_images([r.path for r in chunk]), beam_size=beam_size)
        for record, result in zip(chunk, out, strict=True):
            generated[record.image_id] = result.caption
            attention[record.image_id] = list(zip(result.words, result.attention, strict=True))
    return generated, attention


def answer_split(engine, records: list, batch_size: int) -> tuple[dict, dict]:
    """Answers and glimpse maps by question id; each image's questions share one pass."""
    by_image: dict[int, list] = {}
    for record in records:
        by_image.setdefault(record.image_id, []).append(record)
    groups = list(by_image.values())
    answers, attention = {}, {}
    for start in range(0, len(groups), batch_size):
        chunk = groups[start : start + batch_size]
        out = engine.answer(
            _images([g[0].path for g in chunk]), [[r.question for r in g] for g in chunk]
        )
        for group, results_of_image in zip(chunk, out, strict=True):
            for record, result in zip(group, results_of_image, strict=True):
                answers[record.question_id] = result.answer
                if result.attention is not None:
                    attention[record.question_id] = result.attention
    return answers, attention


def _print(report: dict, as_json: bool) -> None:
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
    from training.metrics.captions import load_coco_results

    records = load_caption_split(data, split)
    attention = None
    if results is not None:
        try:
            generated = load_coco_results(results)
        except ValueError as exc:
            raise fail(str(exc)) from exc
    else:
        engine = load_engine(model or Settings().caption_model, None)
        generated, attention = caption_split(engine, records, beam_size, batch_size)
        if results_out is not None:
            rows = [{"image_id": i, "caption": c} for i, c in generated.items()]
            results_out.write_text(json.dumps(rows))
    _print(caption_report(generated, records, data, split, attention), as_json)


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
    from training.metrics.vqa import load_vqa_results

    records = load_vqa_split(data, split)
    attention = None
    if results is not None:
        try:
            answers = load_vqa_results(results)
        except ValueError as exc:
            raise fail(str(exc)) from exc
    else:
        engine = load_engine(None, model or Settings().vqa_model)
        answers, attention = answer_split(engine, records, batch_size)
        if results_out is not None:
            rows = [{"question_id": q, "answer": a} for q, a in answers.items()]
            results_out.write_text(json.dumps(rows))
    _print(vqa_report(answers, records, data, split, attention), as_json)
