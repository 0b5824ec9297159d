"""The shapes world's vocabulary, objects, relation rule and layout sampling.

Everything that says *what* is in an image lives here, apart from how it is drawn
(`shapes_render`) and described (`shapes_captions`, `shapes_questions`), so that the
generator, the caption grammar and the metrics share one definition of the world
(docs/shapes-world.md).
"""

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

CANVAS_SIZE = 256
SHAPES = ("circle", "square", "triangle", "star")
# Base colours; each object is drawn within COLOR_JITTER per channel of its base.
BASE_COLORS: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40),
    "green": (40, 170, 60),
    "blue": (40, 80, 220),
    "yellow": (235, 210, 40),
    "purple": (140, 60, 180),
    "orange": (245, 140, 30),
}
COLORS = tuple(BASE_COLORS)
COLOR_JITTER = 20
SIZES = ("small", "large")
SIDE_RANGES = {"small": (34, 46), "large": (70, 90)}  # bounding-box side in pixels, inclusive
RELATIONS = ("left of", "right of", "above", "below")
MIN_GAP = 6  # boxes are at least this far apart along x or along y
OBJECT_COUNT_WEIGHTS = (0.2, 0.4, 0.25, 0.15)  # for 1, 2, 3, 4 objects
MAX_ROTATION_DEGREES = 15.0  # squares and stars only
ROTATING_SHAPES = frozenset({"square", "star"})

Box = tuple[float, float, float, float]  # COCO order: x, y, width, height


@dataclass(frozen=True)
class WorldObject:
    """One object as the annotations know it; `id` is its COCO annotation id (0 before)."""

    shape: str
    color: str
    size: str
    box: Box
    id: int = 0

    @property
    def centre(self) -> tuple[float, float]:
        x, y, w, h = self.box
        return x + w / 2, y + h / 2

    @property
    def name(self) -> str:
        return f"{self.color} {self.shape}"


def relation(a: WorldObject, b: WorldObject) -> str:
    """Where A is with respect to B, by the world's one rule (horizontal wins ties)."""
    (ax, ay), (bx, by) = a.centre, b.centre
    dx, dy = bx - ax, by - ay
    if abs(dx) >= abs(dy):
        return "left of" if dx > 0 else "right of"
    return "above" if dy > 0 else "below"


def relation_margin(a: WorldObject, b: WorldObject) -> float:
    """How far a pair is from the diagonal where the relation flips (bigger = clearer)."""
    (ax, ay), (bx, by) = a.centre, b.centre
    return abs(abs(bx - ax) - abs(by - ay))


def boxes_apart(a: Box, b: Box, gap: float = MIN_GAP) -> bool:
    """True when the boxes are separated by at least `gap` pixels along x or along y."""
    gap_x = max(b[0] - (a[0] + a[2]), a[0] - (b[0] + b[2]))
    gap_y = max(b[1] - (a[1] + a[3]), a[1] - (b[1] + b[3]))
    return gap_x >= gap or gap_y >= gap


def sample_objects(rng: np.random.Generator, max_tries: int = 200) -> list[WorldObject]:
    """Draw 1-4 objects with unique "colour shape" names, placed inside and apart.

    Larger objects are placed first, which makes a failed placement rare; a failure redraws
    the whole layout so that the accepted layouts keep the spec's distributions of sizes.
    """
    count = int(rng.choice(len(OBJECT_COUNT_WEIGHTS), p=OBJECT_COUNT_WEIGHTS)) + 1
    while True:
        names = rng.choice(len(SHAPES) * len(COLORS), size=count, replace=False)
        sizes = [SIZES[int(i)] for i in rng.integers(0, len(SIZES), size=count)]
        sides = [int(rng.integers(SIDE_RANGES[s][0], SIDE_RANGES[s][1] + 1)) for s in sizes]
        order = sorted(range(count), key=lambda k: -sides[k])
        boxes: list[Box] = []
        for k in order:
            box = _place(sides[k], boxes, rng, max_tries)
            if box is None:
                break
            boxes.append(box)
        else:
            return [
                WorldObject(
                    shape=SHAPES[int(names[k]) % len(SHAPES)],
                    color=COLORS[int(names[k]) // len(SHAPES)],
                    size=sizes[k],
                    box=box,
                )
                for k, box in zip(order, boxes, strict=True)
            ]


def _place(side: int, placed: list[Box], rng: np.random.Generator, max_tries: int) -> Box | None:
    for _ in range(max_tries):
        x, y = (int(v) for v in rng.integers(0, CANVAS_SIZE - side + 1, size=2))
        box = (float(x), float(y), float(side), float(side))
        if all(boxes_apart(box, other) for other in placed):
            return box
    return None


def coco_category_id(shape: str) -> int:
    return SHAPES.index(shape) + 1


def coco_categories() -> list[dict[str, Any]]:
    return [{"id": coco_category_id(s), "name": s, "supercategory": "shape"} for s in SHAPES]


def objects_from_coco(instances: Mapping[str, Any]) -> dict[int, list[WorldObject]]:
    """Objects of every image of a loaded `instances_<split>.json` (images without any: [])."""
    try:
        shape_of = {c["id"]: c["name"] for c in instances["categories"]}
        objects: dict[int, list[WorldObject]] = {int(i["id"]): [] for i in instances["images"]}
        for ann in instances["annotations"]:
            x, y, w, h = (float(v) for v in ann["bbox"])
            obj = WorldObject(
                shape_of[ann["category_id"]], ann["color"], ann["size"], (x, y, w, h), ann["id"]
            )
            objects[int(ann["image_id"])].append(obj)
    except (KeyError, TypeError, ValueError) as error:
        raise ValueError(f"not a shapes-world instances file: {error!r}") from error
    return objects
