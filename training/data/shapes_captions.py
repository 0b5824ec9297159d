"""Five true captions per shapes-world image, each from a different template.

A caption is first planned as text pieces and object slots, so that whether a slot says the
object's size can be decided over all five captions at once: at least half of an image's
object phrases carry the size word. `shapes_grammar` parses every template back.
"""

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import count, permutations

import numpy as np

from training.data.shapes_scene import WorldObject, relation, relation_margin

CAPTIONS_PER_IMAGE = 5
COUNT_WORDS = ("one", "two", "three", "four")
# The longer spelling of each relation, used after "is".
RELATION_PHRASES = {
    "left of": "to the left of",
    "right of": "to the right of",
    "above": "above",
    "below": "below",
}
CLEAR_MARGIN = 12.0  # pixels between |dx| and |dy|; relation captions prefer such pairs


@dataclass(frozen=True)
class Slot:
    """An object phrase to be written: "a/an [size] colour shape" after `determiner`."""

    obj: WorldObject
    determiner: str = "a"  # "a" (becomes "an" where needed), "one" or "a single"


Piece = str | Slot
Template = Callable[[list[WorldObject]], list[Piece]]


def make_captions(objects: list[WorldObject], rng: np.random.Generator) -> list[str]:
    """Five distinct-template captions, all true of `objects`."""
    bank = _TEMPLATES[min(len(objects), 3)]
    chosen = rng.choice(len(bank), size=CAPTIONS_PER_IMAGE, replace=False)
    plans = [bank[int(k)]([objects[i] for i in rng.permutation(len(objects))]) for k in chosen]
    slot_count = sum(isinstance(piece, Slot) for plan in plans for piece in plan)
    with_size = rng.integers(math.ceil(slot_count / 2), slot_count + 1)
    sized = set(rng.choice(slot_count, size=with_size, replace=False).tolist())
    slot_numbers = count()
    return [
        "".join(
            piece if isinstance(piece, str) else _phrase(piece, next(slot_numbers) in sized)
            for piece in plan
        )
        for plan in plans
    ]


def _phrase(slot: Slot, with_size: bool) -> str:
    words = [slot.obj.size] if with_size else []
    words += [slot.obj.color, slot.obj.shape]
    determiner = slot.determiner
    if determiner == "a" and words[0][0] in "aeiou":
        determiner = "an"
    return " ".join([determiner, *words])


def _listed(objects: Sequence[WorldObject]) -> list[Piece]:
    """ "A", "A and B", "A, B and C", ..."""
    pieces: list[Piece] = []
    for k, obj in enumerate(objects):
        if k:
            pieces.append(" and " if k == len(objects) - 1 else ", ")
        pieces.append(Slot(obj))
    return pieces


def _related_pair(
    objects: list[WorldObject],
) -> tuple[WorldObject, WorldObject, list[WorldObject]]:
    """Two objects to relate (a clear pair when there is one) and the rest, in given order."""
    pairs = list(permutations(range(len(objects)), 2))
    clear = [p for p in pairs if relation_margin(objects[p[0]], objects[p[1]]) >= CLEAR_MARGIN]
    i, j = (clear or pairs)[0]
    rest = [o for k, o in enumerate(objects) if k not in (i, j)]
    return objects[i], objects[j], rest


def _short_relation(objects: list[WorldObject]) -> list[Piece]:
    a, b, rest = _related_pair(objects)
    return [Slot(a), f" {relation(a, b)} ", Slot(b), *_and_rest(rest)]


def _long_relation(objects: list[WorldObject]) -> list[Piece]:
    a, b, rest = _related_pair(objects)
    return [Slot(a), f" is {RELATION_PHRASES[relation(a, b)]} ", Slot(b), *_and_rest(rest)]


def _there_is_relation(objects: list[WorldObject]) -> list[Piece]:
    return ["there is ", *_short_relation(objects)]


def _and_rest(rest: list[WorldObject]) -> list[Piece]:
    return [" and ", *_listed(rest)] if rest else []


def _counted(prefix: str) -> Template:
    def template(objects: list[WorldObject]) -> list[Piece]:
        return [f"{prefix}{COUNT_WORDS[len(objects) - 1]} shapes: ", *_listed(objects)]

    return template


def _framed(before: str, after: str = "") -> Template:
    def template(objects: list[WorldObject]) -> list[Piece]:
        return [before, *_listed(objects), after]

    return template


def _single(determiner: str, after: str = "") -> Template:
    def template(objects: list[WorldObject]) -> list[Piece]:
        return [Slot(objects[0], determiner), after]

    return template


_PLAIN = " on a plain background"
_TEMPLATES: dict[int, list[Template]] = {
    1: [
        _framed(""),
        _single("a single"),
        _framed("there is "),
        _single("one", _PLAIN),
        _framed("a picture of "),
        _framed("an image of "),
        _framed("", _PLAIN),
    ],
    2: [
        _short_relation,
        _long_relation,
        _there_is_relation,
        _framed(""),
        _counted(""),
        _counted("there are "),
        _framed("a picture of "),
    ],
    3: [  # 3 or 4 objects
        _counted(""),
        _counted("there are "),
        _short_relation,
        _long_relation,
        _framed("a picture of "),
        _framed("", _PLAIN),
    ],
}
