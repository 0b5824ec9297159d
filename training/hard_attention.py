"""Training hard attention (Xu et al., 2015, section 4.1): sampled locations and their gradient.

The model picks one cell s_t per word, a choice with no gradient, so the locations are
trained by the variational lower bound L_s on log p(y | a): for sampled locations s ~ alpha,

    grad L_s ~ grad log p(y | s, a) + lambda_r (log p(y | s, a) - b) grad log p(s | a)
               + lambda_e grad H[s],

the word likelihood given the locations, the REINFORCE term of the location choices against
a moving-average baseline b, and the entropy of the location distributions, which keeps them
exploring. Two of the paper's variance reductions: the baseline, and with probability 0.5 a
caption is written with the expected (soft) context instead of sampled locations. The paper
decides this "for a given image"; here once per caption (a row of the batch), so a caption
is all sampled or all expected, and its word likelihood is that of one model.

In self-critical training the locations are sampled with the words and rewarded with the
caption's reward against the same baseline as the words (`self_critical_terms`).
"""

from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import Tensor

from models.attention import Locations
from models.captioner import Captioner
from models.text import PAD_ID
from training.config import TrainConfig
from training.self_critical import Samples, self_critical_loss

TINY = 1e-12  # floor of a probability before its log


class SampledLocations:
    """Training's location policy: s_t ~ Multinoulli(alpha_t) in every row, except the rows
    drawn (once, with probability `expected`) to take the expected context; it keeps the cells
    of each step for the REINFORCE term."""

    def __init__(
        self,
        rows: int,
        expected: float,
        device: torch.device,
        generator: torch.Generator | None = None,
    ) -> None:
        draws = torch.rand(rows, generator=generator, device=device)
        self.expected = draws < expected  # (R,)
        self.generator = generator
        self.cells: list[Tensor] = []  # (R,) per step

    def __call__(self, alpha: Tensor) -> Locations:
        if alpha.size(0) != self.expected.size(0):
            raise ValueError(
                f"{alpha.size(0)} rows step, the policy was set for {self.expected.size(0)}"
            )
        cells = torch.multinomial(alpha.detach().float(), 1, generator=self.generator).squeeze(1)
        self.cells.append(cells)
        return Locations(cells, self.expected)

    def log_probs(self, alphas: Tensor) -> Tensor:
        """log p(s_t) (R, T) of the cells chosen at each step under alphas (R, T, L)."""
        cells = torch.stack(self.cells, dim=1)  # (R, T)
        return alphas.gather(2, cells.unsqueeze(2)).squeeze(2).clamp_min(TINY).log()

    def terms(
        self,
        alphas: Tensor,
        mask: Tensor,
        rewards: Tensor,
        baseline: Tensor,
        reinforce: float,
        entropy: float,
    ) -> Tensor:
        """The location choices' share of the loss: REINFORCE of their log-probabilities with
        the advantage rewards - baseline ((R, 1) each, or (B, N) for N rows per image), minus
        the entropy of their distributions, each averaged over the sampled steps.

        alphas (R, T, L) with gradient; mask (R, T) true on the steps that count. Rows that
        took the expected context chose nothing: they are left out. The REINFORCE term is
        worth 0 with REINFORCE's gradient, so that the logged loss stays the word loss.
        """
        sampled = mask & ~self.expected.unsqueeze(1)  # (R, T)
        log_p = self.log_probs(alphas)
        surrogate = log_p - log_p.detach()  # 0, with the gradient of log p(s_t)
        loss = reinforce * self_critical_loss(surrogate, sampled, rewards, baseline)
        if entropy:
            per_step = -(alphas * alphas.clamp_min(TINY).log()).sum(dim=-1)  # (R, T)
            mean = (per_step * sampled).sum() / sampled.sum().clamp_min(1)
            loss = loss - entropy * mean
        return loss


@contextmanager
def sampled_locations(
    head: Captioner, rows: int, cfg: TrainConfig, device: torch.device
) -> Iterator[SampledLocations | None]:
    """Within the block, a hard-attention head samples its locations for `rows` decoder rows
    (the policy is yielded, to read its choices afterwards); a soft head is left alone (None)."""
    if head.config.attention != "hard":
        yield None
        return
    policy = SampledLocations(rows, cfg.hard_expected_context, device)
    with head.locating(policy):
        yield policy


class MovingBaseline:
    """b_k = decay * b_{k-1} + (1 - decay) * x_k, the paper's baseline for log p(y | s).

    Batch k is measured against b_{k-1}, the batches before it, so that the baseline does not
    depend on the batch's own samples (the estimator stays unbiased); the first batch, with no
    history, against its own mean.
    """

    def __init__(self, decay: float) -> None:
        self.decay = decay
        self.value: float | None = None

    def next(self, observed: float) -> float:
        """The baseline for a batch whose mean is `observed`, then take it into account."""
        current = observed if self.value is None else self.value
        self.value = self.decay * current + (1.0 - self.decay) * observed
        return current


class HardAttentionLoss:
    """Teacher forcing's location terms: the reward of a caption's locations is the
    log-likelihood of its reference words given them, log p(y | s, a).

    Captions differ in length, and log p(y | s) with them, so the moving average tracks it per
    word and a caption of n words is measured against n * b: a baseline may depend on anything
    but the sampled locations.
    """

    def __init__(self, cfg: TrainConfig) -> None:
        self.cfg = cfg
        self.baseline = MovingBaseline(cfg.hard_baseline_decay)

    def __call__(
        self, locations: SampledLocations, logits: Tensor, alphas: Tensor, targets: Tensor
    ) -> Tensor:
        """logits (B, T, V), alphas (B, T, L) of a teacher-forced pass; targets (B, T)."""
        mask = targets != PAD_ID  # (B, T)
        sampled = ~locations.expected  # (B,)
        if not sampled.any():
            return alphas.new_zeros(())
        with torch.no_grad():
            nll = F.cross_entropy(
                logits.transpose(1, 2), targets, ignore_index=PAD_ID, reduction="none"
            )  # (B, T), 0 on pads
            rewards = -nll.sum(dim=1)  # log p(y | s, a) (B,)
            lengths = mask.sum(dim=1)  # (B,)
            per_word = float(rewards[sampled].sum() / lengths[sampled].sum().clamp_min(1))
            baseline = lengths * self.baseline.next(per_word)  # (B,)
        cfg = self.cfg
        return locations.terms(
            alphas,
            mask,
            rewards.unsqueeze(1),
            baseline.unsqueeze(1),
            cfg.hard_reinforce,
            cfg.hard_entropy,
        )


def self_critical_terms(
    locations: SampledLocations,
    samples: Samples,
    rewards: Tensor,
    baseline: Tensor,
    cfg: TrainConfig,
) -> Tensor:
    """Self-critical training's location terms: a sampled caption's locations share its
    reward and baseline (B, N) with its words."""
    return locations.terms(
        samples.alphas, samples.mask, rewards, baseline, cfg.hard_reinforce, cfg.hard_entropy
    )
