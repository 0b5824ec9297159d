"""Additive soft attention (Bahdanau et al., 2015), as in Show, Attend and Tell (Xu et al., 2015).

e_ti = w^T tanh(W_a a_i + W_h h_{t-1});  alpha_t = softmax_i(e_t);  z_t = sum_i alpha_ti a_i.
W_a a_i does not depend on t, so it is computed once per image (`project`) and reused at every
decoding step. Several decoder states may look at one image (the K beams of a beam search):
they share its annotations, which are broadcast rather than copied, so each step reads them
once per image and the context is one (K x L) @ (L x D) product per image.
"""

import torch
from torch import Tensor, nn


class SoftAttention(nn.Module):
    def __init__(self, feat_dim: int, hidden_dim: int, attn_dim: int) -> None:
        super().__init__()
        self.feat_proj = nn.Linear(feat_dim, attn_dim)  # W_a
        self.hidden_proj = nn.Linear(hidden_dim, attn_dim, bias=False)  # W_h
        self.score = nn.Linear(attn_dim, 1)  # w

    def project(self, features: Tensor) -> Tensor:
        """W_a a_i for every cell, once per image: (B, L, D) -> (B, L, A)."""
        return self.feat_proj(features)

    def forward(self, projected: Tensor, features: Tensor, hidden: Tensor) -> tuple[Tensor, Tensor]:
        """Context (B*K, D) and weights (B*K, L) for B images and B*K states `hidden`, K per
        image in order (rows b*K .. b*K+K-1 look at image b)."""
        b, cells, _ = projected.shape
        k = hidden.size(0) // b
        energy = projected.unsqueeze(1) + self.hidden_proj(hidden).view(b, k, 1, -1)
        alpha = self.score(energy.tanh_()).view(b, k, cells).softmax(dim=-1)  # (B, K, L)
        context = torch.bmm(alpha, features)  # (B, K, D)
        return context.flatten(0, 1), alpha.flatten(0, 1)
