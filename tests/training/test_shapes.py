"""The shapes world generator, its caption grammar and the `glimpse data shapes` command.

A small world is generated once; the checks below recompute everything they can from the
instance boxes with the spec's rules written out here, not with the generator's helpers.
"""

import hashlib
import json
import re
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from pycocotools.coco import COCO
from typer.testing import CliRunner

from api.commands.data import app
from models.text import words
from training.data.shapes import generate
from training.data.shapes_grammar import Phrase, RelationClaim, parse_caption
from training.data.shapes_scene import BASE_COLORS, WorldObject, relation
from training.metrics.shapes import caption_correctness

SIZES = {"train": 40, "val": 40, "test": 40}
SPLITS = tuple(SIZES)
COLORS = ("red", "green", "blue", "yellow", "purple", "orange")
SHAPE_NAMES = ("circle", "square", "triangle", "star")
SIDE_RANGES = {"small": (34, 46), "large": (70, 90)}
QUESTION_TYPES = {"what color", "what shape", "how many", "is there", "what size", "relation"}


@pytest.fixture(scope="session")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("shapes") / "world"
    generate(out, SIZES, seed=0, workers=2, progress=False)
    return out


def _load(world: Path, kind: str, split: str) -> dict[str, Any]:
    return json.loads((world / "annotations" / f"{kind}_{split}.json").read_text())


def _objects(world: Path, split: str) -> dict[int, list[dict[str, Any]]]:
    instances = _load(world, "instances", split)
    names = {c["id"]: c["name"] for c in instances["categories"]}
    objects: dict[int, list[dict[str, Any]]] = {i["id"]: [] for i in instances["images"]}
    for ann in instances["annotations"]:
        objects[ann["image_id"]].append({**ann, "shape": names[ann["category_id"]]})
    return objects


def _spec_relation(a: dict[str, Any], b: dict[str, Any]) -> str:
    """The spec's rule, written out independently of the generator."""
    ax, ay, aw, ah = a["bbox"]
    bx, by, bw, bh = b["bbox"]
    dx, dy = (bx + bw / 2) - (ax + aw / 2), (by + bh / 2) - (ay + ah / 2)
    if abs(dx) >= abs(dy):
        return "left of" if dx > 0 else "right of"
    return "above" if dy > 0 else "below"


def _tree_hash(root: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(root)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


# --- files and images -----------------------------------------------------------------------


def test_files_load_with_pycocotools_and_ids_are_unique(world: Path) -> None:
    image_ids, question_ids = [], []
    for split in SPLITS:
        coco = COCO(str(world / "annotations" / f"instances_{split}.json"))
        assert sorted(c["name"] for c in coco.loadCats(coco.getCatIds())) == sorted(SHAPE_NAMES)
        assert len(coco.getImgIds()) == SIZES[split]
        captions = COCO(str(world / "annotations" / f"captions_{split}.json"))
        assert len(captions.getAnnIds()) == 5 * SIZES[split]
        for image in coco.loadImgs(coco.getImgIds()):
            path = world / "images" / split / image["file_name"]
            assert image["file_name"] == f"{image['id']:012d}.png"
            with Image.open(path) as png:
                assert (png.format, png.mode, png.size) == ("PNG", "RGB", (256, 256))
            image_ids.append(image["id"])
        for ann in coco.loadAnns(coco.getAnnIds()):
            assert ann["iscrowd"] == 0 and ann["area"] == ann["bbox"][2] * ann["bbox"][3]
        question_ids += [q["question_id"] for q in _load(world, "questions", split)["questions"]]
    assert len(set(image_ids)) == len(image_ids) == sum(SIZES.values())
    assert len(set(question_ids)) == len(question_ids)


def test_objects_follow_the_spec(world: Path) -> None:
    counts: Counter[int] = Counter()
    for split in SPLITS:
        for objects in _objects(world, split).values():
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


def test_pixels_show_objects_inside_boxes_on_a_background(world: Path) -> None:
    for split in SPLITS:
        for image_id, objects in _objects(world, split).items():
            pixels = np.asarray(Image.open(world / "images" / split / f"{image_id:012d}.png"))
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


# --- captions -------------------------------------------------------------------------------


def _named(phrase: Phrase, objects: list[dict[str, Any]]) -> dict[str, Any]:
    found = [o for o in objects if (o["color"], o["shape"]) == (phrase.color, phrase.shape)]
    assert len(found) == 1, phrase
    assert phrase.size in (None, found[0]["size"]), phrase
    return found[0]


def test_every_caption_is_true_of_its_image(world: Path) -> None:
    for split in SPLITS:
        objects = _objects(world, split)
        by_image: dict[int, list[str]] = {i: [] for i in objects}
        for ann in _load(world, "captions", split)["annotations"]:
            by_image[ann["image_id"]].append(ann["caption"])
        for image_id, captions in by_image.items():
            image_objects = objects[image_id]
            assert len(captions) == 5
            sized = phrases = 0
            for caption in captions:
                assert caption == caption.lower() and caption == caption.strip()
                assert not caption.endswith(".")
                parsed = parse_caption(caption)
                assert parsed.parseable, caption
                assert parse_caption(" ".join(words(caption))) == parsed, caption
                named = [_named(p, image_objects) for p in parsed.phrases]
                assert len({o["id"] for o in named}) == len(named), caption
                if parsed.count is not None:
                    assert parsed.count == len(image_objects), caption
                for claim in parsed.relations:
                    subject = _named(claim.subject, image_objects)
                    reference = _named(claim.reference, image_objects)
                    assert _spec_relation(subject, reference) == claim.relation, caption
                sized += sum(p.size is not None for p in parsed.phrases)
                phrases += len(parsed.phrases)
            assert 2 * sized >= phrases, captions


def _skeleton(caption: str) -> str:
    """The template behind a caption: phrases, articles and relation words blanked out."""
    text = re.sub(rf"((small|large) )?({'|'.join(COLORS)}) ({'|'.join(SHAPE_NAMES)})", "X", caption)
    text = re.sub(r"\ban\b", "a", text)
    return re.sub(r"(to the )?(left|right) of|above|below", "REL", text)


def test_captions_of_an_image_use_different_templates(world: Path) -> None:
    templates: Counter[str] = Counter()
    captions = _load(world, "captions", "train")["annotations"]
    for start in range(0, len(captions), 5):
        skeletons = {_skeleton(a["caption"]) for a in captions[start : start + 5]}
        assert len(skeletons) == 5, captions[start : start + 5]
        templates.update(skeletons)
    assert len(templates) >= 15  # the template banks for 1, 2 and 3-4 objects all show up


def test_caption_correctness_scores_references_one_and_shuffled_ones_low(world: Path) -> None:
    instances = _load(world, "instances", "val")
    annotations = _load(world, "captions", "val")["annotations"]
    for k in range(5):
        captions = {a["image_id"]: a["caption"] for a in annotations[k::5]}
        assert caption_correctness(captions, instances)["accuracy"] == 1.0
    ids = sorted(captions)
    shuffled = {i: captions[j] for i, j in zip(ids, ids[1:] + ids[:1], strict=True)}
    assert caption_correctness(shuffled, instances)["accuracy"] < 0.3


# --- questions ------------------------------------------------------------------------------


def _expected(question: str, objects: list[dict[str, Any]]) -> tuple[str, set[int]]:
    """The answer and target ids of a question, recomputed from the instance annotations."""

    def only(matches: list[dict[str, Any]]) -> dict[str, Any]:
        assert len(matches) == 1, question
        return matches[0]

    def ids(matches: list[dict[str, Any]]) -> set[int]:
        return {o["id"] for o in matches}

    if m := re.fullmatch(r"what color is the (?:(small|large) )?(\w+)\?", question):
        o = only([o for o in objects if o["shape"] == m[2] and m[1] in (None, o["size"])])
        return o["color"], ids([o])
    if m := re.fullmatch(r"what shape is the (?:(small|large) )?(\w+) object\?", question):
        o = only([o for o in objects if o["color"] == m[2] and m[1] in (None, o["size"])])
        return o["shape"], ids([o])
    if m := re.fullmatch(r"what size is the (\w+) (\w+)\?", question):
        o = only([o for o in objects if (o["color"], o["shape"]) == (m[1], m[2])])
        return o["size"], ids([o])
    if m := re.fullmatch(r"how many (?:shapes|(\w+) shapes|(\w+)s) are there\?", question):
        found = [o for o in objects if m[1] in (None, o["color"]) and m[2] in (None, o["shape"])]
        return str(len(found)), ids(found)
    if m := re.fullmatch(r"is there an? (.+)\?", question):
        words = m[1].split()
        found = [o for o in objects if set(words) <= {o["size"], o["color"], o["shape"]}]
        return ("yes" if found else "no"), ids(found)
    if m := re.fullmatch(r"what color is the shape (.+) the (\w+) (\w+)\?", question):
        reference = only([o for o in objects if (o["color"], o["shape"]) == (m[2], m[3])])
        subject = only(
            [o for o in objects if _spec_relation(o, reference) == m[1] and o != reference]
        )
        return subject["color"], ids([subject, reference])
    if m := re.fullmatch(r"is the (\w+) (\w+) (.+) the (\w+) (\w+)\?", question):
        a = only([o for o in objects if (o["color"], o["shape"]) == (m[1], m[2])])
        b = only([o for o in objects if (o["color"], o["shape"]) == (m[4], m[5])])
        return ("yes" if _spec_relation(a, b) == m[3] else "no"), ids([a, b])
    raise AssertionError(f"unexpected question {question!r}")


def test_every_majority_answer_and_target_is_right(world: Path) -> None:
    types: Counter[tuple[str, str]] = Counter()
    yes_no: Counter[str] = Counter()
    for split in SPLITS:
        objects = _objects(world, split)
        questions = _load(world, "questions", split)["questions"]
        annotations = _load(world, "answers", split)["annotations"]
        per_image = Counter(q["image_id"] for q in questions)
        assert set(per_image) == set(objects) and min(per_image.values()) >= 3
        assert max(per_image.values()) <= 6
        for question, ann in zip(questions, annotations, strict=True):
            assert ann["question_id"] == question["question_id"]
            answer, targets = _expected(question["question"], objects[question["image_id"]])
            assert ann["multiple_choice_answer"] == answer, question
            assert set(ann["target_ids"]) == targets, question
            given = [a["answer"] for a in ann["answers"]]
            assert Counter(given).most_common(1)[0] == (answer, max(Counter(given).values()))
            assert [a["answer_id"] for a in ann["answers"]] == list(range(1, 11))
            assert {a["answer_confidence"] for a in ann["answers"]} == {"yes"}
            types[ann["question_type"], ann["answer_type"]] += 1
            if ann["question_type"] == "is there":
                yes_no[answer] += 1
    assert {t for t, _ in types} == QUESTION_TYPES
    assert ("relation", "yes/no") in types and ("relation", "other") in types
    assert ("how many", "number") in types and ("is there", "yes/no") in types
    assert 0.3 <= yes_no["yes"] / sum(yes_no.values()) <= 0.7


# --- determinism and arguments --------------------------------------------------------------


def test_same_seed_gives_identical_bytes_whatever_the_workers(world: Path, tmp_path: Path) -> None:
    generate(tmp_path / "again", SIZES, seed=0, workers=1, progress=False)
    assert _tree_hash(tmp_path / "again") == _tree_hash(world)


def test_another_seed_gives_another_world(world: Path, tmp_path: Path) -> None:
    generate(tmp_path / "other", {"train": 5}, seed=1, workers=1, progress=False)
    for path in (tmp_path / "other" / "images" / "train").iterdir():
        assert path.read_bytes() != (world / "images" / "train" / path.name).read_bytes()


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
    assert len(_load(out, "instances", "val")["images"]) == 2
    assert not (out / "annotations" / "instances_test.json").exists()


@pytest.mark.parametrize("sizes", ["1,2", "a,b,c", "1,-2,3", "99999999,1,1"])
def test_cli_rejects_bad_sizes(tmp_path: Path, sizes: str) -> None:
    result = CliRunner().invoke(app, ["shapes", "--out", str(tmp_path), "--sizes", sizes])
    assert result.exit_code == 2
    assert not (tmp_path / "images").exists()


# --- the relation rule and the grammar ------------------------------------------------------


def _at(cx: float, cy: float) -> WorldObject:
    return WorldObject("circle", "red", "small", (cx - 20, cy - 20, 40, 40))


@pytest.mark.parametrize(
    "a, b, expected",
    [
        ((50, 50), (150, 60), "left of"),
        ((150, 60), (50, 50), "right of"),
        ((50, 50), (60, 150), "above"),
        ((60, 150), (50, 50), "below"),
        ((50, 50), (150, 150), "left of"),  # |dx| == |dy|: horizontal wins
        ((150, 50), (50, 150), "right of"),
    ],
)
def test_relation_rule(a: tuple[int, int], b: tuple[int, int], expected: str) -> None:
    assert relation(_at(*a), _at(*b)) == expected


def test_grammar_reads_the_spec_examples() -> None:
    red_circle, blue_square = Phrase(None, "red", "circle"), Phrase(None, "blue", "square")
    small_blue_square = Phrase("small", "blue", "square")
    parsed = parse_caption("a small blue square is to the right of a red circle")
    assert parsed.phrases == (small_blue_square, red_circle) and parsed.count is None
    assert parsed.relations == (RelationClaim(small_blue_square, "right of", red_circle),)
    parsed = parse_caption("two shapes: a red circle and a blue square")
    assert (parsed.phrases, parsed.count, parsed.relations) == ((red_circle, blue_square), 2, ())
    parsed = parse_caption("three shapes: a red circle, a blue square and a green star")
    assert parsed.count == 3 and parsed.phrases[2] == Phrase(None, "green", "star")
    parsed = parse_caption("there are three shapes a red circle a blue square and a green star")
    assert parsed.count == 3 and parsed.phrases[1] == blue_square
    parsed = parse_caption("a red circle left of a blue square and a green star")
    assert parsed.relations == (RelationClaim(red_circle, "left of", blue_square),)
    assert len(parsed.phrases) == 3
    assert parse_caption("one yellow star on a plain background").count == 1
    assert parse_caption("a single small blue square").count == 1
    assert parse_caption("there is a green triangle").phrases == (
        Phrase(None, "green", "triangle"),
    )
    assert parse_caption("a picture of an orange circle.").phrases == (
        Phrase(None, "orange", "circle"),
    )


@pytest.mark.parametrize(
    "caption",
    [
        "",
        "a red circle next to a blue square",
        "three shapes: a red circle and a blue square",
        "a red circle and",
        "a red",
        "a pink circle",
        "a large circle",
        "a red circle!",
        "a red circle left of",
    ],
)
def test_grammar_marks_other_text_unparseable(caption: str) -> None:
    parsed = parse_caption(caption)
    assert not parsed.parseable and parsed.reason and parsed.phrases == ()


def test_grammar_rejects_non_text() -> None:
    with pytest.raises(TypeError):
        parse_caption(None)  # type: ignore[arg-type]
