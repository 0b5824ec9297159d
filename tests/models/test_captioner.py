import math
from dataclasses import replace

import pytest
import torch

from factories import tiny_captioner_config
from models.captioner import Captioner, attention_penalty, attention_supervision, caption_loss
from models.text import PAD_ID


def make_captioner(conv_layers: int = 0) -> Captioner:
    torch.manual_seed(0)
    return Captioner(
        tiny_captioner_config(
            vocab_size=20,
            feature_dim=12,
            grid=(3, 4),
            hidden_dim=24,
            conv_layers=conv_layers,
            dropout=0.1,
        )
    )


def teacher_forced(model: Captioner, features: torch.Tensor, captions: torch.Tensor) -> tuple:
    """The forward pass over <bos> w_1 .. w_n <eos> <pad>.. captions (B, T), with its loss."""
    return model(features, captions[:, :-1], captions[:, 1:])


def test_forward_shapes_loss_and_attention_distributions() -> None:
    model = make_captioner(conv_layers=1)
    features = torch.randn(5, 12, 12)  # (B, L, D)
    captions = torch.tensor([[1, 5, 6, 7, 2, 0], [1, 8, 2, 0, 0, 0]]).repeat(3, 1)[:5]
    logits, alphas, loss = teacher_forced(model, features, captions)
    assert logits.shape == (5, 5, 20)
    assert alphas.shape == (5, 5, 12)
    assert torch.allclose(alphas.sum(-1), torch.ones(5, 5), atol=1e-5)
    assert torch.isfinite(loss) and loss.item() > 0
    loss.backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)


def test_float16_grids_of_the_training_cache_give_what_float32_ones_give() -> None:
    model = make_captioner(conv_layers=1).eval()
    grids = torch.randn(2, 12, 12).half()  # (B, L, D) as the feature cache holds them
    captions = torch.tensor([[1, 5, 6, 2], [1, 8, 2, 0]])
    cached, _, _ = teacher_forced(model, grids, captions)
    converted, _, _ = teacher_forced(model, grids.float(), captions)
    assert cached.dtype == torch.float32
    assert torch.equal(cached, converted)


def test_loss_ignores_padding() -> None:
    model = make_captioner().eval()
    features = torch.randn(1, 12, 12)
    short = torch.tensor([[1, 5, 6, 2]])
    padded = torch.tensor([[1, 5, 6, 2, PAD_ID, PAD_ID]])
    assert torch.allclose(
        teacher_forced(model, features, short)[2],
        teacher_forced(model, features, padded)[2],
        atol=1e-6,
    )


def test_without_targets_there_is_no_loss_and_the_same_pass() -> None:
    model = make_captioner().eval()
    features = torch.randn(2, 12, 12)
    captions = torch.tensor([[1, 5, 6, 7, 2], [1, 8, 9, 2, 0]])
    logits, alphas, loss = model(features, captions[:, :-1])
    assert loss is None
    forced_logits, forced_alphas, forced_loss = teacher_forced(model, features, captions)
    assert torch.equal(logits, forced_logits) and torch.equal(alphas, forced_alphas)
    assert torch.equal(caption_loss(logits, captions[:, 1:]), forced_loss)


def test_training_lowers_the_loss_on_a_fixed_batch() -> None:
    model = make_captioner()
    features = torch.randn(4, 12, 12)
    captions = torch.tensor([[1, 5, 6, 2], [1, 7, 8, 2], [1, 9, 10, 2], [1, 11, 12, 2]])
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    first = teacher_forced(model, features, captions)[2].item()
    for _ in range(40):
        optimizer.zero_grad()
        teacher_forced(model, features, captions)[2].backward()
        optimizer.step()
    assert teacher_forced(model, features, captions)[2].item() < 0.3 * first


def test_attention_penalty_is_zero_when_every_cell_is_covered_once() -> None:
    eye = torch.eye(4).unsqueeze(0)  # (1, T=4, L=4): word t looks only at cell t
    assert attention_penalty(eye, torch.ones(1, 4, dtype=torch.bool)).item() == 0.0
    uniform = torch.full((1, 2, 4), 0.25)  # coverage 0.5 per cell: 4 * 0.25
    assert abs(attention_penalty(uniform, torch.ones(1, 2)).item() - 1.0) < 1e-6


def test_attention_supervision_is_minus_log_mass_on_the_targets() -> None:
    alphas = torch.tensor([[[0.5, 0.25, 0.25, 0.0], [0.1, 0.2, 0.3, 0.4]]])  # (1, T=2, L=4)
    targets = torch.tensor([[[True, True, False, False], [False, False, False, False]]])
    loss = attention_supervision(alphas, targets)  # the second step has no target: not counted
    assert loss.item() == pytest.approx(-math.log(0.75))
    on_target = torch.tensor([[[0.0, 1.0, 0.0, 0.0]]])
    assert attention_supervision(on_target, targets[:, :1]).item() == pytest.approx(0.0, abs=1e-6)
    assert attention_supervision(alphas, torch.zeros_like(targets)).item() == 0.0


def test_attention_supervision_moves_the_attention_onto_the_targets() -> None:
    model = make_captioner()
    features = torch.randn(2, 12, 12)
    captions = torch.tensor([[1, 5, 6, 7, 2], [1, 8, 9, 2, 0]])
    targets = torch.zeros(2, 4, 12, dtype=torch.bool)
    targets[0, 1, [0, 1]] = targets[1, 0, [10, 11]] = True
    optimizer = torch.optim.Adam(model.parameters(), lr=0.02)
    losses = []
    for _ in range(30):
        _, alphas, _ = model(features, captions[:, :-1])
        loss = attention_supervision(alphas, targets)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.2 * losses[0]


def attention_after(model: Captioner, features: torch.Tensor, words: list[int]) -> torch.Tensor:
    """The maps (len(words), L) the first step would write with, one per word just written,
    all from the same initial state."""
    prepared = model.prepare(features.expand(len(words), -1, -1)).beams(1)
    _, _, alpha = model.step(torch.tensor(words), prepared)
    return alpha


@torch.no_grad()
def test_word_query_attends_with_the_word_just_written() -> None:
    torch.manual_seed(0)
    model = Captioner(tiny_captioner_config(20, 12, (3, 4), hidden_dim=24, word_query=True))
    features = torch.randn(1, 12, 12)
    assert not model.attention.word_proj.weight.any()  # W_e starts at zero
    alpha = attention_after(model, features, [5, 6])
    assert torch.allclose(alpha[0], alpha[1])  # so it attends as the plain model would
    torch.nn.init.normal_(model.attention.word_proj.weight)  # once training has moved it
    alpha = attention_after(model, features, [5, 6])
    assert not torch.allclose(alpha[0], alpha[1], atol=1e-3)
    plain = make_captioner()
    alpha = attention_after(plain, features, [5, 6])
    assert torch.allclose(alpha[0], alpha[1])  # the paper's query: h_{t-1} only


@torch.no_grad()
def test_coverage_attends_with_the_alphas_spent_so_far() -> None:
    torch.manual_seed(0)
    config = tiny_captioner_config(20, 12, (3, 4), hidden_dim=24)
    model = Captioner(replace(config, coverage=True))
    plain = Captioner(config)
    plain.load_state_dict(model.state_dict(), strict=False)
    model.eval(), plain.eval()
    features = torch.randn(2, 12, 12)
    captions = torch.tensor([[1, 5, 6, 7, 2], [1, 8, 9, 2, 0]])
    assert not model.attention.coverage_weight.any()  # w_c starts at zero
    logits, alphas, _ = model(features, captions[:, :-1])
    plain_logits, plain_alphas, _ = plain(features, captions[:, :-1])
    assert torch.allclose(alphas, plain_alphas) and torch.allclose(logits, plain_logits)
    torch.nn.init.normal_(model.attention.coverage_weight)  # once training has moved it
    _, alphas, _ = model(features, captions[:, :-1])
    assert torch.allclose(alphas[:, 0], plain_alphas[:, 0])  # nothing is covered before word 1
    assert not torch.allclose(alphas[:, 1:], plain_alphas[:, 1:], atol=1e-3)
    prepared = model.prepare(features).beams(3)
    _, state, alpha = model.step(captions[:, 0].repeat_interleave(3), prepared)
    assert torch.allclose(state[-1][:, 0], alpha)  # the state carries the summed alphas
    assert torch.allclose(prepared.rows(torch.tensor([2, 0])).state[-1], prepared.state[-1][[2, 0]])


def test_count_maps_give_the_initial_state_how_many_cells_match() -> None:
    torch.manual_seed(0)
    config = tiny_captioner_config(vocab_size=20, feature_dim=12, grid=(3, 4), hidden_dim=24)
    model = Captioner(replace(config, count_maps=2)).eval()
    with torch.no_grad():
        model.count.weight.zero_()
        model.count.bias.copy_(torch.tensor([20.0, -20.0]))  # every cell on; every cell off
    seen: list[torch.Tensor] = []
    model.init_state[0].register_forward_pre_hook(lambda _, inputs: seen.append(inputs[0]))
    model.prepare(torch.randn(3, 12, 12))
    counts = seen[0][:, config.d_model :]
    assert torch.allclose(counts, torch.tensor([[12.0, 0.0]] * 3), atol=1e-4)
    assert model.init_state[0].in_features == config.d_model + 2


@pytest.mark.parametrize("count_maps", [-1, 1.5, "4"])
def test_count_maps_is_a_whole_number(count_maps) -> None:
    config = tiny_captioner_config(vocab_size=20, feature_dim=12, grid=(3, 4), hidden_dim=24)
    with pytest.raises(ValueError, match="count_maps"):
        replace(config, count_maps=count_maps)
