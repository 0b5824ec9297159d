"""Scheduled sampling, the training policy that feeds the decoder its own previous words,
and the ramp of its rate by epoch."""

import pytest
import torch

from factories import tiny_captioner_config
from models.captioner import Captioner
from models.text import BOS_ID
from training.config import TrainConfig
from training.scheduled_sampling import sampling_rate, scheduled_sampling

CAPTIONS = torch.tensor([[BOS_ID, 5, 6, 7, 2], [BOS_ID, 8, 9, 2, 0]])  # (B, T+1)


def tiny_captioner() -> Captioner:
    torch.manual_seed(0)
    return Captioner(tiny_captioner_config(vocab_size=12, feature_dim=8, grid=(2, 3))).eval()


def test_never_sampling_is_teacher_forcing() -> None:
    model, features = tiny_captioner(), torch.randn(2, 6, 8)
    logits, alphas = scheduled_sampling(model, features, CAPTIONS[:, :-1], prob=0.0)
    forced_logits, forced_alphas, _ = model(features, CAPTIONS[:, :-1])
    assert torch.equal(logits, forced_logits) and torch.equal(alphas, forced_alphas)


def test_always_sampling_feeds_back_the_previous_best_word() -> None:
    model, features = tiny_captioner(), torch.randn(2, 6, 8)
    logits, alphas = scheduled_sampling(model, features, CAPTIONS[:, :-1], prob=1.0)
    own = logits.argmax(dim=-1)[:, :-1]  # (B, T-1): what each step found most likely
    fed = torch.cat([CAPTIONS[:, :1], own], dim=1)  # <bos>, then the model's own words
    replayed_logits, replayed_alphas, _ = model(features, fed)
    assert torch.allclose(logits, replayed_logits) and torch.allclose(alphas, replayed_alphas)
    assert not torch.equal(fed, CAPTIONS[:, :-1])  # the references were not what it saw


def test_a_fixed_rate_applies_from_the_first_epoch() -> None:
    cfg = TrainConfig(scheduled_sampling=0.25)
    assert [sampling_rate(cfg, epoch) for epoch in range(4)] == [0.25] * 4
    assert sampling_rate(TrainConfig(), 3) == 0.0


def test_the_ramp_starts_late_rises_every_few_epochs_and_stops_at_its_most() -> None:
    cfg = TrainConfig(
        scheduled_sampling=0.25,
        scheduled_sampling_start=2,
        scheduled_sampling_every=3,
        scheduled_sampling_step=0.1,
    )
    expected = [0.0, 0.0, 0.1, 0.1, 0.1, 0.2, 0.2, 0.2, 0.25, 0.25, 0.25, 0.25]
    assert [sampling_rate(cfg, epoch) for epoch in range(12)] == pytest.approx(expected)


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"scheduled_sampling": 1.5}, "probability"),
        ({"scheduled_sampling": 0.5, "scheduled_sampling_every": 0}, "_every >= 1"),
        ({"scheduled_sampling": 0.5, "scheduled_sampling_start": -1}, "start must be >= 0"),
        ({"scheduled_sampling": 0.5, "scheduled_sampling_step": 0.0}, "step must be above 0"),
        ({"scheduled_sampling_start": 3}, "ramp up to scheduled_sampling: set it above 0"),
    ],
)
def test_a_ramp_that_cannot_work_is_refused(settings: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        TrainConfig(**settings)
