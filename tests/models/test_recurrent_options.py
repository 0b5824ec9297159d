"""The recurrent options of both heads: the captioner's cell and depth, the question encoder's
cell, depth and direction. Each one trains, survives a model directory and decodes."""

from dataclasses import replace
from pathlib import Path

import pytest
import torch
from torch.nn.utils.rnn import pad_sequence

from factories import ANSWERS, WORDS, tiny_captioner_config, tiny_encoder_spec, tiny_vqa_config
from models.captioner import Captioner, CaptionerConfig
from models.checkpoint import Checkpoint, load_pretrained, save_pretrained
from models.decoding import beam_search
from models.text import build_tokenizer
from models.vqa import VQAConfig, VQAModel

CAPTIONER_OPTIONS = [
    {"cell": cell, "num_layers": layers} for cell in ("lstm", "gru") for layers in (1, 2)
]
VQA_OPTIONS = [
    {"question_cell": "gru"},
    {"question_layers": 2},
    {"question_bidirectional": True},
    {"question_cell": "gru", "question_layers": 2, "question_bidirectional": True},
]
FEATURES = torch.randn(5, 6, 10, generator=torch.Generator().manual_seed(0))  # (B, L, D)
CAPTIONS = torch.tensor([[1, 5, 6, 7, 2], [1, 8, 9, 2, 0], [1, 10, 11, 12, 2]])
QUESTIONS = [torch.tensor(q) for q in ([5, 6, 7], [8, 9], [5, 10, 11, 12], [13])]


def captioner(options: dict) -> Captioner:
    torch.manual_seed(1)
    config = tiny_captioner_config(16, 10, (2, 3), dropout=0.1, **options)
    return Captioner(config)


def vqa(options: dict) -> VQAModel:
    torch.manual_seed(1)
    return VQAModel(tiny_vqa_config(16, len(ANSWERS), 10, (2, 3), dropout=0.1, **options))


def fits(model: torch.nn.Module, loss_of, steps: int = 25) -> tuple[float, float]:
    """The loss before and after `steps` of Adam on one fixed batch."""
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    first = loss_of(model).item()
    for _ in range(steps):
        optimizer.zero_grad()
        loss_of(model).backward()
        optimizer.step()
    return first, loss_of(model).item()


def round_trip(model: Captioner | VQAModel, kind: str, path: Path) -> Checkpoint:
    tokenizer = build_tokenizer([WORDS])
    answers = ANSWERS if kind == "vqa" else None
    save_pretrained(path, Checkpoint(kind, model, tiny_encoder_spec(), tokenizer, answers))
    return load_pretrained(path)


@pytest.mark.parametrize("options", CAPTIONER_OPTIONS, ids=str)
def test_each_captioner_cell_trains_saves_loads_and_decodes(options: dict, tmp_path: Path) -> None:
    model = captioner(options)
    first, last = fits(model, lambda m: m(FEATURES[:3], CAPTIONS[:, :-1], CAPTIONS[:, 1:])[2])
    assert last < 0.5 * first

    loaded = round_trip(model.eval(), "captioner", tmp_path / "model").model
    assert (loaded.config.cell, loaded.config.num_layers) == (
        options["cell"],
        options["num_layers"],
    )
    forced = [m(FEATURES[:3], CAPTIONS[:, :-1])[0] for m in (model, loaded)]
    assert torch.equal(*forced)

    batched = beam_search(loaded, FEATURES, beam_size=3, max_len=6)
    assert len({tuple(c.tokens) for c in batched}) > 1  # rows mixed up would show
    for i, caption in enumerate(batched):
        alone = beam_search(loaded, FEATURES[i : i + 1], beam_size=3, max_len=6)[0]
        assert caption.tokens == alone.tokens
        assert caption.score == pytest.approx(alone.score, abs=1e-4)
        assert torch.allclose(caption.alphas, alone.alphas, atol=1e-5)


@pytest.mark.parametrize("options", CAPTIONER_OPTIONS, ids=str)
def test_the_state_has_every_layer_and_the_attention_reads_the_top_one(options: dict) -> None:
    model = captioner(options).eval()
    prepared = model.prepare(FEATURES)
    parts = 2 if options["cell"] == "lstm" else 1  # (h, c) or (h,)
    shape = (5, options["num_layers"], model.config.hidden_dim)
    assert [tuple(s.shape) for s in prepared.state] == [shape] * parts
    tokens = torch.full((5,), 1)
    logits, state, alpha = model.step(tokens, prepared)
    assert [s.shape for s in state] == [s.shape for s in prepared.state]

    changed = tuple(s.clone() for s in prepared.state)
    changed[0][:, -1] += 1.0  # the top layer's h: the attention must move
    assert not torch.allclose(model.step(tokens, replace(prepared, state=changed))[2], alpha)
    if options["num_layers"] > 1:
        lower = tuple(s.clone() for s in prepared.state)
        for part in lower:
            part[:, :-1] += 1.0  # the layers below: same attention, other words
        other_logits, _, other_alpha = model.step(tokens, replace(prepared, state=lower))
        assert torch.equal(other_alpha, alpha)
        assert not torch.allclose(other_logits, logits)


@pytest.mark.parametrize("options", CAPTIONER_OPTIONS, ids=str)
def test_each_layer_steps_from_its_own_state_on_the_new_h_below(options: dict) -> None:
    model = captioner(options).eval()
    cfg, generator = model.config, torch.Generator().manual_seed(3)
    shape = (5, cfg.num_layers, cfg.hidden_dim)
    state = tuple(torch.randn(shape, generator=generator) for _ in range(cfg.state_parts))
    inputs = torch.randn(5, cfg.embed_dim + cfg.d_model, generator=generator)  # [E y; z]
    new = model.recur(inputs, state)
    below = inputs
    for i, cell in enumerate(model.cells):
        own = tuple(part[:, i] for part in state)
        expected = cell(below, own) if options["cell"] == "lstm" else (cell(below, own[0]),)
        for part, value in zip(new, expected, strict=True):
            assert torch.allclose(part[:, i], value, atol=1e-6)
        below = expected[0]


def test_unknown_cells_and_depths_are_refused() -> None:
    with pytest.raises(ValueError, match="cell must be one of"):
        CaptionerConfig(vocab_size=5, feat_dim=4, cell="rnn")
    with pytest.raises(ValueError, match="num_layers"):
        CaptionerConfig(vocab_size=5, feat_dim=4, num_layers=0)
    with pytest.raises(ValueError, match="question_cell"):
        VQAConfig(vocab_size=5, num_answers=2, feat_dim=4, question_cell="transformer")
    with pytest.raises(ValueError, match="question_layers"):
        VQAConfig(vocab_size=5, num_answers=2, feat_dim=4, question_layers=1.5)
    with pytest.raises(ValueError, match="question_bidirectional"):
        VQAConfig(vocab_size=5, num_answers=2, feat_dim=4, question_bidirectional="yes")


def questions(rows: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    return pad_sequence(rows, batch_first=True), torch.tensor([len(q) for q in rows])


@pytest.mark.parametrize("options", VQA_OPTIONS, ids=str)
def test_each_question_encoder_trains_saves_loads_and_ignores_padding(
    options: dict, tmp_path: Path
) -> None:
    model = vqa(options)
    padded, lengths = questions(QUESTIONS)
    targets = torch.eye(len(ANSWERS))[[0, 2, 4, 1]]
    features = FEATURES[:4]
    first, last = fits(model, lambda m: m(features, padded, lengths, targets)[2])
    assert last < 0.5 * first

    loaded = round_trip(model.eval(), "vqa", tmp_path / "model").model
    assert all(getattr(loaded.config, k) == v for k, v in options.items())
    logits = loaded(features, padded, lengths)[0]
    assert torch.equal(model(features, padded, lengths)[0], logits)
    for i, question in enumerate(QUESTIONS):  # alone, unpadded: the same answer scores
        alone = loaded(features[i : i + 1], question.unsqueeze(0), lengths[i : i + 1])[0]
        assert torch.allclose(alone[0], logits[i], atol=1e-5)


def test_a_bidirectional_question_is_the_top_layer_read_both_ways() -> None:
    model = vqa({"question_layers": 2, "question_bidirectional": True}).eval()
    encoder, question = model.question, QUESTIONS[2]
    vector = encoder(question.unsqueeze(0), torch.tensor([len(question)]))[0]  # (2Q,)
    out, _ = encoder.rnn(torch.tanh(encoder.embed(question.unsqueeze(0))))  # (1, T, 2Q)
    width = model.config.question_dim
    assert vector.shape == (2 * width,)
    assert torch.allclose(vector[:width], out[0, -1, :width], atol=1e-6)  # forward, last word
    assert torch.allclose(vector[width:], out[0, 0, width:], atol=1e-6)  # backward, first word
