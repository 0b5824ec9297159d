"""Augmented training views: the scene stays where it is, each view is the same whenever it
is rebuilt, and a training run reads every view of its images."""

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tiny_runs import headless
from training.augment import augmented, view_of
from training.config import load_config
from training.features import FeatureCache, ViewedFeatures
from training.vqa import VQATask

TINY_VQA = 'model={"d_model": 16, "question_dim": 16, "classifier_dim": 16}'


def red_square(x: int, y: int, size: int = 128) -> Image.Image:
    pixels = np.full((size, size, 3), 235, dtype=np.uint8)
    pixels[y : y + 24, x : x + 24] = (220, 30, 30)
    return Image.fromarray(pixels)


def red_centre(image: Image.Image, size: int) -> np.ndarray:
    """Where the red pixels are, in the original image's coordinates."""
    pixels = np.asarray(image.resize((size, size), Image.Resampling.BILINEAR), dtype=np.int16)
    red = (pixels[..., 0] > 150) & (pixels[..., 1] < 110) & (pixels[..., 2] < 110)
    ys, xs = np.nonzero(red)
    return np.array([xs.mean(), ys.mean()])


@pytest.mark.parametrize("index", range(12))
def test_a_view_keeps_the_scene_where_it_is(index: int) -> None:
    image = red_square(20 + 6 * index, 90 - 5 * index)
    view = augmented(image, view_of(0, 1, index))
    width, height = view.size
    assert 64 <= width <= 256 and width == height  # resized as a whole, never cropped
    centre = red_centre(view, 128)
    assert np.abs(centre - red_centre(image, 128)).max() < 2.5


def test_views_are_the_same_whenever_they_are_rebuilt() -> None:
    image = red_square(40, 40)
    views = [np.asarray(augmented(image, view_of(0, v, 3))) for v in (1, 1, 2)]
    assert np.array_equal(views[0], views[1])
    assert views[0].shape != views[2].shape or not np.array_equal(views[0], views[2])


def caches(values: list[float], ids: list[int]) -> list[FeatureCache]:
    """One cache per view, row r of view v holding v's value + r everywhere."""
    rows = np.arange(len(ids), dtype=np.float16)[:, None, None]
    return [
        FeatureCache(np.broadcast_to(v + rows, (len(ids), 4, 3)).copy(), ids, (2, 2), 3, {})
        for v in values
    ]


def test_each_example_reads_its_own_row_from_a_view_drawn_for_it() -> None:
    store = ViewedFeatures(caches([0.0, 100.0, 200.0], [9, 4, 7]), seed=0)
    assert store.row(4) == 1
    rows = [2, 0, 1, 1, 2] * 40
    batch = store.take(rows)  # (200, 4, 3)
    view = (batch[:, 0, 0] - torch.tensor(rows, dtype=torch.float32)) / 100
    assert torch.equal(batch, batch[:, :1, :1].expand_as(batch))  # whole rows, not mixed
    assert set(view.tolist()) == {0.0, 1.0, 2.0}  # every view is drawn
    assert float(store[1][0, 0]) in (1.0, 101.0, 201.0)


def test_views_of_other_images_are_refused() -> None:
    clean, other = caches([0.0], [1, 2]) + caches([1.0], [2, 1])
    with pytest.raises(ValueError, match="same images"):
        ViewedFeatures([clean, other], seed=0)


def test_a_run_trains_on_its_views_and_evaluates_on_clean_images(tiny_world: Path) -> None:
    cfg = load_config("vqa-shapes", headless(TINY_VQA, "augmented_views=2"))
    task = VQATask(cfg, tiny_world)
    train, val = task.train_set.source.features, task.val_set.source.features
    assert isinstance(train, ViewedFeatures) and isinstance(val, FeatureCache)
    clean, *views = train.caches
    assert [v.fingerprint["view"] for v in views] == [1, 2]
    for view in views:
        assert view.image_ids == clean.image_ids
        assert (view.features != clean.features).any(axis=(1, 2)).all()  # every image moved


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["augmented_views=-1"], "augmented_views"),
        (["augmented_views=1.5"], "augmented_views"),
        (["augmented_views=2", "fine_tune=true"], "fine_tune"),
    ],
)
def test_bad_view_settings_are_refused(overrides: list[str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        load_config("vqa-shapes", overrides)
