"""Self-critical sequence training (Rennie et al., 2017): fine-tune a captioner on a reward of
its own sampled captions instead of on the likelihood of the references.

Teacher forcing trains each word given the reference's previous words, never the model's
own, so a model can score well per word and still write a caption whose phrases do not fit
together (one object named twice, a colour borrowed from a neighbour). Sampling whole
captions and rewarding the ones that are right trains the decisions a caption is judged by.
Each sample is measured against a baseline: the mean reward of the other samples of its
image (`mean_of_others`; Kool et al., 2019, "Buy 4 REINFORCE samples, get a baseline for
free"), or the reward of the image's greedy caption (Rennie et al.'s own choice, which costs
one more decoding pass per image).
"""

from dataclasses import dataclass

import torch
from torch import Tensor

from models.captioner import Captioner
from models.text import BOS_ID, EOS_ID


@dataclass
class Samples:
    """N sampled captions per image, rows b*N .. b*N+N-1 for image b, padded to T steps."""

    tokens: Tensor  # (B*N, T) word ids; after <eos> the ids are filler
    log_probs: Tensor  # (B*N, T) log p of each sampled id, with gradient
    alphas: Tensor  # (B*N, T, L) the attention each id was written with
    mask: Tensor  # (B*N, T) true up to and with <eos>


def sample_with_grad(
    model: Captioner,
    features: Tensor,
    samples_per_image: int,
    max_len: int,
    generator: torch.Generator | None = None,
) -> Samples:
    """Draw `samples_per_image` captions of each image (B, L, D) from the model, keeping the
    graph of their log-probabilities (models.decoding.sample is for inference, without it)."""
    prepared = model.prepare(features).beams(samples_per_image)  # K = N rows per image
    rows = features.size(0) * samples_per_image
    tokens = torch.full((rows,), BOS_ID, dtype=torch.long, device=features.device)
    done = torch.zeros(rows, dtype=torch.bool, device=features.device)
    out_tokens, out_log_probs, out_alphas, out_mask = [], [], [], []
    for _ in range(max_len):
        logits, prepared.state, alpha = model.step(tokens, prepared)  # (R, V), (R, L)
        log_probs = logits.log_softmax(dim=-1)  # (R, V)
        tokens = torch.multinomial(log_probs.detach().exp(), 1, generator=generator).squeeze(1)
        out_mask.append(~done)  # a step counts while its caption is still being written
        out_tokens.append(tokens)
        out_log_probs.append(log_probs.gather(1, tokens.unsqueeze(1)).squeeze(1))
        out_alphas.append(alpha)
        done = done | (tokens == EOS_ID)
        if done.all():
            break
    return Samples(
        torch.stack(out_tokens, 1),
        torch.stack(out_log_probs, 1),
        torch.stack(out_alphas, 1),
        torch.stack(out_mask, 1),
    )


def mean_of_others(rewards: Tensor) -> Tensor:
    """The leave-one-out baseline (B, N) of rewards (B, N): each sample's siblings' mean."""
    n = rewards.size(1)
    if n < 2:
        raise ValueError("a baseline of the other samples needs at least 2 samples per image")
    return (rewards.sum(dim=1, keepdim=True) - rewards) / (n - 1)


def self_critical_loss(
    log_probs: Tensor, mask: Tensor, rewards: Tensor, baseline: Tensor
) -> Tensor:
    """REINFORCE with a baseline, averaged over the sampled words.

    log_probs, mask (B*N, T); rewards (B, N); baseline (B, N), or (B, 1) for one per image.
    A sample better than its baseline has its words made more likely, a worse one less; a
    sample as good as its baseline moves nothing.
    """
    advantage = (rewards - baseline).flatten().unsqueeze(1)  # (B*N, 1)
    weights = mask.float()
    return -(advantage * log_probs * weights).sum() / weights.sum().clamp_min(1.0)
