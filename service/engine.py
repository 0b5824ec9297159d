"""Inference over loaded model directories: one encoder pass per image feeds both heads.

The engine owns no I/O and no concurrency: it turns decoded RGB images into captions and
answers with their attention maps. Batching and HTTP live above it.
"""

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor
from transformers import PreTrainedTokenizerFast

from models.captioner import Captioner
from models.checkpoint import Checkpoint, EncoderSpec, load_pretrained
from models.decoding import (
    Caption,
    DecodeOptions,
    Generators,
    decode_captions,
    word_probabilities,
    words_and_maps,
)
from models.encoders import Encoder, encode_in_chunks
from models.preprocess import images_to_batch
from models.text import UNK_ID, encode, pad_questions
from models.vqa import VQAModel
from service.domain import DomainPolicy, DomainVerdict, judge, unknown_words
from service.labels import Labeller, LabelsResult, find_labeller


@dataclass
class CaptionResult:
    caption: str
    words: list[str]
    attention: np.ndarray  # (len(words), h, w), one map per word
    score: float  # log-probability of the caption
    domain: DomainVerdict | None = None  # None: no domain check
    probs: np.ndarray = field(default_factory=lambda: np.ones(0))  # (len(words),) p of each
    alternatives: list["CaptionResult"] = field(default_factory=list)  # the next best, in order
    labels: LabelsResult | None = None  # what the encoder recognises, for an out-of-domain image
    cells: np.ndarray | None = None  # (len(words), 2) hard attention's (row, col) per word


@dataclass
class AnswerResult:
    question: str
    answer: str
    top_k: list[tuple[str, float]]  # (answer, probability), best first
    attention: np.ndarray | None  # (glimpses, h, w); None for the concat baseline
    domain: DomainVerdict | None = None  # of the image; None: no domain check
    unknown_words: list[str] = field(default_factory=list)  # read as <unk>
    labels: LabelsResult | None = None  # of the image, when it is out of the domain


def _spoken(
    caption: Caption, tokenizer: PreTrainedTokenizerFast, grid: tuple[int, int], hard: bool
) -> CaptionResult:
    """A decoded caption as words, with each word's attention map and probability, and under
    hard attention the cell each word read: its map's peak, the cell decoding chose."""
    words, maps = words_and_maps(caption, tokenizer, grid)
    probs = word_probabilities(caption, tokenizer)
    cells = None
    if hard:
        peaks = maps.reshape(len(words), grid[0] * grid[1]).argmax(axis=1)
        cells = np.stack(np.unravel_index(peaks, grid), axis=1)  # (T, 2)
    return CaptionResult(" ".join(words), words, maps, caption.score, probs=probs, cells=cells)


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
        self.domain_policy: DomainPolicy = "warn"
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
        # ImageNet labels from the captioner's encoder, else the VQA model's, when it has a head.
        self.labeller: Labeller | None = find_labeller(self._encoders, list(self._keys.values()))
        self.labels_top_k = 3  # labels given with an out-of-domain answer (0: none)

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

    def labels(
        self, images: Sequence[Image.Image], top_k: int = 5, features: dict | None = None
    ) -> list[LabelsResult]:
        """The top_k ImageNet classes of each image with their maps, from the labeller's grid."""
        if self.labeller is None:
            raise RuntimeError("no loaded encoder has an ImageNet head")
        features = features or self.encode(images)
        return self.labeller.labels(features[self.labeller.key], top_k)

    def encoder_key(self, kind: str) -> tuple:
        """Which of `encode`'s grids the head `kind` reads."""
        return self._keys[kind]

    def encoder_for(self, kind: str) -> tuple[Encoder, int]:
        """The encoder the head `kind` reads and the image side it takes."""
        return self._encoders[self._keys[kind]]

    def judge(self, kind: str, grid: Tensor) -> list[DomainVerdict | None]:
        """Whether each grid (B, L, D) of `kind`'s encoder lies in that head's domain."""
        checkpoint = self.captioner if kind == "captioner" else self.vqa
        if checkpoint is None:
            raise RuntimeError(f"no {kind} is loaded")
        return judge(checkpoint, grid, self.domain_policy)

    @torch.inference_mode()
    def caption(
        self,
        images: Sequence[Image.Image],
        beam_size: int = 3,
        max_length: int = 30,
        features: dict[tuple, Tensor] | None = None,
        *,
        decoding: DecodeOptions | None = None,
        generators: Generators = None,
    ) -> list[CaptionResult]:
        """Captions of `images`: `beam_size` and `max_length` are the short way to say how to
        decode, `decoding` the full one (sampling, several captions); `generators` as in
        `decode_captions`."""
        if self.captioner is None:
            raise RuntimeError("no captioner is loaded")
        features = features or self.encode(images)
        grid = features[self._keys["captioner"]]  # (B, L, D)
        model, tokenizer = self.captioner.model, self.captioner.tokenizer
        if not isinstance(model, Captioner):
            raise TypeError(
                f"{self.captioner.name} is a {self.captioner.kind} model, not a captioner"
            )
        options = decoding or DecodeOptions(beam_size, max_length)
        captions = decode_captions(model, grid, options, generators)
        results = []
        shape, hard = model.config.grid, model.config.attention == "hard"
        for c, verdict in zip(captions, self.judge("captioner", grid), strict=True):
            best, *others = (_spoken(x, tokenizer, shape, hard) for x in [c, *c.alternatives])
            results.append(replace(best, domain=verdict, alternatives=others))
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
        verdicts = self.judge("vqa", grid)
        vocabulary = self.vqa.tokenizer.get_vocab()  # a new dict per call: build it once
        for row, question in enumerate(flat):
            ranked = [(answers[i], float(p)) for p, i in zip(top_p[row], top_i[row], strict=True)]
            attention = None if maps is None else maps[row].reshape(-1, h, w).float().numpy()
            i, unknown = int(owner[row]), unknown_words(vocabulary, question)
            answer = AnswerResult(question, ranked[0][0], ranked, attention, verdicts[i], unknown)
            results[i].append(answer)
        return results
