"""CIDEr-D's document frequencies for a data set: counted over its training references once,
then read from a JSON file beside the data.

Counting is a pass over every training caption (COCO: 566,000), too slow to repeat per run
and wrong to do per batch. The file is keyed by a hash of the tokenised references, so new
data or a changed tokenisation recomputes it instead of reusing stale counts.
"""

import contextlib
import hashlib
import json
import os
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path

from models.text import words
from training.data.coco import CaptionRecord
from training.metrics.cider_d import MAX_N, DocumentFrequencies

FORMAT = 1  # bumped when the file's meaning changes


def frequencies_path(root: Path) -> Path:
    return Path(root) / "cider" / "document_frequencies_train.json"


def tokenised(records: Sequence[CaptionRecord]) -> Iterator[list[list[str]]]:
    """Each training image's references as word lists, in image id order."""
    for record in sorted(records, key=lambda r: r.image_id):
        yield [words(caption) for caption in record.captions]


def references_key(records: Sequence[CaptionRecord]) -> str:
    """A hash of exactly what the counts are made of: the tokenised references per image."""
    digest = hashlib.sha256(f"cider-d {FORMAT} n={MAX_N}".encode())
    for image_references in tokenised(records):
        digest.update(json.dumps(image_references).encode())
    return digest.hexdigest()


def training_frequencies(root: Path, train: Sequence[CaptionRecord]) -> DocumentFrequencies:
    """The document frequencies of the training references `train` of the data at `root`,
    read from its cache when the references have not changed, else counted and cached."""
    path = frequencies_path(root)
    key = references_key(train)
    cached = _read(path, key)
    if cached is not None:
        return cached
    frequencies = DocumentFrequencies.of(tokenised(train))
    document = {"key": key, "documents": frequencies.documents, "ngrams": frequencies.counts}
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(json.dumps(document))
        os.replace(tmp, path)  # whole or not at all
    except OSError as error:  # a read-only data folder: the counts live for this run only
        with contextlib.suppress(OSError):
            tmp.unlink()
        warnings.warn(
            f"could not cache CIDEr-D document frequencies at {path}: {error}", stacklevel=2
        )
    return frequencies


def _read(path: Path, key: str) -> DocumentFrequencies | None:
    """The cached counts if `path` holds them for `key`; None if absent, stale or unreadable."""
    try:
        document = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(document, dict) or document.get("key") != key:
        return None
    return DocumentFrequencies(document["ngrams"], int(document["documents"]))
