"""Teacher forcing, the captioner's first stage: each word is trained given the reference's
previous words, on batches of (image, caption) pairs of similar length.

Optional terms of the loss: the doubly stochastic attention penalty (`alpha_c`), attention
supervision on the reference's phrases (`attention_supervision`, the shapes world), and
scheduled sampling of the inputs (`scheduled_sampling`, at a rate that may ramp up by epoch).
A hard-attention model samples its locations and adds their REINFORCE and entropy terms
(`training.hard_attention`).
"""

from pathlib import Path

import torch
from torch import Tensor, nn

from models.captioner import attention_penalty, attention_supervision, caption_loss
from models.text import PAD_ID
from training.attention_targets import attention_targets, target_mask, train_instances
from training.captions import CaptionTask
from training.config import TrainConfig
from training.hard_attention import HardAttentionLoss, sampled_locations
from training.loop import bucketed_batches
from training.scheduled_sampling import sampling_rate, scheduled_sampling


class TeacherForcingTask(CaptionTask):
    def __init__(self, cfg: TrainConfig, data: Path) -> None:
        super().__init__(cfg, data)
        self.lengths = [len(ids) for ids in self.train_set.caption_ids]
        self.attention_targets = None
        if cfg.attention_supervision:
            objects = train_instances(data)
            grid = self.head.config.grid
            self.attention_targets = attention_targets(self.train_set, objects, grid)
        self.sampling_rate = sampling_rate(cfg, 0)
        self.hard_attention = HardAttentionLoss(cfg)

    def batches(self, epoch: int) -> list[list[int]]:
        """Batches of (image, caption) pairs, bucketed by caption length. The loop asks for
        an epoch's batches as the epoch begins, so the epoch's sampling rate is set here."""
        self.sampling_rate = sampling_rate(self.cfg, epoch)
        return bucketed_batches(self.lengths, self.cfg.batch_size, self.cfg.seed, epoch)

    def loss(self, model: nn.Module, batch: list[int], device: torch.device) -> Tensor:
        cfg = self.cfg
        inputs, captions, _, _ = self.train_set.batch(batch)
        captions = captions.to(device)
        words, targets = captions[:, :-1], captions[:, 1:]  # (B, T-1) each
        with sampled_locations(self.head, len(batch), cfg, device) as locations:
            if cfg.scheduled_sampling:
                head, grid = self.stepwise(model, inputs.to(device), "scheduled_sampling")
                logits, alphas = scheduled_sampling(head, grid, words, self.sampling_rate)
                loss = caption_loss(logits, targets)
            else:
                logits, alphas, loss = model(inputs.to(device), words, targets)
        if locations is not None:
            loss = loss + self.hard_attention(locations, logits, alphas, targets)
        if cfg.alpha_c:
            loss = loss + cfg.alpha_c * attention_penalty(alphas, targets != PAD_ID)
        if self.attention_targets is not None:
            flat = [self.attention_targets[example] for example in batch]
            supervision = attention_supervision(alphas, target_mask(alphas.shape, flat).to(device))
            loss = loss + cfg.attention_supervision * supervision
        return loss

    def evaluate(self, model: nn.Module, device: torch.device) -> dict[str, float]:
        """The validation metrics and, under scheduled sampling, the rate the epoch trained
        with, so that the log shows the ramp beside what it did."""
        metrics = super().evaluate(model, device)
        if self.cfg.scheduled_sampling:
            metrics["scheduled_sampling"] = self.sampling_rate
        return metrics
