"""CIDEr-D against pycocoevalcap's (its `Cider` is CIDEr-D), and its document frequencies."""

import random

import pytest
from pycocoevalcap.cider.cider import Cider

from training.metrics.cider_d import CiderD, DocumentFrequencies, ngram_counts

WORDS = [
    "a",
    "an",
    "the",
    "red",
    "blue",
    "green",
    "circle",
    "square",
    "star",
    "big",
    "small",
    "left",
    "right",
    "of",
    "and",
]


def random_caption(rng: random.Random) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(0, 14)))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_scores_equal_pycocoevalcaps_with_the_same_document_frequencies(seed: int) -> None:
    """pycocoevalcap takes its frequencies from the references of the images it scores, so
    those images' references are the corpus ours are counted from."""
    rng = random.Random(seed)
    references = {i: [random_caption(rng) for _ in range(rng.randint(1, 6))] for i in range(30)}
    candidates = {i: [random_caption(rng)] for i in references}
    candidates[0] = [references[0][0]]  # a caption equal to a reference
    candidates[1] = [""]  # an empty caption
    candidates[2] = ["zebra " + references[2][0]]  # a word no reference has
    _, expected = Cider().compute_score(references, candidates)

    tokens = {i: [ref.split() for ref in refs] for i, refs in references.items()}
    scorer = CiderD(DocumentFrequencies.of(tokens.values()))
    ours = [scorer.score(candidates[i][0].split(), scorer.references(tokens[i])) for i in tokens]
    assert ours == pytest.approx(list(expected), abs=1e-6)
    assert max(ours) > 1.0 and ours[1] == 0.0  # the scores are not all trivially zero


def test_document_frequencies_count_images_not_captions() -> None:
    frequencies = DocumentFrequencies.of(
        [[["a", "red", "circle"], ["a", "red", "star"]], [["a", "blue", "star"]]]
    )
    assert frequencies.documents == 2
    assert frequencies.counts["a"] == 2  # in both images, twice in the first: 2 documents
    assert frequencies.counts["a red"] == 1 and frequencies.counts["star"] == 2
    assert "a red circle" in frequencies.counts and "circle star" not in frequencies.counts
    assert sum(ngram_counts(["a", "a", "b"]).values()) == 3 + 2 + 1
    with pytest.raises(ValueError, match="at least one image"):
        DocumentFrequencies.of([])


def test_a_reference_scores_above_a_repeated_or_doubled_version_of_it() -> None:
    references = [["a", "red", "circle", "left", "of", "a", "blue", "star"]]
    scorer = CiderD(DocumentFrequencies.of([references, [["two", "green", "squares"]]]))
    vectors = scorer.references(references)
    exact = scorer.score(references[0], vectors)
    repeated = scorer.score(["red", "circle"] * 4, vectors)  # clipped: no gain from repeats
    doubled = scorer.score(references[0] * 2, vectors)  # the length penalty
    assert exact > doubled > 0 and exact > repeated > 0
    with pytest.raises(ValueError, match="at least one reference"):
        scorer.references([])
