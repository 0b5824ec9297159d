"""What is loaded, for clients: a card per head, whose id names the exact files it came from."""

import hashlib
from dataclasses import dataclass
from typing import Literal

from models.captioner import Captioner
from models.checkpoint import TrainedOn
from models.quantize import Quantization, quantization_of
from service.engine import Engine

_TASKS: dict[str, Literal["captioning", "vqa"]] = {"captioner": "captioning", "vqa": "vqa"}
HARD_ATTENTION = "hard attention: deterministic at inference, the most likely location per word"


@dataclass(frozen=True)
class ModelCard:
    id: str  # directory name and a digest of its files (and "-int8" when quantised)
    task: Literal["captioning", "vqa"]
    encoder: str
    image_size: int  # side in pixels the encoder sees
    grid: tuple[int, int]
    vocabulary_size: int
    answers: int | None  # answer classes (VQA only)
    answer_list: tuple[str, ...] | None  # the answers it can give (VQA only)
    trained_on: TrainedOn | None  # None: the model directory does not say
    domain_check: bool  # whether answers say if an image lies in the training domain
    labels: bool  # whether its encoder has an ImageNet head (labels, /v1/labels)
    quantization: Quantization  # how its weights are held: "none" (as trained) or "int8"
    attention: str | None = None  # what a hard-attention captioner does; None: soft attention


def model_cards(engine: Engine) -> dict[str, ModelCard]:
    """A card per loaded head, by head (captioner, vqa).

    The id changes whenever a file of the model's directory changes or the head is served
    quantised, so a client can tell which model answered. Every file is read once: call this
    off the event loop.
    """
    cards = {}
    for kind, checkpoint in (("captioner", engine.captioner), ("vqa", engine.vqa)):
        if checkpoint is None:
            continue
        digest = hashlib.sha256()
        if checkpoint.path is not None:
            for path in sorted(p for p in checkpoint.path.iterdir() if p.is_file()):
                digest.update(path.name.encode())
                digest.update(path.read_bytes())
        quantization = quantization_of(checkpoint.model)
        suffix = "" if quantization == "none" else f"-{quantization}"
        cards[kind] = ModelCard(
            id=f"{checkpoint.name}-{digest.hexdigest()[:12]}{suffix}",
            task=_TASKS[kind],
            encoder=checkpoint.encoder.name,
            image_size=checkpoint.encoder.image_size,
            grid=engine.grids[kind],
            vocabulary_size=len(checkpoint.tokenizer),
            answers=len(checkpoint.answers) if checkpoint.answers is not None else None,
            answer_list=tuple(checkpoint.answers) if checkpoint.answers is not None else None,
            trained_on=checkpoint.trained_on,
            domain_check=checkpoint.domain is not None,
            labels=engine.encoder_for(kind)[0].imagenet_classifier() is not None,
            quantization=quantization,
            attention=HARD_ATTENTION if _is_hard(checkpoint.model) else None,
        )
    return cards


def _is_hard(model: object) -> bool:
    return isinstance(model, Captioner) and model.config.attention == "hard"
