"""CIDEr-D's document frequencies: counted once over the training references, cached beside
the data and recounted when the references change."""

import json
from pathlib import Path

import pytest

from models.text import words
from training.data.coco import CaptionRecord, load_caption_split
from training.document_frequencies import frequencies_path, training_frequencies
from training.metrics.cider_d import DocumentFrequencies, ngram_counts


def records(*captions: list[str]) -> list[CaptionRecord]:
    return [CaptionRecord(i, Path(f"{i}.png"), c, "train") for i, c in enumerate(captions)]


def test_counts_are_cached_beside_the_data_and_read_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    train = records(["A red circle.", "a red star"], ["A blue star!"])
    counted = training_frequencies(tmp_path, train)
    assert counted.documents == 2 and counted.counts["red"] == 1 and counted.counts["star"] == 2
    cached = json.loads(frequencies_path(tmp_path).read_text())
    assert cached["ngrams"] == counted.counts and cached["documents"] == 2

    def no_counting(*_: object) -> DocumentFrequencies:
        raise AssertionError("counted again")

    monkeypatch.setattr(DocumentFrequencies, "of", no_counting)
    assert training_frequencies(tmp_path, train) == counted  # read, not counted


def test_changed_references_or_tokens_are_counted_again(tmp_path: Path) -> None:
    training_frequencies(tmp_path, records(["a red circle"], ["a blue star"]))
    changed = training_frequencies(tmp_path, records(["a red circle"], ["a green star"]))
    assert "green" in changed.counts and "blue" not in changed.counts
    same_words = training_frequencies(tmp_path, records(["A RED circle."], ["a green, star"]))
    assert same_words == changed  # the same words after tokenisation: the same counts


def test_an_unwritable_data_folder_counts_without_a_cache(tmp_path: Path) -> None:
    blocker = tmp_path / "cider"
    blocker.write_text("a file where the cache folder would go")
    with pytest.warns(UserWarning, match="could not cache"):
        counted = training_frequencies(tmp_path, records(["a red circle"]))
    assert counted.documents == 1


def test_the_self_critical_task_counts_training_references_only(
    tiny_world: Path, teacher_forced: Path, tmp_path: Path
) -> None:
    import shutil

    from tiny_runs import headless
    from training.captions_self_critical import SelfCriticalTask
    from training.config import load_config

    world = tmp_path / "world"
    shutil.copytree(tiny_world, world, ignore=shutil.ignore_patterns("cider"))
    cfg = load_config("shapes-scst-cider", headless(f"init_from={teacher_forced}"))
    SelfCriticalTask(cfg, world)
    cached = json.loads(frequencies_path(world).read_text())
    train = load_caption_split(world, "train")
    expected = DocumentFrequencies.of([[words(c) for c in r.captions] for r in train])
    assert cached["documents"] == len(train) == 24
    assert cached["ngrams"] == expected.counts
    val_grams = {
        g
        for r in load_caption_split(world, "val")
        for c in r.captions
        for g in ngram_counts(words(c))
    }
    assert val_grams - set(expected.counts)  # counting val too would have shown
