import itertools

import pytest
import torch

from factories import tiny_captioner_config
from models.captioner import Captioner
from models.decoding import Caption, beam_search, greedy, sample, words_and_maps
from models.text import BOS_ID, EOS_ID, build_tokenizer


@pytest.fixture(scope="module")
def model() -> Captioner:
    torch.manual_seed(2)
    model = Captioner(tiny_captioner_config(vocab_size=9, feature_dim=6, grid=(2, 3), d_model=12))
    with torch.no_grad():  # widen the untrained weights so that captions vary between images
        for p in model.parameters():
            p.mul_(1.5)
    return model.eval()


@pytest.fixture(scope="module")
def features() -> torch.Tensor:
    return torch.randn(6, 6, 6, generator=torch.Generator().manual_seed(0))  # (B, L, D)


def sequence_score(model: Captioner, feats: torch.Tensor, words: list[int], max_len: int) -> float:
    """Log-probability of `words` (+ <eos> unless cut at max_len), by teacher forcing."""
    targets = words + ([EOS_ID] if len(words) < max_len else [])
    prepared = model.prepare(feats.unsqueeze(0))
    token, total = torch.tensor([BOS_ID]), 0.0
    for target in targets:
        logits, prepared.state, _ = model.step(token, prepared)
        total += logits.log_softmax(-1)[0, target].item()
        token = torch.tensor([target])
    return total


def test_the_fixture_makes_search_matter(model: Captioner, features: torch.Tensor) -> None:
    """Guards the tests below against a degenerate model on which any decoder agrees."""
    greedy_captions = greedy(model, features, 7)
    beam_captions = beam_search(model, features, 3, 7)
    assert len({tuple(c.tokens) for c in greedy_captions}) > 1
    assert any(
        b.score > g.score + 1e-3 for g, b in zip(greedy_captions, beam_captions, strict=True)
    )


def test_beam_of_one_equals_greedy(model: Captioner, features: torch.Tensor) -> None:
    for g, b in zip(greedy(model, features, 7), beam_search(model, features, 1, 7), strict=True):
        assert g.tokens == b.tokens
        assert g.score == pytest.approx(b.score, abs=1e-4)
        assert torch.allclose(g.alphas, b.alphas, atol=1e-5)


def test_batched_beam_equals_one_image_at_a_time(model: Captioner, features: torch.Tensor) -> None:
    batched = beam_search(model, features, beam_size=3, max_len=8)
    for i, caption in enumerate(batched):
        alone = beam_search(model, features[i : i + 1], beam_size=3, max_len=8)[0]
        assert caption.tokens == alone.tokens
        assert caption.score == pytest.approx(alone.score, abs=1e-4)
        assert torch.allclose(caption.alphas, alone.alphas, atol=1e-5)


def test_wide_beam_finds_the_exhaustive_optimum(model: Captioner, features: torch.Tensor) -> None:
    max_len, vocab = 3, model.config.vocab_size
    words = [w for w in range(vocab) if w != EOS_ID]
    for i in range(3):
        feats = features[i]
        best = max(
            (sequence_score(model, feats, list(seq), max_len), list(seq))
            for n in range(max_len + 1)
            for seq in itertools.product(words, repeat=n)
        )
        found = beam_search(model, feats.unsqueeze(0), beam_size=len(words) ** 2, max_len=max_len)
        assert found[0].tokens == best[1]
        assert found[0].score == pytest.approx(best[0], abs=1e-4)


def test_beam_scores_are_the_captions_log_probabilities(
    model: Captioner, features: torch.Tensor
) -> None:
    for feats, caption in zip(features, beam_search(model, features, 3, 6), strict=True):
        assert caption.score == pytest.approx(
            sequence_score(model, feats, caption.tokens, 6), abs=1e-4
        )


@pytest.mark.parametrize("decode", ["greedy", "beam", "sample"])
def test_one_attention_distribution_per_word(
    model: Captioner, features: torch.Tensor, decode: str
) -> None:
    captions = {
        "greedy": lambda: greedy(model, features, 6),
        "beam": lambda: beam_search(model, features, 4, 6),
        "sample": lambda: sample(model, features, 6, generator=torch.Generator().manual_seed(0)),
    }[decode]()
    assert len(captions) == len(features)
    for caption in captions:
        assert len(caption.tokens) <= 6 and EOS_ID not in caption.tokens
        assert caption.alphas.shape == (len(caption.tokens), 6)
        assert torch.allclose(caption.alphas.sum(-1), torch.ones(len(caption.tokens)), atol=1e-5)


def test_sampling_is_seeded_and_cold_sampling_is_greedy(
    model: Captioner, features: torch.Tensor
) -> None:
    def run(seed: int, temperature: float = 1.0) -> list[list[int]]:
        gen = torch.Generator().manual_seed(seed)
        return [c.tokens for c in sample(model, features, 6, temperature, gen)]

    assert run(0) == run(0)
    assert run(0, temperature=1e-4) == [c.tokens for c in greedy(model, features, 6)]
    with pytest.raises(ValueError):
        sample(model, features, temperature=0.0)


def test_words_and_maps_stay_aligned_when_a_special_token_is_emitted() -> None:
    tokenizer = build_tokenizer(["red circle"])
    red, circle = (tokenizer.convert_tokens_to_ids(w) for w in ("red", "circle"))
    alphas = torch.arange(3 * 6, dtype=torch.float32).view(3, 6)  # one map per token
    caption = Caption([red, BOS_ID, circle], -1.0, alphas)
    words, maps = words_and_maps(caption, tokenizer, (2, 3))
    assert words == ["red", "circle"]
    assert maps.shape == (2, 2, 3)
    assert (maps[1].ravel() == alphas[2].numpy()).all()  # circle keeps its own map
