"""What an answer tells about how well the model knew its input, for the routes and the CLI
alike: the domain verdict as JSON and the warnings, with stable codes."""

from models.checkpoint import TrainedOn
from service.domain import DomainVerdict


def domain_json(verdict: DomainVerdict | None) -> dict | None:
    if verdict is None:
        return None
    return {"in_domain": verdict.in_domain, "score": verdict.score, "threshold": verdict.threshold}


def out_of_domain(
    verdict: DomainVerdict | None, trained_on: TrainedOn | None, guess: str
) -> list[dict]:
    """The `out_of_domain` warning when the image lies outside the model's domain."""
    if verdict is None or verdict.in_domain:
        return []
    knows = trained_on.description if trained_on else "its own training images"
    message = (
        f"this image looks unlike what the model was trained on ({knows}), so {guess} is a "
        f"guess: its distance from the training images is {verdict.score:g}, over the "
        f"threshold {verdict.threshold:g}"
    )
    return [{"code": "out_of_domain", "message": message}]


def unknown_words(number: int, words: list[str]) -> list[dict]:
    """The `unknown_words` warning of question `number` (from 1), if it has any."""
    if not words:
        return []
    listed = ", ".join(f"'{w}'" for w in words)
    message = f"question {number}: {listed} not in the model's vocabulary, read as unknown"
    return [{"code": "unknown_words", "message": message, "words": words}]
