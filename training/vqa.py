"""Training the VQA model (attention or concat fusion): `glimpse train vqa`; on the shapes
world the glimpses can be supervised with the objects each question names."""

from pathlib import Path

import torch
from PIL import Image
from torch import Tensor, nn

from drawing.overlays import contact_sheet
from models.captioner import attention_supervision
from models.vqa import VQAConfig, VQAModel
from training.attention_targets import glimpse_targets, target_mask
from training.config import TrainConfig
from training.data.vqa import (
    AnswerVocab,
    VQADataset,
    build_question_vocabulary,
    load_vqa_split,
)
from training.domain import TrainingImages
from training.encoding import attach_images, build_encoder, export_model, head_of
from training.loop import PICTURES, bucketed_batches
from training.metrics.vqa import score_vqa


class VQATask:
    def __init__(self, cfg: TrainConfig, data: Path) -> None:
        self.cfg = cfg
        train = load_vqa_split(data, "train")
        self.val = load_vqa_split(data, "val")
        self.tokenizer = build_question_vocabulary(train, cfg.min_word_count)
        self.answers = AnswerVocab.from_records(train, cfg.num_answers)
        encoder = build_encoder(cfg)
        grid = encoder.grid_size(cfg.image_size)
        head = VQAModel(
            VQAConfig(len(self.tokenizer), len(self.answers), encoder.out_dim, grid, **cfg.model)
        )
        self.model, sources = attach_images(
            cfg, encoder, head, data, {"train": train, "val": self.val}
        )
        self.train_set = VQADataset(train, self.tokenizer, self.answers, **sources["train"])
        self.val_set = VQADataset(self.val, self.tokenizer, self.answers, **sources["val"])
        self.lengths = [len(q) for q in self.train_set.question_tokens]
        self.trained_on = TrainingImages.of(data, train)  # the export's domain check
        self.glimpse_targets = (
            glimpse_targets(data, train, head.config.glimpses, grid)
            if cfg.glimpse_supervision
            else None
        )

    @property
    def head(self) -> VQAModel:
        return head_of(self.model)

    def batches(self, epoch: int) -> list[list[int]]:
        return bucketed_batches(self.lengths, self.cfg.batch_size, self.cfg.seed, epoch)

    def loss(self, model: nn.Module, batch: list[int], device: torch.device) -> Tensor:
        b = self.train_set.batch(batch)
        _, maps, loss = model(
            b.inputs.to(device), b.questions.to(device), b.lengths, b.targets.to(device)
        )
        if self.glimpse_targets is not None:
            targets = target_mask(maps.shape, [self.glimpse_targets[i] for i in batch])
            loss = loss + self.cfg.glimpse_supervision * attention_supervision(
                maps, targets.to(device)
            )
        return loss

    def predict(self, device: torch.device) -> dict[int, str]:
        """The best answer to each validation question, by question id."""
        results = {}
        for start in range(0, len(self.val_set), 256):
            b = self.val_set.batch(range(start, min(start + 256, len(self.val_set))))
            logits, _, _ = self.model(b.inputs.to(device), b.questions.to(device), b.lengths)
            for qid, best in zip(b.question_ids.tolist(), logits.argmax(-1).tolist(), strict=True):
                results[qid] = self.answers[best]
        return results

    def evaluate(self, model: nn.Module, device: torch.device) -> dict[str, float]:
        scores = score_vqa(self.predict(device), self.val)
        by_type = {
            f"accuracy/{kind.replace(' ', '_')}": value
            for kind, value in scores["per_question_type"].items()
        }
        return {"score": scores["overall"], "accuracy": scores["overall"], **by_type}

    def pictures(self, device: torch.device) -> list[tuple[str, Image.Image]]:
        count = min(PICTURES, len(self.val_set))
        b = self.val_set.batch(range(count))
        logits, maps, _ = self.model(b.inputs.to(device), b.questions.to(device), b.lengths)
        h, w = self.head.config.grid
        grids = None if maps is None else maps.reshape(count, -1, h, w).float().cpu().numpy()
        pictures = []
        for row, record in enumerate(self.val[:count]):
            glimpses = [] if grids is None else list(grids[row])
            labels = [f"glimpse {g + 1}" for g in range(len(glimpses))]
            with Image.open(record.path) as image:
                sheet = contact_sheet(image.convert("RGB"), labels, glimpses)
            answer = self.answers[int(logits[row].argmax())]
            pictures.append((f"{record.question} -> {answer}", sheet))
        return pictures

    def export(self, model: nn.Module, path: Path) -> None:
        answers = self.answers.to_json()
        export_model(self.cfg, self.model, "vqa", self.tokenizer, path, answers, self.trained_on)
