"""Training the Show-Attend-Tell captioner: `glimpse train captions`."""

import json
from pathlib import Path

import torch
from PIL import Image
from torch import Tensor, nn

from models.captioner import Captioner, CaptionerConfig, attention_penalty, attention_supervision
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
from training.data.shapes_scene import objects_from_coco
from training.encoding import EncodedHead, attach_images, build_encoder, export_model, head_of
from training.loop import PICTURES, bucketed_batches
from training.metrics.captions import score_captions
from training.metrics.shapes import (
    Instances,
    caption_correctness,
    caption_grounding,
    cells_in_box,
    phrase_objects,
)


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
        self.targets = None
        if cfg.attention_supervision:
            instances = data / "annotations" / "instances_train.json"
            if not instances.is_file():
                raise ValueError(
                    f"attention_supervision needs {instances}: the objects each caption names"
                )
            self.targets = attention_targets(
                self.train_set, json.loads(instances.read_text()), grid
            )

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
        if self.targets is not None:
            mask = torch.zeros(alphas.shape, dtype=torch.bool)  # (B, T-1, L)
            for row, example in zip(mask, batch, strict=True):
                row.view(-1)[self.targets[example]] = True
            supervision = attention_supervision(alphas, mask.to(device))
            loss = loss + self.cfg.attention_supervision * supervision
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

    @torch.inference_mode()
    def evaluate(self, model: nn.Module, device: torch.device) -> dict[str, float]:
        captions = self._decode(self.val, device)
        results = {i: " ".join(decode(self.tokenizer, c.tokens)) for i, c in captions.items()}
        references = {r.image_id: r.captions for r in self.val}
        scores = score_captions(results, references, use_java=False)  # fast; `evaluate` is exact
        metrics = {"score": scores["CIDEr"], **scores}
        if self.instances is not None:  # the shapes world: is each caption true, and grounded?
            metrics["correct"] = caption_correctness(results, self.instances)["accuracy"]
            grid = self.head.config.grid
            attention = {
                i: list(zip(*words_and_maps(c, self.tokenizer, grid), strict=True))
                for i, c in captions.items()
            }
            metrics["grounding"] = caption_grounding(attention, self.instances)["hit_rate"]
        return metrics

    def export(self, model: nn.Module, path: Path) -> None:
        export_model(self.cfg, self.model, "captioner", self.tokenizer, path)


def attention_targets(
    dataset: CaptionDataset, instances: Instances, grid: tuple[int, int]
) -> list[Tensor]:
    """For each (image, caption) pair, where its attention should be while it writes an
    object's phrase: flat (step * L + cell) indices into its (T-1, L) attention maps, the
    cells on the objects that fit the phrase so far (`phrase_objects`)."""
    objects = objects_from_coco(instances)
    sizes = {int(i["id"]): (float(i["width"]), float(i["height"])) for i in instances["images"]}
    cells = grid[0] * grid[1]
    targets = []
    for (record_index, _), ids in zip(dataset.pairs, dataset.caption_ids, strict=True):
        image_id = dataset.records[record_index].image_id
        words = dataset.tokenizer.convert_ids_to_tokens(ids[1:].tolist())  # step t writes ids[t+1]
        flat = [
            step * cells + cell
            for step, fitting in phrase_objects(words, objects[image_id]).items()
            for cell in {c for o in fitting for c in cells_in_box(o.box, grid, *sizes[image_id])}
        ]
        targets.append(torch.tensor(flat, dtype=torch.long))
    return targets
