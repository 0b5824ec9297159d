"""The shapes world generator: its files, objects and pixels, determinism, and the
`glimpse data shapes` command.

The session's `shapes_world` is generated once; the checks recompute what they can from the
instance boxes with the spec's rules written out in `shapes_truth`, not with the generator's.
"""

import hashlib
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from pycocotools.coco import COCO
from typer.testing import CliRunner

from api.commands.data import app
from shapes_truth import (
    COLORS,
    SHAPE_NAMES,
    SPLITS,
    WORLD_SIZES,
    load_annotations,
    objects_by_image,
)
from training.data.shapes import generate
from training.data.shapes_scene import BASE_COLORS

SIDE_RANGES = {"small": (34, 46), "large": (70, 90)}


def _tree_hash(root: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(root)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


# --- files and images -----------------------------------------------------------------------


def test_files_load_with_pycocotools_and_ids_are_unique(shapes_world: Path) -> None:
    image_ids, question_ids = [], []
    for split in SPLITS:
        coco = COCO(str(shapes_world / "annotations" / f"instances_{split}.json"))
        assert sorted(c["name"] for c in coco.loadCats(coco.getCatIds())) == sorted(SHAPE_NAMES)
        assert len(coco.getImgIds()) == WORLD_SIZES[split]
        captions = COCO(str(shapes_world / "annotations" / f"captions_{split}.json"))
        assert len(captions.getAnnIds()) == 5 * WORLD_SIZES[split]
        for image in coco.loadImgs(coco.getImgIds()):
            path = shapes_world / "images" / split / image["file_name"]
            assert image["file_name"] == f"{image['id']:012d}.png"
            with Image.open(path) as png:
                assert (png.format, png.mode, png.size) == ("PNG", "RGB", (256, 256))
            image_ids.append(image["id"])
        for ann in coco.loadAnns(coco.getAnnIds()):
            assert ann["iscrowd"] == 0 and ann["area"] == ann["bbox"][2] * ann["bbox"][3]
        question_ids += [
            q["question_id"]
            for q in load_annotations(shapes_world, "questions", split)["questions"]
        ]
    assert len(set(image_ids)) == len(image_ids) == sum(WORLD_SIZES.values())
    assert len(set(question_ids)) == len(question_ids)


def test_objects_follow_the_spec(shapes_world: Path) -> None:
    counts: Counter[int] = Counter()
    for split in SPLITS:
        for objects in objects_by_image(shapes_world, split).values():
            counts[len(objects)] += 1
            assert len({(o["color"], o["shape"]) for o in objects}) == len(objects)
            for o in objects:
                x, y, w, h = o["bbox"]
                low, high = SIDE_RANGES[o["size"]]
                assert w == h and low <= w <= high
                assert x >= 0 and y >= 0 and x + w <= 256 and y + h <= 256
                assert o["color"] in COLORS
            for i, a in enumerate(objects):
                for b in objects[i + 1 :]:
                    (ax, ay, aw, ah), (bx, by, bw, bh) = a["bbox"], b["bbox"]
                    gap_x = max(bx - (ax + aw), ax - (bx + bw))
                    gap_y = max(by - (ay + ah), ay - (by + bh))
                    assert gap_x >= 6 or gap_y >= 6
    assert set(counts) == {1, 2, 3, 4}


def test_pixels_show_objects_inside_boxes_on_a_background(shapes_world: Path) -> None:
    for split in SPLITS:
        for image_id, objects in objects_by_image(shapes_world, split).items():
            pixels = np.asarray(
                Image.open(shapes_world / "images" / split / f"{image_id:012d}.png")
            )
            pixels = pixels.astype(np.int32)  # (256, 256, 3)
            outside = np.ones((256, 256), dtype=bool)
            for o in objects:
                x, y, w, h = (int(v) for v in o["bbox"])
                outside[y : y + h, x : x + w] = False
                if o["shape"] in ("circle", "square"):
                    cx, cy = x + w // 2, y + h // 2
                    centre = np.median(pixels[cy - 2 : cy + 3, cx - 2 : cx + 3], axis=(0, 1))
                    assert np.abs(centre - BASE_COLORS[o["color"]]).max() <= 28, (image_id, o)
            background = np.median(pixels[outside], axis=0)
            # Nothing drawn outside the boxes: noise (sigma <= 6) stays within 7.5 sigma.
            assert np.abs(pixels[outside] - background).max() <= 45, image_id
            for base in BASE_COLORS.values():
                assert np.abs(background - base).max() > 90, image_id


# --- determinism and arguments --------------------------------------------------------------


def test_same_seed_gives_identical_bytes_whatever_the_workers(
    shapes_world: Path, tmp_path: Path
) -> None:
    generate(tmp_path / "again", WORLD_SIZES, seed=0, workers=1, progress=False)
    assert _tree_hash(tmp_path / "again") == _tree_hash(shapes_world)


def test_another_seed_gives_another_world(shapes_world: Path, tmp_path: Path) -> None:
    generate(tmp_path / "other", {"train": 5}, seed=1, workers=1, progress=False)
    for path in (tmp_path / "other" / "images" / "train").iterdir():
        assert path.read_bytes() != (shapes_world / "images" / "train" / path.name).read_bytes()


@pytest.mark.parametrize(
    "sizes, seed",
    [({"training": 3}, 0), ({"train": -1}, 0), ({"train": 2.5}, 0), ({"train": 3}, -1)],
)
def test_generate_rejects_bad_arguments(tmp_path: Path, sizes: Any, seed: int) -> None:
    with pytest.raises(ValueError):
        generate(tmp_path, sizes, seed=seed)
    assert not (tmp_path / "images").exists()


def test_cli_writes_the_requested_splits(tmp_path: Path) -> None:
    out = tmp_path / "cli"
    result = CliRunner().invoke(
        app, ["shapes", "--out", str(out), "--seed", "3", "--sizes", "3,2,0", "--workers", "1"]
    )
    assert result.exit_code == 0, result.output
    assert len(list((out / "images" / "train").glob("*.png"))) == 3
    assert len(load_annotations(out, "instances", "val")["images"]) == 2
    assert not (out / "annotations" / "instances_test.json").exists()


@pytest.mark.parametrize("sizes", ["1,2", "a,b,c", "1,-2,3", "99999999,1,1"])
def test_cli_rejects_bad_sizes(tmp_path: Path, sizes: str) -> None:
    result = CliRunner().invoke(app, ["shapes", "--out", str(tmp_path), "--sizes", sizes])
    assert result.exit_code == 2
    assert not (tmp_path / "images").exists()
