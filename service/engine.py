"""Inference over loaded model directories: one encoder pass per image feeds both heads.

The engine owns no I/O and no concurrency: it turns decoded RGB images into captions and
answers with their attention maps. Batching and HTTP live above it.
"""

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from models.captioner import Captioner
from models.checkpoint import Checkpoint, EncoderSpec, load_pretrained
from models.decoding import DecodeOptions, decode_captions, words_and_maps
from models.encoders import Encoder, encode_in_chunks
from models.preprocess import images_to_batch
from models.text import UNK_ID, encode, pad_questions
from models.vqa import VQAModel


@dataclass
class CaptionResult:
    caption: str
    words: list[str]
    attention: np.ndarray  # (len(words), h, w), one map per word
    score: float  # log-probability of the caption


@dataclass
class AnswerResult:
    question: str
    answer: str
    top_k: list[tuple[str, float]]  # (answer, probability), best first
    attention: np.ndarray | None  # (glimpses, h, w); None for the concat baseline


def as_lists(maps: np.ndarray, decimals: int = 4) -> list:
    """Attention maps as nested lists of short floats, for JSON."""
    return maps.astype(np.float64).round(decimals).tolist()


def _encoder_key(spec: EncoderSpec, checkpoint: Checkpoint) -> tuple:
    """Heads whose encoders are built the same way share one encoder and one forward pass."""
    fine_tuned = None
    if checkpoint.encoder_state is not None:  # same weights in two files still share
        digest = hashlib.sha256()
        for name, tensor in sorted(checkpoint.encoder_state.items()):
            digest.update(name.encode())
            digest.update(tensor.numpy().tobytes())
        fine_tuned = digest.hexdigest()
    return (spec.name, spec.image_size, json.dumps(spec.options, sort_keys=True), fine_tuned)


class Engine:
    def __init__(
        self,
        captioner: Checkpoint | None = None,
        vqa: Checkpoint | None = None,
        threads: int | None = None,
    ) -> None:
        if captioner is None and vqa is None:
            raise ValueError("the engine needs at least one model")
        if threads:
            torch.set_num_threads(threads)
        self.captioner, self.vqa = captioner, vqa
        self._encoders: dict[tuple, tuple[Encoder, int]] = {}
        self._keys: dict[str, tuple] = {}
        for kind, checkpoint in (("captioner", captioner), ("vqa", vqa)):
            if checkpoint is None:
                continue
            key = _encoder_key(checkpoint.encoder, checkpoint)
            if key not in self._encoders:
                encoder = checkpoint.build_encoder().fold_batchnorm()
                self._encoders[key] = (encoder, checkpoint.encoder.image_size)
            self._keys[kind] = key

    @classmethod
    def from_dirs(
        cls, caption_dir: Path | None, vqa_dir: Path | None, threads: int | None = None
    ) -> "Engine":
        captioner = load_pretrained(caption_dir) if caption_dir else None
        vqa = load_pretrained(vqa_dir) if vqa_dir else None
        return cls(captioner, vqa, threads)

    @property
    def grids(self) -> dict[str, tuple[int, int]]:
        heads = {"captioner": self.captioner, "vqa": self.vqa}
        return {kind: c.model.config.grid for kind, c in heads.items() if c is not None}

    @torch.inference_mode()
    def encode(self, images: Sequence[Image.Image]) -> dict[tuple, Tensor]:
        """The grid (B, L, D) of every distinct encoder the loaded heads need."""
        # In chunks of a few images on CPU: measured faster than one pass (encode_in_chunks).
        return {
            key: encode_in_chunks(encoder, images_to_batch(images, size))[0]
            for key, (encoder, size) in self._encoders.items()
        }

    @torch.inference_mode()
    def caption(
        self,
        images: Sequence[Image.Image],
        beam_size: int = 3,
        max_length: int = 30,
        features: dict[tuple, Tensor] | None = None,
    ) -> list[CaptionResult]:
        if self.captioner is None:
            raise RuntimeError("no captioner is loaded")
        features = features or self.encode(images)
        grid = features[self._keys["captioner"]]  # (B, L, D)
        model, tokenizer = self.captioner.model, self.captioner.tokenizer
        if not isinstance(model, Captioner):
            raise TypeError(
                f"{self.captioner.name} is a {self.captioner.kind} model, not a captioner"
            )
        captions = decode_captions(model, grid, DecodeOptions(beam_size, max_length))
        results = []
        for c in captions:
            words, maps = words_and_maps(c, tokenizer, model.config.grid)
            results.append(CaptionResult(" ".join(words), words, maps, c.score))
        return results

    @torch.inference_mode()
    def answer(
        self,
        images: Sequence[Image.Image],
        questions: Sequence[Sequence[str]],
        top_k: int = 5,
        features: dict[tuple, Tensor] | None = None,
    ) -> list[list[AnswerResult]]:
        """Answers to questions[i] about images[i]; all questions go through one forward pass."""
        if self.vqa is None:
            raise RuntimeError("no VQA model is loaded")
        model, answers = self.vqa.model, self.vqa.answers
        if not isinstance(model, VQAModel) or answers is None:
            raise TypeError(f"{self.vqa.name} is a {self.vqa.kind} model, not a VQA model")
        if len(images) != len(questions):
            raise ValueError("one list of questions per image")
        features = features or self.encode(images)
        grid = features[self._keys["vqa"]]  # (B, L, D)
        owner = torch.tensor([i for i, qs in enumerate(questions) for _ in qs], dtype=torch.long)
        flat = [q for qs in questions for q in qs]
        if not flat:
            return [[] for _ in questions]
        ids = [encode(self.vqa.tokenizer, q, add_special=False) or [UNK_ID] for q in flat]
        padded, lengths = pad_questions([torch.tensor(x) for x in ids])  # (Q, T), (Q,)
        logits, maps, _ = model(grid[owner], padded, lengths)  # (Q, N), (Q, G, L)
        probs = logits.softmax(dim=-1)
        k = min(top_k, probs.size(1))
        top_p, top_i = probs.topk(k, dim=1)
        h, w = model.config.grid
        results: list[list[AnswerResult]] = [[] for _ in questions]
        for row, question in enumerate(flat):
            ranked = [(answers[i], float(p)) for p, i in zip(top_p[row], top_i[row], strict=True)]
            attention = None if maps is None else maps[row].reshape(-1, h, w).float().numpy()
            results[int(owner[row])].append(AnswerResult(question, ranked[0][0], ranked, attention))
        return results
