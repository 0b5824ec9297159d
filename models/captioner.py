"""Show, Attend and Tell (Xu et al., 2015): a recurrent decoder with soft or hard attention.

At step t the first recurrent layer reads [E y_{t-1}; beta_t * z_t], where z_t is the
attention context and beta_t = sigmoid(f_beta(h_{t-1})) the gating scalar of section 4.2.1;
the initial state comes from MLPs of the mean annotation (and, with `count_maps` K, K counts:
sums of sigmoid maps over the grid, so that a caption's first words, which say how many
shapes there are, need not read a number out of a mean); the word distribution is the deep
output layer p(y_t) ~ exp(L_o(E y_{t-1} + L_h h_t + L_z z_t)) (eq. 7).

The paper's decoder is one LSTM layer, the default. `cell="gru"` (Cho et al., 2014) has no
memory cell and a quarter fewer weights; with `num_layers` N > 1 each layer reads the new h of
the one below, and the attention, the gate and the deep output read the top layer's h, so the
image enters at the bottom and the words leave from the top. Cell modules (not a fused
nn.LSTM) so that decoding can run one step at a time and dynamic quantisation finds them.

`attention="hard"` is the paper's stochastic model (section 4.1): z_t is the annotation of one
location s_t chosen from alpha_t, by the location policy set on the model (`locating`): the
most likely cell unless a caller sets another, so every decoder is deterministic and unchanged;
training sets a sampler (training/hard_attention.py). The weights are the soft model's, so
either kind of model can start from the other.
"""

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from models.attention import (
    LocationPolicy,
    SoftAttention,
    annotations_at,
    count_gates,
    counts,
    most_likely,
)
from models.grid import GridAdapter
from models.text import PAD_ID

# The decoder state: tensors whose first dimension is the decoder row, each (rows, N, H) for
# N layers: (h, c) for an LSTM, (h,) for a GRU; with coverage, then the summed past alphas
# (rows, 1, L), so that beams reorder it with the rest.
State = tuple[Tensor, ...]
CELLS: dict[str, type[nn.LSTMCell] | type[nn.GRUCell]] = {"lstm": nn.LSTMCell, "gru": nn.GRUCell}
ATTENTION = ("soft", "hard")


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
    dropout: float = 0.3  # also between recurrent layers
    cell: str = "lstm"  # or "gru"
    num_layers: int = 1
    attention: str = "soft"  # or "hard": one location per word (Xu et al., section 4.1)
    word_query: bool = False  # the attention query reads y_{t-1} too (models/attention.py)
    coverage: bool = False  # the attention reads the summed past alphas (models/attention.py)
    count_maps: int = 0  # the initial state also reads K count maps' sums (models/attention.py)

    def __post_init__(self) -> None:
        h, w = self.grid  # JSON gives a list
        self.grid = (h, w)
        if self.attention not in ATTENTION:
            raise ValueError(f"attention must be one of {ATTENTION}, got {self.attention!r}")
        if self.cell not in CELLS:
            raise ValueError(f"cell must be one of {tuple(CELLS)}, got {self.cell!r}")
        if not (isinstance(self.num_layers, int) and self.num_layers >= 1):
            raise ValueError(f"num_layers must be a whole number >= 1, got {self.num_layers!r}")
        if not (isinstance(self.count_maps, int) and self.count_maps >= 0):
            raise ValueError(f"count_maps must be a whole number >= 0, got {self.count_maps!r}")

    @property
    def state_parts(self) -> int:
        """Tensors in the recurrent state: h and c for an LSTM, h for a GRU."""
        return 2 if self.cell == "lstm" else 1


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
        layers, hidden = cfg.num_layers, cfg.hidden_dim
        # One MLP per state part (h, then c) giving every layer's initial value at once.
        self.init_state = nn.ModuleList(
            nn.Linear(cfg.d_model + cfg.count_maps, layers * hidden) for _ in range(cfg.state_parts)
        )
        word_dim = cfg.embed_dim if cfg.word_query else 0
        self.attention = SoftAttention(cfg.d_model, hidden, cfg.attn_dim, word_dim, cfg.coverage)
        self.f_beta = nn.Linear(hidden, 1)
        inputs = [cfg.embed_dim + cfg.d_model] + [hidden] * (layers - 1)
        self.cells = nn.ModuleList(CELLS[cfg.cell](size, hidden) for size in inputs)
        self.out_h = nn.Linear(cfg.hidden_dim, cfg.embed_dim)  # L_h
        self.out_z = nn.Linear(cfg.d_model, cfg.embed_dim)  # L_z
        self.out = nn.Linear(cfg.embed_dim, cfg.vocab_size)  # L_o
        self.dropout = nn.Dropout(cfg.dropout)
        self.locate: LocationPolicy = most_likely  # hard attention's choice of cell
        if cfg.count_maps:  # made last, so the other weights start as without it
            self.count = count_gates(cfg.d_model, cfg.count_maps)

    @contextmanager
    def locating(self, policy: LocationPolicy) -> Iterator[LocationPolicy]:
        """Hard attention chooses its cells by `policy` within the block (e.g. training's
        sampler), then by the policy it had before."""
        previous, self.locate = self.locate, policy
        try:
            yield policy
        finally:
            self.locate = previous

    def prepare(self, features: Tensor) -> Prepared:
        """Adapt the raw encoder grid (B, L, feat_dim) and compute the initial state."""
        annotations = self.adapter(features)  # (B, L, d)
        summary = annotations.mean(dim=1)  # (B, d)
        if self.config.count_maps:
            summary = torch.cat([summary, counts(self.count, annotations)], dim=1)  # (B, d + K)
        shape = (summary.size(0), self.config.num_layers, self.config.hidden_dim)
        state = tuple(torch.tanh(init(summary)).view(shape) for init in self.init_state)
        if self.config.coverage:
            state += (annotations.new_zeros(summary.size(0), 1, annotations.size(1)),)  # (B, 1, L)
        return Prepared(annotations, self.attention.project(annotations), state)

    def step(self, tokens: Tensor, prepared: Prepared) -> tuple[Tensor, State, Tensor]:
        """One step: previous words (B*K,) -> logits (B*K, V), new state, alpha (B*K, L)."""
        top = prepared.state[0][:, -1]  # h_{t-1} of the top layer (B*K, H)
        emb = self.embed(tokens)  # (B*K, E)
        parts = self.config.state_parts
        coverage = prepared.state[parts][:, 0] if self.config.coverage else None  # (B*K, L)
        alpha = self.attention.weights(prepared.projected, top, emb, coverage)  # (B*K, L)
        context = self.glimpse(alpha, prepared.features)  # (B*K, d)
        gated = torch.sigmoid(self.f_beta(top)) * context  # (B, d)
        state = self.recur(torch.cat([emb, gated], dim=1), prepared.state[:parts])
        if coverage is not None:
            state += ((coverage + alpha).unsqueeze(1),)
        h = state[0][:, -1]  # h_t of the top layer (B, H)
        deep = emb + self.out_h(self.dropout(h)) + self.out_z(gated)  # (B, E)
        return self.out(self.dropout(deep)), state, alpha

    def glimpse(self, alpha: Tensor, features: Tensor) -> Tensor:
        """The context z_t (B*K, d) under the weights alpha (B*K, L) over features (B, L, d):
        soft, the expected annotation; hard, the annotation of the cell the location policy
        picks, or the expected one in the rows the policy says (training's variance trick)."""
        if self.config.attention == "soft":
            return self.attention.context(alpha, features)
        where = self.locate(alpha)
        context = annotations_at(features, where.cells)
        if where.expected is not None:
            expected = self.attention.context(alpha, features)
            context = torch.where(where.expected.unsqueeze(1), expected, context)
        return context

    def recur(self, inputs: Tensor, state: State) -> State:
        """The cell stack's step: the first layer reads `inputs` (B, I), each layer above the
        new h of the one below (through dropout); returns the new state, (B, N, H) each."""
        layers = []
        for i, cell in enumerate(self.cells):
            if i > 0:
                inputs = self.dropout(inputs)
            previous = tuple(part[:, i] for part in state)  # (B, H) each
            if self.config.cell == "lstm":
                new = cell(inputs, previous)  # (h, c)
            else:
                new = (cell(inputs, previous[0]),)  # (h,)
            layers.append(new)
            inputs = new[0]
        return tuple(torch.stack(parts, dim=1) for parts in zip(*layers, strict=True))

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
