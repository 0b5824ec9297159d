"""Scoring a split: the standard metrics, plus the shapes world's exact checks when its
instance annotations are there (caption correctness and the pointing game)."""

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from training.data.coco import CaptionRecord
from training.data.vqa import VQARecord
from training.metrics.captions import score_captions
from training.metrics.shapes import caption_correctness, caption_grounding, vqa_grounding
from training.metrics.vqa import score_vqa

WordMaps = Sequence[tuple[str, np.ndarray]]  # a caption as (word, (h, w) map) pairs


def _annotations(root: Path, name: str, split: str) -> dict | None:
    path = root / "annotations" / f"{name}_{split}.json"
    return json.loads(path.read_text()) if path.is_file() else None


def caption_report(
    results: Mapping[int, str],
    records: Sequence[CaptionRecord],
    root: Path,
    split: str,
    attention: Mapping[int, WordMaps] | None = None,
) -> dict:
    """BLEU-1..4, METEOR, ROUGE-L, CIDEr; on the shapes world also correctness and grounding."""
    references = {r.image_id: r.captions for r in records}
    report: dict = {"num_images": len(results), **score_captions(results, references)}
    instances = _annotations(root, "instances", split)
    if instances is not None:
        report["correctness"] = caption_correctness(results, instances)
        if attention is not None:
            report["grounding"] = caption_grounding(attention, instances)
    return report


def vqa_report(
    results: Mapping[int, str],
    records: Sequence[VQARecord],
    root: Path,
    split: str,
    attention: Mapping[int, np.ndarray] | None = None,
) -> dict:
    """Official VQA accuracy; on the shapes world also the pointing game of the glimpses."""
    report = score_vqa(results, records)
    instances = _annotations(root, "instances", split)
    answers = _annotations(root, "answers", split)
    if attention and instances is not None and answers is not None:
        report["grounding"] = vqa_grounding(attention, answers, instances)
    return report
