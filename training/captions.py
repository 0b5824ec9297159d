"""Training the Show-Attend-Tell captioner: `glimpse train captions`."""

import json
from dataclasses import asdict
from pathlib import Path

import torch
from PIL import Image
from torch import Tensor, nn
from transformers import PreTrainedTokenizerFast

from drawing.overlays import contact_sheet
from models.captioner import Captioner, CaptionerConfig, attention_penalty, attention_supervision
from models.checkpoint import load_pretrained
from models.decoding import Caption, beam_search, greedy, words_and_maps
from models.text import PAD_ID, decode
from training.config import TrainConfig
from training.data.coco import (
    CaptionDataset,
    CaptionRecord,
    build_vocabulary,
    load_caption_split,
)
from training.data.shapes_grammar import parse_caption
from training.data.shapes_scene import CANVAS_SIZE, WorldObject, objects_from_coco
from training.encoding import (
    EncodedHead,
    attach_images,
    build_encoder,
    encoder_spec,
    export_model,
    head_of,
)
from training.loop import PICTURES, bucketed_batches
from training.metrics.captions import score_captions
from training.metrics.shapes import (
    caption_correctness,
    caption_grounding,
    caption_is_complete,
    cells_in_box,
    phrase_objects,
)
from training.self_critical import sample_with_grad, self_critical_loss


class CaptionTask:
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
        self.lengths = [len(ids) for ids in self.train_set.caption_ids]
        self.targets = self.train_objects = None
        if cfg.attention_supervision or cfg.self_critical_samples:
            self.train_objects = train_instances(data)
        if cfg.attention_supervision and not cfg.self_critical_samples:
            self.targets = attention_targets(self.train_set, self.train_objects, grid)

    @property
    def head(self) -> Captioner:
        return head_of(self.model)

    def batches(self, epoch: int) -> list[list[int]]:
        """Batches of (image, caption) pairs; of images when sampling captions."""
        if self.cfg.self_critical_samples:
            lengths = [0] * len(self.train_set.records)
            return bucketed_batches(lengths, self.cfg.batch_size, self.cfg.seed, epoch)
        return bucketed_batches(self.lengths, self.cfg.batch_size, self.cfg.seed, epoch)

    def loss(self, model: nn.Module, batch: list[int], device: torch.device) -> Tensor:
        if self.cfg.self_critical_samples:
            return self._self_critical_loss(model, batch, device)
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

    def _self_critical_loss(
        self, model: nn.Module, batch: list[int], device: torch.device
    ) -> Tensor:
        """Sampled captions rewarded for being true and complete (`caption_is_complete`),
        plus, if set, attention supervision on the phrases the samples write."""
        if not isinstance(model, Captioner):
            raise ValueError("self-critical training runs in one process (no DDP, no compile)")
        cfg = self.cfg
        n = cfg.self_critical_samples
        records = [self.train_set.records[i] for i in batch]
        grids = self.train_set.source.many([r.image_id for r in records], [r.path for r in records])
        samples = sample_with_grad(model, grids.to(device), n, cfg.max_caption_len)
        tokens = samples.tokens.tolist()
        objects = [self.train_objects[r.image_id] for r in records for _ in range(n)]
        rewards = torch.tensor(
            [
                float(caption_is_complete(parse_caption(" ".join(decode(self.tokenizer, ids))), o))
                for ids, o in zip(tokens, objects, strict=True)
            ],
            device=device,
        )  # (B*N,)
        loss = self_critical_loss(samples.log_probs, samples.mask, rewards.view(-1, n))
        if cfg.attention_supervision:
            grid = self.head.config.grid
            mask = torch.zeros(samples.alphas.shape, dtype=torch.bool)  # (B*N, T, L)
            for row, ids, image_objects, length in zip(
                mask, tokens, objects, samples.mask.sum(dim=1).tolist(), strict=True
            ):
                words = self.tokenizer.convert_ids_to_tokens(ids[:length])
                row.view(-1)[phrase_targets(words, image_objects, grid)] = True
            supervision = attention_supervision(samples.alphas, mask.to(device))
            loss = loss + cfg.attention_supervision * supervision
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
            if self.cfg.self_critical_samples:  # keep the model best at what is rewarded
                metrics["score"] = metrics["correct"]
        return metrics

    def export(self, model: nn.Module, path: Path) -> None:
        export_model(self.cfg, self.model, "captioner", self.tokenizer, path)


def train_instances(data: Path) -> dict[int, list[WorldObject]]:
    """The objects of each training image, which rewards and attention targets are made of."""
    instances = data / "annotations" / "instances_train.json"
    if not instances.is_file():
        raise ValueError(
            f"attention_supervision and self_critical_samples need {instances}:"
            " the objects of each training image (the shapes world)"
        )
    return objects_from_coco(json.loads(instances.read_text()))


def start_from(cfg: TrainConfig) -> tuple[Captioner, PreTrainedTokenizerFast]:
    """The head and vocabulary of the exported captioner `cfg.init_from`, to go on training it."""
    path = cfg.init_from
    if cfg.model:
        raise ValueError("init_from brings the model's own config: drop the model=... setting")
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
    return checkpoint.model.float(), checkpoint.tokenizer


def phrase_targets(
    words: list[str], objects: list[WorldObject], grid: tuple[int, int]
) -> list[int]:
    """Flat (step * L + cell) indices of where the attention should be while `words` are
    written: the cells on the objects that fit each phrase so far (`phrase_objects`)."""
    cells = grid[0] * grid[1]
    return [
        step * cells + cell
        for step, fitting in phrase_objects(words, objects).items()
        for cell in {
            c for o in fitting for c in cells_in_box(o.box, grid, CANVAS_SIZE, CANVAS_SIZE)
        }
    ]


def attention_targets(
    dataset: CaptionDataset, objects: dict[int, list[WorldObject]], grid: tuple[int, int]
) -> list[Tensor]:
    """`phrase_targets` of each (image, caption) pair of the data set (step t writes word
    t + 1 of <bos> w_1 .. w_n <eos>)."""
    targets = []
    for (record_index, _), ids in zip(dataset.pairs, dataset.caption_ids, strict=True):
        image_id = dataset.records[record_index].image_id
        words = dataset.tokenizer.convert_ids_to_tokens(ids[1:].tolist())
        flat = phrase_targets(words, objects[image_id], grid)
        targets.append(torch.tensor(flat, dtype=torch.long))
    return targets
