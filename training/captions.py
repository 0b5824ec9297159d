"""Training the Show-Attend-Tell captioner: `glimpse train captions`."""

import json
from pathlib import Path

import torch
from PIL import Image
from torch import Tensor, nn

from models.captioner import Captioner, CaptionerConfig, attention_penalty
from models.decoding import Caption, beam_search, greedy, words_and_maps
from models.text import PAD_ID, decode
from service.overlays import contact_sheet
from training.config import TrainConfig
from training.data.coco import (
    CaptionDataset,
    CaptionRecord,
    build_vocabulary,
    load_caption_split,
)
from training.encoding import EncodedHead, attach_images, build_encoder, export_model, head_of
from training.loop import PICTURES, bucketed_batches
from training.metrics.captions import score_captions
from training.metrics.shapes import caption_correctness


class CaptionTask:
    def __init__(self, cfg: TrainConfig, data: Path) -> None:
        self.cfg = cfg
        train = load_caption_split(data, "train")
        val = load_caption_split(data, "val")  # cached whole: the VQA task shares the cache
        self.val = val[: cfg.eval_max_images]
        instances = data / "annotations" / "instances_val.json"
        self.instances = json.loads(instances.read_text()) if instances.is_file() else None
        self.tokenizer = build_vocabulary(train, cfg.min_word_count)
        encoder = build_encoder(cfg)
        grid = encoder.grid_size(cfg.image_size)
        head = Captioner(CaptionerConfig(len(self.tokenizer), encoder.out_dim, grid, **cfg.model))
        self.model, sources = attach_images(cfg, encoder, head, data, {"train": train, "val": val})
        self.train_set = CaptionDataset(
            train, self.tokenizer, max_length=cfg.max_caption_len, **sources["train"]
        )
        self.val_source = sources["val"]
        self.lengths = [len(ids) for ids in self.train_set.caption_ids]

    @property
    def head(self) -> Captioner:
        return head_of(self.model)

    def batches(self, epoch: int) -> list[list[int]]:
        return bucketed_batches(self.lengths, self.cfg.batch_size, self.cfg.seed, epoch)

    def loss(self, model: nn.Module, batch: list[int], device: torch.device) -> Tensor:
        inputs, captions, _, _ = self.train_set.batch(batch)
        captions = captions.to(device)
        _, alphas, loss = model(
            inputs.to(device), captions, sample_prob=self.cfg.scheduled_sampling
        )
        if self.cfg.alpha_c:
            loss = loss + self.cfg.alpha_c * attention_penalty(alphas, captions[:, 1:] != PAD_ID)
        return loss

    def _decode(self, records: list[CaptionRecord], device: torch.device) -> dict[int, Caption]:
        """The model's caption of each image of `records`, by image id, in batches."""
        self.model.eval()
        val = CaptionDataset(records, self.tokenizer, **self.val_source)
        firsts = [i for i, (_, c) in enumerate(val.pairs) if c == 0]  # one example per image
        results = {}
        for start in range(0, len(firsts), 64):
            chunk = [val[i] for i in firsts[start : start + 64]]
            inputs = torch.stack([x[0] for x in chunk]).to(device)
            grid = self.model.grid(inputs) if isinstance(self.model, EncodedHead) else inputs
            if self.cfg.eval_beam_size > 1:
                out = beam_search(
                    self.head, grid, self.cfg.eval_beam_size, self.cfg.max_caption_len
                )
            else:
                out = greedy(self.head, grid, self.cfg.max_caption_len)
            for (_, _, image_id), caption in zip(chunk, out, strict=True):
                results[image_id] = caption
        return results

    @torch.inference_mode()
    def generate(self, device: torch.device) -> dict[int, str]:
        """Captions of the validation images."""
        captions = self._decode(self.val, device)
        return {i: " ".join(decode(self.tokenizer, c.tokens)) for i, c in captions.items()}

    @torch.inference_mode()
    def pictures(self, device: torch.device) -> list[tuple[str, Image.Image]]:
        records = self.val[:PICTURES]
        captions = self._decode(records, device)
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
        results = self.generate(device)
        references = {r.image_id: r.captions for r in self.val}
        scores = score_captions(results, references, use_java=False)  # fast; `evaluate` is exact
        metrics = {"score": scores["CIDEr"], **scores}
        if self.instances is not None:  # the shapes world: is each caption true?
            metrics["correct"] = caption_correctness(results, self.instances)["accuracy"]
        return metrics

    def export(self, model: nn.Module, path: Path) -> None:
        export_model(self.cfg, self.model, "captioner", self.tokenizer, path)
