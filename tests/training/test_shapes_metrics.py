"""Shapes-world metrics on hand-built scenes whose answers are known."""

from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from training.data.shapes_grammar import parse_caption
from training.data.shapes_scene import objects_from_coco
from training.metrics.shapes import (
    attention_peak,
    caption_correctness,
    caption_grounding,
    caption_is_complete,
    cells_in_box,
    phrase_objects,
    vqa_grounding,
)

# Image 1: a large red circle (centre 50, 50) left of a small blue square (centre 170, 40).
# Image 2: a single small green star. Image 3: a red circle above a red star, and a blue star.
INSTANCES: dict[str, Any] = {
    "images": [{"id": i, "file_name": f"{i}.png", "width": 256, "height": 256} for i in (1, 2, 3)],
    "categories": [
        {"id": k + 1, "name": name}
        for k, name in enumerate(["circle", "square", "triangle", "star"])
    ],
    "annotations": [
        {"id": 11, "image_id": 1, "category_id": 1, "bbox": [10, 10, 80, 80], "color": "red",
         "size": "large"},
        {"id": 12, "image_id": 1, "category_id": 2, "bbox": [150, 20, 40, 40], "color": "blue",
         "size": "small"},
        {"id": 21, "image_id": 2, "category_id": 4, "bbox": [100, 100, 40, 40], "color": "green",
         "size": "small"},
        {"id": 31, "image_id": 3, "category_id": 1, "bbox": [20, 20, 40, 40], "color": "red",
         "size": "small"},
        {"id": 32, "image_id": 3, "category_id": 4, "bbox": [20, 120, 80, 80], "color": "red",
         "size": "large"},
        {"id": 33, "image_id": 3, "category_id": 4, "bbox": [180, 180, 40, 40], "color": "blue",
         "size": "small"},
    ],
}  # fmt: skip


def _accuracy(caption: str, image_id: int = 1) -> float:
    return caption_correctness({image_id: caption}, INSTANCES)["accuracy"]


@pytest.mark.parametrize(
    "caption, image_id",
    [
        ("a large red circle left of a small blue square", 1),
        ("a small blue square is to the right of a red circle", 1),
        ("two shapes: a red circle and a small blue square", 1),
        ("one small green star on a plain background", 2),
        ("a red circle above a large red star and a blue star", 3),
        ("three shapes: a red star, a blue star and a small red circle", 3),
    ],
)
def test_a_true_caption_scores_one(caption: str, image_id: int) -> None:
    assert _accuracy(caption, image_id) == 1.0


@pytest.mark.parametrize(
    "caption, image_id",
    [
        ("a large blue circle left of a small red square", 1),  # colours swapped
        ("a red circle right of a blue square", 1),  # wrong relation
        ("a blue square left of a red circle", 1),  # relation reversed
        ("a small red circle", 1),  # wrong size
        ("a red triangle", 1),  # no such object
        ("three shapes: a red circle, a blue square and a green star", 1),  # wrong count
        ("a single red circle", 1),  # claims one object, there are two
        ("two shapes: a red circle and a large red circle", 1),  # one object named twice
        ("a red circle next to a blue square", 1),  # outside the grammar
        ("a red star above a red circle and a blue star", 3),  # relation false
    ],
)
def test_a_false_caption_scores_zero(caption: str, image_id: int) -> None:
    assert _accuracy(caption, image_id) == 0.0


@pytest.mark.parametrize(
    "caption, image_id, complete",
    [
        ("a large red circle left of a small blue square", 1, True),
        ("two shapes: a red circle and a small blue square", 1, True),
        ("a large red circle", 1, False),  # true, but the square is left out
        ("a red circle left of a blue square and a blue square", 1, False),
        ("a small blue circle left of a large red square", 1, False),  # as many, but false
        ("one small green star on a plain background", 2, True),
        ("a red circle above a large red star", 3, False),
    ],
)
def test_complete_captions_are_true_and_name_every_object(
    caption: str, image_id: int, complete: bool
) -> None:
    objects = objects_from_coco(INSTANCES)[image_id]
    assert caption_is_complete(parse_caption(caption), objects) is complete


def test_correctness_is_broken_down_by_number_of_objects() -> None:
    result = caption_correctness(
        {1: "a red circle and a blue square", 2: "a blue star", 3: "a fish"}, INSTANCES
    )
    assert (result["correct"], result["total"], result["unparseable"]) == (1, 3, 1)
    assert list(result["unparseable_reasons"].values()) == [1]
    assert "fish" in next(iter(result["unparseable_reasons"]))
    assert result["accuracy"] == pytest.approx(1 / 3)
    partial = caption_correctness({1: "a red circle", 2: "a small green star"}, INSTANCES)
    assert (partial["accuracy"], partial["complete"]) == (1.0, 0.5)  # image 1's square left out
    assert result["by_num_objects"] == {
        1: {"accuracy": 0.0, "correct": 0, "total": 1},
        2: {"accuracy": 1.0, "correct": 1, "total": 1},
        3: {"accuracy": 0.0, "correct": 0, "total": 1},
    }


def test_unknown_images_and_bad_instances_raise() -> None:
    with pytest.raises(ValueError, match="image 9"):
        caption_correctness({9: "a red circle"}, INSTANCES)
    with pytest.raises(ValueError, match="instances"):
        caption_correctness({1: "a red circle"}, {"images": []})


def _peak_at_cell(row: int, col: int, grid: int = 32) -> np.ndarray:
    """A (grid, grid) map peaking at one cell; on a 32 grid cell k covers pixels 8k..8k+8."""
    attention = np.full((grid, grid), 0.5 / (grid * grid - 1))
    attention[row, col] = 0.5
    return attention


@pytest.mark.parametrize(
    "col, hit",
    [
        (5, True),  # x = 44: inside the circle's box [10, 90]
        (11, True),  # x = 92: outside the box but within its 8 px margin
        (12, False),  # x = 100: beyond the margin
    ],
)
def test_grounding_counts_a_peak_in_the_grown_box(col: int, hit: bool) -> None:
    steps = [
        ("a", _peak_at_cell(0, 0)),
        ("red", _peak_at_cell(0, 0)),
        ("circle", _peak_at_cell(5, col)),
    ]
    result = caption_grounding({1: steps}, INSTANCES)
    assert (result["hits"], result["total"], result["no_match"]) == (int(hit), 1, 0)


def test_grounding_matches_the_whole_phrase() -> None:
    on_blue_star = _peak_at_cell(25, 25)  # (204, 204): inside the blue star's box
    steps = [
        ("a", on_blue_star), ("red", on_blue_star), ("star", on_blue_star),  # wrong star: miss
        ("and", on_blue_star), ("a", on_blue_star), ("star", on_blue_star),  # any star: hit
        ("a", on_blue_star), ("large", on_blue_star), ("blue", on_blue_star),
        ("star", on_blue_star),  # the blue star is small: no object matches
    ]  # fmt: skip
    result = caption_grounding({3: steps}, INSTANCES)
    assert (result["hits"], result["total"], result["no_match"]) == (1, 3, 1)
    assert result["hit_rate"] == pytest.approx(1 / 3)


@pytest.mark.parametrize("shape", [(7, 9), (14, 14), (16, 16), (5, 3)])
def test_peak_is_where_the_bilinear_upsampled_map_peaks(shape: tuple[int, int]) -> None:
    """Upsampling by an odd factor k samples the bilinear surface at every cell centre (pixel
    k * i + k // 2), so its maximal pixels show exactly where the surface peaks."""
    k = 5
    h, w = shape
    generator = torch.Generator().manual_seed(sum(shape))
    for _ in range(5):
        grid = torch.rand(shape, generator=generator)  # (h, w)
        upsampled = F.interpolate(
            grid[None, None], scale_factor=k, mode="bilinear", align_corners=False
        )[0, 0]  # (k h, k w)
        x, y = attention_peak(grid.numpy(), 256, 256)
        row, col = int(y // (256 / h)), int(x // (256 / w))
        assert (x, y) == pytest.approx(((col + 0.5) * 256 / w, (row + 0.5) * 256 / h))
        assert upsampled[k * row + k // 2, k * col + k // 2] == upsampled.max()
        # At a border the peak is a plateau reaching the edge, but it stays in the same cell.
        rows, cols = torch.nonzero(upsampled == upsampled.max(), as_tuple=True)
        assert set((rows // k).tolist()) == {row} and set((cols // k).tolist()) == {col}


@pytest.mark.parametrize("bad", [np.zeros((2, 2, 2, 2)), np.zeros((0, 4)), np.full((2, 2), np.nan)])
def test_peak_rejects_bad_maps(bad: np.ndarray) -> None:
    with pytest.raises(ValueError):
        attention_peak(bad, 256, 256)


ANSWERS = {
    "annotations": [
        {"question_id": 101, "image_id": 1, "question_type": "what color", "target_ids": [11]},
        {"question_id": 102, "image_id": 1, "question_type": "relation", "target_ids": [11, 12]},
        {"question_id": 103, "image_id": 1, "question_type": "is there", "target_ids": []},
        {"question_id": 301, "image_id": 3, "question_type": "what color", "target_ids": [33]},
    ]
}


def test_vqa_grounding_averages_glimpses_and_skips_questions_without_targets() -> None:
    # Glimpse 1 peaks on the circle, glimpse 2 (weaker) on the square: the mean peaks on the circle.
    circle, square = _peak_at_cell(5, 5), 0.8 * _peak_at_cell(5, 21)
    glimpses = np.stack([circle, square])  # (G, h, w)
    result = vqa_grounding(
        {101: glimpses, 102: glimpses[::-1], 103: circle, 301: circle}, ANSWERS, INSTANCES
    )
    assert (result["hits"], result["total"]) == (2, 3)  # 301 points at the red circle, not 33
    assert result["by_type"]["what color"] == {"hit_rate": 0.5, "hits": 1, "total": 2}
    assert result["by_type"]["relation"]["hits"] == 1


def test_vqa_grounding_rejects_unknown_questions() -> None:
    with pytest.raises(ValueError, match="question 999"):
        vqa_grounding({999: _peak_at_cell(0, 0)}, ANSWERS, INSTANCES)


def test_phrase_objects_are_those_that_fit_the_phrase_so_far() -> None:
    # Image 3: small red circle 31, large red star 32, small blue star 33.
    objects = objects_from_coco(INSTANCES)[3]
    caption = "a small red circle above a star and a blue star and a large red star"
    fitting = phrase_objects(caption.split(), objects)
    ids = {k: sorted(o.id for o in fitting[k]) for k in sorted(fitting)}
    # "small" fits both small objects; "a star" names two stars, so it gets no targets.
    expected = {1: [31, 33], 2: [31], 3: [31], 9: [33], 10: [33], 13: [32], 14: [32], 15: [32]}
    assert ids == expected


@pytest.mark.parametrize("grid", [(16, 16), (8, 8), (7, 9)])
def test_cells_in_box_are_the_cells_where_a_peak_is_a_hit(grid: tuple[int, int]) -> None:
    circle = objects_from_coco(INSTANCES)[1][0]  # the large red circle, box [10, 10, 80, 80]
    inside = set(cells_in_box(circle.box, grid, 256, 256).tolist())
    assert inside
    for cell in range(grid[0] * grid[1]):
        attention = np.zeros(grid)
        attention[divmod(cell, grid[1])] = 1.0
        hit = caption_grounding({1: [("red", attention), ("circle", attention)]}, INSTANCES)
        assert bool(hit["hits"]) == (cell in inside), cell
