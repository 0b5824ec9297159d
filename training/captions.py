"""What every way of training the captioner shares: the data, the vocabulary, the model (new,
or an exported one to go on training), validation decoding, pictures and export.

The regimes differ only in their batches and their loss: teacher forcing
(`training.captions_teacher_forcing`) and self-critical training
(`training.captions_self_critical`); `training.tasks` picks one from the recipe.
"""

import json
from dataclasses import asdict, replace
from pathlib import Path

import torch
from PIL import Image
from torch import Tensor, nn
from transformers import PreTrainedTokenizerFast

from drawing.overlays import contact_sheet
from models.captioner import Captioner, CaptionerConfig
from models.checkpoint import load_pretrained
from models.decoding import Caption, DecodeOptions, decode_captions, words_and_maps
from models.text import decode
from training.config import TrainConfig
from training.data.coco import (
    CaptionDataset,
    CaptionRecord,
    build_vocabulary,
    load_caption_split,
)
from training.domain import TrainingImages
from training.encoding import (
    EncodedHead,
    attach_images,
    build_encoder,
    encoder_spec,
    export_model,
    head_of,
)
from training.loop import PICTURES
from training.metrics.captions import score_captions
from training.metrics.shapes import caption_correctness, caption_grounding


class CaptionTask:
    """The captioner's data and model; a regime subclasses it with `batches` and `loss`."""

    def __init__(self, cfg: TrainConfig, data: Path) -> None:
        self.cfg = cfg
        train = load_caption_split(data, "train")
        val = load_caption_split(data, "val")  # cached whole: the VQA task shares the cache
        self.val = val[: cfg.eval_max_images]
        instances = data / "annotations" / "instances_val.json"
        self.instances = json.loads(instances.read_text()) if instances.is_file() else None
        encoder = build_encoder(cfg)
        grid = encoder.grid_size(cfg.image_size)
        if cfg.init_from:
            head, self.tokenizer = start_from(cfg)
        else:
            self.tokenizer = build_vocabulary(train, cfg.min_word_count)
            config = CaptionerConfig(len(self.tokenizer), encoder.out_dim, grid, **cfg.model)
            head = Captioner(config)
        self.model, sources = attach_images(cfg, encoder, head, data, {"train": train, "val": val})
        self.train_set = CaptionDataset(
            train, self.tokenizer, max_length=cfg.max_caption_len, **sources["train"]
        )
        self.val_source = sources["val"]
        self.trained_on = TrainingImages.of(data, train)  # the export's domain check

    @property
    def head(self) -> Captioner:
        return head_of(self.model)

    def stepwise(self, model: nn.Module, inputs: Tensor, setting: str) -> tuple[Captioner, Tensor]:
        """The captioner and the grid (B, L, D) of `inputs`, for a `setting` that drives the
        decoder step by step: DDP and torch.compile wrap `forward` only, so it runs in one
        process, on the task's own model."""
        if model is not self.model:
            raise ValueError(f"{setting} runs in one process (no DDP, no compile)")
        if isinstance(model, EncodedHead):
            return model.head, model.encoder(inputs)[0]  # fine-tuning: the encoder learns too
        return self.head, inputs

    def decode(self, records: list[CaptionRecord], device: torch.device) -> dict[int, Caption]:
        """The model's caption of each image of `records`, by image id, in batches."""
        val = CaptionDataset(records, self.tokenizer, **self.val_source)
        # Plain beam search: the recipes choose their checkpoints on the model alone.
        options = DecodeOptions(
            beam_size=self.cfg.eval_beam_size, max_len=self.cfg.max_caption_len, repeat_penalty=0.0
        )
        firsts = [i for i, (_, c) in enumerate(val.pairs) if c == 0]  # one example per image
        results = {}
        for start in range(0, len(firsts), 64):
            chunk = [val[i] for i in firsts[start : start + 64]]
            inputs = torch.stack([x[0] for x in chunk]).to(device)
            grid = self.model.grid(inputs) if isinstance(self.model, EncodedHead) else inputs
            out = decode_captions(self.head, grid, options)
            for (_, _, image_id), caption in zip(chunk, out, strict=True):
                results[image_id] = caption
        return results

    def pictures(self, device: torch.device) -> list[tuple[str, Image.Image]]:
        records = self.val[:PICTURES]
        captions = self.decode(records, device)
        pictures = []
        for record in records:
            words, maps = words_and_maps(
                captions[record.image_id], self.tokenizer, self.head.config.grid
            )
            with Image.open(record.path) as image:
                sheet = contact_sheet(image.convert("RGB"), words, list(maps))
            pictures.append((" ".join(words), sheet))
        return pictures

    def evaluate(self, model: nn.Module, device: torch.device) -> dict[str, float]:
        """CIDEr as the score, the other caption metrics beside it, and on the shapes world
        how many captions are true and how many shape words are looked at."""
        captions = self.decode(self.val, device)
        results = {i: " ".join(decode(self.tokenizer, c.tokens)) for i, c in captions.items()}
        references = {r.image_id: r.captions for r in self.val}
        scores = score_captions(results, references, use_java=False)  # fast; `evaluate` is exact
        metrics = {"score": scores["CIDEr"], **scores}
        if self.instances is not None:
            metrics["correct"] = caption_correctness(results, self.instances)["accuracy"]
            grid = self.head.config.grid
            attention = {
                i: list(zip(*words_and_maps(c, self.tokenizer, grid), strict=True))
                for i, c in captions.items()
            }
            metrics["grounding"] = caption_grounding(attention, self.instances)["hit_rate"]
        return metrics

    def export(self, model: nn.Module, path: Path) -> None:
        export_model(
            self.cfg, self.model, "captioner", self.tokenizer, path, trained_on=self.trained_on
        )


# Model fields that training from an export may switch on: each adds weights that start at
# zero, so the model starts where the export stopped.
GROWN_FROM_ZERO = ("word_query", "coverage")


def start_from(cfg: TrainConfig) -> tuple[Captioner, PreTrainedTokenizerFast]:
    """The head and vocabulary of the exported captioner `cfg.init_from`, to go on training it
    (with the parts `cfg.model` switches on, from `GROWN_FROM_ZERO`)."""
    path = cfg.init_from
    if other := sorted(set(cfg.model) - set(GROWN_FROM_ZERO)):
        raise ValueError(
            f"init_from brings the model's own config: model=... may switch on"
            f" {', '.join(GROWN_FROM_ZERO)} only, not {', '.join(other)}"
        )
    checkpoint = load_pretrained(path)
    if checkpoint.kind != "captioner":
        raise ValueError(f"init_from {path} is a {checkpoint.kind} model, not a captioner")
    if checkpoint.encoder_state is not None:
        raise ValueError(f"init_from {path} has a fine-tuned encoder; start from a frozen one")
    expected = encoder_spec(cfg)
    if (checkpoint.encoder.name, checkpoint.encoder.image_size, checkpoint.encoder.options) != (
        expected.name,
        expected.image_size,
        expected.options,
    ):
        raise ValueError(
            f"init_from {path} was trained on encoder {asdict(checkpoint.encoder)},"
            f" the recipe asks for {asdict(expected)}"
        )
    return grown(checkpoint.model.float(), cfg.model), checkpoint.tokenizer


def grown(model: Captioner, changes: dict) -> Captioner:
    """`model` with the config `changes`, its trained weights kept and any new ones at their
    (zero) start; a change that would drop trained weights is refused."""
    if not changes:
        return model
    bigger = Captioner(replace(model.config, **changes))
    _, dropped = bigger.load_state_dict(model.state_dict(), strict=False)
    if dropped:
        raise ValueError(f"model={changes} would drop trained weights: {', '.join(dropped)}")
    return bigger
