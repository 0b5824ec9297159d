"""Self-critical training, the captioner's second stage: batches of images, N captions sampled
for each (`training.self_critical`), each rewarded when it is true of its image and names
every object (`caption_is_complete`, the shapes world). The best epoch is the one whose
validation captions are most often correct, the thing rewarded, rather than the best CIDEr.
"""

from pathlib import Path

import torch
from torch import Tensor, nn

from models.captioner import attention_supervision
from models.text import decode
from training.attention_targets import phrase_targets, target_mask, train_instances
from training.captions import CaptionTask
from training.config import TrainConfig
from training.data.shapes_grammar import parse_caption
from training.data.shapes_scene import WorldObject
from training.loop import bucketed_batches
from training.metrics.shapes import caption_is_complete
from training.self_critical import Samples, sample_with_grad, self_critical_loss


class SelfCriticalTask(CaptionTask):
    def __init__(self, cfg: TrainConfig, data: Path) -> None:
        super().__init__(cfg, data)
        self.train_objects = train_instances(data)

    def batches(self, epoch: int) -> list[list[int]]:
        """Batches of images (the training records), each to be sampled N times."""
        lengths = [0] * len(self.train_set.records)
        return bucketed_batches(lengths, self.cfg.batch_size, self.cfg.seed, epoch)

    def loss(self, model: nn.Module, batch: list[int], device: torch.device) -> Tensor:
        """Sampled captions rewarded for being true and complete, plus, if set, attention
        supervision on the phrases the samples write."""
        cfg, n = self.cfg, self.cfg.self_critical_samples
        records = [self.train_set.records[i] for i in batch]
        grids = self.train_set.source.many([r.image_id for r in records], [r.path for r in records])
        head, grids = self.stepwise(model, grids.to(device), "self_critical_samples")
        samples = sample_with_grad(head, grids, n, cfg.max_caption_len)
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
            supervision = self._sampled_phrase_supervision(samples, tokens, objects)
            loss = loss + cfg.attention_supervision * supervision
        return loss

    def _sampled_phrase_supervision(
        self, samples: Samples, tokens: list[list[int]], objects: list[list[WorldObject]]
    ) -> Tensor:
        """-log of the attention mass on the objects each sampled phrase can name."""
        grid = self.head.config.grid
        flat = []
        for ids, image_objects, length in zip(
            tokens, objects, samples.mask.sum(dim=1).tolist(), strict=True
        ):
            words = self.tokenizer.convert_ids_to_tokens(ids[:length])
            flat.append(phrase_targets(words, image_objects, grid))
        mask = target_mask(samples.alphas.shape, flat)  # (B*N, T, L)
        return attention_supervision(samples.alphas, mask.to(samples.alphas.device))

    def evaluate(self, model: nn.Module, device: torch.device) -> dict[str, float]:
        metrics = super().evaluate(model, device)
        if "correct" in metrics:  # keep the model best at what is rewarded
            metrics["score"] = metrics["correct"]
        return metrics
