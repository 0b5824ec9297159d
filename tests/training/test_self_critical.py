"""Self-critical training: the sampler against teacher forcing, the loss's gradient with each
baseline, and that the two together learn a reward, the world's truth or CIDEr-D (the caption
task that uses them is tested in test_self_critical_task)."""

import pytest
import torch
from torch.nn.utils.rnn import pad_sequence

from factories import tiny_captioner_config
from models.captioner import Captioner
from models.decoding import greedy
from models.text import BOS_ID, EOS_ID, PAD_ID
from training.metrics.cider_d import CiderD, DocumentFrequencies
from training.self_critical import mean_of_others, sample_with_grad, self_critical_loss

CONFIG = tiny_captioner_config(vocab_size=12, feature_dim=8, grid=(2, 3))


def tiny_captioner(seed: int = 0) -> Captioner:
    torch.manual_seed(seed)
    return Captioner(CONFIG).eval()


def test_sampled_log_probs_are_the_teacher_forced_ones_and_stop_at_eos() -> None:
    model = tiny_captioner()
    features = torch.randn(3, 6, 8)  # (B, L, D)
    samples = sample_with_grad(model, features, 4, 7, torch.Generator().manual_seed(1))
    rows = samples.tokens.size(0)
    assert rows == 12 and samples.alphas.shape[:2] == samples.tokens.shape
    captions = []
    for row, length in zip(samples.tokens, samples.mask.sum(dim=1).tolist(), strict=True):
        ended = (row == EOS_ID).nonzero()
        assert length == (int(ended[0]) + 1 if len(ended) else row.numel())  # mask ends at <eos>
        captions.append(torch.cat([torch.tensor([BOS_ID]), row[:length]]))
    padded = pad_sequence(captions, batch_first=True, padding_value=PAD_ID)  # (R, T+1)
    logits, alphas, _ = model(features.repeat_interleave(4, 0), padded[:, :-1])
    forced = logits.log_softmax(-1).gather(2, padded[:, 1:].unsqueeze(2)).squeeze(2)
    steps = padded.size(1) - 1
    mask = samples.mask[:, :steps]
    assert torch.allclose(forced[mask], samples.log_probs[:, :steps][mask], atol=1e-5)
    assert torch.allclose(alphas[mask], samples.alphas[:, :steps][mask], atol=1e-5)


MASK = torch.tensor([[1, 1, 1], [1, 1, 0], [1, 0, 0], [1, 1, 1]], dtype=torch.bool)


def test_loss_weighs_each_sample_by_its_reward_against_its_siblings() -> None:
    log_probs = torch.zeros(4, 3, requires_grad=True)
    rewards = torch.tensor([[1.0, 0.0, 0.0, 0.0]])
    self_critical_loss(log_probs, MASK, rewards, mean_of_others(rewards)).backward()
    advantage = torch.tensor([1.0, -1 / 3, -1 / 3, -1 / 3])  # leave-one-out baseline
    expected = -(advantage.unsqueeze(1) * MASK) / MASK.sum()
    assert torch.allclose(log_probs.grad, expected)

    same = torch.zeros(4, 3, requires_grad=True)
    self_critical_loss(same, MASK, torch.ones(1, 4), mean_of_others(torch.ones(1, 4))).backward()
    assert not same.grad.any()  # nothing to learn when every sample is as good
    with pytest.raises(ValueError, match="at least 2 samples"):
        mean_of_others(torch.ones(4, 1))


def test_a_greedy_baseline_is_one_per_image_shared_by_its_samples() -> None:
    log_probs = torch.zeros(4, 3, requires_grad=True)
    rewards = torch.tensor([[3.0, 1.0], [2.0, 2.0]])  # 2 images x 2 samples
    greedy_rewards = torch.tensor([[2.0], [1.0]])  # (B, 1)
    self_critical_loss(log_probs, MASK, rewards, greedy_rewards).backward()
    advantage = torch.tensor([1.0, -1.0, 1.0, 1.0])  # each sample against its image's greedy
    assert torch.allclose(log_probs.grad, -(advantage.unsqueeze(1) * MASK) / MASK.sum())


def test_training_on_a_reward_makes_the_rewarded_caption_likely() -> None:
    model = tiny_captioner(seed=3).train()
    features = torch.randn(8, 6, 8)
    wanted = 7  # reward: the caption starts with word 7
    optimizer = torch.optim.Adam(model.parameters(), lr=0.02)
    generator = torch.Generator().manual_seed(0)

    def first_word_rate() -> float:
        samples = sample_with_grad(model, features, 8, 3, generator)
        return (samples.tokens[:, 0] == wanted).float().mean().item()

    before = first_word_rate()
    for _ in range(60):
        samples = sample_with_grad(model, features, 6, 3, generator)
        rewards = (samples.tokens[:, 0] == wanted).float().view(8, 6)
        loss = self_critical_loss(samples.log_probs, samples.mask, rewards, mean_of_others(rewards))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert before < 0.3 and first_word_rate() > 0.8


@pytest.mark.parametrize("baseline", ["mean", "greedy"])
def test_a_cider_d_reward_makes_captions_like_the_references_more_likely(baseline: str) -> None:
    """Words are their ids; the references of every image are "7 8 9", and two other
    documents make their n-grams rarer than the rest."""
    model = tiny_captioner(seed=4).train()
    features = torch.randn(6, 6, 8)
    reference = ["7", "8", "9"]
    scorer = CiderD(DocumentFrequencies.of([[reference], [["4", "5"]], [["10", "11", "5"]]]))
    vectors = scorer.references([reference])
    optimizer = torch.optim.Adam(model.parameters(), lr=0.03)
    generator = torch.Generator().manual_seed(0)

    def cider_d(rows: list[list[int]]) -> torch.Tensor:
        """The reward of each caption's ids, cut at <eos>."""
        rows = [row[: row.index(EOS_ID)] if EOS_ID in row else row for row in rows]
        return torch.tensor([scorer.score([str(t) for t in row], vectors) for row in rows])

    def mean_sampled_reward() -> float:
        with torch.no_grad():
            samples = sample_with_grad(model, features, 8, 4, generator)
            return cider_d(samples.tokens.tolist()).mean().item()

    before = mean_sampled_reward()
    for _ in range(40):
        samples = sample_with_grad(model, features, 4, 4, generator)
        rewards = cider_d(samples.tokens.tolist()).view(6, 4)
        if baseline == "greedy":
            base = cider_d([c.tokens for c in greedy(model.eval(), features, 4)]).unsqueeze(1)
            model.train()
        else:
            base = mean_of_others(rewards)
        loss = self_critical_loss(samples.log_probs, samples.mask, rewards, base)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    after = mean_sampled_reward()
    assert before < 1.0 and after > before + 2.0
