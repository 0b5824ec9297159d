"""Additive soft attention (Bahdanau et al., 2015), as in Show, Attend and Tell (Xu et al., 2015).

e_ti = w^T tanh(W_a a_i + W_h h_{t-1});  alpha_t = softmax_i(e_t);  z_t = sum_i alpha_ti a_i.
W_a a_i does not depend on t, so it is computed once per image (`project`) and reused at every
decoding step, which is most of the attention's cost.
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
        """Context vector (B, D) and attention weights (B, L) for the decoder state `hidden`."""
        energy = torch.tanh(projected + self.hidden_proj(hidden).unsqueeze(1))  # (B, L, A)
        alpha = self.score(energy).squeeze(-1).softmax(dim=-1)  # (B, L)
        context = torch.bmm(alpha.unsqueeze(1), features).squeeze(1)  # (B, D)
        return context, alpha
