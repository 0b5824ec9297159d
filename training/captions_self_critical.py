"""Self-critical training, the captioner's second stage: batches of images, N captions sampled
for each (`training.self_critical`), each rewarded by the recipe's mix (`training.rewards`:
CIDEr-D against the training references, BLEU-4, or the shapes world's truth check) against
its baseline (the mean of the image's other samples, or its greedy caption's reward).

The best epoch is the one whose validation captions score best by what is rewarded, with
the same weights: correctness for `truth`, CIDEr for `cider_d`, BLEU-4 for `bleu4`.

Under the mean baseline an image whose samples all score alike gives no gradient, and once
the captioner is good that is most images (with the bundled shapes captioner, 436 of 480
training images: nearly all with one or two objects). `informative_share` draws that share of
each batch in proportion to the spread of each image's rewards when it was last drawn (a
floor keeps every image in reach; the uniform rest of the batch finds the images not drawn
yet), so the steps go to the images that still teach: prioritised replay (Schaul et al.,
2016) with the rewards' spread as the priority.
"""

import math
from pathlib import Path

import torch
from torch import Tensor, nn

from models.captioner import Captioner, attention_supervision
from models.decoding import greedy
from models.text import decode
from training.attention_targets import phrase_targets, target_mask, train_instances
from training.captions import CaptionTask
from training.config import TrainConfig
from training.data.shapes_scene import WorldObject
from training.hard_attention import sampled_locations, self_critical_terms
from training.loop import bucketed_batches
from training.rewards import build_reward
from training.self_critical import Samples, mean_of_others, sample_with_grad, self_critical_loss

# The validation figure that stands for each reward when the best epoch is chosen.
VALIDATION_METRIC = {"truth": "correct", "cider_d": "CIDEr", "bleu4": "Bleu_4"}
SPREAD_FLOOR = 0.01  # the priority of an image whose samples agreed, against up to 0.5


class SelfCriticalTask(CaptionTask):
    def __init__(self, cfg: TrainConfig, data: Path) -> None:
        super().__init__(cfg, data)
        self.reward = build_reward(cfg.reward, data, self.train_set.records)
        if "truth" in cfg.reward and self.instances is None:
            raise ValueError(
                "the truth reward is judged on validation correctness, which needs"
                f" {data / 'annotations' / 'instances_val.json'} (the shapes world)"
            )
        self.train_objects = train_instances(data) if cfg.attention_supervision else {}
        self.informative = round(cfg.informative_share * cfg.batch_size)
        # the standard deviation of each image's rewards when last drawn; 0 before that
        self.spread = torch.zeros(len(self.train_set.records))

    def batches(self, epoch: int) -> list[list[int]]:
        """Batches of images (the training records), each to be sampled N times: the part
        of each batch drawn uniformly (`loss` adds the informative part), as many batches
        as without it."""
        records, size = len(self.train_set.records), self.cfg.batch_size
        uniform = bucketed_batches([0] * records, size - self.informative, self.cfg.seed, epoch)
        return uniform[: math.ceil(records / size)]

    def state_dict(self) -> dict[str, Tensor]:
        return {"spread": self.spread}

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        self.spread = state["spread"].clone()

    def loss(self, model: nn.Module, batch: list[int], device: torch.device) -> Tensor:
        """Sampled captions rewarded against their baseline, plus, if set, attention
        supervision on the phrases the samples write."""
        cfg, n = self.cfg, self.cfg.self_critical_samples
        if self.informative:  # drawn with the run's generator, which a resume restores
            priority = self.spread + SPREAD_FLOOR
            batch = batch + torch.multinomial(priority, self.informative).tolist()
        records = [self.train_set.records[i] for i in batch]
        image_ids = [r.image_id for r in records]
        grids = self.train_set.source.many(image_ids, [r.path for r in records])
        head, grids = self.stepwise(model, grids.to(device), "self_critical_samples")
        with sampled_locations(head, len(image_ids) * n, cfg, device) as locations:
            samples = sample_with_grad(head, grids, n, cfg.max_caption_len)
        tokens = samples.tokens.tolist()
        rewards = self.rewards([i for i in image_ids for _ in range(n)], tokens, device)
        rewards = rewards.view(-1, n)  # (B, N)
        self.spread[batch] = rewards.std(dim=1, correction=0).cpu()
        if cfg.baseline == "greedy":
            baseline = self.greedy_rewards(head, grids, image_ids, device).unsqueeze(1)  # (B, 1)
        else:
            baseline = mean_of_others(rewards)  # (B, N)
        loss = self_critical_loss(samples.log_probs, samples.mask, rewards, baseline)
        if locations is not None:  # hard attention: the locations are sampled decisions too
            loss = loss + self_critical_terms(locations, samples, rewards, baseline, cfg)
        if cfg.attention_supervision:
            objects = [self.train_objects[i] for i in image_ids for _ in range(n)]
            supervision = self._sampled_phrase_supervision(samples, tokens, objects)
            loss = loss + cfg.attention_supervision * supervision
        return loss

    def rewards(
        self, image_ids: list[int], tokens: list[list[int]], device: torch.device
    ) -> Tensor:
        """The reward (R,) of each caption's word ids (cut at <eos>) about its image."""
        captions = [decode(self.tokenizer, ids) for ids in tokens]
        return torch.tensor(self.reward(image_ids, captions), device=device)

    def greedy_rewards(
        self, head: Captioner, grids: Tensor, image_ids: list[int], device: torch.device
    ) -> Tensor:
        """The reward (B,) of each image's greedy caption, decoded as at test time (eval
        mode, no gradient): the baseline of Rennie et al."""
        was_training = head.training
        head.eval()
        try:
            captions = greedy(head, grids, self.cfg.max_caption_len)
        finally:
            head.train(was_training)
        return self.rewards(image_ids, [c.tokens for c in captions], device)

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
        """The caption metrics, with as `score` the reward's mix of their validation figures
        (`VALIDATION_METRIC`), so that the model kept is the best at what is rewarded."""
        metrics = super().evaluate(model, device)
        weights = self.cfg.reward.items()
        metrics["score"] = sum(w * metrics[VALIDATION_METRIC[name]] for name, w in weights)
        return metrics
