"""int8 layers against the fp32 layers they replace, and decoding with a quantised captioner."""

import copy

import pytest
import torch
from torch import nn

from factories import tiny_captioner_config
from models.captioner import Captioner
from models.decoding import beam_search, greedy
from models.quantize import (
    Int8GRUCell,
    Int8Linear,
    Int8LSTMCell,
    quantization_of,
    quantize_int8,
)


def close(int8: torch.Tensor, fp32: torch.Tensor, share: float = 0.03) -> bool:
    """Within `share` of the output's range: what 8 bits per weight and input allow."""
    return bool((int8 - fp32).abs().max() <= share * fp32.abs().max())


def inputs(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("bias", [True, False])
def test_int8_linear_follows_the_fp32_one(bias: bool) -> None:
    torch.manual_seed(0)
    linear = nn.Linear(48, 20, bias=bias)
    int8 = Int8Linear(linear)
    for x in (inputs(5, 48), inputs(2, 3, 48, seed=1)):  # rows, and rows within images
        assert int8(x).shape == linear(x).shape
        assert close(int8(x), linear(x))


def test_int8_cells_follow_the_fp32_ones() -> None:
    torch.manual_seed(0)
    x, h, c = inputs(4, 24), inputs(4, 16, seed=1).tanh(), inputs(4, 16, seed=2)
    lstm, gru = nn.LSTMCell(24, 16), nn.GRUCell(24, 16)
    for state in ((h, c), None):
        for got, want in zip(Int8LSTMCell(lstm)(x, state), lstm(x, state), strict=True):
            assert close(got, want)
    for state in (h, None):
        assert close(Int8GRUCell(gru)(x, state), gru(x, state))


def test_a_rows_result_does_not_depend_on_its_batch() -> None:
    """Each row is quantised with its own scale and the integer product is exact, so batch
    company (other requests, other beams) cannot change a row's output by a single bit."""
    torch.manual_seed(0)
    linear = Int8Linear(nn.Linear(32, 12))
    x = inputs(6, 32)
    x[3] *= 50  # one row on another scale must not move the others
    batched = linear(x)
    for i in range(len(x)):
        assert torch.equal(linear(x[i : i + 1])[0], batched[i])


def test_layers_are_swapped_by_type_wherever_they_sit() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Linear(8, 8),
        nn.ModuleList([nn.LSTMCell(8, 8), nn.GRUCell(8, 8)]),
        nn.Sequential(nn.Conv2d(1, 1, 1), nn.Linear(8, 2)),
    )
    assert quantization_of(model) == "none"
    quantize_int8(model, min_weights=0)
    kinds = [type(m) for m in model.modules()]
    assert nn.Linear not in kinds and nn.LSTMCell not in kinds and nn.GRUCell not in kinds
    assert {Int8Linear, Int8LSTMCell, Int8GRUCell, nn.Conv2d} <= set(kinds)
    assert quantization_of(model) == "int8"
    # The int8 layers hold buffers, not parameters: nothing of them trains.
    assert [name for name, _ in model.named_parameters()] == ["2.0.weight", "2.0.bias"]


def test_layers_below_the_size_worth_quantising_stay_fp32() -> None:
    small, large = nn.Linear(8, 2), nn.Linear(64, 32)  # 18 and 2,080 weights with biases
    model = quantize_int8(nn.Sequential(small, large), min_weights=1_000)
    assert model[0] is small and isinstance(model[1], Int8Linear)


@pytest.fixture(scope="module")
def quantised() -> tuple[Captioner, Captioner]:
    torch.manual_seed(1)
    config = tiny_captioner_config(vocab_size=30, feature_dim=6, grid=(2, 3), d_model=12)
    fp32 = Captioner(config).eval()
    with torch.no_grad():  # widen the untrained weights so that captions vary between images
        for p in fp32.parameters():
            p.mul_(1.5)
    return fp32, quantize_int8(copy.deepcopy(fp32), min_weights=0)  # every layer, however small


def test_quantised_beam_search_batched_equals_one_image_at_a_time(quantised) -> None:
    _, int8 = quantised
    features = inputs(8, 6, 6, seed=3)
    batched = beam_search(int8, features, beam_size=3, max_len=8)
    assert len({tuple(c.tokens) for c in batched}) > 1  # captions vary: the check means something
    for i, caption in enumerate(batched):
        alone = beam_search(int8, features[i : i + 1], beam_size=3, max_len=8)[0]
        assert caption.tokens == alone.tokens
        assert caption.score == pytest.approx(alone.score, abs=1e-4)
        assert torch.allclose(caption.alphas, alone.alphas, atol=1e-5)


def test_quantised_captioner_mostly_says_what_the_fp32_one_says(quantised) -> None:
    fp32, int8 = quantised
    features = inputs(16, 6, 6, seed=3)
    same = sum(
        a.tokens == b.tokens
        for a, b in zip(greedy(fp32, features, 6), greedy(int8, features, 6), strict=True)
    )
    assert same >= 12
    assert quantization_of(int8) == "int8" and quantization_of(fp32) == "none"
