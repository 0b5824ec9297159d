"""Scheduled sampling, the training policy that feeds the decoder its own previous words."""

import torch

from factories import tiny_captioner_config
from models.captioner import Captioner
from models.text import BOS_ID
from training.scheduled_sampling import scheduled_sampling

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
