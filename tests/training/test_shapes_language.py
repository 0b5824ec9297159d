"""The shapes world's language: every caption and answer is true of its image, the caption
templates vary, and the relation rule and the caption grammar read the spec's examples.

The session's `shapes_world` is generated once; answers and relations are recomputed from the
instance boxes with the spec's rules written out in `shapes_truth`, not with the generator's.
"""

import re
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from models.text import words
from shapes_truth import (
    COLORS,
    SHAPE_NAMES,
    SPLITS,
    load_annotations,
    objects_by_image,
    spec_relation,
)
from training.data.shapes_grammar import Phrase, RelationClaim, parse_caption
from training.data.shapes_questions import MAX_QUESTIONS, RELATION_DRILL
from training.data.shapes_scene import WorldObject, relation
from training.metrics.shapes import caption_correctness

QUESTION_TYPES = {"what color", "what shape", "how many", "is there", "what size", "relation"}


# --- captions -------------------------------------------------------------------------------


def _named(phrase: Phrase, objects: list[dict[str, Any]]) -> dict[str, Any]:
    found = [o for o in objects if (o["color"], o["shape"]) == (phrase.color, phrase.shape)]
    assert len(found) == 1, phrase
    assert phrase.size in (None, found[0]["size"]), phrase
    return found[0]


def test_every_caption_is_true_of_its_image(shapes_world: Path) -> None:
    for split in SPLITS:
        objects = objects_by_image(shapes_world, split)
        by_image: dict[int, list[str]] = {i: [] for i in objects}
        for ann in load_annotations(shapes_world, "captions", split)["annotations"]:
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
                    assert spec_relation(subject, reference) == claim.relation, caption
                sized += sum(p.size is not None for p in parsed.phrases)
                phrases += len(parsed.phrases)
            assert 2 * sized >= phrases, captions


def _skeleton(caption: str) -> str:
    """The template behind a caption: phrases, articles and relation words blanked out."""
    text = re.sub(rf"((small|large) )?({'|'.join(COLORS)}) ({'|'.join(SHAPE_NAMES)})", "X", caption)
    text = re.sub(r"\ban\b", "a", text)
    return re.sub(r"(to the )?(left|right) of|above|below", "REL", text)


def test_captions_of_an_image_use_different_templates(shapes_world: Path) -> None:
    templates: Counter[str] = Counter()
    captions = load_annotations(shapes_world, "captions", "train")["annotations"]
    for start in range(0, len(captions), 5):
        skeletons = {_skeleton(a["caption"]) for a in captions[start : start + 5]}
        assert len(skeletons) == 5, captions[start : start + 5]
        templates.update(skeletons)
    assert len(templates) >= 15  # the template banks for 1, 2 and 3-4 objects all show up


def test_caption_correctness_scores_references_one_and_shuffled_ones_low(
    shapes_world: Path,
) -> None:
    instances = load_annotations(shapes_world, "instances", "val")
    annotations = load_annotations(shapes_world, "captions", "val")["annotations"]
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
            [o for o in objects if spec_relation(o, reference) == m[1] and o != reference]
        )
        return subject["color"], ids([subject, reference])
    if m := re.fullmatch(r"is the (\w+) (\w+) (.+) the (\w+) (\w+)\?", question):
        a = only([o for o in objects if (o["color"], o["shape"]) == (m[1], m[2])])
        b = only([o for o in objects if (o["color"], o["shape"]) == (m[4], m[5])])
        return ("yes" if spec_relation(a, b) == m[3] else "no"), ids([a, b])
    raise AssertionError(f"unexpected question {question!r}")


def test_every_majority_answer_and_target_is_right(shapes_world: Path) -> None:
    types: Counter[tuple[str, str]] = Counter()
    yes_no: Counter[str] = Counter()
    relations_yes_no: Counter[str] = Counter()
    for split in SPLITS:
        objects = objects_by_image(shapes_world, split)
        questions = load_annotations(shapes_world, "questions", split)["questions"]
        annotations = load_annotations(shapes_world, "answers", split)["annotations"]
        per_image = Counter(q["image_id"] for q in questions)
        assert set(per_image) == set(objects) and min(per_image.values()) >= 3
        assert max(per_image.values()) <= MAX_QUESTIONS + RELATION_DRILL
        drilled: Counter[int] = Counter()  # yes/no relation questions of each image
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
            if (ann["question_type"], ann["answer_type"]) == ("relation", "yes/no"):
                drilled[question["image_id"]] += 1
                relations_yes_no[answer] += 1
        for image_id, objs in objects.items():  # the drill: two more for every pair to compare
            assert drilled[image_id] >= (RELATION_DRILL if len(objs) >= 2 else 0), image_id
    assert {t for t, _ in types} == QUESTION_TYPES
    assert ("relation", "yes/no") in types and ("relation", "other") in types
    assert ("how many", "number") in types and ("is there", "yes/no") in types
    assert 0.3 <= yes_no["yes"] / sum(yes_no.values()) <= 0.7
    assert 0.4 <= relations_yes_no["yes"] / sum(relations_yes_no.values()) <= 0.6


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
