"""The shapes world's rules written out independently of the generator, for the tests that
check a generated world against them; and the annotation files read back as the tests see them.
"""

import json
from pathlib import Path
from typing import Any

WORLD_SIZES = {"train": 40, "val": 40, "test": 40}  # the world the generator tests check
SPLITS = tuple(WORLD_SIZES)
COLORS = ("red", "green", "blue", "yellow", "purple", "orange")
SHAPE_NAMES = ("circle", "square", "triangle", "star")


def load_annotations(world: Path, kind: str, split: str) -> dict[str, Any]:
    """annotations/KIND_SPLIT.json (instances, captions, questions or answers)."""
    return json.loads((world / "annotations" / f"{kind}_{split}.json").read_text())


def objects_by_image(world: Path, split: str) -> dict[int, list[dict[str, Any]]]:
    """Each image's instance annotations, with their shape names, by image id."""
    instances = load_annotations(world, "instances", split)
    names = {c["id"]: c["name"] for c in instances["categories"]}
    found: dict[int, list[dict[str, Any]]] = {i["id"]: [] for i in instances["images"]}
    for ann in instances["annotations"]:
        found[ann["image_id"]].append({**ann, "shape": names[ann["category_id"]]})
    return found


def spec_relation(a: dict[str, Any], b: dict[str, Any]) -> str:
    """Where `a` lies from `b`, by the spec: the larger offset of the box centres decides,
    horizontal on a tie."""
    ax, ay, aw, ah = a["bbox"]
    bx, by, bw, bh = b["bbox"]
    dx, dy = (bx + bw / 2) - (ax + aw / 2), (by + bh / 2) - (ay + ah / 2)
    if abs(dx) >= abs(dy):
        return "left of" if dx > 0 else "right of"
    return "above" if dy > 0 else "below"
