"""CIDEr-D (Vedantam et al., 2015) as the COCO caption evaluation computes it, one caption at
a time, with document frequencies given rather than taken from the captions being scored.

Self-critical training rewards each sampled caption with its CIDEr-D, so the n-gram weights
must come from a fixed corpus (the training references, `training.document_frequencies`): in
a batch of 16 images almost every n-gram would look rare.

For n = 1..4 a sentence is a vector of tf-idf weights: the n-gram's count in the sentence
times log(documents) - log(max(1, df)), where a document is one image's references. The
similarity of a candidate to one reference is, per n, the sum over the candidate's n-grams
of min(candidate weight, reference weight) * reference weight (the "-D" clipping), over the
product of the two norms, times the Gaussian length penalty exp(-delta^2 / (2 sigma^2)) with
sigma = 6; the score is 10 x the mean over n and over the references.

Two details are kept exactly as coco-caption has them, so that the scores equal its own: a
sentence's length is its number of bigrams (its words minus one), and an n-gram absent from
the corpus counts as seen in one document.
"""

import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

MAX_N = 4  # n-grams of 1 to 4 words
SIGMA = 6.0  # standard deviation of the length penalty, in words
SCALE = 10.0  # coco-caption's factor, which puts good COCO captions near 1


def ngram_counts(words: Sequence[str]) -> Counter[str]:
    """Counts of the sentence's 1- to 4-grams, each n-gram its words joined by a space."""
    counts: Counter[str] = Counter()
    for n in range(1, MAX_N + 1):
        counts.update(" ".join(words[i : i + n]) for i in range(len(words) - n + 1))
    return counts


@dataclass(frozen=True)
class DocumentFrequencies:
    """In how many documents (images) each n-gram occurs in at least one reference."""

    counts: Mapping[str, int]
    documents: int

    @classmethod
    def of(cls, references: Iterable[Sequence[Sequence[str]]]) -> "DocumentFrequencies":
        """Counted over each image's references, given as word lists."""
        counts: Counter[str] = Counter()
        documents = 0
        for image_references in references:
            counts.update({g for ref in image_references for g in ngram_counts(ref)})
            documents += 1
        if not documents:
            raise ValueError("document frequencies need the references of at least one image")
        return cls(dict(counts), documents)


@dataclass(frozen=True)
class TfIdf:
    """A sentence as CIDEr-D sees it: per n, its n-gram weights and their norm."""

    weights: tuple[dict[str, float], ...]  # MAX_N dicts, n-gram -> weight
    norms: tuple[float, ...]
    length: int  # bigrams, as coco-caption counts a sentence's length


class CiderD:
    """Scores captions against references with fixed document frequencies."""

    def __init__(self, frequencies: DocumentFrequencies) -> None:
        self.frequencies = frequencies.counts
        self.log_documents = math.log(float(frequencies.documents))

    def vector(self, words: Sequence[str]) -> TfIdf:
        weights: tuple[dict[str, float], ...] = tuple({} for _ in range(MAX_N))
        length = 0
        for gram, count in ngram_counts(words).items():
            n = gram.count(" ")  # 0-based order
            df = self.frequencies.get(gram, 0)
            weights[n][gram] = count * (self.log_documents - math.log(max(1.0, df)))
            if n == 1:
                length += count
        norms = tuple(math.sqrt(sum(w * w for w in by_n.values())) for by_n in weights)
        return TfIdf(weights, norms, length)

    def references(self, references: Sequence[Sequence[str]]) -> list[TfIdf]:
        """The vectors of one image's references, computed once for all its candidates."""
        if not references:
            raise ValueError("CIDEr-D needs at least one reference caption")
        return [self.vector(ref) for ref in references]

    def score(self, words: Sequence[str], references: Sequence[TfIdf]) -> float:
        """CIDEr-D of one caption (word list) against an image's `references` vectors."""
        candidate = self.vector(words)
        return SCALE * sum(_similarity(candidate, r) for r in references) / len(references)


def _similarity(candidate: TfIdf, reference: TfIdf) -> float:
    """Clipped cosine similarity, averaged over n, times the length penalty."""
    total = 0.0
    for cand, ref, cand_norm, ref_norm in zip(
        candidate.weights, reference.weights, candidate.norms, reference.norms, strict=True
    ):
        dot = 0.0
        for gram, weight in cand.items():
            other = ref.get(gram)
            if other is not None:
                dot += min(weight, other) * other
        if cand_norm and ref_norm:
            dot /= cand_norm * ref_norm
        total += dot
    delta = candidate.length - reference.length
    return total / MAX_N * math.exp(-(delta * delta) / (2 * SIGMA * SIGMA))
