"""Feature cache: values equal a direct encoder pass, reused when valid, rebuilt when not."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from models.encoders import create_encoder
from models.preprocess import images_to_batch
from training.features import (
    FeatureCache,
    FeatureCacheError,
    build_feature_cache,
    feature_paths,
    load_or_build,
)

IDS = [7, 3, 11, 5, 42]


@pytest.fixture(scope="module")
def encoder():
    torch.manual_seed(0)
    return create_encoder("tiny").freeze()


@pytest.fixture(scope="module")
def image_paths(tmp_path_factory):
    folder = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    paths = []
    for image_id in IDS:
        path = folder / f"{image_id}.png"
        Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(path)
        paths.append(path)
    return paths


def file_identity(path):
    stat = path.stat()
    return stat.st_ino, stat.st_mtime_ns


def test_cached_grids_equal_a_direct_encoder_pass(encoder, image_paths, tmp_path):
    cache = build_feature_cache(
        encoder, image_paths, IDS, tmp_path, split="val", image_size=64, batch_size=2
    )
    images = [Image.open(path) for path in image_paths]
    with torch.inference_mode():
        expected, grid = encoder(images_to_batch(images, 64))  # (5, 16, 64)
    assert len(cache) == 5 and cache.grid == grid == (4, 4) and cache.dim == 64
    for image_id, want in zip(IDS, expected, strict=True):
        got = cache[cache.row(image_id)]
        assert got.dtype == torch.float32 and got.shape == (16, 64)
        torch.testing.assert_close(got, want, rtol=1e-3, atol=1e-3)
    index = json.loads(feature_paths(tmp_path, "val")[1].read_text())
    assert index["image_ids"] == IDS and index["encoder"] == "tiny"
    with pytest.raises(KeyError):
        cache.row(999)


def test_cache_is_reused_then_rebuilt_when_inputs_change(encoder, image_paths, tmp_path):
    array_path, _ = feature_paths(tmp_path, "train")
    first = load_or_build(encoder, image_paths, IDS, tmp_path, split="train", image_size=64)
    built = file_identity(array_path)

    again = load_or_build(encoder, image_paths, IDS, tmp_path, split="train", image_size=64)
    assert file_identity(array_path) == built
    torch.testing.assert_close(again[0], first[0])

    resized = load_or_build(encoder, image_paths, IDS, tmp_path, split="train", image_size=32)
    assert file_identity(array_path) != built
    assert resized.grid == (2, 2) and resized[0].shape == (4, 64)

    other_weights = create_encoder("tiny")  # a fresh random init
    rebuilt = load_or_build(other_weights, image_paths, IDS, tmp_path, split="train", image_size=32)
    assert not torch.allclose(rebuilt[0], resized[0])


def test_failed_build_leaves_no_valid_looking_cache(encoder, image_paths, tmp_path):
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not a png")
    with pytest.raises(OSError):
        build_feature_cache(
            encoder, [*image_paths, broken], [*IDS, 99], tmp_path, split="test", image_size=64
        )
    with pytest.raises(FeatureCacheError):
        FeatureCache.open(tmp_path, "test")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["broken.png"]


def test_mismatched_inputs_raise(encoder, image_paths, tmp_path):
    with pytest.raises(ValueError, match="image ids"):
        build_feature_cache(encoder, image_paths, IDS[:2], tmp_path, split="x", image_size=64)
    with pytest.raises(ValueError, match="unique"):
        build_feature_cache(encoder, image_paths[:2], [1, 1], tmp_path, split="x", image_size=64)
