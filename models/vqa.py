"""Visual question answering over the encoder grid: a recurrent network reads the question
(an LSTM by default; a GRU, several layers, both directions as options), then

- `concat`: the baseline; the mean-pooled image vector and the question vector are
  concatenated and classified by an MLP (no attention map);
- `attention`: Show, Ask, Attend and Answer (Kazemi and Elqursh, 2017); the question vector is
  tiled over the grid, two 1x1 convolutions give G attention maps (glimpses), and the G
  attended image vectors plus the question vector are classified. With `glimpse_centres`,
  where each glimpse looked is explicit: the cells' coordinates enter the attention, each
  glimpse after the first attends relative to the centre of the one before (a second hop, as
  in stacked attention: "the shape left of the blue square" finds the square, then looks
  left of it), and the classifier reads every glimpse's centre beside its vector (a weighted
  mean of annotations washes their position embeddings out, and relations compare positions).
  The centres are not dropped out: unlike a vector's 256 dimensions, a coordinate has no
  copies, and a yes/no relation needs both glimpses' (with p = 0.3 both survive 49% of the
  time). With `relation_dim` R, the comparison itself is computed: the glimpses' geometry
  (their centres and the steps between them) through a ReLU layer, multiplied elementwise by
  a projection of the question (low-rank bilinear pooling, Kim et al., 2017), so the question
  picks which comparison matters; a concatenation leaves that product to the classifier.
  With `whole_image`, the classifier also reads the mean of all cells (the concat baseline's
  vector, a glimpse over the whole image): glimpses taught to look at the objects a question
  names hold two of them, and "how many shapes are there?" with four is in neither.
  With `count_maps` K, it also reads K counts: per cell, a sigmoid of the same
  image-question joint the glimpses score, summed over the grid. A softmax normalises the
  number of matching cells away, a sigmoid keeps it (the point of Zhang et al., 2018, who
  count from the attention weights before their normalisation), and the question picks
  what is counted ("how many red shapes?").

Answers are classes (the N most frequent training answers), trained against soft VQA scores.
Unlike SAAA the image cells are not L2-normalised: at d = 256 that left each image dimension
~16x smaller than the question's, and the classifier learned the question priors first
(shapes world, val accuracy after one epoch: 53.8% with it, 70.3% without; docs/training.md).
"""

from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence

from models.attention import count_gates, counts
from models.grid import GridAdapter
from models.text import PAD_ID

FUSIONS = ("attention", "concat")
RNNS: dict[str, type[nn.LSTM] | type[nn.GRU]] = {"lstm": nn.LSTM, "gru": nn.GRU}


@dataclass
class VQAConfig:
    vocab_size: int
    num_answers: int
    feat_dim: int
    grid: tuple[int, int] = (16, 16)
    fusion: str = "attention"
    d_model: int = 256
    embed_dim: int = 256
    question_dim: int = 512
    attn_dim: int = 256
    glimpses: int = 2
    classifier_dim: int = 512
    conv_layers: int = 0
    dropout: float = 0.3  # also between the question encoder's layers
    question_cell: str = "lstm"  # or "gru"
    question_layers: int = 1
    question_bidirectional: bool = False  # the question vector is then 2 * question_dim wide
    glimpse_centres: bool = False  # attention fusion: glimpses located and chained (above)
    relation_dim: int = 0  # with glimpse_centres: width of the computed comparison (above)
    whole_image: bool = False  # attention fusion: the classifier also reads the mean cell
    count_maps: int = 0  # attention fusion: sums of K question-gated sigmoid maps (above)

    def __post_init__(self) -> None:
        rows, cols = self.grid  # JSON gives a list
        self.grid = (rows, cols)
        if self.fusion not in FUSIONS:
            raise ValueError(f"fusion must be one of {FUSIONS}, got {self.fusion!r}")
        if self.question_cell not in RNNS:
            raise ValueError(
                f"question_cell must be one of {tuple(RNNS)}, got {self.question_cell!r}"
            )
        if not (isinstance(self.question_layers, int) and self.question_layers >= 1):
            raise ValueError(
                f"question_layers must be a whole number >= 1, got {self.question_layers!r}"
            )
        if not isinstance(self.question_bidirectional, bool):
            raise ValueError("question_bidirectional must be true or false")
        if not isinstance(self.glimpse_centres, bool):
            raise ValueError("glimpse_centres must be true or false")
        if not (isinstance(self.relation_dim, int) and self.relation_dim >= 0):
            raise ValueError(f"relation_dim must be a whole number >= 0, got {self.relation_dim!r}")
        if self.relation_dim and not (self.glimpse_centres and self.glimpses >= 2):
            raise ValueError("relation_dim needs glimpse_centres and 2 or more glimpses")
        if not isinstance(self.whole_image, bool):
            raise ValueError("whole_image must be true or false")
        if self.whole_image and self.fusion != "attention":
            raise ValueError("whole_image adds to the attention fusion (concat reads it alone)")
        if not (isinstance(self.count_maps, int) and self.count_maps >= 0):
            raise ValueError(f"count_maps must be a whole number >= 0, got {self.count_maps!r}")
        if self.count_maps and self.fusion != "attention":
            raise ValueError("count_maps gates the attention fusion's image-question joint")

    @property
    def question_size(self) -> int:
        """Width of the question vector the attention and the classifier read."""
        return self.question_dim * (2 if self.question_bidirectional else 1)


class QuestionEncoder(nn.Module):
    """Embedding -> recurrent network; the question is the top layer's last hidden state, or
    [forward last; backward last] when bidirectional (the backward pass ends on the first
    word, so both ends of the question are read last by one direction)."""

    def __init__(self, cfg: VQAConfig) -> None:
        super().__init__()
        self.embed = nn.Embedding(cfg.vocab_size, cfg.embed_dim, padding_idx=PAD_ID)
        self.rnn = RNNS[cfg.question_cell](
            cfg.embed_dim,
            cfg.question_dim,
            num_layers=cfg.question_layers,
            dropout=cfg.dropout if cfg.question_layers > 1 else 0.0,
            bidirectional=cfg.question_bidirectional,
            batch_first=True,
        )

    def forward(self, questions: Tensor, lengths: Tensor) -> Tensor:
        """Word ids (B, T) padded, true lengths (B,) -> question vectors (B, Q)."""
        emb = torch.tanh(self.embed(questions))  # (B, T, E)
        packed = pack_padded_sequence(emb, lengths.cpu(), batch_first=True, enforce_sorted=False)
        _, state = self.rnn(packed)
        h = state[0] if isinstance(state, tuple) else state  # (layers * directions, B, H)
        directions = 2 if self.rnn.bidirectional else 1
        return torch.cat(list(h[-directions:]), dim=1)  # the top layer's: (B, directions * H)


class VQAModel(nn.Module):
    cells: Tensor  # (L, 2) cell centres: a buffer, with glimpse_centres only

    def __init__(self, config: VQAConfig) -> None:
        super().__init__()
        self.config = cfg = config
        self.adapter = GridAdapter(cfg.feat_dim, cfg.d_model, cfg.grid, cfg.conv_layers)
        self.question = QuestionEncoder(cfg)
        self.dropout = nn.Dropout(cfg.dropout)
        glimpses = cfg.glimpses if cfg.fusion == "attention" else 1
        if cfg.fusion == "attention":
            # SAAA's first 1x1 convolution over [image cell; tiled question], split in two:
            # W [v; q] = W_v v + W_q q, so the question is projected once, not once per cell.
            self.attend_image = nn.Linear(cfg.d_model, cfg.attn_dim)
            self.attend_question = nn.Linear(cfg.question_size, cfg.attn_dim, bias=False)
            self.glimpse = nn.Linear(cfg.attn_dim, glimpses)
        if cfg.count_maps:
            self.count = count_gates(cfg.attn_dim, cfg.count_maps)
        located = cfg.fusion == "attention" and cfg.glimpse_centres
        if located:
            self.register_buffer("cells", cell_centres(cfg.grid), persistent=False)  # (L, 2)
            self.attend_cell = nn.Linear(2, cfg.attn_dim, bias=False)
            self.attend_offset = nn.Linear(2, cfg.attn_dim, bias=False)
        if cfg.relation_dim:
            geometry = 2 * glimpses + 2 * (glimpses - 1)  # centres, then the steps between them
            self.relate_geometry = nn.Linear(geometry, cfg.relation_dim)
            self.relate_question = nn.Linear(cfg.question_size, cfg.relation_dim)
        pooled = (
            glimpses * (cfg.d_model + (2 if located else 0))
            + (cfg.d_model if cfg.whole_image else 0)
            + cfg.count_maps
        )
        self.classifier = nn.Sequential(
            nn.Linear(pooled + cfg.question_size + cfg.relation_dim, cfg.classifier_dim),
            nn.ReLU(),
            nn.Dropout(cfg.dropout),
            nn.Linear(cfg.classifier_dim, cfg.num_answers),
        )

    def forward(
        self,
        features: Tensor,
        questions: Tensor,
        lengths: Tensor,
        targets: Tensor | None = None,
    ) -> tuple[Tensor, Tensor | None, Tensor | None]:
        """Grid (B, L, feat_dim), questions (B, T) -> answer logits (B, N), glimpse maps
        (B, G, L) or None for `concat`, and the soft-score loss when `targets` (B, N) given."""
        image = self.adapter(features)  # (B, L, d)
        question = self.question(questions, lengths)  # (B, Q)
        maps = None
        relation: list[Tensor] = []
        if self.config.fusion == "attention":
            joint = self.attend_image(self.dropout(image)) + self.attend_question(
                self.dropout(question)
            ).unsqueeze(1)  # (B, L, A)
            if self.config.glimpse_centres:
                maps, centres = self.chained_glimpses(joint)  # (B, G, L), (B, G, 2)
                vectors = self.dropout(torch.bmm(maps, image))  # (B, G, d)
                pooled = torch.cat([vectors, centres], dim=2).flatten(1)  # (B, G*(d+2))
                if self.config.relation_dim:
                    relation = [self.relate(centres, question)]
            else:
                logits = self.glimpse(self.dropout(torch.relu(joint)))  # (B, L, G)
                maps = logits.transpose(1, 2).softmax(dim=-1)  # (B, G, L)
                pooled = self.dropout(torch.bmm(maps, image).flatten(1))  # (B, G*d)
            if self.config.whole_image:
                pooled = torch.cat([pooled, self.dropout(image.mean(dim=1))], dim=1)
            if self.config.count_maps:
                counted = counts(self.count, self.dropout(torch.relu(joint)))  # (B, K)
                pooled = torch.cat([pooled, counted], dim=1)
        else:
            pooled = self.dropout(image.mean(dim=1))  # (B, d)
        logits = self.classifier(torch.cat([pooled, self.dropout(question), *relation], dim=1))
        loss = None if targets is None else soft_cross_entropy(logits, targets)
        return logits, maps, loss

    def relate(self, centres: Tensor, question: Tensor) -> Tensor:
        """The computed comparison (B, R): the glimpses' geometry, gated by the question."""
        steps = centres[:, 1:] - centres[:, :-1]  # (B, G-1, 2)
        geometry = torch.cat([centres.flatten(1), steps.flatten(1)], dim=1)
        return torch.relu(self.relate_geometry(geometry)) * self.relate_question(question)

    def chained_glimpses(self, joint: Tensor) -> tuple[Tensor, Tensor]:
        """Glimpse maps (B, G, L) and their centres (B, G, 2) from the image-question joint
        (B, L, A): each glimpse scores the cells where they are, the later ones also where
        they are from the previous glimpse's centre."""
        joint = joint + self.attend_cell(self.cells)  # (B, L, A)
        maps: list[Tensor] = []
        centres: list[Tensor] = []
        for g in range(self.config.glimpses):
            scores = joint
            if centres:
                scores = joint + self.attend_offset(self.cells - centres[-1].unsqueeze(1))
            hidden = self.dropout(torch.relu(scores))  # (B, L, A)
            logits = hidden @ self.glimpse.weight[g] + self.glimpse.bias[g]  # (B, L)
            maps.append(logits.softmax(dim=-1))
            centres.append(maps[-1] @ self.cells)  # (B, 2)
        return torch.stack(maps, dim=1), torch.stack(centres, dim=1)


def cell_centres(grid: tuple[int, int]) -> Tensor:
    """(row, column) of each grid cell's centre, row-major (L, 2), scaled to [-1, 1]."""
    rows, cols = grid
    ys = (torch.arange(rows) + 0.5) / rows * 2 - 1
    xs = (torch.arange(cols) + 0.5) / cols * 2 - 1
    return torch.cartesian_prod(ys, xs)


def soft_cross_entropy(logits: Tensor, targets: Tensor) -> Tensor:
    """Cross-entropy against the VQA soft scores min(1, #humans/3), renormalised to sum to 1,
    which is the expected loss of SAAA's sampling of one human answer per question."""
    weights = targets / targets.sum(dim=1, keepdim=True).clamp_min(1e-8)  # (B, N)
    return -(weights * logits.log_softmax(dim=-1)).sum(dim=1).mean()
