"""What the service says about how well a model knows its input: is the image in the domain
its head was trained on, and which question words it has never seen."""

from collections.abc import Container
from dataclasses import dataclass

from torch import Tensor

from models.checkpoint import Checkpoint
from models.text import words
from service.settings import DomainPolicy


@dataclass(frozen=True)
class DomainVerdict:
    in_domain: bool
    score: float  # distance from the training images' grids (models.domain)
    threshold: float  # beyond it, the image is outside the domain


def judge(checkpoint: Checkpoint, grid: Tensor, policy: DomainPolicy) -> list[DomainVerdict | None]:
    """A verdict per grid (B, L, D); None each when the model has no check or the policy is
    not to check."""
    domain = checkpoint.domain
    if domain is None or policy == "answer":
        return [None] * len(grid)
    scores = domain.score(grid).tolist()  # (B,)
    return [DomainVerdict(s <= domain.threshold, round(s, 3), domain.threshold) for s in scores]


def unknown_words(vocabulary: Container[str], question: str) -> list[str]:
    """The question's words outside the vocabulary (read as <unk>), each once, in order;
    punctuation is not a word a client could rephrase, so it is left out."""
    unknown = (w for w in words(question) if w not in vocabulary and any(c.isalnum() for c in w))
    return list(dict.fromkeys(unknown))
