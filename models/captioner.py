"""Show, Attend and Tell (Xu et al., 2015): an LSTM decoder with soft attention over the grid.

At step t the LSTM reads [E y_{t-1}; beta_t * z_t], where z_t is the attention context and
beta_t = sigmoid(f_beta(h_{t-1})) the gating scalar of section 4.2.1; h_0 and c_0 come from
MLPs of the mean annotation; the word distribution is the deep output layer
p(y_t) ~ exp(L_o(E y_{t-1} + L_h h_t + L_z z_t)) (eq. 7).
"""

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from models.attention import SoftAttention
from models.grid import GridAdapter
from models.text import PAD_ID

# The recurrent state: tensors whose first dimension is the decoder row (h and c for an LSTM).
State = tuple[Tensor, ...]


@dataclass
class CaptionerConfig:
    vocab_size: int
    feat_dim: int  # channels of the encoder grid
    grid: tuple[int, int] = (16, 16)
    d_model: int = 256  # annotation vectors after the grid adapter
    embed_dim: int = 256
    hidden_dim: int = 512
    attn_dim: int = 128
    conv_layers: int = 0
    dropout: float = 0.3

    def __post_init__(self) -> None:
        h, w = self.grid  # JSON gives a list
        self.grid = (h, w)


@dataclass
class Prepared:
    """Per-image work done once before decoding: annotations, W_a a_i, initial state.

    `state` has K rows per image (K = 1 unless beams were added), rows b*K .. b*K+K-1 for
    image b; the beams of an image share its annotations.
    """

    features: Tensor  # (B, L, d_model)
    projected: Tensor  # (B, L, attn_dim)
    state: State  # (B*K, ...) each

    def beams(self, k: int) -> "Prepared":
        """K decoder states per image, each starting from the image's initial state."""
        state = tuple(s.repeat_interleave(k, 0) for s in self.state)
        return Prepared(self.features, self.projected, state)

    def rows(self, rows: Tensor) -> "Prepared":
        """The same images with the decoder states `rows` (B*K,), e.g. the beams kept."""
        return Prepared(self.features, self.projected, tuple(s[rows] for s in self.state))

    def images(self, idx: Tensor) -> "Prepared":
        """Keep the images `idx` (B',) and their states, in that order."""
        k = self.state[0].size(0) // self.features.size(0)
        rows = (idx.unsqueeze(1) * k + torch.arange(k, device=idx.device)).flatten()
        kept = Prepared(self.features[idx], self.projected[idx], self.state)
        return kept.rows(rows)


class Captioner(nn.Module):
    def __init__(self, config: CaptionerConfig) -> None:
        super().__init__()
        self.config = cfg = config
        self.adapter = GridAdapter(cfg.feat_dim, cfg.d_model, cfg.grid, cfg.conv_layers)
        self.embed = nn.Embedding(cfg.vocab_size, cfg.embed_dim, padding_idx=PAD_ID)
        self.init_h = nn.Linear(cfg.d_model, cfg.hidden_dim)
        self.init_c = nn.Linear(cfg.d_model, cfg.hidden_dim)
        self.attention = SoftAttention(cfg.d_model, cfg.hidden_dim, cfg.attn_dim)
        self.f_beta = nn.Linear(cfg.hidden_dim, 1)
        self.lstm = nn.LSTMCell(cfg.embed_dim + cfg.d_model, cfg.hidden_dim)
        self.out_h = nn.Linear(cfg.hidden_dim, cfg.embed_dim)  # L_h
        self.out_z = nn.Linear(cfg.d_model, cfg.embed_dim)  # L_z
        self.out = nn.Linear(cfg.embed_dim, cfg.vocab_size)  # L_o
        self.dropout = nn.Dropout(cfg.dropout)

    def prepare(self, features: Tensor) -> Prepared:
        """Adapt the raw encoder grid (B, L, feat_dim) and compute the initial LSTM state."""
        annotations = self.adapter(features)  # (B, L, d)
        mean = annotations.mean(dim=1)  # (B, d)
        state = (torch.tanh(self.init_h(mean)), torch.tanh(self.init_c(mean)))  # (B, H) x 2
        return Prepared(annotations, self.attention.project(annotations), state)

    def step(self, tokens: Tensor, prepared: Prepared) -> tuple[Tensor, State, Tensor]:
        """One step: previous words (B*K,) -> logits (B*K, V), new state, alpha (B*K, L)."""
        h, c = prepared.state
        context, alpha = self.attention(prepared.projected, prepared.features, h)  # (B*K, d|L)
        gated = torch.sigmoid(self.f_beta(h)) * context  # (B, d)
        emb = self.embed(tokens)  # (B, E)
        h, c = self.lstm(torch.cat([emb, gated], dim=1), (h, c))  # (B, H)
        deep = emb + self.out_h(self.dropout(h)) + self.out_z(gated)  # (B, E)
        return self.out(self.dropout(deep)), (h, c), alpha

    def forward(
        self, features: Tensor, inputs: Tensor, targets: Tensor | None = None
    ) -> tuple[Tensor, Tensor, Tensor | None]:
        """Teacher-forced pass: the word fed at each step is given, never the model's own
        (training policies that feed it its own words drive `prepare` and `step` instead).

        inputs (B, T): the words fed, captions <bos> w_1 .. <eos> <pad>.. without their last
        position; targets (B, T), when given: the words to write, the same without <bos>.
        Returns logits (B, T, V), alphas (B, T, L), and `caption_loss` (or None).
        """
        prepared = self.prepare(features)
        logits, alphas = [], []
        for t in range(inputs.size(1)):
            step_logits, prepared.state, alpha = self.step(inputs[:, t], prepared)
            logits.append(step_logits)
            alphas.append(alpha)
        logits_t = torch.stack(logits, dim=1)  # (B, T, V)
        loss = None if targets is None else caption_loss(logits_t, targets)
        return logits_t, torch.stack(alphas, dim=1), loss


def caption_loss(logits: Tensor, targets: Tensor) -> Tensor:
    """Mean cross-entropy of logits (B, T, V) against the words targets (B, T), pads left out."""
    return F.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=PAD_ID)


def attention_penalty(alphas: Tensor, mask: Tensor) -> Tensor:
    """Doubly stochastic regularisation: sum_i (1 - sum_t alpha_ti)^2, averaged over images.

    alphas (B, T, L), mask (B, T) true on real words. The paper's lambda belongs to the
    training step: the shapes world measured lambda = 0 as better (docs/architecture.md).
    """
    coverage = (alphas * mask.unsqueeze(-1)).sum(dim=1)  # (B, L)
    return ((1.0 - coverage) ** 2).sum(dim=1).mean()


def attention_supervision(alphas: Tensor, targets: Tensor) -> Tensor:
    """Mean of -log(attention mass on the target cells) over the supervised steps.

    Supervised attention (Liu et al., 2017, "Attention Correctness in Neural Image
    Captioning"): where the data says which object a word names, the map the word is
    written with should lie on that object. alphas (B, T, L); targets (B, T, L) bool, all
    false at steps without a target. Mass rather than a fixed target map leaves the
    attention free to peak anywhere on the object.
    """
    supervised = targets.any(dim=-1)  # (B, T)
    if not supervised.any():
        return alphas.new_zeros(())
    mass = (alphas * targets).sum(dim=-1)[supervised]  # (S,)
    return -mass.clamp_min(1e-6).log().mean()
