import pytest
import torch

from factories import tiny_vqa_config
from models.vqa import VQAConfig, VQAModel, soft_cross_entropy


def make_vqa(fusion: str) -> VQAModel:
    torch.manual_seed(0)
    return VQAModel(
        tiny_vqa_config(vocab_size=15, num_answers=6, feature_dim=10, grid=(3, 3), fusion=fusion)
    )


QUESTIONS = torch.tensor([[5, 6, 7, 0], [8, 9, 0, 0], [5, 10, 11, 12]])
LENGTHS = torch.tensor([3, 2, 4])


@pytest.mark.parametrize("fusion", ["attention", "concat"])
def test_forward_shapes_and_loss(fusion: str) -> None:
    model = make_vqa(fusion)
    targets = torch.zeros(3, 6)
    targets[:, 1] = 1.0
    logits, maps, loss = model(torch.randn(3, 9, 10), QUESTIONS, LENGTHS, targets)
    assert logits.shape == (3, 6)
    assert torch.isfinite(loss)
    loss.backward()
    if fusion == "attention":
        assert maps.shape == (3, 2, 9)
        assert torch.allclose(maps.sum(-1), torch.ones(3, 2), atol=1e-5)
    else:
        assert maps is None


def test_padding_does_not_change_the_answer() -> None:
    model = make_vqa("attention").eval()
    features = torch.randn(1, 9, 10)
    short = model(features, torch.tensor([[5, 6]]), torch.tensor([2]))[0]
    padded = model(features, torch.tensor([[5, 6, 0, 0, 0]]), torch.tensor([2]))[0]
    assert torch.allclose(short, padded, atol=1e-5)


def test_the_answer_depends_on_the_question() -> None:
    model = make_vqa("attention").eval()
    features = torch.randn(1, 9, 10).expand(2, -1, -1)
    logits, maps, _ = model(features, QUESTIONS[:2], LENGTHS[:2])
    assert not torch.allclose(logits[0], logits[1])
    assert not torch.allclose(maps[0], maps[1])


def test_soft_cross_entropy_prefers_the_agreed_answer() -> None:
    targets = torch.tensor([[1.0, 1 / 3, 0.0]])
    right = soft_cross_entropy(torch.tensor([[5.0, 0.0, 0.0]]), targets)
    wrong = soft_cross_entropy(torch.tensor([[0.0, 0.0, 5.0]]), targets)
    assert right < wrong


def test_unknown_fusion_is_rejected() -> None:
    with pytest.raises(ValueError, match="fusion"):
        VQAConfig(vocab_size=3, num_answers=2, feat_dim=4, fusion="sum")
