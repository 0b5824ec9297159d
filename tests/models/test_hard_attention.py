"""Hard attention in the model: one cell per word, chosen by the policy set on the model (the
most likely cell unless a caller sets another), through every decoder and a model directory.
The training side (sampling, REINFORCE) is tested in tests/training."""

import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from factories import WORDS, tiny_captioner_config, tiny_encoder_spec
from models.attention import Locations, annotations_at
from models.captioner import Captioner, CaptionerConfig
from models.checkpoint import Checkpoint, load_pretrained, save_pretrained
from models.decoding import DecodeOptions, beam_search, decode_captions
from models.sampling import Sampling
from models.text import build_tokenizer

FEATURES = torch.randn(5, 6, 10, generator=torch.Generator().manual_seed(0))  # (B, L, D)
CAPTIONS = torch.tensor([[1, 5, 6, 7, 2], [1, 8, 9, 2, 0], [1, 10, 11, 12, 2]])


def pair() -> tuple[Captioner, Captioner]:
    """A soft and a hard captioner with the same weights, in eval mode."""
    torch.manual_seed(3)
    soft = Captioner(tiny_captioner_config(16, 10, (2, 3), d_model=12))
    with torch.no_grad():  # widen the untrained weights so that captions vary between images
        for p in soft.parameters():
            p.mul_(1.5)
    hard = Captioner(replace(soft.config, attention="hard"))
    hard.load_state_dict(soft.state_dict())
    return soft.eval(), hard.eval()


def test_an_unknown_kind_of_attention_is_refused() -> None:
    with pytest.raises(ValueError, match="attention must be one of"):
        tiny_captioner_config(16, 10, (2, 3), attention="medium")


def test_annotations_at_reads_each_rows_own_image() -> None:
    features = torch.randn(2, 4, 3)  # 2 images, 4 cells
    cells = torch.tensor([3, 0, 1, 1, 2, 0])  # 3 rows (beams) per image
    picked = annotations_at(features, cells)
    expected = [features[r // 3, c] for r, c in enumerate(cells.tolist())]
    assert torch.equal(picked, torch.stack(expected))


def test_by_default_the_context_is_the_annotation_of_the_most_likely_cell() -> None:
    soft, hard = pair()
    alpha = torch.softmax(torch.randn(10, 6), dim=-1)  # 2 beams for each of 5 images
    features = FEATURES
    chosen = alpha.argmax(dim=-1)
    assert torch.equal(hard.glimpse(alpha, features), annotations_at(features, chosen))
    assert torch.equal(soft.glimpse(alpha, features), soft.attention.context(alpha, features))


def test_a_policy_set_on_the_model_chooses_within_its_block_only() -> None:
    _, hard = pair()
    alpha = torch.softmax(torch.randn(5, 6), dim=-1)
    last = torch.full((5,), 5)
    expected_rows = torch.tensor([True, False, False, True, False])

    with hard.locating(lambda a: Locations(last, expected_rows)):
        context = hard.glimpse(alpha, FEATURES)
    mean = hard.attention.context(alpha, FEATURES)
    assert torch.equal(context[expected_rows], mean[expected_rows])  # expected context
    assert torch.equal(context[~expected_rows], FEATURES[~expected_rows, 5])  # cell 5
    assert torch.equal(hard.glimpse(alpha, FEATURES), annotations_at(FEATURES, alpha.argmax(-1)))

    with pytest.raises(RuntimeError), hard.locating(lambda a: Locations(last)):
        raise RuntimeError("a failing pass")
    assert torch.equal(hard.glimpse(alpha, FEATURES), annotations_at(FEATURES, alpha.argmax(-1)))


def test_hard_and_soft_models_with_the_same_weights_write_differently() -> None:
    """Guards the tests below: the hard path is really taken."""
    soft, hard = pair()
    soft_logits = soft(FEATURES[:3], CAPTIONS[:, :-1])[0]
    hard_logits, hard_alphas, _ = hard(FEATURES[:3], CAPTIONS[:, :-1])
    assert not torch.allclose(soft_logits, hard_logits)
    assert torch.allclose(hard_alphas.sum(-1), torch.ones(3, 4))  # alpha is still a map


def test_hard_beam_search_is_deterministic() -> None:
    _, hard = pair()
    options = DecodeOptions(beam_size=3, max_len=6, num_captions=2)
    first, again = (decode_captions(hard, FEATURES, options) for _ in range(2))
    for a, b in zip(first, again, strict=True):
        assert a.tokens == b.tokens and torch.equal(a.alphas, b.alphas)
    assert len({tuple(c.tokens) for c in first}) > 1  # captions differ between images


def test_batched_beam_equals_one_image_at_a_time_for_the_hard_model() -> None:
    _, hard = pair()
    batched = beam_search(hard, FEATURES, beam_size=3, max_len=6, num_captions=2)
    assert len({tuple(c.tokens) for c in batched}) > 1  # rows mixed up would show
    for i, caption in enumerate(batched):
        alone = beam_search(hard, FEATURES[i : i + 1], beam_size=3, max_len=6, num_captions=2)[0]
        for b, a in zip(
            [caption, *caption.alternatives], [alone, *alone.alternatives], strict=True
        ):
            assert b.tokens == a.tokens
            assert b.score == pytest.approx(a.score, abs=1e-4)
            assert torch.equal(b.alphas.argmax(-1), a.alphas.argmax(-1))  # the same cells
            assert torch.allclose(b.alphas, a.alphas, atol=1e-5)


def test_seeded_sampling_of_words_serves_the_hard_model() -> None:
    _, hard = pair()
    sampling = DecodeOptions(num_captions=2, sampling=Sampling(temperature=1.0))
    draws = [
        decode_captions(hard, FEATURES, sampling, [torch.Generator().manual_seed(7)] * 5)
        for _ in range(2)
    ]
    assert [c.tokens for c in draws[0]] == [c.tokens for c in draws[1]]


def test_a_hard_model_directory_round_trips_and_an_old_one_loads_as_soft(tmp_path: Path) -> None:
    _, hard = pair()
    tokenizer = build_tokenizer([WORDS])
    save_pretrained(
        tmp_path / "hard", Checkpoint("captioner", hard, tiny_encoder_spec(), tokenizer)
    )
    loaded = load_pretrained(tmp_path / "hard").model
    assert isinstance(loaded, Captioner) and loaded.config.attention == "hard"
    assert torch.equal(
        loaded(FEATURES[:3], CAPTIONS[:, :-1])[0], hard(FEATURES[:3], CAPTIONS[:, :-1])[0]
    )

    config_file = tmp_path / "hard" / "config.json"
    config = json.loads(config_file.read_text())
    del config["model"]["attention"]  # as written before the field existed
    config_file.write_text(json.dumps(config))
    old = load_pretrained(tmp_path / "hard").model
    assert isinstance(old, Captioner) and old.config.attention == "soft"
    assert CaptionerConfig(**config["model"]).attention == "soft"
