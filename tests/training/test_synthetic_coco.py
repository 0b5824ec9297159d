"""The synthetic COCO: Karpathy's exact file format, COCO's caption statistics, the loaders
reading it, random feature grids, the CLI command, and a smoke run of the scale benchmark."""

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from api.commands.scale import app
from benchmarks import coco_scale
from models.text import SPECIALS, words
from training.data.coco import build_vocabulary, load_caption_split, load_karpathy
from training.data.synthetic_coco import (
    COCO_TRAIN_IMAGES,
    caption_lengths,
    expected_vocabulary_size,
    generate_synthetic_coco,
    make_words,
    split_sizes,
    word_probabilities,
    write_random_grids,
)
from training.features import FeatureCache

# The first image of Karpathy's dataset_coco.json, shortened to one of its five sentences:
# the reference for key order and value types.
REAL_RAW = "A man with a red helmet on a small moped on a dirt road. "
REAL_ENTRY = {
    "filepath": "val2014",
    "sentids": [770337, 771687, 772707, 776154, 781998],
    "filename": "COCO_val2014_000000391895.jpg",
    "imgid": 0,
    "split": "test",
    "sentences": [
        {
            "tokens": REAL_RAW.lower().rstrip(". ").split(),
            "raw": REAL_RAW,
            "imgid": 0,
            "sentid": 770337,
        }
    ],
    "cocoid": 391895,
}
SMALL = {"train": 300, "val": 20, "test": 12}


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("synthetic-coco")
    generate_synthetic_coco(root, **SMALL, image_size=16, seed=3)
    return root


@pytest.fixture(scope="module")
def small_images(small: Path) -> list[dict]:
    return json.loads((small / "dataset_coco.json").read_text())["images"]


@pytest.fixture(scope="module")
def scaled(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """3,000 training images, no JPEGs: large enough for the caption statistics."""
    root = tmp_path_factory.mktemp("synthetic-coco-scaled")
    generate_synthetic_coco(root, 3_000, 0, 0, images=False, seed=1)
    return root


def test_file_has_karpathys_format(small: Path, small_images: list[dict]) -> None:
    document = json.loads((small / "dataset_coco.json").read_text())
    assert list(document) == ["images", "dataset"] and document["dataset"] == "coco"
    sentence_keys = list(REAL_ENTRY["sentences"][0])
    for imgid, image in enumerate(small_images):
        assert list(image) == list(REAL_ENTRY)
        assert {k: type(v) for k, v in image.items()} == {k: type(v) for k, v in REAL_ENTRY.items()}
        assert image["imgid"] == imgid
        assert image["filename"] == f"COCO_{image['filepath']}_{image['cocoid']:012d}.jpg"
        assert image["sentids"] == sorted(s["sentid"] for s in image["sentences"])
        for sentence in image["sentences"]:
            assert list(sentence) == sentence_keys and sentence["imgid"] == imgid
            assert sentence["tokens"] == words(sentence["raw"])  # lower case, no punctuation
            assert sentence["raw"][0].isupper() and sentence["raw"].endswith(".")
    cocoids = [image["cocoid"] for image in small_images]
    sentids = [s for image in small_images for s in image["sentids"]]
    assert len(set(cocoids)) == len(cocoids) and len(set(sentids)) == len(sentids)


def test_splits_follow_karpathys_sizes_and_folders(small_images: list[dict]) -> None:
    assert split_sizes(113_287, 5_000, 5_000) == {
        "train": 82_783,
        "restval": 30_504,
        "val": 5_000,
        "test": 5_000,
    }
    assert Counter(image["split"] for image in small_images) == split_sizes(**SMALL)
    folders = {image["split"]: set() for image in small_images}
    for image in small_images:
        folders[image["split"]].add(image["filepath"])
    assert folders == {
        "train": {"train2014"},
        "restval": {"val2014"},
        "val": {"val2014"},
        "test": {"val2014"},
    }


def test_loaders_read_it_with_restval_folded_into_train(small: Path) -> None:
    sizes = split_sizes(**SMALL)
    train = load_caption_split(small, "train")
    assert len(train) == sizes["train"] + sizes["restval"] == SMALL["train"]
    assert {r.split for r in train} == {"train"}
    assert {r.path.parent.name for r in train} == {"train2014", "val2014"}
    only_train = load_karpathy(small / "dataset_coco.json", small, "train", fold_restval=False)
    assert len(only_train) == sizes["train"]
    assert len(load_caption_split(small, "val")) == SMALL["val"]
    assert len(load_caption_split(small, "test")) == SMALL["test"]
    assert all(5 <= len(r.captions) <= 7 for r in train)
    with Image.open(train[0].path) as image:
        assert (image.format, image.size, image.mode) == ("JPEG", (16, 16), "RGB")
    assert all(r.path.is_file() for r in train)


def test_same_seed_same_bytes(tmp_path: Path, small: Path) -> None:
    generate_synthetic_coco(tmp_path / "again", **SMALL, images=False, seed=3)
    generate_synthetic_coco(tmp_path / "other", **SMALL, images=False, seed=4)
    text = (small / "dataset_coco.json").read_bytes()
    assert (tmp_path / "again" / "dataset_coco.json").read_bytes() == text  # with or without JPEGs
    assert (tmp_path / "other" / "dataset_coco.json").read_bytes() != text
    assert not (tmp_path / "again" / "train2014").exists()


def test_caption_lengths_are_cocos(scaled: Path) -> None:
    records = load_caption_split(scaled, "train")
    lengths = np.array([len(words(c)) for r in records for c in r.captions])
    assert 10.0 <= lengths.mean() <= 11.0  # COCO: ~10.5 words
    assert np.mean((lengths >= 8) & (lengths <= 15)) >= 0.85  # most within 8..15
    assert 0.005 <= np.mean(lengths > 20) <= 0.05 and lengths.max() <= 50  # a few long ones
    per_image = Counter(len(r.captions) for r in records)
    assert per_image[5] >= 0.99 * len(records) and set(per_image) <= {5, 6, 7}


def _poisson_at_least(count: int, rates: torch.Tensor) -> torch.Tensor:
    """P(Poisson(rate) >= count), as the regularised lower incomplete gamma P(count, rate)."""
    return torch.special.gammainc(torch.full_like(rates, float(count)), rates)


def test_vocabulary_size_follows_the_word_distribution(scaled: Path) -> None:
    records = load_caption_split(scaled, "train")
    tokens = sum(len(words(c)) for r in records for c in r.captions)
    found = len(build_vocabulary(records, min_count=5)) - len(SPECIALS)
    kept = _poisson_at_least(5, tokens * torch.from_numpy(word_probabilities()).double())
    expected, spread = kept.sum().item(), (kept * (1 - kept)).sum().sqrt().item()
    assert abs(found - expected) < 5 * spread  # ~1,400 words, spread ~15
    assert expected_vocabulary_size(tokens, 5) == pytest.approx(expected, rel=1e-9)


def test_full_size_vocabulary_is_karpathys() -> None:
    mean_length = caption_lengths(np.random.default_rng(0), 1_000_000).mean()
    tokens = COCO_TRAIN_IMAGES * 5 * mean_length
    assert 9_300 <= expected_vocabulary_size(tokens, 5) <= 9_700  # Karpathy: ~9.5k words
    assert expected_vocabulary_size(tokens, 1) > 2.5 * 9_500  # plus a long tail of rare words
    assert 0.1 <= word_probabilities()[0] <= 0.2  # "a" is ~14% of COCO's tokens


def test_made_up_words_are_distinct_and_short_first() -> None:
    made = make_words(5_000, seed=2)
    assert len(set(made)) == 5_000 and all(w.isalpha() and w.islower() for w in made)
    assert max(map(len, made[:100])) < min(map(len, made[-100:]))
    assert make_words(5_000, seed=2) == made != make_words(5_000, seed=3)
    with pytest.raises(ValueError, match="made-up words"):
        make_words(10**7)


@pytest.mark.parametrize(
    ("sizes", "message"),
    [((0, 5, 5), "at least one"), ((10, -1, 5), "val"), ((10, 5, 2.5), "test")],
)
def test_bad_sizes_raise(sizes: tuple, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        split_sizes(*sizes)


def test_bad_image_size_raises(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="image_size"):
        generate_synthetic_coco(tmp_path, 5, 1, 1, image_size=4)


def test_random_grids_open_as_a_feature_cache(tmp_path: Path) -> None:
    write_random_grids(tmp_path, "train", [5, 3, 9], (2, 3), 8, seed=1)
    cache = FeatureCache.open(tmp_path, "train")
    assert cache.features.shape == (3, 6, 8) and cache.features.dtype == np.float16
    assert cache.row(3) == 1 and cache[1].shape == (6, 8) and cache[1].dtype == torch.float32
    assert float(cache.features.min()) >= 0 and float(cache.features.max()) <= 1
    with pytest.raises(ValueError, match="unique"):
        write_random_grids(tmp_path, "val", [1, 1], (2, 3), 8)


def test_cli_writes_a_loadable_data_set(tmp_path: Path) -> None:
    runner = CliRunner()
    args = ["coco-synthetic", "--out", str(tmp_path), "--train", "20", "--val", "3"]
    result = runner.invoke(app, [*args, "--test", "2", "--no-images"])
    assert result.exit_code == 0, result.output
    assert "train 15, restval 5, val 3, test 2" in result.output
    assert len(load_caption_split(tmp_path, "val")) == 3
    assert not (tmp_path / "val2014").exists()
    assert runner.invoke(app, [*args, "--image-size", "2"]).exit_code == 2


def test_benchmark_runs_at_a_tiny_size(tmp_path: Path) -> None:
    results_path = tmp_path / "coco_scale.json"
    arguments = ["--train", "30", "--val", "4", "--test", "4", "--cache-images", "30"]
    arguments += ["--batches", "1", "--workers", "1", "--workdir", str(tmp_path / "data")]
    coco_scale.main([*arguments, "--results", str(results_path)])
    results = json.loads(results_path.read_text())
    document = json.loads((tmp_path / "data" / "dataset_coco.json").read_text())
    train_captions = sum(
        len(i["sentences"]) for i in document["images"] if i["split"] in ("train", "restval")
    )
    assert results["images"] == split_sizes(30, 4, 4)
    captions = sum(len(i["sentences"]) for i in document["images"])
    assert results["steps"]["generate the synthetic set"]["captions"] == captions
    assert results["epoch"]["pairs"] == train_captions
    assert results["recipe"]["grid"] == [16, 16] and results["recipe"]["dim"] == 1024
    assert results["feature_cache"]["bytes_per_image"] == 16 * 16 * 1024 * 2
    assert all(step["seconds"] >= 0 for step in results["steps"].values())
    assert {"cold", "warm", "warm, 1 DataLoader workers"} <= set(results["reading"])
    passes = results["reading"].values()
    assert {(p["batches"], p["examples"]) for p in passes} in (
        {(1, 128)},
        {(1, train_captions - 128)},
    )
    assert set(results["epoch"]["seconds_per_epoch"]) == set(results["reading"])
    assert results["machine"]["torch"] == torch.__version__
