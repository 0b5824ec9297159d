"""`glimpse caption` and `glimpse ask`: the engine's path, from the command line."""

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from api.commands._errors import fail
from service.settings import Settings

if TYPE_CHECKING:
    import torch
    from PIL import Image

    from models.decoding import DecodeOptions
    from service.decoding_fields import DecodingFields
    from service.domain import DomainVerdict
    from service.engine import CaptionResult, Engine

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


def _warn(path: Path, warnings: list[dict]) -> None:
    """One line on stderr per warning, so that piped output stays the answers alone."""
    for warning in warnings:
        typer.echo(f"warning: {path}: {warning['message']}", err=True)


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
    beam_size: Annotated[
        int | None, typer.Option(min=1, max=20, help="1 = greedy (default 3); not with --sample")
    ] = None,
    max_length: Annotated[int, typer.Option(min=1, max=100, help="most words")] = 30,
    batch_size: Annotated[int, typer.Option(min=1, max=256, help="images per pass")] = 16,
    sample: Annotated[bool, typer.Option("--sample", help="draw the words, not search")] = False,
    temperature: Annotated[float | None, typer.Option(help="--sample: > 0 (default 1)")] = None,
    top_k: Annotated[int | None, typer.Option(help="--sample: among the k likeliest words")] = None,
    top_p: Annotated[
        float | None, typer.Option(help="--sample: among the likeliest words holding this mass")
    ] = None,
    seed: Annotated[int | None, typer.Option(help="--sample: same seed, same captions")] = None,
    num_captions: Annotated[
        int | None, typer.Option(help="captions per image: the n best beams or n samples")
    ] = None,
    length_penalty: Annotated[
        float | None, typer.Option(help="rank by log p / (words + 1)^length_penalty")
    ] = None,
    repeat_penalty: Annotated[
        float | None,
        typer.Option(help="rank down a word said again where it looked before (default 5)"),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Caption images; with --json, each word comes with its attention map and probability."""
    from api.warnings import domain_json, out_of_domain
    from service.decoding_fields import DecodingFields

    sent = DecodingFields(
        sample, temperature, top_k, top_p, seed, num_captions, length_penalty, repeat_penalty
    )
    options, seed = _decoding(sent, beam_size, max_length)
    decoded = _load_images(images)
    engine = open_engine(model or Settings().caption_model, None)
    trained_on = engine.captioner.trained_on if engine.captioner else None
    grid = list(engine.grids["captioner"])
    for start in range(0, len(decoded), batch_size):
        batch = decoded[start : start + batch_size]
        features, gens = engine.encode(batch), _generators(seed, batch)
        results = engine.caption(batch, features=features, decoding=options, generators=gens)
        domains = [result.domain for result in results]
        labels = _labels_json(engine, batch, domains, features) if as_json else []
        paths = images[start : start + batch_size]
        for i, (path, result) in enumerate(zip(paths, results, strict=True)):
            warnings = out_of_domain(result.domain, trained_on, "the caption")
            if not as_json:
                _warn(path, warnings)
                typer.echo(f"{path}: {result.caption}")
                for rank, other in enumerate(result.alternatives, start=2):
                    typer.echo(f"{path} ({rank}): {other.caption}")
                continue
            alternatives = [_caption_json(other) for other in result.alternatives]
            record = {"image": str(path), **_caption_json(result), "grid": grid}
            record["alternatives"] = alternatives
            record |= {"domain": domain_json(result.domain), "warnings": warnings}
            record["labels"] = labels[i]
            typer.echo(json.dumps(record))


def _decoding(
    sent: "DecodingFields", beam_size: int | None, max_length: int
) -> "tuple[DecodeOptions, int | None]":
    """The checks of the API's form (`service.decoding_fields`), as one-line errors, and the
    seed to sample from."""
    from models.decoding import DecodeOptions
    from service.decoding_fields import check_decoding
    from service.errors import InvalidField

    beams = 3 if beam_size is None else beam_size
    try:
        d = check_decoding(sent, beams, beam_size is not None, Settings())
    except InvalidField as exc:
        raise fail(f"--{exc.field.replace('_', '-')}: {exc.message}") from exc
    options = DecodeOptions(
        beams, max_length, d.length_penalty, d.num_captions, d.sampling, d.repeat_penalty
    )
    return options, d.seed


def _generators(seed: int | None, batch: list) -> "list[torch.Generator] | None":
    """With a seed, one generator per image, so that an image's captions do not depend on the
    images captioned beside it."""
    import torch

    return None if seed is None else [torch.Generator().manual_seed(seed) for _ in batch]


def _caption_json(result: "CaptionResult") -> dict:
    from service.engine import as_lists

    tokens = [
        {"word": word, "attention": as_lists(attention), "p": float(f"{p:.4g}")}
        for word, attention, p in zip(result.words, result.attention, result.probs, strict=True)
    ]
    if result.cells is not None:  # hard attention: each word's cell, as the API gives it
        for token, cell in zip(tokens, result.cells.tolist(), strict=True):
            token["cell"] = cell
    return {"caption": result.caption, "score": round(result.score, 4), "tokens": tokens}


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
    from api.warnings import domain_json, out_of_domain, unknown_words
    from service.engine import as_lists

    decoded = _load_images([image])
    engine = open_engine(None, model or Settings().vqa_model)
    features = engine.encode(decoded)
    result = engine.answer(decoded, [[question]], top_k, features)[0][0]
    trained_on = engine.vqa.trained_on if engine.vqa else None
    warnings = out_of_domain(result.domain, trained_on, "the answer")
    warnings += unknown_words(1, result.unknown_words)
    if not as_json:
        _warn(image, warnings)
        typer.echo(result.answer)
        return
    record = {
        "answer": result.answer,
        "top_k": [{"answer": a, "score": round(p, 4)} for a, p in result.top_k],
        "attention": [] if result.attention is None else as_lists(result.attention),
        "grid": list(engine.grids["vqa"]),
        "domain": domain_json(result.domain),
        "unknown_words": result.unknown_words,
        "warnings": warnings,
        "labels": _labels_json(engine, decoded, [result.domain], features)[0],
    }
    typer.echo(json.dumps(record))


def _labels_json(
    engine: "Engine",
    images: "list[Image.Image]",
    domains: "list[DomainVerdict | None]",
    features: "dict[tuple, torch.Tensor]",
) -> list[dict | None]:
    """Per image, the `labels` the API adds to an answer about an image outside the model's
    domain (the encoder's ImageNet classes with their maps, from the grids already computed);
    None for an image in the domain."""
    from api.schemas.common import EncoderLabels
    from service.jobs import labels_outside_domain

    foreign = [i for i, domain in enumerate(domains) if domain is not None and not domain.in_domain]
    found = labels_outside_domain(engine, images, foreign, features)
    model_id = engine.labeller.model_id if engine.labeller is not None else None
    shaped = [EncoderLabels.of(found.get(i), model_id, attention=True) for i in range(len(images))]
    return [None if labels is None else labels.model_dump(mode="json") for labels in shaped]
