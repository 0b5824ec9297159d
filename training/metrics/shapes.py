"""Shapes-world checks that need the ground truth: caption correctness and grounding.

Grounding is the pointing game: an attention map points at the image where it peaks. A
(h, w) map upsampled bilinearly to the image (align_corners=False, as
`torch.nn.functional.interpolate` and PIL do) peaks at the centre of the map's arg-max cell:
bilinear interpolation never exceeds its largest sample and equals it at that sample's
position. The peak is therefore taken as that cell centre, exactly and without upsampling.
(A 256 x 256 rendering of the upsampled map samples the surface at pixel centres, and when
two cells nearly tie its brightest pixel can fall in the other one; the cell centre avoids
that artefact.) Ties between cells go to the first in row-major order.
"""

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from training.data.shapes_grammar import ParsedCaption, Phrase, parse_caption
from training.data.shapes_scene import (
    COLORS,
    SHAPES,
    SIZES,
    WorldObject,
    objects_from_coco,
    relation,
)

BOX_MARGIN = 8.0  # pixels a box is grown by before a peak is tested against it

Instances = Mapping[str, Any]  # a loaded COCO `instances_<split>.json` of the shapes world


def caption_is_true(parsed: ParsedCaption, objects: Sequence[WorldObject]) -> bool:
    """A parsed caption is true when each phrase names its own existing object (colour, shape
    and, if stated, size), its count equals the number of objects, and its relations hold."""
    if not parsed.parseable:
        return False
    if parsed.count is not None and parsed.count != len(objects):
        return False
    named: dict[Phrase, WorldObject] = {}
    for phrase in parsed.phrases:
        obj = _named_object(phrase, objects)
        if obj is None or obj in named.values():
            return False  # the phrase matches nothing, or names an object named before
        named[phrase] = obj
    return all(
        relation(named[c.subject], named[c.reference]) == c.relation for c in parsed.relations
    )


def caption_is_complete(parsed: ParsedCaption, objects: Sequence[WorldObject]) -> bool:
    """True, and naming every object: what each reference caption of the world does, so the
    reward of self-critical training (a true caption that leaves objects out is not enough)."""
    return caption_is_true(parsed, objects) and len(parsed.phrases) == len(objects)


def caption_correctness(captions: Mapping[int, str], instances: Instances) -> dict[str, Any]:
    """Fraction of correct captions, overall and by the image's number of objects.

    Returns {"accuracy", "correct", "total", "complete" (the fraction that is true and names
    every object: a model cannot look correct by leaving objects out), "unparseable",
    "unparseable_reasons" (the five most common, with counts: where a model leaves the
    grammar), "by_num_objects": {n: {...}}}.
    """
    objects = objects_from_coco(instances)
    complete = 0
    correct: Counter[int] = Counter()
    total: Counter[int] = Counter()
    reasons: Counter[str] = Counter()
    for image_id, caption in captions.items():
        image_objects = _lookup(objects, image_id, "image")
        parsed = parse_caption(caption)
        if not parsed.parseable:
            reasons[parsed.reason] += 1
        total[len(image_objects)] += 1
        correct[len(image_objects)] += caption_is_true(parsed, image_objects)
        complete += caption_is_complete(parsed, image_objects)
    return {
        **_rate(sum(correct.values()), sum(total.values())),
        "complete": complete / len(captions) if captions else 0.0,
        "unparseable": sum(reasons.values()),
        "unparseable_reasons": dict(reasons.most_common(5)),
        "by_num_objects": {n: _rate(correct[n], total[n]) for n in sorted(total)},
    }


def attention_peak(attention: ArrayLike, width: float, height: float) -> tuple[float, float]:
    """Image (x, y) of the peak of a (h, w) attention map stretched over a width x height image."""
    grid = np.asarray(attention, dtype=np.float64)
    if grid.ndim != 2 or grid.size == 0 or not np.isfinite(grid).all():
        raise ValueError(f"attention must be a finite, non-empty (h, w) map, got {grid.shape}")
    row, col = np.unravel_index(int(np.argmax(grid)), grid.shape)
    h, w = grid.shape
    return (col + 0.5) * width / w, (row + 0.5) * height / h


def caption_grounding(
    attention: Mapping[int, Sequence[tuple[str, ArrayLike]]], instances: Instances
) -> dict[str, Any]:
    """Pointing game over the shape words of generated captions.

    `attention[image_id]` is the caption as (word, (h, w) attention map) pairs. A shape word
    ends the phrase made of the size and colour words just before it; it scores a hit when
    the map's peak lies in the grown box of an object matching that phrase. A shape word
    whose phrase matches no object is a miss (counted in "no_match" too).
    """
    objects = objects_from_coco(instances)
    sizes = _image_sizes(instances)
    hits = total = no_match = 0
    for image_id, steps in attention.items():
        image_objects = _lookup(objects, image_id, "image")
        words = [str(word).lower() for word, _ in steps]
        for k, (_, grid) in enumerate(steps):
            if words[k] not in SHAPES:
                continue
            size, color = _modifiers_before(words, k)
            candidates = [o for o in image_objects if _matches(o, words[k], color, size)]
            point = attention_peak(grid, *sizes[image_id])
            total += 1
            no_match += not candidates
            hits += _inside_any(point, candidates)
    return {**_hit_rate(hits, total), "no_match": no_match}


def vqa_grounding(
    attention: Mapping[int, ArrayLike], answers: Mapping[str, Any], instances: Instances
) -> dict[str, Any]:
    """Pointing game for VQA: does the attention peak lie in one of the question's targets?

    `attention[question_id]` is a (h, w) map or (G, h, w) glimpse maps; glimpses are averaged
    (each is a distribution over cells, so their mean is the model's overall attention).
    `answers` is a loaded VQA annotation file with `target_ids`; questions without targets
    are skipped. Returns {"hit_rate", "hits", "total", "by_type": {question_type: {...}}}.
    """
    objects = objects_from_coco(instances)
    by_id = {o.id: o for image_objects in objects.values() for o in image_objects}
    sizes = _image_sizes(instances)
    records = {int(a["question_id"]): a for a in answers["annotations"]}
    hits: Counter[str] = Counter()
    total: Counter[str] = Counter()
    for question_id, maps in attention.items():
        record = _lookup(records, question_id, "question")
        if not record.get("target_ids"):
            continue
        grid = np.asarray(maps, dtype=np.float64)
        grid = grid.mean(axis=0) if grid.ndim == 3 else grid  # (G, h, w) -> (h, w)
        point = attention_peak(grid, *_lookup(sizes, int(record["image_id"]), "image"))
        targets = [_lookup(by_id, int(i), "object") for i in record["target_ids"]]
        total[record["question_type"]] += 1
        hits[record["question_type"]] += _inside_any(point, targets)
    return {
        **_hit_rate(sum(hits.values()), sum(total.values())),
        "by_type": {t: _hit_rate(hits[t], total[t]) for t in sorted(total)},
    }


def phrase_objects(
    words: Sequence[str], objects: Sequence[WorldObject]
) -> dict[int, list[WorldObject]]:
    """Where a captioner should look as it writes each word of a phrase that names one object.

    Each size, colour and shape word maps to the objects that fit the phrase up to and with
    that word: "a small red circle" gives the small objects at "small", the small red ones at
    "red" and the circle at "circle". The word must be true of what the model looks at, but
    which of several fitting objects a phrase is about is the caption's free choice, not yet
    made when its first word is written.
    """
    fitting = {}
    for k, word in enumerate(words):
        if word not in SHAPES:
            continue
        size, color = _modifiers_before(words, k)
        if sum(_matches(o, word, color, size) for o in objects) != 1:
            continue
        first = k - (color is not None) - (size is not None)
        for end in range(first, k + 1):
            said = set(words[first : end + 1])
            fitting[end] = [o for o in objects if said <= {o.size, o.color, o.shape}]
    return fitting


def cells_in_box(
    box: Sequence[float], grid: tuple[int, int], width: float, height: float
) -> np.ndarray:
    """Row-major indices of the (h, w) grid cells whose centres lie in the grown box: the
    cells where an attention peak scores a hit in the pointing game."""
    h, w = grid
    rows, cols = np.divmod(np.arange(h * w), w)
    return np.flatnonzero(_in_box(((cols + 0.5) * width / w, (rows + 0.5) * height / h), box))


def _modifiers_before(words: Sequence[str], end: int) -> tuple[str | None, str | None]:
    """(size, colour) words right before the shape word at `end`, None where absent."""
    size = color = None
    k = end - 1
    if k >= 0 and words[k] in COLORS:
        color, k = words[k], k - 1
    if k >= 0 and words[k] in SIZES:
        size = words[k]
    return size, color


def _matches(obj: WorldObject, shape: str, color: str | None, size: str | None) -> bool:
    return obj.shape == shape and color in (None, obj.color) and size in (None, obj.size)


def _named_object(phrase: Phrase, objects: Iterable[WorldObject]) -> WorldObject | None:
    """The object a phrase names; colour + shape is unique in an image, so at most one."""
    return next((o for o in objects if _matches(o, phrase.shape, phrase.color, phrase.size)), None)


def _inside_any(point: tuple[float, float], objects: Iterable[WorldObject]) -> bool:
    return any(_in_box(point, o.box) for o in objects)


def _in_box(point: tuple[Any, Any], box: Sequence[float]) -> Any:
    """Whether the point (or each of arrays of points) lies in the box grown by the margin."""
    x, y = point
    bx, by, bw, bh = box
    m = BOX_MARGIN
    return (bx - m <= x) & (x <= bx + bw + m) & (by - m <= y) & (y <= by + bh + m)


def _lookup(table: Mapping[int, Any], key: int, what: str) -> Any:
    if key not in table:
        raise ValueError(f"{what} {key} is not in the annotation files")
    return table[key]


def _image_sizes(instances: Instances) -> dict[int, tuple[float, float]]:
    return {int(i["id"]): (float(i["width"]), float(i["height"])) for i in instances["images"]}


def _rate(correct: int, total: int) -> dict[str, Any]:
    return {"accuracy": correct / total if total else 0.0, "correct": correct, "total": total}


def _hit_rate(hits: int, total: int) -> dict[str, Any]:
    return {"hit_rate": hits / total if total else 0.0, "hits": hits, "total": total}
