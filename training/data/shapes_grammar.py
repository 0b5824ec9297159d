"""Parse a shapes-world caption back into the claims it makes.

The grammar accepts every caption the generator's templates write (docs/shapes-world.md),
with "a"/"an" and a final period tolerated, and also their word-split form without ":" and
"," (what a word-level captioner emits, since the tokenizer drops punctuation as COCO's
convention does), so that a model's output can be checked claim by claim. Anything outside
it is reported as unparseable: for a model that is a wrong caption, not an error.

    caption  := [prefix] body [" on a plain background"]
    prefix   := "there is" | "a picture of" | "an image of"
              | ["there are"] COUNT "shapes" [":"]       (then body is a plain list)
    body     := phrase [relation phrase] {["," | "and"] phrase}
    phrase   := ("a" | "an" | "one" | "a single") [size] colour shape
    relation := ["is"] ("left of" | "right of" | "to the left of" | "to the right of"
                        | "above" | "below")

A relation relates the two phrases beside it only ("A left of B and C" says nothing of C),
and "one"/"a single" before the only phrase claims that the image holds one object.
"""

import re
from dataclasses import dataclass

from training.data.shapes_scene import COLORS, SHAPES, SIZES

COUNT_WORDS = {"one": 1, "two": 2, "three": 3, "four": 4}
_RELATION_SPELLINGS = {
    ("left", "of"): "left of",
    ("right", "of"): "right of",
    ("to", "the", "left", "of"): "left of",
    ("to", "the", "right", "of"): "right of",
    ("above",): "above",
    ("below",): "below",
}
_PREFIXES = (("there", "is"), ("a", "picture", "of"), ("an", "image", "of"))
_SUFFIX = ("on", "a", "plain", "background")
_DETERMINERS = ("a", "an", "one")  # a phrase starts with one of them (or "a single")
_TOKEN = re.compile(r"[a-z]+|[,:]")


@dataclass(frozen=True)
class Phrase:
    """ "a [size] colour shape"; `size` is None when the phrase does not say it."""

    size: str | None
    color: str
    shape: str


@dataclass(frozen=True)
class RelationClaim:
    """`subject` is `relation` `reference`, e.g. (red circle, "left of", blue square)."""

    subject: Phrase
    relation: str
    reference: Phrase


@dataclass(frozen=True)
class ParsedCaption:
    """The claims of one caption; `parseable` False means the caption is outside the grammar
    (then the other fields are empty and `reason` says where parsing stopped)."""

    parseable: bool
    phrases: tuple[Phrase, ...] = ()
    count: int | None = None  # the number of objects the caption says the image holds
    relations: tuple[RelationClaim, ...] = ()
    reason: str = ""


class _Unparseable(Exception):
    pass


def parse_caption(caption: str) -> ParsedCaption:
    """The phrases, count and relation claims of `caption`, or an unparseable result."""
    if not isinstance(caption, str):
        raise TypeError(f"caption must be a str, got {type(caption).__name__}")
    text = caption.strip().lower().removesuffix(".")
    tokens = _TOKEN.findall(text)
    if "".join(tokens) != "".join(text.split()):
        return ParsedCaption(False, reason="unexpected characters")
    try:
        return _Parser(tokens).caption()
    except _Unparseable as error:
        return ParsedCaption(False, reason=str(error))


class _Parser:
    """Recursive descent over the caption's tokens, one method per grammar rule."""

    def __init__(self, tokens: list[str]) -> None:
        self.tokens = tokens
        self.at = 0

    def caption(self) -> ParsedCaption:
        count = self._count_prefix()
        if count is None:
            for prefix in _PREFIXES:
                if self._accept(*prefix):
                    break
        first, determiner = self._phrase()
        phrases = [first]
        relations = []
        relation = self._relation() if count is None else None
        if relation is not None:
            phrases.append(self._phrase()[0])
            relations.append(RelationClaim(first, relation, phrases[-1]))
        while self._accept(",") or self._accept("and") or self._peek() in _DETERMINERS:
            phrases.append(self._phrase()[0])
        self._accept(*_SUFFIX)
        if self.at != len(self.tokens):
            raise _Unparseable(f"unexpected {' '.join(self.tokens[self.at :])!r}")
        if count is not None and count != len(phrases):
            raise _Unparseable(f"says {count} shapes but lists {len(phrases)}")
        if count is None and len(phrases) == 1 and determiner in ("one", "a single"):
            count = 1
        return ParsedCaption(True, tuple(phrases), count, tuple(relations))

    def _count_prefix(self) -> int | None:
        """ "[there are] COUNT shapes[:]" -> COUNT, or None (and nothing consumed)."""
        start = self.at
        self._accept("there", "are")
        word = self._peek()
        if word in COUNT_WORDS and self._accept(word, "shapes"):
            self._accept(":")
            return COUNT_WORDS[word]
        self.at = start
        return None

    def _phrase(self) -> tuple[Phrase, str]:
        """The phrase and its determiner ("one" and "a single" also claim a count of 1)."""
        if self._accept("a", "single"):
            determiner = "a single"
        elif self._peek() in _DETERMINERS:
            determiner = self.tokens[self.at]
            self.at += 1
        else:
            raise _Unparseable(f"expected an object phrase at {self._peek()!r}")
        size = self._take(SIZES) if self._peek() in SIZES else None
        return Phrase(size, self._take(COLORS), self._take(SHAPES)), determiner

    def _relation(self) -> str | None:
        start = self.at
        self._accept("is")
        for spelling, relation in _RELATION_SPELLINGS.items():
            if self._accept(*spelling):
                return relation
        self.at = start
        return None

    def _take(self, words: tuple[str, ...]) -> str:
        word = self._peek()
        if word is None or word not in words:
            raise _Unparseable(f"expected one of {words} at {word!r}")
        self.at += 1
        return word

    def _peek(self) -> str | None:
        return self.tokens[self.at] if self.at < len(self.tokens) else None

    def _accept(self, *words: str) -> bool:
        """Consume `words` if the tokens continue with exactly them."""
        if tuple(self.tokens[self.at : self.at + len(words)]) == words:
            self.at += len(words)
            return True
        return False
