"""Scheduled sampling (Bengio et al., 2015): teacher forcing that now and then feeds the
decoder its own previous word instead of the reference's, so that training sees some of the
mistakes decoding will have to recover from.

A training policy, not part of the model: it drives the captioner's `prepare` and `step`
like the decoders of `models.decoding` do. The paper raises the probability as training goes
on (its "schedule"), since early on the model's own words are mostly noise: here a ramp by
epoch, the recipe's `scheduled_sampling_*` fields.
"""

import torch
from torch import Tensor

from models.captioner import Captioner
from training.config import TrainConfig


def sampling_rate(cfg: TrainConfig, epoch: int) -> float:
    """The probability of feeding the model its own word in `epoch` (0-based): none before
    `scheduled_sampling_start`, then `_step` more at the start of every `_every` epochs, up to
    `scheduled_sampling`."""
    if epoch < cfg.scheduled_sampling_start:
        return 0.0
    rises = (epoch - cfg.scheduled_sampling_start) // cfg.scheduled_sampling_every + 1
    return min(cfg.scheduled_sampling, rises * cfg.scheduled_sampling_step)


def scheduled_sampling(
    model: Captioner, features: Tensor, inputs: Tensor, prob: float
) -> tuple[Tensor, Tensor]:
    """Logits (B, T, V) and alphas (B, T, L) of a pass over the grid (B, L, D) fed inputs
    (B, T) (<bos> first), where each input after <bos> is replaced, with probability `prob`,
    by the word the previous step found most likely."""
    prepared = model.prepare(features)
    logits, alphas = [], []
    tokens = inputs[:, 0]  # (B,)
    for t in range(inputs.size(1)):
        if t > 0:
            own = logits[-1].argmax(dim=-1)  # (B,)
            swap = torch.rand(own.shape, device=own.device) < prob  # (B,)
            tokens = torch.where(swap, own, inputs[:, t])
        step_logits, prepared.state, alpha = model.step(tokens, prepared)  # (B, V), (B, L)
        logits.append(step_logits)
        alphas.append(alpha)
    return torch.stack(logits, dim=1), torch.stack(alphas, dim=1)
