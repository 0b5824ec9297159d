"""Results files in the evaluation servers' format: a JSON list of one object per item.

COCO captions are `[{"image_id": int, "caption": str}, ...]` and VQA answers
`[{"question_id": int, "answer": str}, ...]`: the same shape with other names, so one reader
and one writer serve both, checked hard enough that a bad file fails before any scoring.
"""

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class ResultsFormat:
    key: str  # the integer id of each entry
    value: str  # the string it maps to


CAPTIONS = ResultsFormat("image_id", "caption")
ANSWERS = ResultsFormat("question_id", "answer")


def load_results(path: Path, form: ResultsFormat) -> dict[int, str]:
    """Read a results file of `form`: id -> caption or answer."""
    try:
        entries = json.loads(Path(path).read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}: not valid JSON ({error})") from error
    if not isinstance(entries, list):
        raise ValueError(f"{path}: expected a JSON list of {{{form.key}, {form.value}}} objects")
    results: dict[int, str] = {}
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict):
            raise ValueError(f"{path}: entry {i} is not an object")
        key, value = entry.get(form.key), entry.get(form.value)
        if not isinstance(key, int) or isinstance(key, bool):
            raise ValueError(f"{path}: entry {i} needs an integer {form.key}")
        if not isinstance(value, str):
            raise ValueError(f"{path}: entry {i} needs a string {form.value}")
        if key in results:
            raise ValueError(f"{path}: {form.key} {key} appears twice")
        results[key] = value
    return results


def write_results(path: Path, results: Mapping[int, str], form: ResultsFormat) -> None:
    """Write id -> caption or answer as a results file of `form`, ready for the server."""
    rows = [{form.key: key, form.value: value} for key, value in results.items()]
    Path(path).write_text(json.dumps(rows))
