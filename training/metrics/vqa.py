"""VQA accuracy by the rules of the official VQA v2 evaluation (Antol et al. 2015, Goyal et al.
2017), written from those rules.

A predicted answer is compared with the 10 human answers after one normalisation
(`normalize_answer`); the accuracy of one question is the mean, over the 10 subsets of 9
human answers that leave one out, of min(1, #humans in the subset who gave it / 3).

Two deliberate points where this differs from the letter of the official script:
- Answers are always normalised. The official script skips normalisation when all 10 humans
  agree, which only matters for unnormalised references (the released ones are normalised),
  and there it would score "yes." wrong against ten "yes".
- Results for questions not in `records` are ignored rather than rejected, so that a subset
  of a split can be scored; a question in `records` without a result is an error.
"""

import re
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from itertools import combinations
from typing import Protocol

# Punctuation the official rules remove or turn into a space; apostrophes (contractions),
# periods (numbers), colons and the rest are left alone here.
_PUNCTUATION = ';/[]"{}()=+\\_-><@`,?!'
_COMMA_BETWEEN_DIGITS = re.compile(r"\d,\d")
# A period is stripped unless a digit follows it ("3.5" stays, "yes." and "5." lose it).
_PERIOD_NOT_BEFORE_DIGIT = re.compile(r"\.(?!\d)")
_ARTICLES = frozenset({"a", "an", "the"})
_NUMBER_WORDS = {
    word: str(value)
    for value, word in enumerate(
        ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten"]
    )
} | {"none": "0"}

# Contractions as they should be written. Every spelling that drops some of the apostrophes
# maps to the proper one ("dont" -> "don't", "couldnt've" -> "couldn't've"). Contractions whose
# apostrophe-free spelling is another word ("we'd" / "wed", "it's" / "its", "i'll" / "ill",
# "let's" / "lets") are left out so that the word is never rewritten.
_PROPER_CONTRACTIONS = """
ain't aren't can't could've couldn't couldn't've didn't doesn't don't hadn't hadn't've hasn't
haven't he'd he'd've he's how'd how'll how's i'd've i'm i've isn't it'd it'd've it'll ma'am
mightn't mightn't've might've mustn't must've needn't not've o'clock oughtn't 'ow's'at shan't
she'd've she's should've shouldn't shouldn't've somebody'd somebody'd've somebody'll
somebody's someone'd someone'd've someone'll someone's something'd something'd've
something'll that's there'd there'd've there're there's they'd they'd've they'll they're
they've 'twas wasn't we'd've we've weren't what'll what're what's what've when's where'd
where's where've who'd who'd've who'll who's who've why'll why're why's won't would've
wouldn't wouldn't've y'all y'all'll y'all'd've you'd you'd've you'll you're you've
"""


def _apostrophe_drops(word: str) -> Iterable[str]:
    """Every spelling of `word` with a non-empty subset of its apostrophes removed."""
    positions = [i for i, char in enumerate(word) if char == "'"]
    for k in range(1, len(positions) + 1):
        for dropped in combinations(positions, k):
            yield "".join(char for i, char in enumerate(word) if i not in dropped)


_CONTRACTION_FIXES = {
    variant: proper
    for proper in _PROPER_CONTRACTIONS.split()
    for variant in _apostrophe_drops(proper)
}


def _process_punctuation(text: str) -> str:
    """Remove punctuation glued to a space or inside "1,000"; elsewhere it splits words."""
    remove = _COMMA_BETWEEN_DIGITS.search(text) is not None
    out = text
    for mark in _PUNCTUATION:
        glued = remove or f"{mark} " in text or f" {mark}" in text
        out = out.replace(mark, "" if glued else " ")
    return _PERIOD_NOT_BEFORE_DIGIT.sub("", out)


def _process_words(text: str) -> str:
    """Lower case, number words to digits, articles dropped, contractions given apostrophes."""
    kept = []
    for word in text.lower().split():
        word = _NUMBER_WORDS.get(word, word)
        if word not in _ARTICLES:
            kept.append(_CONTRACTION_FIXES.get(word, word))
    return " ".join(kept)


def normalize_answer(answer: str) -> str:
    """The form in which answers are compared ("Two dogs." -> "2 dogs")."""
    text = answer.replace("\n", " ").replace("\t", " ").strip()
    return _process_words(_process_punctuation(text))


def question_accuracy(prediction: str, human_answers: Sequence[str]) -> float:
    """Mean over leave-one-out subsets of min(1, matches / 3): 3 of 10 agreeing gives 0.9."""
    n = len(human_answers)
    if n < 2:
        raise ValueError(f"VQA accuracy needs at least 2 human answers, got {n}")
    predicted = normalize_answer(prediction)
    matches = sum(normalize_answer(a) == predicted for a in human_answers)
    # Leaving out a matching answer leaves matches - 1 in the subset, any other leaves matches.
    left_out_match = matches * min(1.0, (matches - 1) / 3)
    left_out_other = (n - matches) * min(1.0, matches / 3)
    return (left_out_match + left_out_other) / n


class AnsweredQuestion(Protocol):
    """What scoring needs of a question (a `training.data.vqa.VQARecord` has it)."""

    question_id: int
    answers: list[str]
    answer_type: str
    question_type: str


def score_vqa(results: Mapping[int, str], records: Iterable[AnsweredQuestion]) -> dict:
    """Accuracy in [0, 1] overall, per answer type and per question type.

    Returns {"overall": float, "per_answer_type": {type: float},
    "per_question_type": {type: float}, "num_questions": int}.
    """
    records = list(records)
    if not records:
        raise ValueError("no questions to score")
    missing = [r.question_id for r in records if r.question_id not in results]
    if missing:
        raise ValueError(f"{len(missing)} questions have no result, e.g. question_id {missing[0]}")
    by_answer_type: dict[str, list[float]] = defaultdict(list)
    by_question_type: dict[str, list[float]] = defaultdict(list)
    scores = []
    for record in records:
        if not record.answers:
            raise ValueError(f"question {record.question_id} has no human answers to score")
        accuracy = question_accuracy(results[record.question_id], record.answers)
        scores.append(accuracy)
        by_answer_type[record.answer_type].append(accuracy)
        by_question_type[record.question_type].append(accuracy)
    return {
        "overall": _mean(scores),
        "per_answer_type": {k: _mean(v) for k, v in sorted(by_answer_type.items())},
        "per_question_type": {k: _mean(v) for k, v in sorted(by_question_type.items())},
        "num_questions": len(scores),
    }


def _mean(values: list[float]) -> float:
    return sum(values) / len(values)
