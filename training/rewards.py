"""The reward of a sampled caption in self-critical training: a weighted mix of scores, the
recipe's `reward` field (`{"cider_d": 1.0}`, `{"cider_d": 0.5, "truth": 0.5}`).

- `cider_d`: CIDEr-D against the image's training references, with document frequencies of
  all the training references (Rennie et al., 2017); works on any caption data.
- `bleu4`: sentence BLEU-4 against the same references, as pycocoevalcap scores it.
- `truth`: 1 when the caption is true of the image and names every object, else 0 (the
  shapes world's check, `caption_is_complete`); it needs the world's objects.
"""

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from pycocoevalcap.bleu.bleu import Bleu

from models.text import words
from training.attention_targets import train_instances
from training.data.coco import CaptionRecord
from training.data.shapes_grammar import parse_caption
from training.data.shapes_scene import WorldObject
from training.document_frequencies import training_frequencies
from training.metrics.cider_d import CiderD, TfIdf
from training.metrics.shapes import caption_is_complete

# Scores of sampled captions (word lists) of the images `image_ids`, one image id a caption.
Scorer = Callable[[Sequence[int], Sequence[Sequence[str]]], list[float]]


class CaptionReward:
    """The weighted sum of the recipe's scores, for a batch of sampled captions."""

    def __init__(self, weights: Mapping[str, float], scorers: Mapping[str, Scorer]) -> None:
        self.weights, self.scorers = dict(weights), scorers

    def __call__(self, image_ids: Sequence[int], captions: Sequence[Sequence[str]]) -> list[float]:
        if len(image_ids) != len(captions):
            raise ValueError(f"{len(captions)} captions for {len(image_ids)} image ids")
        total = [0.0] * len(captions)
        for name, weight in self.weights.items():
            for i, value in enumerate(self.scorers[name](image_ids, captions)):
                total[i] += weight * value
        return total


def build_reward(
    weights: Mapping[str, float], data: Path, train: Sequence[CaptionRecord]
) -> CaptionReward:
    """The reward `weights` describes over the training records `train` of the data at
    `data` (names and weights were checked with the recipe, `training.config`). Fails here,
    before any training, when the data cannot give a score (`truth` without the shapes
    world's objects)."""
    references = {r.image_id: r.captions for r in train}
    builders: dict[str, Callable[[], Scorer]] = {
        "cider_d": lambda: cider_d_scorer(CiderD(training_frequencies(data, train)), references),
        "bleu4": lambda: bleu4_scorer(references),
        "truth": lambda: truth_scorer(train_instances(data)),
    }
    return CaptionReward(weights, {name: builders[name]() for name in weights})


def cider_d_scorer(scorer: CiderD, references: Mapping[int, Sequence[str]]) -> Scorer:
    def score(image_ids: Sequence[int], captions: Sequence[Sequence[str]]) -> list[float]:
        vectors: dict[int, list[TfIdf]] = {}  # each image's references once per batch
        out = []
        for image_id, caption in zip(image_ids, captions, strict=True):
            if image_id not in vectors:
                vectors[image_id] = scorer.references([words(c) for c in references[image_id]])
            out.append(scorer.score(caption, vectors[image_id]))
        return out

    return score


def bleu4_scorer(references: Mapping[int, Sequence[str]]) -> Scorer:
    def score(image_ids: Sequence[int], captions: Sequence[Sequence[str]]) -> list[float]:
        truths = {k: [" ".join(words(c)) for c in references[i]] for k, i in enumerate(image_ids)}
        candidates = {k: [" ".join(caption)] for k, caption in enumerate(captions)}
        _, per_sentence = Bleu(4).compute_score(truths, candidates, verbose=0)
        return [float(value) for value in per_sentence[3]]

    return score


def truth_scorer(objects: Mapping[int, list[WorldObject]]) -> Scorer:
    def score(image_ids: Sequence[int], captions: Sequence[Sequence[str]]) -> list[float]:
        return [
            float(caption_is_complete(parse_caption(" ".join(caption)), objects[image_id]))
            for image_id, caption in zip(image_ids, captions, strict=True)
        ]

    return score
