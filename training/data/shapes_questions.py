"""Questions about a shapes-world image with their true answers and the objects they refer to.

Each question type is asked at most once per image before any is asked twice, so the types
stay balanced; a type that does not fit the image (e.g. "what shape is the red object?"
with two red objects) is skipped for it. Then up to `RELATION_DRILL` more yes/no relation
questions ("is the red circle above the green star?"): comparing two positions with the one
asked is the one thing a model did not learn from a world's few thousand such questions
(chance on held-out images, while a probe on its own glimpses' centres read 98% right; see
docs/training.md). The ten noisy human-like answers are drawn here too.
"""

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from itertools import product

import numpy as np

from training.data.shapes_scene import COLORS, RELATIONS, SHAPES, SIZES, WorldObject, relation

MIN_QUESTIONS, MAX_QUESTIONS = 3, 6
RELATION_DRILL = 2  # yes/no relation questions added to each image with two or more objects
ANSWERS_PER_QUESTION = 10
TRUE_ANSWER_PROBABILITY = 0.95
MAX_COUNT = 4
# The answer space of each kind of answer; wrong answers are drawn from the same space.
ANSWER_SPACES: dict[str, tuple[str, ...]] = {
    "color": COLORS,
    "shape": SHAPES,
    "size": SIZES,
    "number": tuple(str(n) for n in range(MAX_COUNT + 1)),
    "yes/no": ("yes", "no"),
}
PLURALS = {shape: f"{shape}s" for shape in SHAPES}


@dataclass(frozen=True)
class Question:
    """One question; `space` names its answer space, `targets` the objects it refers to."""

    text: str
    question_type: str
    space: str
    answer: str
    targets: tuple[WorldObject, ...]

    @property
    def answer_type(self) -> str:
        return {"number": "number", "yes/no": "yes/no"}.get(self.space, "other")


Asker = Callable[[list[WorldObject], np.random.Generator], Question | None]


def make_questions(objects: list[WorldObject], rng: np.random.Generator) -> list[Question]:
    """3 to 6 distinct questions, cycling through the question types in a random order, then
    the relation drill's."""
    balanced = _balanced(objects, rng)
    return [*balanced, *_relation_drill(objects, rng, {q.text for q in balanced})]


def _balanced(objects: list[WorldObject], rng: np.random.Generator) -> list[Question]:
    wanted = int(rng.integers(MIN_QUESTIONS, MAX_QUESTIONS + 1))
    askers = [_ASKERS[int(k)] for k in rng.permutation(len(_ASKERS))]
    questions: dict[str, Question] = {}
    for _ in range(4 * MAX_QUESTIONS):  # every image fits >= 3 types; this bounds the retries
        for ask in askers:
            question = ask(objects, rng)
            if question is not None and question.text not in questions:
                questions[question.text] = question
            if len(questions) == wanted:
                return list(questions.values())
    return list(questions.values())


def _relation_drill(
    objects: list[WorldObject], rng: np.random.Generator, asked: set[str]
) -> list[Question]:
    """Up to RELATION_DRILL yes/no relation questions not asked yet (none for one object)."""
    drill: list[Question] = []
    for _ in range(4 * RELATION_DRILL):
        if len(drill) == RELATION_DRILL:
            break
        question = _relation_yes_no(objects, rng)
        if question is not None and question.text not in asked:
            asked.add(question.text)
            drill.append(question)
    return drill


def noisy_answers(question: Question, rng: np.random.Generator) -> list[str]:
    """Ten answers, each the true one with probability 0.95, else a wrong one of its kind.

    Redrawn in the (rare, ~1e-4 for yes/no) case that the true answer is not strictly the most
    frequent, so that `multiple_choice_answer` is always the true answer.
    """
    wrong = [a for a in ANSWER_SPACES[question.space] if a != question.answer]
    while True:
        answers = [
            question.answer
            if rng.random() < TRUE_ANSWER_PROBABILITY
            else wrong[int(rng.integers(len(wrong)))]
            for _ in range(ANSWERS_PER_QUESTION)
        ]
        (first, first_count), *others = Counter(answers).most_common(2)
        if first == question.answer and (not others or others[0][1] < first_count):
            return answers


def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def _pick(options: list[Question], rng: np.random.Generator) -> Question | None:
    return options[int(rng.integers(len(options)))] if options else None


def _what_color(objects: list[WorldObject], rng: np.random.Generator) -> Question | None:
    options = []
    for obj in objects:
        if sum(o.shape == obj.shape for o in objects) == 1:
            text = f"what color is the {obj.shape}?"
            options.append(Question(text, "what color", "color", obj.color, (obj,)))
        if sum(o.shape == obj.shape and o.size == obj.size for o in objects) == 1:
            text = f"what color is the {obj.size} {obj.shape}?"
            options.append(Question(text, "what color", "color", obj.color, (obj,)))
    return _pick(options, rng)


def _what_shape(objects: list[WorldObject], rng: np.random.Generator) -> Question | None:
    options = []
    for obj in objects:
        if sum(o.color == obj.color for o in objects) == 1:
            text = f"what shape is the {obj.color} object?"
            options.append(Question(text, "what shape", "shape", obj.shape, (obj,)))
        if sum(o.color == obj.color and o.size == obj.size for o in objects) == 1:
            text = f"what shape is the {obj.size} {obj.color} object?"
            options.append(Question(text, "what shape", "shape", obj.shape, (obj,)))
    return _pick(options, rng)


def _what_size(objects: list[WorldObject], rng: np.random.Generator) -> Question | None:
    obj = objects[int(rng.integers(len(objects)))]
    text = f"what size is the {obj.color} {obj.shape}?"
    return Question(text, "what size", "size", obj.size, (obj,))


def _how_many(objects: list[WorldObject], rng: np.random.Generator) -> Question | None:
    """Counts of all shapes, of one shape or of one colour; mostly of one that is present."""
    kind = int(rng.integers(3))
    if kind == 0:
        return Question(
            "how many shapes are there?", "how many", "number", str(len(objects)), tuple(objects)
        )
    attribute = "shape" if kind == 1 else "color"
    present = [getattr(o, attribute) for o in objects]
    value = str(rng.choice(present if rng.random() < 0.7 else (SHAPES if kind == 1 else COLORS)))
    counted = tuple(o for o in objects if getattr(o, attribute) == value)
    noun = PLURALS[value] if kind == 1 else f"{value} shapes"
    return Question(f"how many {noun} are there?", "how many", "number", str(len(counted)), counted)


def _is_there(objects: list[WorldObject], rng: np.random.Generator) -> Question | None:
    """Half yes, half no; asks by colour + shape, size + shape or size + colour + shape."""
    attributes = [("color", "shape"), ("size", "shape"), ("size", "color", "shape")][
        int(rng.integers(3))
    ]
    if rng.random() < 0.5:
        obj = objects[int(rng.integers(len(objects)))]
        values = tuple(getattr(obj, a) for a in attributes)
    else:
        spaces = {"color": COLORS, "shape": SHAPES, "size": SIZES}
        present = {tuple(getattr(o, a) for a in attributes) for o in objects}
        absent = [v for v in product(*(spaces[a] for a in attributes)) if v not in present]
        values = absent[int(rng.integers(len(absent)))]
    matching = tuple(
        o
        for o in objects
        if all(getattr(o, a) == v for a, v in zip(attributes, values, strict=True))
    )
    text = f"is there {_article(values[0])} {' '.join(values)}?"
    return Question(text, "is there", "yes/no", "yes" if matching else "no", matching)


def _relation_color(objects: list[WorldObject], rng: np.random.Generator) -> Question | None:
    """ "what color is the shape left of the blue square?", only when one shape is there."""
    options = []
    for ref in objects:
        for rel in RELATIONS:
            found = [o for o in objects if o is not ref and relation(o, ref) == rel]
            if len(found) == 1:
                text = f"what color is the shape {rel} the {ref.color} {ref.shape}?"
                options.append(Question(text, "relation", "color", found[0].color, (found[0], ref)))
    return _pick(options, rng)


def _relation_yes_no(objects: list[WorldObject], rng: np.random.Generator) -> Question | None:
    """ "is the red circle above the green star?", half yes, half no."""
    if len(objects) < 2:
        return None
    i, j = (int(k) for k in rng.choice(len(objects), size=2, replace=False))
    a, b = objects[i], objects[j]
    true = relation(a, b)
    asked = true if rng.random() < 0.5 else str(rng.choice([r for r in RELATIONS if r != true]))
    text = f"is the {a.color} {a.shape} {asked} the {b.color} {b.shape}?"
    return Question(text, "relation", "yes/no", "yes" if asked == true else "no", (a, b))


def _relation(objects: list[WorldObject], rng: np.random.Generator) -> Question | None:
    """One of the two relation forms at random, the other when the first does not fit."""
    askers = [_relation_color, _relation_yes_no]
    if rng.random() < 0.5:
        askers.reverse()
    return askers[0](objects, rng) or askers[1](objects, rng)


_ASKERS: list[Asker] = [_what_color, _what_shape, _how_many, _is_there, _what_size, _relation]
