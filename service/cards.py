"""What is loaded, for clients: a card per head, whose id names the exact files it came from."""

import hashlib
from dataclasses import dataclass
from typing import Literal

from models.checkpoint import TrainedOn
from service.engine import Engine

_TASKS: dict[str, Literal["captioning", "vqa"]] = {"captioner": "captioning", "vqa": "vqa"}


@dataclass(frozen=True)
class ModelCard:
    id: str  # directory name and a digest of its files
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


def model_cards(engine: Engine) -> dict[str, ModelCard]:
    """A card per loaded head, by head (captioner, vqa).

    The id changes whenever a file of the model's directory changes, so a client can tell
    which model answered. Every file is read once: call this off the event loop.
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
        cards[kind] = ModelCard(
            id=f"{checkpoint.name}-{digest.hexdigest()[:12]}",
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
        )
    return cards
