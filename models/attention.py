"""Additive attention (Bahdanau et al., 2015), as in Show, Attend and Tell (Xu et al., 2015).

e_ti = w^T tanh(W_a a_i + W_h h_{t-1});  alpha_t = softmax_i(e_t).
With `word_dim`, the query also reads the word just written: + W_e E y_{t-1}. In the paper's
step h_{t-1} was computed before y_{t-1} was chosen, so the map a word is written with cannot
know which colour the caption just committed to; reading y_{t-1} first is the order of
Anderson et al.'s (2018) attention LSTM. W_e starts at zero, so a trained model given it
attends as before until training moves it.
With `coverage`, the energy also reads how much each cell has been attended so far,
+ w_c c_ti with c_t = sum_{t'<t} alpha_t' (Tu et al., 2016; See et al., 2017): a caption that
has described an object can see it has, instead of naming it twice. w_c starts at zero too.
Soft attention's context is the expected annotation z_t = sum_i alpha_ti a_i (section 4.2);
hard attention's is the annotation a_{s_t} of one location s_t chosen from alpha_t (section
4.1), by a `LocationPolicy` the caller sets: the most likely cell by default, a sample while
training (training/hard_attention.py).

W_a a_i does not depend on t, so it is computed once per image (`project`) and reused at every
decoding step. Several decoder states may look at one image (the K beams of a beam search):
they share its annotations, which are broadcast rather than copied, so each step reads them
once per image and the context is one (K x L) @ (L x D) product per image.

Count maps are the unnormalised counterpart: a sigmoid gate per cell, summed over the grid,
keeps how many cells match, which a softmax divides away (Zhang et al., 2018, count from the
attention before its normalisation).
"""

from collections.abc import Callable
from typing import NamedTuple

import torch
from torch import Tensor, nn


class SoftAttention(nn.Module):
    def __init__(
        self,
        feat_dim: int,
        hidden_dim: int,
        attn_dim: int,
        word_dim: int = 0,
        coverage: bool = False,
    ) -> None:
        super().__init__()
        self.feat_proj = nn.Linear(feat_dim, attn_dim)  # W_a
        self.hidden_proj = nn.Linear(hidden_dim, attn_dim, bias=False)  # W_h
        self.word_proj = nn.Linear(word_dim, attn_dim, bias=False) if word_dim else None  # W_e
        if self.word_proj is not None:
            nn.init.zeros_(self.word_proj.weight)
        self.coverage_weight = nn.Parameter(torch.zeros(attn_dim)) if coverage else None  # w_c
        self.score = nn.Linear(attn_dim, 1)  # w

    def project(self, features: Tensor) -> Tensor:
        """W_a a_i for every cell, once per image: (B, L, D) -> (B, L, A)."""
        return self.feat_proj(features)

    def weights(
        self, projected: Tensor, hidden: Tensor, word: Tensor, coverage: Tensor | None = None
    ) -> Tensor:
        """alpha (B*K, L) of B*K states `hidden` over B images, K per image in order (rows
        b*K .. b*K+K-1 look at image b); `word` (B*K, E), the embedded y_{t-1}, is read when
        the attention has W_e, and `coverage` (B*K, L), the summed past alphas, when it has w_c."""
        b, cells, _ = projected.shape
        k = hidden.size(0) // b
        query = self.hidden_proj(hidden)
        if self.word_proj is not None:
            query = query + self.word_proj(word)
        energy = projected.unsqueeze(1) + query.view(b, k, 1, -1)
        if self.coverage_weight is not None:
            if coverage is None:
                raise ValueError("this attention has coverage: pass the summed past alphas")
            energy.addcmul_(coverage.view(b, k, cells, 1), self.coverage_weight)  # in place
        return self.score(energy.tanh_()).view(b, k, cells).softmax(dim=-1).flatten(0, 1)

    def context(self, alpha: Tensor, features: Tensor) -> Tensor:
        """The expected annotation (B*K, D) under alpha (B*K, L), over features (B, L, D)."""
        b, cells, _ = features.shape
        return torch.bmm(alpha.view(b, -1, cells), features).flatten(0, 1)


class Locations(NamedTuple):
    """Where each decoder row looks under hard attention."""

    cells: Tensor  # (R,) the chosen location s_t of each row
    expected: Tensor | None = None  # (R,) bool: rows that take the expected context instead


# Which cells hard attention reads, given each row's weights alpha (R, L).
LocationPolicy = Callable[[Tensor], Locations]


def most_likely(alpha: Tensor) -> Locations:
    """Inference's policy: the cell of highest weight, so that decoding is deterministic."""
    return Locations(alpha.argmax(dim=-1))


def annotations_at(features: Tensor, cells: Tensor) -> Tensor:
    """The annotation of cell cells[r] of the image row r looks at: features (B, L, D) and
    cells (B*K,), K rows per image in order -> (B*K, D)."""
    b = features.size(0)
    images = torch.arange(b, device=cells.device).repeat_interleave(cells.size(0) // b)
    return features[images, cells]


COUNT_BIAS = -4.0  # count maps start near off: each of 256 cells gates ~0.018, a sum ~4.6


def count_gates(in_dim: int, maps: int) -> nn.Linear:
    """The per-cell logits of K count maps, started near off (counted by `counts`)."""
    gates = nn.Linear(in_dim, maps)
    nn.init.constant_(gates.bias, COUNT_BIAS)
    return gates


def counts(gates: nn.Linear, cells: Tensor) -> Tensor:
    """Each count map's count (B, K): the sum over the grid of its sigmoid gates, for the cells
    (B, L, in_dim)."""
    return gates(cells).sigmoid().sum(dim=1)
