"""Which word a sampling step draws: temperature, top-k and nucleus (top-p) filtering, then an
inverse-CDF draw from one uniform per row.

Each row's uniforms come from its own image's generator, drawn image by image, so a seeded
request gets the same words whatever other requests share its batch.
"""

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class Sampling:
    """softmax(logits / temperature) restricted to the `top_k` likeliest words (0 = all) and to
    the fewest likeliest words whose mass reaches `top_p` (1 = all)."""

    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0

    def __post_init__(self) -> None:
        if not self.temperature > 0:
            raise ValueError("temperature must be > 0; use greedy decoding for temperature 0")
        if self.top_k < 0:
            raise ValueError("top_k must be >= 0 (0 keeps every word)")
        if not 0 < self.top_p <= 1:
            raise ValueError("top_p must be in (0, 1]")


def filtered_probs(logits: Tensor, sampling: Sampling) -> Tensor:
    """The distribution a step draws from, (B, V) -> (B, V), zero outside top-k and top-p."""
    # Shifted so that the largest is 0: no overflow to inf at tiny temperatures.
    scaled = (logits - logits.max(dim=-1, keepdim=True).values) / sampling.temperature  # (B, V)
    if 0 < sampling.top_k < scaled.size(-1):
        kth = scaled.topk(sampling.top_k, dim=-1).values[:, -1:]  # (B, 1)
        scaled = scaled.masked_fill(scaled < kth, float("-inf"))
    probs = scaled.softmax(dim=-1)  # (B, V)
    if sampling.top_p < 1:
        ranked, order = probs.sort(dim=-1, descending=True)  # (B, V) each
        likelier = ranked.cumsum(dim=-1) - ranked  # mass of the words ranked above each
        drop = torch.zeros_like(probs, dtype=torch.bool).scatter(
            1, order, likelier >= sampling.top_p
        )
        probs = probs.masked_fill(drop, 0.0)  # the likeliest word always stays
    return probs


def draw(probs: Tensor, uniforms: Tensor) -> Tensor:
    """Inverse CDF: per row, the first word whose cumulative mass exceeds u x total.

    probs (B, V) unnormalised, uniforms (B,) in [0, 1) -> words (B,); a word of mass 0 is never
    drawn.
    """
    cdf = probs.cumsum(dim=-1)  # (B, V)
    target = (uniforms * cdf[:, -1]).unsqueeze(1)  # (B, 1)
    return torch.searchsorted(cdf, target, right=True).squeeze(1).clamp_max(probs.size(1) - 1)


def uniforms(
    generators: Sequence[torch.Generator | None], per_image: int, device: torch.device
) -> Tensor:
    """`per_image` uniforms from each image's (CPU) generator, image by image: (B * per_image,).

    A None generator draws from torch's global one."""
    first = generators[0] if generators else None
    if all(g is first for g in generators):  # one shared generator (or none): one call
        return torch.rand(len(generators) * per_image, generator=first).to(device)
    return torch.cat([torch.rand(per_image, generator=g) for g in generators]).to(device)
