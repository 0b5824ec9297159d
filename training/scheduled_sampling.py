"""Scheduled sampling (Bengio et al., 2015): teacher forcing that now and then feeds the
decoder its own previous word instead of the reference's, so that training sees some of the
mistakes decoding will have to recover from.

A training policy, not part of the model: it drives the captioner's `prepare` and `step`
like the decoders of `models.decoding` do.
"""

import torch
from torch import Tensor

from models.captioner import Captioner


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
