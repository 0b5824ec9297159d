import pytest
import torch

from factories import ANSWERS, WORDS, tiny_encoder_spec, tiny_vqa_config
from models.checkpoint import Checkpoint, load_pretrained, save_pretrained
from models.text import build_tokenizer
from models.vqa import VQAConfig, VQAModel, cell_centres, soft_cross_entropy


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


def located(**overrides) -> VQAModel:
    torch.manual_seed(2)
    config = tiny_vqa_config(15, 6, 10, (2, 3), **{"glimpse_centres": True, **overrides})
    return VQAModel(config).eval()


def test_cell_centres_are_row_major_in_minus_one_to_one() -> None:
    centres = cell_centres((2, 3))
    assert centres.shape == (6, 2)
    assert torch.allclose(centres[0], torch.tensor([-0.5, -2 / 3]))  # top left: (row, col)
    assert torch.allclose(centres[5], torch.tensor([0.5, 2 / 3]))  # bottom right
    assert torch.allclose(centres[1, 0], centres[2, 0])  # along a row, the row stays


def test_each_located_glimpse_after_the_first_looks_from_the_one_before() -> None:
    model = located(glimpses=3)
    features = torch.randn(3, 6, 10)
    logits, maps, _ = model(features, QUESTIONS, LENGTHS)
    assert maps.shape == (3, 3, 6)
    assert torch.allclose(maps.sum(-1), torch.ones(3, 3), atol=1e-5)
    with torch.no_grad():
        model.attend_offset.weight.add_(1.0)  # only the hops after the first read offsets
    other_logits, other_maps, _ = model(features, QUESTIONS, LENGTHS)
    assert torch.equal(other_maps[:, 0], maps[:, 0])
    assert not torch.allclose(other_maps[:, 1:], maps[:, 1:])
    assert not torch.allclose(other_logits, logits)


def classifier_inputs(
    model: VQAModel, features: torch.Tensor, questions: int = 1
) -> tuple[torch.Tensor, torch.Tensor]:
    """The classifier's inputs for the first `questions` questions, caught on their way in,
    and the maps."""
    seen = []
    hook = model.classifier[0].register_forward_pre_hook(lambda _, x: seen.append(x[0]))
    _, maps, _ = model(features, QUESTIONS[:questions], LENGTHS[:questions])
    hook.remove()
    return seen[0], maps


def classifier_input(model: VQAModel, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The classifier's input for the first question, and its maps."""
    seen, maps = classifier_inputs(model, features)
    return seen[0], maps[0]


def test_the_classifier_reads_where_each_glimpse_looked_even_under_dropout() -> None:
    model = located(dropout=0.9).train()  # a coordinate has no copies: it is never dropped
    seen, maps = classifier_input(model, torch.randn(1, 6, 10))
    width = model.config.d_model
    per_glimpse = seen[: 2 * (width + 2)].view(2, width + 2)
    assert torch.allclose(per_glimpse[:, width:], maps @ cell_centres((2, 3)), atol=1e-6)
    assert (per_glimpse[:, :width] == 0).float().mean() > 0.5  # the vectors are dropped out


def test_the_computed_comparison_is_the_glimpses_geometry_gated_by_the_question() -> None:
    model = located(relation_dim=8)
    seen, maps = classifier_input(model, torch.randn(1, 6, 10))
    centres = (maps @ cell_centres((2, 3))).unsqueeze(0)  # (1, G, 2)
    question = model.question(QUESTIONS[:1], LENGTHS[:1])
    cfg = model.config
    assert model.classifier[0].in_features == 2 * (cfg.d_model + 2) + cfg.question_size + 8
    relation = model.relate(centres, question)
    assert torch.allclose(seen[-8:], relation[0], atol=1e-6)
    swapped = model.relate(centres.flip(1), question)  # "A left of B" is not "B left of A"
    assert not torch.allclose(swapped, relation)
    other = model.question(QUESTIONS[1:2], LENGTHS[1:2])
    assert not torch.allclose(model.relate(centres, other), relation)


@pytest.mark.parametrize(
    "settings",
    [
        {"relation_dim": 8},  # without located glimpses
        {"relation_dim": 8, "glimpse_centres": True, "glimpses": 1},  # nothing to compare
        {"relation_dim": -1, "glimpse_centres": True},
        {"relation_dim": 2.5, "glimpse_centres": True},
    ],
)
def test_a_comparison_needs_two_located_glimpses(settings: dict) -> None:
    with pytest.raises(ValueError, match="relation_dim"):
        VQAConfig(vocab_size=3, num_answers=2, feat_dim=4, **settings)


def test_located_glimpses_train_save_and_load(tmp_path) -> None:
    model = located(relation_dim=8).train()
    features, targets = torch.randn(3, 6, 10), torch.eye(6)[[0, 2, 4]]
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    first = model(features, QUESTIONS, LENGTHS, targets)[2].item()
    for _ in range(25):
        optimizer.zero_grad()
        model(features, QUESTIONS, LENGTHS, targets)[2].backward()
        optimizer.step()
    assert model(features, QUESTIONS, LENGTHS, targets)[2].item() < 0.5 * first
    tokenizer = build_tokenizer([WORDS])
    checkpoint = Checkpoint("vqa", model.eval(), tiny_encoder_spec(), tokenizer, ANSWERS[:6])
    save_pretrained(tmp_path, checkpoint)
    loaded = load_pretrained(tmp_path).model
    assert loaded.config.glimpse_centres and loaded.config.relation_dim == 8
    assert torch.equal(
        loaded(features, QUESTIONS, LENGTHS)[0], model(features, QUESTIONS, LENGTHS)[0]
    )


def test_glimpse_centres_must_be_a_boolean() -> None:
    with pytest.raises(ValueError, match="glimpse_centres"):
        VQAConfig(vocab_size=3, num_answers=2, feat_dim=4, glimpse_centres="yes")


@pytest.mark.parametrize("glimpse_centres", [False, True])
def test_the_whole_image_is_read_beside_the_glimpses(glimpse_centres: bool) -> None:
    model = located(whole_image=True, glimpse_centres=glimpse_centres)
    features = torch.randn(1, 6, 10)
    seen, _ = classifier_input(model, features)
    cfg = model.config
    glimpse_width = 2 * (cfg.d_model + (2 if glimpse_centres else 0))
    whole = seen[glimpse_width : glimpse_width + cfg.d_model]
    assert torch.allclose(whole, model.adapter(features)[0].mean(dim=0), atol=1e-6)
    assert model.classifier[0].in_features == glimpse_width + cfg.d_model + cfg.question_size


@pytest.mark.parametrize(
    "settings", [{"whole_image": "yes"}, {"whole_image": True, "fusion": "concat"}]
)
def test_whole_image_is_a_boolean_of_the_attention_fusion(settings: dict) -> None:
    with pytest.raises(ValueError, match="whole_image"):
        VQAConfig(vocab_size=3, num_answers=2, feat_dim=4, **settings)


def test_count_maps_sum_a_sigmoid_over_the_cells_where_a_softmax_would_not() -> None:
    model = located(count_maps=2)
    glimpse_width = 2 * (model.config.d_model + 2)
    features = torch.randn(1, 6, 10)
    with torch.no_grad():
        model.count.weight.zero_()
        model.count.bias.copy_(torch.tensor([20.0, -20.0]))  # every cell on; every cell off
    seen, _ = classifier_input(model, features)
    assert torch.allclose(seen[glimpse_width:][:2], torch.tensor([6.0, 0.0]), atol=1e-4)
    assert model.classifier[0].in_features == glimpse_width + 2 + model.config.question_size


def test_what_is_counted_depends_on_the_question() -> None:
    model = located(count_maps=3)
    start = 2 * (model.config.d_model + 2)
    features = torch.randn(1, 6, 10).expand(2, 6, 10)
    seen, _ = classifier_inputs(model, features, questions=2)
    counts = seen[:, start : start + 3]
    assert ((counts > 0) & (counts < 6)).all()
    assert not torch.allclose(counts[0], counts[1], atol=1e-3)


@pytest.mark.parametrize("settings", [{"count_maps": -1}, {"count_maps": 2, "fusion": "concat"}])
def test_count_maps_is_a_whole_number_for_the_attention_fusion(settings: dict) -> None:
    with pytest.raises(ValueError, match="count_maps"):
        VQAConfig(vocab_size=3, num_answers=2, feat_dim=4, **settings)
