"""Caption metrics of the COCO caption evaluation: BLEU-1..4, METEOR, ROUGE-L and CIDEr(-D).

The scorers are those of `pycocoevalcap`, so numbers compare with published ones. Its PTB
tokenizer and METEOR run Java; without a `java` on the PATH, METEOR is left out with a
warning and captions are tokenised by a Python fallback instead (lower case, punctuation
removed), which can move the other scores slightly. SPICE is left out: it needs Stanford
CoreNLP models that it downloads on first use, and this project runs offline.

CIDEr weighs n-grams by their rarity across the evaluated images' references, so it is only
meaningful over many images (on a single image every n-gram weight is zero).
"""

import re
import shutil
import warnings
from collections.abc import Mapping, Sequence

from pycocoevalcap.bleu.bleu import Bleu
from pycocoevalcap.cider.cider import Cider
from pycocoevalcap.meteor.meteor import Meteor
from pycocoevalcap.rouge.rouge import Rouge
from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

# Keys as the COCO caption evaluation names them, so results read like everyone else's.
BLEU_KEYS = ("Bleu_1", "Bleu_2", "Bleu_3", "Bleu_4")
_NOT_WORD = re.compile(r"[^\w\s']+")


def score_captions(
    results: Mapping[int, str],
    references: Mapping[int, Sequence[str]],
    *,
    use_java: bool | None = None,
) -> dict[str, float]:
    """Corpus scores of one caption per image against that image's references.

    Every image in `results` must have references; references of images without a result are
    ignored. `use_java=None` uses Java when it is installed and warns when it is not;
    `use_java=False` chooses the Python path without a warning.
    Returns {"Bleu_1".."Bleu_4", "METEOR" (with Java only), "ROUGE_L", "CIDEr"}.
    """
    image_ids = _check_inputs(results, references)
    if use_java is None:
        use_java = shutil.which("java") is not None
        if not use_java:
            warnings.warn("no Java: METEOR skipped, captions tokenised in Python", stacklevel=2)
    candidates = {i: [str(results[i])] for i in image_ids}
    truths = {i: [str(ref) for ref in references[i]] for i in image_ids}
    tokenize = _ptb_tokenize if use_java else _python_tokenize
    candidates, truths = tokenize(candidates), tokenize(truths)

    bleu, _ = Bleu(4).compute_score(truths, candidates, verbose=0)
    scores = dict(zip(BLEU_KEYS, bleu, strict=True))
    if use_java:
        scores["METEOR"] = _meteor(truths, candidates)
    scores["ROUGE_L"], _ = Rouge().compute_score(truths, candidates)
    scores["CIDEr"], _ = Cider().compute_score(truths, candidates)
    return {name: float(value) for name, value in scores.items()}


def _check_inputs(results: Mapping[int, str], references: Mapping[int, Sequence[str]]) -> list:
    if not results:
        raise ValueError("no captions to score")
    without_refs = [i for i in results if not references.get(i)]
    if without_refs:
        raise ValueError(
            f"{len(without_refs)} images have no reference captions, e.g. image_id "
            f"{without_refs[0]}"
        )
    return sorted(results)


def _ptb_tokenize(captions: dict[int, list[str]]) -> dict[int, list[str]]:
    return PTBTokenizer().tokenize(
        {i: [{"caption": text} for text in texts] for i, texts in captions.items()}
    )


def _python_tokenize(captions: dict[int, list[str]]) -> dict[int, list[str]]:
    """Stand-in for the PTB tokenizer: lower case, punctuation other than apostrophes gone."""
    return {
        i: [" ".join(_NOT_WORD.sub(" ", text.lower()).split()) for text in texts]
        for i, texts in captions.items()
    }


def _meteor(truths: dict[int, list[str]], candidates: dict[int, list[str]]) -> float:
    scorer = Meteor()  # starts one Java process, stopped when `scorer` is collected
    try:
        score, _ = scorer.compute_score(truths, candidates)
    except ValueError as error:
        raise RuntimeError(f"the METEOR Java process gave no score ({error})") from error
    finally:
        # compute_score holds this lock while it talks to Java; a failure would leave it held
        # and the scorer's cleanup would wait on it forever.
        if scorer.lock.locked():
            scorer.lock.release()
    return score
